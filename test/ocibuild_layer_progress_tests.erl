%% Live progress of layer builds: `ocibuild_layer:create/2''s `progress' fun, the terminal
%% line `ocibuild_progress' draws for it, and plain output (CI) left as it was.
-module(ocibuild_layer_progress_tests).

-include_lib("eunit/include/eunit.hrl").

progress_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun({Root, _}) ->
        [
            {"the fun sees bytes read from 0 to the total, in the caller", fun() -> counts_up(Root) end},
            {"the layer is the same with or without progress", fun() -> same_layer(Root) end},
            {"a fun that raises does not stop the build", fun() -> raising_fun(Root) end},
            {"a failed build: its error, no final report, nothing left behind", fun() -> failed_build(Root) end},
            {"a progress that is not a fun is an invalid option", fun() -> invalid_progress(Root) end},
            {"several builds at once each get their own reports", fun() -> concurrent(Root) end},
            {"not a terminal: build reports print nothing", fun plain_callback/0},
            {"not a terminal: a release's output is the two lines per layer it was",
             fun() -> plain_release(Root) end}
        ]
    end}.

%% Two host files (one spanning several of the core's read buffers) and a binary.
files(Root, Name) ->
    Dir = filename:join(Root, Name),
    Big = filename:join(Dir, "big.bin"),
    ocibuild_test_util:write_file(Big, crypto:strong_rand_bytes(3 * 1024 * 1024 + 17), 8#644),
    Small = filename:join(Dir, "small.txt"),
    ocibuild_test_util:write_file(Small, <<"hello\n">>, 8#644),
    Files = [
        {<<"/app/big.bin">>, {file, Big}, 8#644},
        {<<"/app/small.txt">>, {file, Small}, 8#644},
        {<<"/app/VERSION">>, <<"1.0\n">>, 8#644}
    ],
    {Files, 3 * 1024 * 1024 + 17 + 6 + 4}.

%% The fun sends each report to the test process; `Tag' tells builds apart.
recorder(Tag) ->
    Test = self(),
    fun(Info) -> Test ! {Tag, self(), Info} end.

reports(Tag) ->
    receive
        {Tag, _, Info} -> [Info | reports(Tag)]
    after 0 -> []
    end.

counts_up(Root) ->
    {Files, Total} = files(Root, "counts"),
    {ok, _} = ocibuild_layer:create(Files, #{layer_type => app, progress => recorder(build)}),
    %% Every report arrived before create/2 returned: the mailbox is read without waiting.
    Seen = receive_all(build),
    ?assertMatch([_, _ | _], Seen),
    ?assert(lists:all(fun({Pid, _}) -> Pid =:= self() end, Seen)),
    Infos = [I || {_, I} <- Seen],
    ?assertEqual(#{phase => build, layer => app, bytes_read => 0, total_bytes => Total}, hd(Infos)),
    ?assertEqual(#{phase => build, layer => app, bytes_read => Total, total_bytes => Total},
                 lists:last(Infos)),
    Read = [N || #{bytes_read := N} <- Infos],
    ?assertEqual(Read, lists:usort(Read)),
    ?assert(lists:all(fun(#{bytes_read := N, total_bytes := T}) -> N =< T end, Infos)),
    ?assertEqual([], leftover_messages()).

receive_all(Tag) ->
    receive
        {Tag, Pid, Info} -> [{Pid, Info} | receive_all(Tag)]
    after 0 -> []
    end.

%% With the layer cache off, so the watched build really runs (a cache hit reads nothing and
%% reports nothing).
same_layer(Root) ->
    ocibuild_test_util:with_env("OCIBUILD_LAYER_CACHE", "off", fun() ->
        {Files, _} = files(Root, "same"),
        {ok, Plain} = ocibuild_layer:create(Files, #{compression => gzip}),
        {ok, Watched} = ocibuild_layer:create(Files, #{compression => gzip, progress => recorder(same)}),
        ?assertEqual(Plain, Watched),
        %% Without a layer type the report says `undefined'.
        ?assertMatch([#{layer := undefined} | _], reports(same)),
        {ok, Plain} = ocibuild_layer:create(Files, #{compression => gzip, progress => undefined})
    end).

raising_fun(Root) ->
    {Files, _} = files(Root, "raising"),
    {ok, Plain} = ocibuild_layer:create(Files, #{}),
    ?assertEqual({ok, Plain}, ocibuild_layer:create(Files, #{progress => fun(_) -> error(boom) end})),
    ?assertEqual({ok, Plain}, ocibuild_layer:create(Files, #{progress => fun(_) -> exit(oops) end})),
    ?assertEqual([], leftover_messages()).

failed_build(Root) ->
    {Files, _} = files(Root, "failed"),
    Missing = filename:join(Root, "no-such-file"),
    %% First in tar order: it fails before anything else is read.
    Bad = [{<<"/a/missing">>, {file, Missing}, 8#644} | Files],
    {error, {file_read, _, enoent}} = ocibuild_layer:create(Bad, #{progress => recorder(failed)}),
    Reports = reports(failed),
    ?assert(lists:all(fun(#{bytes_read := N, total_bytes := T}) -> N < T end, Reports)),
    ?assertEqual([], leftover_messages()),
    ?assertEqual([], incoming(ocibuild_blob_store:root())).

invalid_progress(Root) ->
    {Files, _} = files(Root, "invalid"),
    [?assertEqual({error, {invalid_option, progress, P}}, ocibuild_layer:create(Files, #{progress => P}))
     || P <- [self(), fun() -> ok end, fun(_, _) -> ok end, <<"fun">>, 42]].

%% Each build's helper reports to its own caller only.
concurrent(Root) ->
    Test = self(),
    Builds = [
        begin
            {Files, Total} = files(Root, "concurrent-" ++ atom_to_list(I)),
            spawn_link(fun() ->
                Self = self(),
                Mine = fun(Info) -> Self ! {mine, Info} end,
                {ok, _} = ocibuild_layer:create(Files, #{layer_type => I, progress => Mine}),
                Infos = [Info || {mine, Info} <- drain()],
                Test ! {done, I, Total, Infos}
            end),
            I
        end
     || I <- [one, two, three]
    ],
    [receive
         {done, I, Total, Infos} ->
             ?assert(lists:all(fun(#{layer := L}) -> L =:= I end, Infos)),
             ?assertMatch(#{bytes_read := Total, total_bytes := Total}, lists:last(Infos))
     after 60000 -> error({timeout, I})
     end
     || I <- Builds].

drain() ->
    receive
        M -> [M | drain()]
    after 0 -> []
    end.

leftover_messages() ->
    receive
        {ocibuild_layer_progress, _, _} = M -> [M | leftover_messages()];
        {'DOWN', _, process, _, _} = M -> [M | leftover_messages()]
    after 0 -> []
    end.

incoming(StoreRoot) ->
    Dir = filename:join([StoreRoot, "blobs", "sha256"]),
    case file:list_dir(Dir) of
        {ok, Names} -> [N || N <- Names, lists:prefix(".incoming", N)];
        {error, enoent} -> []
    end.

%% `TERM=dumb' is never a terminal, whatever the test's stdout is.
plain_callback() ->
    ocibuild_test_util:with_env("TERM", "dumb", fun() ->
        Test = self(),
        Progress = ocibuild_progress:callback(fun(Line) -> Test ! {line, Line} end),
        [Progress(#{phase => build, layer => app, bytes_read => N, total_bytes => 100})
         || N <- [0, 50, 100]],
        %% A finished upload still gets its line: the plain output is what it was.
        Progress(#{phase => upload, digest => <<"sha256:0123456789abcdef">>, bytes_received => 10,
                   bytes_sent => 10, total_bytes => 10}),
        ?assertEqual([<<"  pushed  0123456789ab 10 B">>], [iolist_to_binary(L) || {line, L} <- drain()])
    end).

plain_release(Root) ->
    ocibuild_test_util:with_env("TERM", "dumb", fun() ->
        Rel = ocibuild_test_util:small_release(Root, "plain-rel"),
        Out = filename:join(Root, "plain.tar.gz"),
        {ok, Config} = ocibuild_release:resolve_config(#{output => Out, tag => ["plain:1"]},
                                                       #{base_image => "scratch"}),
        State = #{config => Config, release => {<<"myapp">>, Rel}},
        {ok, _} = ocibuild_release:run(ocibuild_test_adapter, State, #{}),
        Lines = ocibuild_test_adapter:messages(),
        ?assertEqual([], [L || {console, L} <- Lines]),
        ?assertEqual([], [L || {_, L} <- Lines, binary:match(L, <<"\e">>) =/= nomatch]),
        Layer = [L || {info, L} <- Lines, is_layer_line(L)],
        ?assertMatch([<<"Building release layer (3 files)">>, <<"  release layer sha256:", _/binary>>,
                      <<"  sbom layer sha256:", _/binary>>], Layer),
        ?assertEqual([], leftover_messages())
    end).

is_layer_line(<<"Building ", _/binary>>) -> true;
is_layer_line(L) -> binary:match(L, <<" layer sha256:">>) =/= nomatch.
