-module(ocibuild_layout_tests).

-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

layout_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun(Ctx) ->
        [
            {"export_directory writes a valid layout", ?_test(export_directory(Ctx))},
            {"save then load a single image", ?_test(roundtrip_single(Ctx))},
            {"save then load a multi-platform image", ?_test(roundtrip_multi(Ctx))},
            {".tar is a plain tar, .tar.gz the same tar gzipped, both load",
                ?_test(plain_and_gzip_tarballs(Ctx))},
            {"the release pipeline's output (-o) follows the same rule",
                ?_test(release_output_framing(Ctx))},
            {"an unchanged release save leaves its output as it is; an edited one is rewritten",
                ?_test(unchanged_release_save(Ctx))},
            {"load an oci-format tarball without a tag", ?_test(roundtrip_oci_untagged(Ctx))},
            {"load errors", ?_test(load_errors(Ctx))},
            {"0.10's error terms for hostile tarballs", ?_test(hostile_tarballs(Ctx))},
            {"bounded loads of amplifying tarballs", ?_test(bounded_loads(Ctx))},
            {timeout, 120, {"killing the caller mid-load removes the extract directory",
                ?_test(killed_mid_load(Ctx))}},
            {timeout, 60, {"a caller that dies holding the result leaves no directory",
                ?_test(killed_after_load(Ctx))}},
            {timeout, 60, {"the directory lives while its caller does, even without the result",
                ?_test(held_while_caller_lives(Ctx))}},
            {"bad arguments", ?_test(bad_arguments(Ctx))}
        ]
    end}.

image(Text) ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:add_layer(I0, [{<<"/srv/data.txt">>, Text, 8#644}], #{compression => gzip}),
    I2 = ocibuild:add_layer(I1, [{<<"/srv/bin/run">>, <<"#!/bin/sh\n">>, 8#755}], #{compression => zstd}),
    ocibuild:entrypoint(I2, [<<"/srv/bin/run">>]).

export_directory({Root, _}) ->
    Dir = filename:join(Root, "layout"),
    Image = image(<<"export">>),
    ok = ocibuild_layout:export_directory(Image, Dir),
    {_Index, [{_, Manifest, _}]} = ocibuild_test_util:validate_layout(Dir),
    ?assertEqual(
        [maps:get(digest, L) || L <- maps:get(layers, Image)],
        [maps:get(<<"digest">>, L) || L <- maps:get(<<"layers">>, Manifest)]
    ),
    %% Every file under blobs/ is named by its sha256 and nothing else is written.
    BlobDir = filename:join([Dir, "blobs", "sha256"]),
    {ok, Blobs} = file:list_dir(BlobDir),
    ?assertEqual(4, length(Blobs)),
    [
        ?assertEqual(<<"sha256:", (list_to_binary(B))/binary>>, ocibuild_test_util:sha256_file(filename:join(BlobDir, B)))
     || B <- Blobs
    ],
    {ok, Top} = file:list_dir(Dir),
    ?assertEqual(["blobs", "index.json", "oci-layout"], lists:sort(Top)).

%% The file name picks the framing: `.tar' plain, anything else gzip (layers stored, which
%% erl_tar's `compressed', a single-member reader, must still read through to the end).
plain_and_gzip_tarballs({Root, _}) ->
    Image = image(binary:copy(<<"plain or gzip ">>, 20000)),
    Opts = #{tag => <<"framing:1">>},
    [Tar, Gz, Tgz] = [filename:join(Root, "framing" ++ Ext) || Ext <- [".tar", ".tar.gz", ".tgz"]],
    [ok = ocibuild_layout:save_tarball(Image, P, Opts) || P <- [Tar, Gz, Tgz]],
    {ok, TarBytes} = file:read_file(Tar),
    {ok, GzBytes} = file:read_file(Gz),
    ?assertMatch(<<_:257/binary, "ustar", _/binary>>, TarBytes),
    ?assertMatch(<<16#1f, 16#8b, _/binary>>, GzBytes),
    ?assertEqual({ok, GzBytes}, file:read_file(Tgz)),
    ?assertEqual(TarBytes, zlib:gunzip(GzBytes)),
    {ok, FromTar} = erl_tar:extract(Tar, [memory]),
    {ok, FromGz} = erl_tar:extract(Gz, [compressed, memory]),
    ?assertEqual(lists:sort(FromTar), lists:sort(FromGz)),
    Blobs = [Name || {Name, _} <- FromTar, lists:prefix("blobs/sha256/", Name)],
    %% two layers, the config and the manifest
    ?assertEqual(4, length(Blobs)),
    [
        begin
            {ok, #{images := [L], tag := Tag, cleanup := Cleanup}} =
                ocibuild_layout:load_tarball_for_push(P),
            ?assertEqual(<<"framing:1">>, Tag),
            check_loaded(L, Image),
            ok = Cleanup()
        end
     || P <- [Tar, Gz]
    ].

%% `-o x.tar' / `-o x.tar.gz' of both tasks go through ocibuild_release:run/3.
release_output_framing({Root, _}) ->
    Rel = ocibuild_test_util:small_release(Root, "framing-release"),
    Heads = [
        begin
            Out = filename:join(Root, "framing-release" ++ Ext),
            {ok, Config} = ocibuild_release:resolve_config(
                #{output => Out, tag => ["framing:1"]}, #{base_image => "scratch"}
            ),
            State = #{config => Config, release => {<<"myapp">>, Rel}},
            {ok, State} = ocibuild_release:run(ocibuild_test_adapter, State, #{}),
            _ = ocibuild_test_adapter:messages(),
            {ok, #{images := [_], tag := <<"framing:1">>, cleanup := Cleanup}} =
                ocibuild_layout:load_tarball_for_push(Out),
            ok = Cleanup(),
            {ok, Bytes} = file:read_file(Out),
            binary:part(Bytes, 0, 2)
        end
     || Ext <- [".tar", ".tar.gz"]
    ],
    ?assertNotEqual(<<16#1f, 16#8b>>, hd(Heads)),
    ?assertEqual(<<16#1f, 16#8b>>, lists:last(Heads)).

%% The same release saved again (a fixed SOURCE_DATE_EPOCH: else the image's `created' time,
%% and so its bytes, change every second) is not written again: same inode, mtime and ctime.
%% An output edited in place is written again, and OCIBUILD_LAYER_CACHE=off always writes.
unchanged_release_save({Root, _}) ->
    Rel = ocibuild_test_util:small_release(Root, "unchanged-release"),
    Out = filename:join(Root, "unchanged-release.tar.gz"),
    Save = fun() ->
        {ok, Config} = ocibuild_release:resolve_config(
            #{output => Out, tag => ["unchanged:1"]}, #{base_image => "scratch"}
        ),
        State = #{config => Config, release => {<<"myapp">>, Rel}},
        {ok, State} = ocibuild_release:run(ocibuild_test_adapter, State, #{}),
        _ = ocibuild_test_adapter:messages(),
        {ok, Info} = file:read_file_info(Out, [{time, posix}]),
        {ok, Bytes} = file:read_file(Out),
        {{Info#file_info.inode, Info#file_info.mtime, Info#file_info.ctime}, Bytes}
    end,
    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", "1700000000", fun() ->
        {Written, Good} = Save(),
        ?assertEqual({Written, Good}, Save()),
        %% The same size, one byte changed: the save writes the image again.
        {ok, Fd} = file:open(Out, [read, write, raw, binary]),
        ok = file:pwrite(Fd, byte_size(Good) - 1, <<(binary:last(Good) bxor 16#ff)>>),
        ok = file:close(Fd),
        {Rewritten, Again} = Save(),
        ?assertEqual(Good, Again),
        ?assertNotEqual(Written, Rewritten),
        ?assertEqual({Rewritten, Good}, Save()),
        ocibuild_test_util:with_env("OCIBUILD_LAYER_CACHE", "off", fun() ->
            {Off, Good} = Save(),
            ?assertNotEqual(Rewritten, Off)
        end)
    end).

roundtrip_single({Root, _}) ->
    Path = filename:join(Root, "single.tar.gz"),
    Image = image(<<"single">>),
    ok = ocibuild_layout:save_tarball(Image, Path, #{tag => <<"single:1">>}),
    {ok, Loaded} = ocibuild_layout:load_tarball_for_push(Path),
    #{images := [L], tag := Tag, is_multi_platform := Multi, cleanup := Cleanup} = Loaded,
    ?assertEqual(<<"single:1">>, Tag),
    ?assertEqual(false, Multi),
    check_loaded(L, Image),
    %% index.json records the platform of a single image too.
    ?assertEqual(ocibuild_test_util:host_platform(), maps:get(platform, L)),
    [#{path := LayerPath} | _] = maps:get(layers, L),
    ?assert(filelib:is_regular(LayerPath)),
    ?assertEqual(ok, Cleanup()),
    ?assertNot(filelib:is_regular(LayerPath)),
    ?assertNot(filelib:is_dir(filename:dirname(filename:dirname(filename:dirname(LayerPath))))),
    ?assertEqual(ok, Cleanup()).

roundtrip_multi({Root, _}) ->
    Path = filename:join(Root, "multi.tar.gz"),
    Amd = (image(<<"amd">>))#{platform := #{os => <<"linux">>, architecture => <<"amd64">>}},
    Arm = (image(<<"arm">>))#{
        platform := #{os => <<"linux">>, architecture => <<"arm64">>, variant => <<"v8">>}
    },
    ok = ocibuild_layout:save_tarball([Amd, Arm], Path, #{tag => <<"multi:1">>}),
    {ok, #{images := [LAmd, LArm], tag := Tag, is_multi_platform := true, cleanup := Cleanup}} =
        ocibuild_layout:load_tarball_for_push(Path, #{memory_threshold => 1024}),
    ?assertEqual(<<"multi:1">>, Tag),
    check_loaded(LAmd, Amd),
    check_loaded(LArm, Arm),
    ?assertEqual(#{os => <<"linux">>, architecture => <<"amd64">>}, maps:get(platform, LAmd)),
    ?assertEqual(#{os => <<"linux">>, architecture => <<"arm64">>, variant => <<"v8">>}, maps:get(platform, LArm)),
    ok = Cleanup().

roundtrip_oci_untagged({Root, _}) ->
    Path = filename:join(Root, "untagged.tar.gz"),
    Image = image(<<"untagged">>),
    ok = ocibuild_layout:save_tarball(Image, Path, #{format => oci}),
    %% An untagged save is named `latest' in its index.json, as ocibuild 0.10 names it.
    {ok, #{images := [L], tag := <<"latest">>, cleanup := Cleanup} = Loaded} =
        ocibuild_layout:load_tarball_for_push(Path),
    check_loaded(L, Image),
    %% `latest' is a bare tag: it names no repository, so a push must be told one, and is
    %% refused before any connection (port 1 on loopback would refuse it anyway).
    ?assertEqual(undefined, ocibuild_layout:push_reference(Loaded)),
    ?assertMatch({error, {invalid_option, tag, _}},
                 ocibuild_registry:push_loaded(Loaded, <<"127.0.0.1:1">>, undefined, #{}, #{})),
    ?assertEqual(<<"app:1">>, ocibuild_layout:push_reference(Loaded#{tag := <<"app:1">>})),
    ?assertEqual(<<"reg:5000/a/b">>, ocibuild_layout:push_reference(Loaded#{tag := <<"reg:5000/a/b">>})),
    ok = Cleanup().

%% The loaded image is what was saved: the manifest and config hash to their digests, the
%% manifest lists our layers, and every layer's bytes come back intact.
check_loaded(Loaded, Image) ->
    #{
        manifest := Manifest,
        manifest_digest := ManifestDigest,
        config := Config,
        config_digest := ConfigDigest,
        layers := Layers,
        annotations := Annotations
    } = Loaded,
    ?assert(maps:is_key(platform, Loaded)),
    ?assert(is_map(Annotations)),
    ?assertEqual(ManifestDigest, ocibuild_test_util:sha256(Manifest)),
    ?assertEqual(ConfigDigest, ocibuild_test_util:sha256(Config)),
    ManifestJson = ocibuild_test_util:json(Manifest),
    ?assertEqual(ConfigDigest, maps:get(<<"digest">>, maps:get(<<"config">>, ManifestJson))),
    Expected = maps:get(layers, Image),
    ?assertEqual(length(Expected), length(Layers)),
    lists:foreach(
        fun({#{digest := D, size := S, media_type := MT, path := P, get_data := Get}, Built}) ->
            ?assertEqual(maps:get(digest, Built), D),
            ?assertEqual(maps:get(size, Built), S),
            ?assertEqual(maps:get(media_type, Built), MT),
            {ok, Data} = Get(),
            ?assertEqual(D, ocibuild_test_util:sha256(Data)),
            ?assertEqual(S, byte_size(Data)),
            {ok, Data} = file:read_file(P)
        end,
        lists:zip(Layers, Expected)
    ).

load_errors({Root, _}) ->
    Missing = filename:join(Root, "missing.tar.gz"),
    ?assertEqual({error, {tarball_not_found, list_to_binary(Missing)}}, ocibuild_layout:load_tarball_for_push(Missing)),
    ?assertEqual(
        {error, {not_a_file, list_to_binary(Root), directory}}, ocibuild_layout:load_tarball_for_push(Root)
    ),
    Garbage = filename:join(Root, "garbage.tar.gz"),
    ok = file:write_file(Garbage, crypto:strong_rand_bytes(4096)),
    ?assertMatch({error, {invalid_layout, _}}, ocibuild_layout:load_tarball_for_push(Garbage)),
    %% A tarball without an OCI layout inside.
    NotOci = filename:join(Root, "not-oci.tar"),
    ok = erl_tar:create(NotOci, [{"hello.txt", <<"hi">>}]),
    ?assertMatch({error, {invalid_layout, _}}, ocibuild_layout:load_tarball_for_push(NotOci)),
    %% Failed loads clean up their extract directory.
    ?assertEqual([], leftover_extract_dirs()).

%% Each hostile tarball is built here, member by member, and gives 0.10's error term.
hostile_tarballs({Root, _}) ->
    Load = fun(Name, Members) ->
        Path = filename:join(Root, Name),
        ok = file:write_file(Path, tar(Members)),
        ocibuild_layout:load_tarball_for_push(Path)
    end,
    ?assertEqual({error, {path_traversal, <<"../evil">>}}, Load("dotdot.tar", [{"../evil", <<"x">>}])),
    ?assertEqual(
        {error, {path_traversal, <<"blobs/../../evil">>}}, Load("dotdot2.tar", [{"blobs/../../evil", <<"x">>}])
    ),
    ?assertEqual({error, {absolute_path, <<"/etc/evil">>}}, Load("abs.tar", [{"/etc/evil", <<"x">>}])),
    ?assertEqual(
        {error, {symlink_not_allowed, <<"index.json">>}},
        Load("link.tar", [{"index.json", {symlink, "/etc/passwd"}}])
    ),
    ?assertEqual(
        {error, {symlink_not_allowed, <<"oci-layout">>}}, Load("hard.tar", [{"oci-layout", {hardlink, "x"}}])
    ),
    ?assertNot(filelib:is_regular(filename:join(filename:dirname(Root), "evil"))),
    {Manifest, Config} = manifest_and_config(<<"m">>),
    Descriptor = descriptor(<<"application/vnd.oci.image.manifest.v1+json">>, Manifest),
    WithIndex = fun(Name, Index) ->
        Load(Name, layout_members(Index, [Manifest, Config]))
    end,
    ?assertEqual(
        {error, {invalid_oci_layout, no_manifests}},
        WithIndex("empty.tar", <<"{\"schemaVersion\":2,\"manifests\":[]}">>)
    ),
    ?assertEqual(
        {error, {unsupported_index_version, 999}},
        WithIndex("v999.tar", index(<<"999">>, [Descriptor]))
    ),
    ?assertEqual(
        {error, {unsupported_index_version, <<"\"2\"">>}},
        WithIndex("vstring.tar", index(<<"\"2\"">>, [Descriptor]))
    ),
    ?assertEqual(
        {error, {invalid_index_schema, missing_required_fields}},
        WithIndex("noversion.tar", <<"{\"manifests\":[", Descriptor/binary, "]}">>)
    ),
    ?assertEqual(
        {error, {invalid_index_schema, missing_required_fields}},
        WithIndex("nomanifests.tar", <<"{\"schemaVersion\":2}">>)
    ),
    %% The same layout with a valid index loads, and is `latest' for want of a tag.
    {ok, #{images := [_], tag := <<"latest">>, cleanup := Cleanup}} =
        WithIndex("good.tar", index(<<"2">>, [Descriptor])),
    ok = Cleanup(),
    ?assertEqual([], leftover_extract_dirs()).

%% A repeated manifest is loaded once; past the fixed bounds a load fails with a tagged error
%% rather than reading what the tarball claims.
bounded_loads({Root, _}) ->
    Load = fun(Name, Members) ->
        Path = filename:join(Root, Name),
        ok = file:write_file(Path, tar(Members)),
        ocibuild_layout:load_tarball_for_push(Path)
    end,
    {Manifest, Config} = manifest_and_config(<<"m">>),
    Descriptor = descriptor(<<"application/vnd.oci.image.manifest.v1+json">>, Manifest),
    {ok, #{images := [_], is_multi_platform := false, cleanup := Cleanup}} =
        Load("repeat.tar", layout_members(index(<<"2">>, lists:duplicate(1000, Descriptor)), [Manifest, Config])),
    ok = Cleanup(),
    ?assertMatch(
        {error, {load_limit_exceeded, #{limit := 1024}}},
        Load("repeat2.tar", layout_members(index(<<"2">>, lists:duplicate(1025, Descriptor)), [Manifest, Config]))
    ),
    Huge = binary:copy(<<" ">>, 4 * 1024 * 1024 + 1),
    ?assertMatch(
        {error, {load_limit_exceeded, #{what := <<"the bytes of index.json">>, limit := 4194304}}},
        Load("hugeindex.tar", layout_members(Huge, []))
    ),
    %% A manifest whose descriptor says 100 bytes but whose blob is larger.
    Short = re:replace(Descriptor, <<"\"size\":[0-9]+">>, <<"\"size\":100">>, [{return, binary}]),
    ?assertMatch(
        {error, {invalid_layout, _}}, Load("short.tar", layout_members(index(<<"2">>, [Short]), [Manifest, Config]))
    ),
    ?assertEqual([], leftover_extract_dirs()).

%% The caller is killed while the NIF is still extracting a 256 MB blob (it is killed as soon
%% as the directory appears); the directory must go. On a machine so loaded that the load ends
%% before the kill, the caller holds the result when it dies, which must clean up just the same
%% (the next test), so the check below holds either way and never races.
killed_mid_load({Root, _}) ->
    Big = filename:join(Root, "big.tar"),
    write_big_layout(Big, 256),
    in_fresh_tmpdir(Root, "mid", fun(Tmp) ->
        Caller = spawn(fun() ->
            Result = ocibuild_layout:load_tarball_for_push(Big),
            receive never -> Result end
        end),
        wait_until(fun() -> extract_dirs(Tmp) =/= [] end, 30000),
        exit(Caller, kill),
        wait_until(fun() -> extract_dirs(Tmp) =:= [] end, 30000)
    end).

killed_after_load({Root, _}) ->
    Path = filename:join(Root, "held.tar.gz"),
    ok = ocibuild_layout:save_tarball(image(<<"held">>), Path),
    in_fresh_tmpdir(Root, "held", fun(Tmp) ->
        Self = self(),
        Caller = spawn(fun() ->
            {ok, Loaded} = ocibuild_layout:load_tarball_for_push(Path),
            Self ! loaded,
            receive never -> Loaded end
        end),
        receive loaded -> ok after 30000 -> ?assert(false) end,
        ?assertMatch([_], extract_dirs(Tmp)),
        exit(Caller, kill),
        wait_until(fun() -> extract_dirs(Tmp) =:= [] end, 30000)
    end).

%% A caller that keeps only a layer's path (and garbage-collects the rest) still has the file
%% until it exits.
held_while_caller_lives({Root, _}) ->
    Path = filename:join(Root, "paths.tar.gz"),
    ok = ocibuild_layout:save_tarball(image(<<"paths">>), Path),
    in_fresh_tmpdir(Root, "paths", fun(Tmp) ->
        Self = self(),
        Caller = spawn(fun() ->
            {ok, #{images := [#{layers := [#{path := LayerPath} | _]}]}} =
                ocibuild_layout:load_tarball_for_push(Path),
            true = erlang:garbage_collect(),
            Self ! {path, LayerPath},
            receive never -> ok end
        end),
        LayerPath = receive {path, P} -> P after 30000 -> error(no_path) end,
        %% Collect the caller again from outside, after its reply: only the path is left.
        true = erlang:garbage_collect(Caller),
        ?assert(filelib:is_regular(LayerPath)),
        exit(Caller, kill),
        wait_until(fun() -> extract_dirs(Tmp) =:= [] end, 30000)
    end).

in_fresh_tmpdir(Root, Name, Fun) ->
    Tmp = filename:join(Root, Name),
    ok = file:make_dir(Tmp),
    ocibuild_test_util:with_env("TMPDIR", Tmp, fun() -> Fun(Tmp) end).

extract_dirs(Tmp) ->
    filelib:wildcard(filename:join(Tmp, "ocibuild-load-*")).

%% Poll Cond every 5 ms until it holds; fail the test after TimeoutMs.
wait_until(Cond, TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    wait_until_deadline(Cond, Deadline).

wait_until_deadline(Cond, Deadline) ->
    case Cond() of
        true ->
            ok;
        false ->
            ?assert(erlang:monotonic_time(millisecond) < Deadline),
            timer:sleep(5),
            wait_until_deadline(Cond, Deadline)
    end.

%% A layout whose one layer is MB megabytes of zeros, written first and streamed to disk in
%% 1 MiB pieces so the test VM never holds it.
write_big_layout(Path, MB) ->
    {ok, F} = file:open(Path, [write, raw, binary]),
    Chunk = binary:copy(<<0>>, 1024 * 1024),
    Hash = lists:foldl(fun(_, H) -> crypto:hash_update(H, Chunk) end, crypto:hash_init(sha256), lists:seq(1, MB)),
    Digest = hex_digest(crypto:hash_final(Hash)),
    <<"sha256:", Hex/binary>> = Digest,
    ok = file:write(F, header(<<"blobs/sha256/", Hex/binary>>, $0, MB * 1024 * 1024, <<>>)),
    lists:foreach(fun(_) -> ok = file:write(F, Chunk) end, lists:seq(1, MB)),
    Size = MB * 1024 * 1024,
    Layer = <<"{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"", Digest/binary,
              "\",\"size\":", (integer_to_binary(Size))/binary, "}">>,
    Config = <<"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"", Digest/binary, "\"]}}">>,
    Manifest = manifest(Config, [Layer], <<"big">>),
    Index = index(<<"2">>, [descriptor(<<"application/vnd.oci.image.manifest.v1+json">>, Manifest)]),
    ok = file:write(F, tar(layout_members(Index, [Manifest, Config]))),
    ok = file:close(F).

manifest_and_config(Note) ->
    Config = <<"{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}">>,
    {manifest(Config, [], Note), Config}.

manifest(Config, Layers, Note) ->
    iolist_to_binary([
        <<"{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":">>,
        descriptor(<<"application/vnd.oci.image.config.v1+json">>, Config),
        <<",\"layers\":[">>, lists:join(<<",">>, Layers), <<"],\"annotations\":{\"note\":\"">>, Note, <<"\"}}">>
    ]).

descriptor(MediaType, Bin) ->
    iolist_to_binary([
        <<"{\"mediaType\":\"">>, MediaType, <<"\",\"digest\":\"">>, ocibuild_test_util:sha256(Bin),
        <<"\",\"size\":">>, integer_to_binary(byte_size(Bin)), <<"}">>
    ]).

index(Version, Descriptors) ->
    iolist_to_binary([<<"{\"schemaVersion\":">>, Version, <<",\"manifests\":[">>, lists:join(<<",">>, Descriptors), <<"]}">>]).

layout_members(Index, Blobs) ->
    [{"oci-layout", <<"{\"imageLayoutVersion\":\"1.0.0\"}">>}, {"index.json", Index}] ++
        [{blob_name(B), B} || B <- Blobs].

blob_name(Bin) ->
    <<"sha256:", Hex/binary>> = ocibuild_test_util:sha256(Bin),
    binary_to_list(<<"blobs/sha256/", Hex/binary>>).

hex_digest(Raw) ->
    <<"sha256:", (string:lowercase(binary:encode_hex(Raw)))/binary>>.

%% A plain (ustar) tar of members written as given: unlike erl_tar, nothing is normalised, so
%% `..', absolute names and links reach the loader as a hostile tarball would have them.
tar(Members) ->
    [[member(M) || M <- Members], binary:copy(<<0>>, 1024)].

member({Name, {symlink, Target}}) ->
    header(Name, $2, 0, Target);
member({Name, {hardlink, Target}}) ->
    header(Name, $1, 0, Target);
member({Name, Data}) ->
    Pad = (512 - byte_size(Data) rem 512) rem 512,
    [header(Name, $0, byte_size(Data), <<>>), Data, binary:copy(<<0>>, Pad)].

header(Name0, Type, Size, LinkName0) ->
    Name = iolist_to_binary(Name0),
    LinkName = iolist_to_binary(LinkName0),
    Field = fun(Bin, Len) -> <<Bin/binary, (binary:copy(<<0>>, Len - byte_size(Bin)))/binary>> end,
    Octal = fun(N, Len) -> Field(iolist_to_binary(io_lib:format("~*.8.0b", [Len - 1, N])), Len) end,
    Head = fun(Sum) ->
        <<(Field(Name, 100))/binary, (Octal(8#644, 8))/binary, (Octal(0, 8))/binary, (Octal(0, 8))/binary,
          (Octal(Size, 12))/binary, (Octal(0, 12))/binary, Sum/binary, Type,
          (Field(LinkName, 100))/binary, "ustar", 0, "00", (binary:copy(<<0>>, 247))/binary>>
    end,
    Blank = Head(<<"        ">>),
    Sum = lists:sum(binary_to_list(Blank)),
    Head(<<(iolist_to_binary(io_lib:format("~6.8.0b", [Sum])))/binary, 0, " ">>).

leftover_extract_dirs() ->
    Tmp =
        case os:getenv("TMPDIR") of
            T when T =:= false; T =:= "" -> "/tmp";
            T -> T
        end,
    filelib:wildcard(filename:join(Tmp, "ocibuild-load-" ++ os:getpid() ++ "-*")).

bad_arguments({Root, _}) ->
    Image = image(<<"bad">>),
    Out = filename:join(Root, "bad.tar.gz"),
    ?assertEqual({error, {invalid_option, options, [tag]}}, ocibuild_layout:save_tarball(Image, Out, [tag])),
    ?assertEqual({error, {invalid_option, images, [Image, nope]}}, ocibuild_layout:save_tarball([Image, nope], Out)),
    ?assertEqual({error, {invalid_option, images, nope}}, ocibuild_layout:export_directory(nope, Root)),
    ?assertEqual({error, {invalid_option, path, 42}}, ocibuild_layout:save_tarball(Image, 42)),
    ?assertEqual({error, {invalid_option, path, 42}}, ocibuild_layout:load_tarball_for_push(42)),
    ?assertEqual(
        {error, {invalid_option, memory_threshold, 0}}, ocibuild_layout:load_tarball_for_push(Out, #{memory_threshold => 0})
    ),
    %% The save tag is judged here too, not only by ocibuild:save/3: 0.10 callers call this.
    [?assertMatch({error, {invalid_tag, Tag, Rule}} when is_binary(Rule),
                  ocibuild_layout:save_tarball(Image, Out, #{tag => Tag}))
     || Tag <- [<<"bad tag!!">>, <<"MyApp:1">>, <<"a:1", 0, "b">>, <<>>, "app@sha256:00"]],
    ?assertEqual({error, {invalid_option, tag, 42}}, ocibuild_layout:save_tarball(Image, Out, #{tag => 42})),
    ?assertNot(filelib:is_regular(Out)).
