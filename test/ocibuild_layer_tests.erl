-module(ocibuild_layer_tests).

-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-define(GZIP, <<"application/vnd.oci.image.layer.v1.tar+gzip">>).
-define(ZSTD, <<"application/vnd.oci.image.layer.v1.tar+zstd">>).

layer_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun(Ctx) ->
        [
            {"layer map shape and digests", fun shape_and_digests/0},
            {"tar contents: parents first, sorted, modes, owners, mtime 0", fun tar_contents/0},
            {"zstd and auto", fun zstd_and_auto/0},
            {"content from files, iolists and strings", fun content_kinds/0},
            {"mtime option and SOURCE_DATE_EPOCH", fun mtime_sources/0},
            {"same input gives the same layer", fun deterministic/0},
            {"bad paths", fun bad_paths/0},
            {"duplicates after normalisation", fun duplicates/0},
            {"bad modes", fun bad_modes/0},
            {"missing host file", ?_test(missing_file(Ctx))},
            {"a FIFO is refused without blocking", ?_test(fifo_refused(Ctx))},
            {"devices and sockets are refused", ?_test(devices_and_sockets_refused(Ctx))},
            {"paths Linux cannot hold are refused", fun too_long_paths/0},
            {"the deepest path Linux holds builds", fun deepest_path/0},
            {"improper lists and odd shapes are errors", fun improper_inputs/0},
            {"bad options", fun bad_options/0},
            {"bad SOURCE_DATE_EPOCH", fun bad_source_date_epoch/0},
            {"a second create with nothing changed is a cache hit", ?_test(cache_hit(Ctx))},
            {"OCIBUILD_LAYER_CACHE=off builds again", ?_test(cache_off(Ctx))},
            {"content changed behind a restored mtime is rebuilt",
             ?_test(cache_restored_mtime(Ctx))},
            {"a file rewritten with the same bytes (mix release) is a hit",
             ?_test(cache_rewritten_file(Ctx))},
            {"a bad OCIBUILD_LAYER_CACHE is an error", fun cache_bad_mode/0}
        ]
    end}.

%% The layer cache. A hit touches the blob it returns; a build does not (the store keeps a
%% blob already present), so a blob whose mtime was set back and is now fresh was reused
%% without building.
-define(LONG_AGO, 978307200).  % 2001-01-01

cache_files({Root, _}, Name) ->
    Path = filename:join([Root, "cache-tests", Name]),
    ocibuild_test_util:write_file(Path, binary:copy(<<"beam code ">>, 5000), 8#644),
    [{<<"/app/lib/", (list_to_binary(Name))/binary>>, {file, Path}, 8#644},
     {<<"/app/VERSION">>, <<"1.0\n">>, 8#644}].

host_path([{_, {file, Path}, _} | _]) -> Path.

set_mtime(Path, Posix) ->
    ok = file:write_file_info(Path, #file_info{mtime = Posix}, [{time, posix}]).

mtime(Path) ->
    {ok, #file_info{mtime = M}} = file:read_file_info(Path, [{time, posix}]),
    M.

cache_hit(Ctx) ->
    Files = cache_files(Ctx, "hit.beam"),
    {ok, First} = ocibuild_layer:create(Files, #{compression => gzip, layer_type => app}),
    #{blob := Blob} = First,
    set_mtime(Blob, ?LONG_AGO),
    ?assertEqual({ok, First}, ocibuild_layer:create(Files, #{compression => gzip,
                                                              layer_type => app})),
    ?assert(mtime(Blob) > ?LONG_AGO, "the second create reused the blob"),
    %% Another compression is another layer.
    {ok, Zstd} = ocibuild_layer:create(Files, #{compression => zstd}),
    ?assertNotEqual(maps:get(digest, First), maps:get(digest, Zstd)).

cache_off(Ctx) ->
    Files = cache_files(Ctx, "off.beam"),
    {ok, First} = ocibuild_layer:create(Files, #{compression => gzip}),
    #{blob := Blob} = First,
    set_mtime(Blob, ?LONG_AGO),
    ocibuild_test_util:with_env("OCIBUILD_LAYER_CACHE", "off", fun() ->
        ?assertEqual({ok, First}, ocibuild_layer:create(Files, #{compression => gzip}))
    end),
    ?assertEqual(?LONG_AGO, mtime(Blob), "built again, not reused").

cache_restored_mtime(Ctx) ->
    Files = cache_files(Ctx, "restored.beam"),
    {ok, First} = ocibuild_layer:create(Files, #{compression => zstd}),
    Path = host_path(Files),
    Mtime = mtime(Path),
    {ok, Bytes} = file:read_file(Path),
    ok = file:write_file(Path, binary:copy(<<"X">>, byte_size(Bytes))),
    set_mtime(Path, Mtime),
    {ok, Second} = ocibuild_layer:create(Files, #{compression => zstd}),
    ?assertNotEqual(maps:get(digest, First), maps:get(digest, Second)),
    ocibuild_test_util:with_env("OCIBUILD_LAYER_CACHE", "off", fun() ->
        ?assertEqual({ok, Second}, ocibuild_layer:create(Files, #{compression => zstd}))
    end).

cache_rewritten_file(Ctx) ->
    Files = cache_files(Ctx, "rewritten.beam"),
    {ok, First} = ocibuild_layer:create(Files, #{compression => zstd}),
    #{blob := Blob} = First,
    Path = host_path(Files),
    {ok, Bytes} = file:read_file(Path),
    ok = file:delete(Path),
    ok = file:write_file(Path, Bytes),
    set_mtime(Path, mtime(Path) + 10),
    set_mtime(Blob, ?LONG_AGO),
    ?assertEqual({ok, First}, ocibuild_layer:create(Files, #{compression => zstd})),
    ?assert(mtime(Blob) > ?LONG_AGO, "found by content, not built again").

cache_bad_mode() ->
    ocibuild_test_util:with_env("OCIBUILD_LAYER_CACHE", "sometimes", fun() ->
        ?assertEqual({error, {invalid_option, 'OCIBUILD_LAYER_CACHE', <<"sometimes">>}},
                     ocibuild_layer:create([{<<"/a">>, <<"a">>, 8#644}]))
    end).

gzip_layer(Files) ->
    {ok, Layer} = ocibuild_layer:create(Files, #{compression => gzip}),
    Layer.

shape_and_digests() ->
    {ok, Layer} = ocibuild_layer:create(
        [{<<"/app/hello.txt">>, <<"hello\n">>, 8#644}], #{compression => gzip, layer_type => app}
    ),
    ?assertEqual(
        lists:sort([media_type, digest, diff_id, size, blob, layer_type]), lists:sort(maps:keys(Layer))
    ),
    #{media_type := MT, digest := D, diff_id := DiffId, size := Size, blob := Blob} = Layer,
    ?assertEqual(?GZIP, MT),
    ?assertEqual(app, maps:get(layer_type, Layer)),
    {ok, Compressed} = file:read_file(Blob),
    ?assertEqual(D, ocibuild_test_util:sha256(Compressed)),
    ?assertEqual(Size, byte_size(Compressed)),
    ?assertEqual(DiffId, ocibuild_test_util:sha256(zlib:gunzip(Compressed))),
    %% The blob store names blobs by digest, under OCIBUILD_CACHE_DIR.
    <<"sha256:", Hex/binary>> = D,
    ?assertEqual(Hex, filename:basename(Blob)),
    Cache = list_to_binary(os:getenv("OCIBUILD_CACHE_DIR")),
    ?assertEqual(filename:join([Cache, <<"blobs">>, <<"sha256">>, Hex]), Blob).

tar_contents() ->
    #{blob := Blob} = gzip_layer([
        {<<"/app/bin/run">>, <<"#!/bin/sh\n">>, 8#755},
        {<<"/app/a.txt">>, <<"a">>, 8#600},
        {<<"etc/conf">>, <<"c">>, 8#644}
    ]),
    {ok, Bin} = file:read_file(Blob),
    Table = ocibuild_test_util:untar_gz_table(Bin),
    Names = [N || {N, _, _, _, _, _, _} <- Table],
    ?assertEqual(
        [<<"app">>, <<"app/a.txt">>, <<"app/bin">>, <<"app/bin/run">>, <<"etc">>, <<"etc/conf">>],
        [string:trim(N, trailing, "/") || N <- Names]
    ),
    Modes = maps:from_list([{string:trim(N, trailing, "/"), {T, M}} || {N, T, _, _, M, _, _} <- Table]),
    ?assertEqual({directory, 8#755}, maps:get(<<"app">>, Modes)),
    ?assertEqual({regular, 8#755}, maps:get(<<"app/bin/run">>, Modes)),
    ?assertEqual({regular, 8#600}, maps:get(<<"app/a.txt">>, Modes)),
    [?assertEqual({0, 0}, {Uid, Gid}) || {_, _, _, _, _, Uid, Gid} <- Table],
    [?assertEqual(0, mtime_seconds(Mtime)) || {_, _, _, Mtime, _, _, _} <- Table],
    ?assertEqual(
        [{<<"app/a.txt">>, <<"a">>}, {<<"app/bin/run">>, <<"#!/bin/sh\n">>}, {<<"etc/conf">>, <<"c">>}],
        lists:sort(ocibuild_test_util:untar_gz(Bin))
    ).

%% erl_tar reports mtimes as local datetimes or as seconds depending on options.
mtime_seconds(Secs) when is_integer(Secs) ->
    Secs;
mtime_seconds(DateTime) ->
    [Utc | _] = calendar:local_time_to_universal_time_dst(DateTime),
    calendar:datetime_to_gregorian_seconds(Utc) - 62167219200.

zstd_and_auto() ->
    Files = [{<<"/x">>, <<"x">>, 8#644}],
    {ok, #{media_type := Zstd, blob := Blob, digest := D}} =
        ocibuild_layer:create(Files, #{compression => zstd}),
    ?assertEqual(?ZSTD, Zstd),
    %% zstd frames start with the magic number 0xFD2FB528 (little endian).
    {ok, <<16#28, 16#B5, 16#2F, 16#FD, _/binary>>} = file:read_file(Blob),
    ?assertEqual(D, ocibuild_test_util:sha256_file(Blob)),
    {ok, Auto} = ocibuild_layer:create(Files, #{compression => auto}),
    {ok, Default} = ocibuild_layer:create(Files),
    ?assertEqual(D, maps:get(digest, Auto)),
    ?assertEqual(D, maps:get(digest, Default)).

content_kinds() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-layer-src"),
    try
        Host = filename:join(Dir, "data.bin"),
        Data = crypto:strong_rand_bytes(3 * 1024 * 1024 + 17),
        ok = file:write_file(Host, Data),
        #{blob := Blob} = gzip_layer([
            {<<"/big.bin">>, {file, Host}, 8#644},
            {<<"/big-bin.bin">>, {file, list_to_binary(Host)}, 8#644},
            {"/io.txt", [<<"io">>, $l, ["ist"]], 8#644},
            {"/unicodé.txt", <<"u">>, 8#644}
        ]),
        {ok, Bin} = file:read_file(Blob),
        Files = maps:from_list(ocibuild_test_util:untar_gz(Bin)),
        ?assertEqual(Data, maps:get(<<"big.bin">>, Files)),
        ?assertEqual(Data, maps:get(<<"big-bin.bin">>, Files)),
        ?assertEqual(<<"iolist">>, maps:get(<<"io.txt">>, Files)),
        ?assert(maps:is_key(<<"unicodé.txt"/utf8>>, Files))
    after
        file:del_dir_r(Dir)
    end.

mtime_sources() ->
    Files = [{<<"/t">>, <<"t">>, 8#644}],
    Mtimes = fun(Layer) ->
        {ok, Bin} = file:read_file(maps:get(blob, Layer)),
        lists:usort([mtime_seconds(M) || {_, _, _, M, _, _, _} <- ocibuild_test_util:untar_gz_table(Bin)])
    end,
    ?assertEqual([0], Mtimes(gzip_layer(Files))),
    {ok, Explicit} = ocibuild_layer:create(Files, #{compression => gzip, mtime => 1700000000}),
    ?assertEqual([1700000000], Mtimes(Explicit)),
    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", "1600000000", fun() ->
        ?assertEqual([1600000000], Mtimes(gzip_layer(Files))),
        %% An explicit mtime wins over the environment.
        {ok, L} = ocibuild_layer:create(Files, #{compression => gzip, mtime => 5}),
        ?assertEqual([5], Mtimes(L))
    end).

deterministic() ->
    Files = [{<<"/b">>, <<"2">>, 8#644}, {<<"/a">>, <<"1">>, 8#644}],
    Reordered = lists:reverse(Files),
    L1 = gzip_layer(Files),
    L2 = gzip_layer(Reordered),
    ?assertEqual(maps:get(digest, L1), maps:get(digest, L2)),
    ?assertEqual(maps:get(diff_id, L1), maps:get(diff_id, L2)),
    {ok, Z1} = ocibuild_layer:create(Files, #{compression => zstd}),
    {ok, Z2} = ocibuild_layer:create(Reordered, #{compression => zstd}),
    ?assertEqual(maps:get(digest, Z1), maps:get(digest, Z2)),
    %% Compression changes the digest, never the diff_id.
    ?assertEqual(maps:get(diff_id, L1), maps:get(diff_id, Z1)),
    ?assertNotEqual(maps:get(digest, L1), maps:get(digest, Z1)).

bad_paths() ->
    Create = fun(Path) -> ocibuild_layer:create([{Path, <<"x">>, 8#644}]) end,
    ?assertEqual({error, {invalid_path, <<>>, empty}}, Create(<<>>)),
    ?assertEqual({error, {invalid_path, <<"/">>, empty}}, Create(<<"/">>)),
    ?assertEqual({error, {invalid_path, <<"/./">>, empty}}, Create(<<"/./">>)),
    ?assertEqual({error, {invalid_path, <<"a", 0, "b">>, nul_byte}}, Create(<<"a", 0, "b">>)),
    ?assertEqual({error, {invalid_path, <<"/app/../etc">>, parent_component}}, Create(<<"/app/../etc">>)),
    ?assertEqual({error, {invalid_path, <<"..">>, parent_component}}, Create("..")),
    ?assertEqual({error, {invalid_option, files, {foo, <<"x">>, 8#644}}}, Create(foo)).

duplicates() ->
    ?assertEqual(
        {error, {duplicate_path, <<"/app/x">>}},
        ocibuild_layer:create([{<<"/app/x">>, <<"1">>, 8#644}, {<<"app//./x">>, <<"2">>, 8#644}])
    ),
    %% A file cannot also be the parent directory of another entry.
    ?assertEqual(
        {error, {duplicate_path, <<"/app">>}},
        ocibuild_layer:create([{<<"/app">>, <<"1">>, 8#644}, {<<"/app/x">>, <<"2">>, 8#644}])
    ).

bad_modes() ->
    ?assertEqual(
        {error, {invalid_mode, <<"/app/x">>, 8#10000}},
        ocibuild_layer:create([{<<"/app/x">>, <<"1">>, 8#10000}])
    ),
    {ok, _} = ocibuild_layer:create([{<<"/app/x">>, <<"1">>, 8#7777}]),
    ?assertEqual(
        {error, {invalid_option, files, {<<"/x">>, <<"1">>, -1}}},
        ocibuild_layer:create([{<<"/x">>, <<"1">>, -1}])
    ),
    ?assertEqual(
        {error, {invalid_option, files, {<<"/x">>, <<"1">>, "644"}}},
        ocibuild_layer:create([{<<"/x">>, <<"1">>, "644"}])
    ).

missing_file({Root, _}) ->
    Missing = filename:join(Root, "no-such-file"),
    Before = blob_store_entries(),
    ?assertEqual(
        {error, {file_read, list_to_binary(Missing), enoent}},
        ocibuild_layer:create([{<<"/x">>, {file, Missing}, 8#644}])
    ),
    %% A failed build leaves no temp file behind in the store.
    ?assertEqual(Before, blob_store_entries()).

%% Run `Fun' in its own process and wait at most `Ms' for its result, so a regression that
%% blocks a dirty scheduler (a FIFO opened for reading) fails the test instead of hanging the
%% suite. A process that is still stuck is left to the VM: killing it would not free it.
within(Ms, Fun) ->
    Parent = self(),
    Ref = make_ref(),
    spawn(fun() -> Parent ! {Ref, Fun()} end),
    receive
        {Ref, Result} -> Result
    after Ms ->
        error({still_running_after_ms, Ms})
    end.

create_from_host_file(Path) ->
    within(10000, fun() -> ocibuild_layer:create([{<<"/x">>, {file, Path}, 8#644}]) end).

fifo_refused({Root, _}) ->
    Fifo = filename:join(Root, "a-fifo"),
    "" = os:cmd("mkfifo '" ++ Fifo ++ "'"),
    Before = blob_store_entries(),
    ?assertEqual({error, {special_file, list_to_binary(Fifo), fifo}}, create_from_host_file(Fifo)),
    %% Twice in a row: the first call left no dirty scheduler blocked behind it.
    ?assertEqual({error, {special_file, list_to_binary(Fifo), fifo}}, create_from_host_file(Fifo)),
    %% The same through ocibuild:copy, which looks at the file's mode first.
    {ok, I} = ocibuild:scratch(),
    ?assertEqual(
        {error, {special_file, list_to_binary(Fifo), fifo}},
        within(10000, fun() -> ocibuild:copy(I, [{<<"f">>, {file, Fifo}}], <<"/app">>) end)
    ),
    ?assertEqual(Before, blob_store_entries()).

devices_and_sockets_refused({Root, _}) ->
    ?assertEqual({error, {special_file, <<"/dev/zero">>, character_device}}, create_from_host_file("/dev/zero")),
    ?assertEqual({error, {special_file, <<"/dev/null">>, character_device}}, create_from_host_file(<<"/dev/null">>)),
    Sock = filename:join(Root, "a-socket"),
    {ok, S} = gen_udp:open(0, [{ifaddr, {local, Sock}}]),
    try
        ?assertEqual({error, {special_file, list_to_binary(Sock), socket}}, create_from_host_file(Sock))
    after
        gen_udp:close(S)
    end.

too_long_paths() ->
    Create = fun(Path) -> within(10000, fun() -> ocibuild_layer:create([{Path, <<"x">>, 8#644}]) end) end,
    [
        begin
            Path = binary:copy(<<"/a">>, Bytes div 2),
            ?assertEqual({error, {invalid_path, Path, path_too_long}}, Create(Path))
        end
     || Bytes <- [4096, 100 * 1024, 200 * 1024]
    ],
    Long = binary:copy(<<"n">>, 256),
    ?assertEqual(
        {error, {invalid_path, <<"/app/", Long/binary>>, component_too_long}}, Create(<<"/app/", Long/binary>>)
    ).

deepest_path() ->
    Deepest = binary:copy(<<"/a">>, 2047),
    ?assertEqual(4094, byte_size(Deepest)),
    %% 4095 bytes: 2046 directories `a' and the file `ab' at the bottom.
    #{blob := Blob} = gzip_layer([{<<Deepest/binary, "b">>, <<"x">>, 8#644}]),
    {ok, Bin} = file:read_file(Blob),
    ?assertEqual(2047, length(ocibuild_test_util:untar_gz_table(Bin))).

improper_inputs() ->
    ?assertEqual({error, {invalid_option, files, [{<<"/a">>, <<"x">>, 8#644} | tail]}},
                 ocibuild_layer:create([{<<"/a">>, <<"x">>, 8#644} | tail])),
    ?assertEqual({error, {invalid_option, files, {<<"/a">>, [x | y], 8#644}}},
                 ocibuild_layer:create([{<<"/a">>, [x | y], 8#644}])),
    ?assertEqual({error, {invalid_option, files, {<<"/a">>, {file, 42}, 8#644}}},
                 ocibuild_layer:create([{<<"/a">>, {file, 42}, 8#644}])),
    ?assertEqual({error, {invalid_option, files, {[1 | 2], <<"x">>, 8#644}}},
                 ocibuild_layer:create([{[1 | 2], <<"x">>, 8#644}])),
    %% An empty list is a proper list: an empty layer.
    ?assertMatch({ok, _}, ocibuild_layer:create([], #{})).

blob_store_entries() ->
    Dir = filename:join([os:getenv("OCIBUILD_CACHE_DIR"), "blobs", "sha256"]),
    case file:list_dir_all(Dir) of
        {ok, Names} -> lists:sort(Names);
        {error, enoent} -> []
    end.

bad_options() ->
    Files = [{<<"/x">>, <<"x">>, 8#644}],
    ?assertEqual({error, {invalid_option, compression, lz4}}, ocibuild_layer:create(Files, #{compression => lz4})),
    ?assertEqual(
        {error, {invalid_option, compression, <<"gzip">>}},
        ocibuild_layer:create(Files, #{compression => <<"gzip">>})
    ),
    ?assertEqual({error, {invalid_option, mtime, -1}}, ocibuild_layer:create(Files, #{mtime => -1})),
    ?assertEqual({error, {invalid_option, layer_type, "app"}}, ocibuild_layer:create(Files, #{layer_type => "app"})),
    ?assertEqual({error, {invalid_option, options, [gzip]}}, ocibuild_layer:create(Files, [gzip])),
    ?assertEqual({error, {invalid_option, files, not_a_list}}, ocibuild_layer:create(not_a_list)),
    ?assertEqual(
        {error, {invalid_option, files, {<<"/x">>, 42, 8#644}}}, ocibuild_layer:create([{<<"/x">>, 42, 8#644}])
    ).

bad_source_date_epoch() ->
    Files = [{<<"/x">>, <<"x">>, 8#644}],
    [
        ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", Bad, fun() ->
            ?assertEqual(
                {error, {invalid_source_date_epoch, list_to_binary(Bad)}}, ocibuild_layer:create(Files)
            ),
            %% An explicit mtime does not need the environment.
            ?assertMatch({ok, _}, ocibuild_layer:create(Files, #{mtime => 1}))
        end)
     || Bad <- ["yesterday", "-1", "1.5", "99999999999999999999999"]
    ],
    %% Blank means unset.
    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", " ", fun() ->
        ?assertMatch({ok, _}, ocibuild_layer:create(Files))
    end).
