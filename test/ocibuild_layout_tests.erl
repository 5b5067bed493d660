-module(ocibuild_layout_tests).

-include_lib("eunit/include/eunit.hrl").

layout_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun(Ctx) ->
        [
            {"export_directory writes a valid layout", ?_test(export_directory(Ctx))},
            {"save then load a single image", ?_test(roundtrip_single(Ctx))},
            {"save then load a multi-platform image", ?_test(roundtrip_multi(Ctx))},
            {"load an oci-format tarball without a tag", ?_test(roundtrip_oci_untagged(Ctx))},
            {"load errors", ?_test(load_errors(Ctx))},
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
    {ok, #{images := [L], tag := <<"latest">>, cleanup := Cleanup}} = ocibuild_layout:load_tarball_for_push(Path),
    check_loaded(L, Image),
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
    ?assertMatch({error, _}, ocibuild_layout:load_tarball_for_push(Missing)),
    Garbage = filename:join(Root, "garbage.tar.gz"),
    ok = file:write_file(Garbage, crypto:strong_rand_bytes(4096)),
    ?assertMatch({error, _}, ocibuild_layout:load_tarball_for_push(Garbage)),
    %% A tarball without an OCI layout inside.
    NotOci = filename:join(Root, "not-oci.tar"),
    ok = erl_tar:create(NotOci, [{"hello.txt", <<"hi">>}]),
    ?assertMatch({error, _}, ocibuild_layout:load_tarball_for_push(NotOci)),
    %% Failed loads clean up their extract directory.
    ?assertEqual([], leftover_extract_dirs()).

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
    ?assertNot(filelib:is_regular(Out)).
