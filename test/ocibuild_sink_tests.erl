%% @doc The sinks (save, export, push) through the Erlang API: a blob changed in the blob store
%% is never written out, concurrent calls each get a whole result or a clear error, and a caller
%% killed mid-way leaves no temp file or directory behind.
-module(ocibuild_sink_tests).

-include_lib("eunit/include/eunit.hrl").

%% How long a condition that depends on another process may take before the test fails.
-define(WAIT_MS, 30000).

sink_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun(Ctx) ->
        [
            {Name, {timeout, 120, ?_test(Test(Ctx))}}
         || {Name, Test} <- [
                {"save refuses a blob changed in the cache", fun save_changed_blob/1},
                {"export refuses a blob changed in the cache", fun export_changed_blob/1},
                {"an untagged save is named latest", fun untagged_save_is_latest/1},
                {"20 concurrent exports to sibling directories", fun sibling_exports/1},
                {"10 concurrent exports to one directory", fun one_dir_exports/1},
                {"concurrent saves to one path", fun one_path_saves/1},
                {"a caller killed mid-save leaves nothing", fun killed_save/1},
                {"a caller killed mid-export leaves nothing", fun killed_export/1},
                {"a caller killed mid-push leaves nothing", fun killed_push/1}
            ]
        ]
    end}.

%% An image whose one layer holds `Bytes' (gzip unless said otherwise, so erl_tar could read
%% it); the layer's blob sits in this suite's blob store.
image_of(Bytes) ->
    image_of(Bytes, gzip).

image_of(Bytes, Compression) ->
    {ok, I0} = ocibuild:scratch(),
    ocibuild:add_layer(I0, [{<<"/data/blob.bin">>, Bytes, 8#644}], #{compression => Compression}).

%% Flip one byte of the cached layer blob: same size, different digest.
damage_layer(#{layers := [#{blob := Blob}]}) ->
    {ok, Bin} = file:read_file(Blob),
    Half = byte_size(Bin) div 2,
    <<Head:Half/binary, B, Tail/binary>> = Bin,
    ok = file:write_file(Blob, <<Head/binary, (B bxor 16#01), Tail/binary>>).

layer_digest(#{layers := [#{digest := Digest}]}) -> Digest.

%% Names in `Dir' that a sink uses for temp output.
leftovers(Dir) ->
    case file:list_dir_all(Dir) of
        {ok, Names} -> [N || N <- Names, lists:prefix(".ocibuild-", N) orelse lists:prefix(".incoming-", N)];
        {error, enoent} -> []
    end.

blob_store_dir() ->
    filename:join([os:getenv("OCIBUILD_CACHE_DIR"), "blobs", "sha256"]).

save_changed_blob({Root, _}) ->
    Image = image_of(<<"save: bytes that will be changed in the cache">>),
    damage_layer(Image),
    Expected = layer_digest(Image),
    Dir = filename:join(Root, "save-changed"),
    Path = filename:join(Dir, "image.tar.gz"),
    ?assertMatch({error, {digest_mismatch, #{expected := Expected}}}, ocibuild:save(Image, Path)),
    ?assertNot(filelib:is_file(Path)),
    ?assertEqual([], leftovers(Dir)).

export_changed_blob({Root, _}) ->
    Image = image_of(<<"export: bytes that will be changed in the cache">>),
    damage_layer(Image),
    Expected = layer_digest(Image),
    Parent = filename:join(Root, "export-changed"),
    Dir = filename:join(Parent, "layout"),
    ?assertMatch({error, {digest_mismatch, #{expected := Expected}}}, ocibuild:export(Image, Dir)),
    ?assertNot(filelib:is_file(Dir)),
    ?assertEqual([], leftovers(Parent)).

%% ocibuild 0.10 names an untagged tarball `latest' in its index.json.
untagged_save_is_latest({Root, _}) ->
    Path = filename:join(Root, "untagged.tar.gz"),
    ok = ocibuild:save(image_of(<<"untagged">>), Path),
    Out = ocibuild_test_util:extract_tarball(Path, filename:join(Root, "untagged-extracted")),
    {#{<<"manifests">> := [Desc]}, _} = ocibuild_test_util:validate_layout(Out),
    ?assertEqual(
        #{<<"org.opencontainers.image.ref.name">> => <<"latest">>}, maps:get(<<"annotations">>, Desc)
    ).

%% Run `Fun(N)' for N in 1..Count in parallel processes; their results in order.
parallel(Count, Fun) ->
    Self = self(),
    Pids = [spawn_link(fun() -> Self ! {self(), Fun(N)} end) || N <- lists:seq(1, Count)],
    [
        receive
            {Pid, Result} -> Result
        after ?WAIT_MS -> error({timeout, parallel, Pid})
        end
     || Pid <- Pids
    ].

sibling_exports({Root, _}) ->
    Image = image_of(<<"siblings">>),
    Parent = filename:join(Root, "siblings"),
    Dir = fun(N) -> filename:join(Parent, "layout-" ++ integer_to_list(N)) end,
    %% Half of them replace a layout that is already there.
    [ok = ocibuild:export(Image, Dir(N)) || N <- lists:seq(2, 20, 2)],
    ?assertEqual(lists:duplicate(20, ok), parallel(20, fun(N) -> ocibuild:export(Image, Dir(N)) end)),
    [ocibuild_test_util:validate_layout(Dir(N)) || N <- lists:seq(1, 20)],
    ?assertEqual([], leftovers(Parent)).

one_dir_exports({Root, _}) ->
    Parent = filename:join(Root, "one-dir"),
    Dir = filename:join(Parent, "layout"),
    %% Ten different images, so a layout mixed from two exports would show.
    Images = [image_of(<<"one dir ", (integer_to_binary(N))/binary>>) || N <- lists:seq(1, 10)],
    Results = parallel(10, fun(N) -> ocibuild:export(lists:nth(N, Images), Dir) end),
    [?assert(R =:= ok orelse element(1, R) =:= error) || R <- Results],
    ?assert(lists:member(ok, Results)),
    {_, [{_, Manifest, _}]} = ocibuild_test_util:validate_layout(Dir),
    [#{<<"digest">> := Layer}] = maps:get(<<"layers">>, Manifest),
    ?assert(lists:member(Layer, [layer_digest(I) || I <- Images])),
    {ok, Blobs} = file:list_dir_all(filename:join([Dir, "blobs", "sha256"])),
    %% Its layer, config and manifest: nothing from the other nine.
    ?assertEqual(3, length(Blobs)),
    ?assertEqual([], leftovers(Parent)).

one_path_saves({Root, _}) ->
    Dir = filename:join(Root, "one-path"),
    Path = filename:join(Dir, "image.tar.gz"),
    Images = [image_of(<<"one path ", (integer_to_binary(N))/binary>>) || N <- lists:seq(1, 10)],
    ?assertEqual(lists:duplicate(10, ok), parallel(10, fun(N) -> ocibuild:save(lists:nth(N, Images), Path) end)),
    Out = ocibuild_test_util:extract_tarball(Path, filename:join(Root, "one-path-extracted")),
    _ = ocibuild_test_util:validate_layout(Out),
    ?assertEqual([], leftovers(Dir)).

%% Wait, up to ?WAIT_MS, for `Check()' to be true.
wait_until(What, Check) ->
    ocibuild_test_util:wait_until(What, Check, ?WAIT_MS).

%% Bytes that do not compress, so writing them takes a while.
big_bytes(MiB) ->
    crypto:strong_rand_bytes(MiB * 1024 * 1024).

killed_save({Root, _}) ->
    Image = image_of(big_bytes(64)),
    Dir = filename:join(Root, "killed-save"),
    ok = file:make_dir(Dir),
    Path = filename:join(Dir, "image.tar.gz"),
    Jobs = ocibuild_nif:job_count(),
    Caller = spawn(fun() -> ocibuild:save(Image, Path) end),
    %% Its temp file exists: the save is under way.
    wait_until(save_started, fun() -> leftovers(Dir) =/= [] end),
    exit(Caller, kill),
    wait_until(save_stopped, fun() -> ocibuild_nif:job_count() =:= Jobs end),
    ?assertEqual([], leftovers(Dir)),
    %% The save stopped when its caller died: no output either.
    ?assertNot(filelib:is_file(Path)),
    ?assertEqual([], leftovers(blob_store_dir())).

killed_export({Root, _}) ->
    %% Export copies without compressing: a big layer (zstd builds it fast) keeps it busy.
    Image = image_of(big_bytes(256), zstd),
    Parent = filename:join(Root, "killed-export"),
    ok = file:make_dir(Parent),
    Dir = filename:join(Parent, "layout"),
    Jobs = ocibuild_nif:job_count(),
    Caller = spawn(fun() -> ocibuild:export(Image, Dir) end),
    %% Its staging directory exists: the export is under way.
    wait_until(export_started, fun() -> leftovers(Parent) =/= [] end),
    exit(Caller, kill),
    wait_until(export_stopped, fun() -> ocibuild_nif:job_count() =:= Jobs end),
    ?assertEqual([], leftovers(Parent)),
    ?assertNot(filelib:is_file(Dir)).

killed_push(_) ->
    Image = image_of(big_bytes(8)),
    {Port, Listener} = stalling_registry(self()),
    Registry = <<"127.0.0.1:", (integer_to_binary(Port))/binary>>,
    Jobs = ocibuild_nif:job_count(),
    Caller = spawn(fun() -> ocibuild:push(Image, Registry, <<"app:1">>) end),
    receive
        {upload_started, _} -> ok
    after ?WAIT_MS -> error({timeout, upload_started})
    end,
    ?assert(ocibuild_nif:job_count() > Jobs),
    exit(Caller, kill),
    wait_until(push_stopped, fun() -> ocibuild_nif:job_count() =:= Jobs end),
    ?assertEqual([], leftovers(blob_store_dir())),
    gen_tcp:close(Listener).

%% A registry on loopback that opens upload sessions and then never answers an upload, so a
%% push stays in the middle of sending a blob until its caller goes away. It tells `Parent'
%% when an upload has begun.
stalling_registry(Parent) ->
    {ok, Listener} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(Listener),
    Acceptor = spawn(fun() -> accept(Listener, Parent) end),
    ok = gen_tcp:controlling_process(Listener, Acceptor),
    {Port, Listener}.

accept(Listener, Parent) ->
    case gen_tcp:accept(Listener) of
        {ok, Socket} ->
            Pid = spawn(fun() ->
                receive
                    go -> serve(Socket, Parent)
                end
            end),
            ok = gen_tcp:controlling_process(Socket, Pid),
            Pid ! go,
            accept(Listener, Parent);
        {error, _} ->
            ok
    end.

serve(Socket, Parent) ->
    ok = inet:setopts(Socket, [{packet, http_bin}]),
    case request_method(Socket) of
        {ok, 'HEAD'} ->
            reply(Socket, <<"404 Not Found">>, []),
            serve(Socket, Parent);
        {ok, 'POST'} ->
            reply(Socket, <<"202 Accepted">>, [<<"Location: /v2/app/blobs/uploads/session">>]),
            serve(Socket, Parent);
        {ok, _Upload} ->
            Parent ! {upload_started, self()},
            %% Take the body, answer nothing: the push waits for an answer until it is
            %% stopped, which closes the connection.
            ok = inet:setopts(Socket, [{packet, raw}]),
            drain(Socket);
        closed ->
            ok
    end.

drain(Socket) ->
    case gen_tcp:recv(Socket, 0) of
        {ok, _} -> drain(Socket);
        {error, _} -> ok
    end.

%% The method of the next request, its headers read (requests here carry no body but uploads).
request_method(Socket) ->
    case gen_tcp:recv(Socket, 0) of
        {ok, {http_request, Method, _Path, _Version}} -> skip_headers(Socket, Method);
        _ -> closed
    end.

skip_headers(Socket, Method) ->
    case gen_tcp:recv(Socket, 0) of
        {ok, http_eoh} -> {ok, Method};
        {ok, {http_header, _, _, _, _}} -> skip_headers(Socket, Method);
        _ -> closed
    end.

reply(Socket, Status, Headers) ->
    ok = inet:setopts(Socket, [{packet, raw}]),
    Lines = [[H, <<"\r\n">>] || H <- Headers],
    gen_tcp:send(Socket, [<<"HTTP/1.1 ">>, Status, <<"\r\nContent-Length: 0\r\n">>, Lines, <<"\r\n">>]).
