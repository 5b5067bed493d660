-module(ocibuild_tests).

-include_lib("eunit/include/eunit.hrl").

-define(ARM64, #{os => <<"linux">>, architecture => <<"arm64">>, variant => <<"v8">>}).
-define(AMD64, #{os => <<"linux">>, architecture => <<"amd64">>}).

%% Pure image-value functions: no NIF, no files.

scratch_test() ->
    {ok, Image} = ocibuild:scratch(),
    ?assertEqual(
        #{
            base => none,
            layers => [],
            config => #{
                entrypoint => undefined,
                cmd => undefined,
                env => [],
                workdir => undefined,
                exposed_ports => [],
                labels => #{},
                user => undefined
            },
            annotations => #{},
            platform => undefined
        },
        Image
    ).

config_setters_test() ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:entrypoint(I0, [<<"/app/bin/app">>, "start"]),
    I2 = ocibuild:cmd(I1, [<<"--port">>, <<"8080">>]),
    I3 = ocibuild:workdir(I2, "/app"),
    I4 = ocibuild:user(I3, <<"1000:1000">>),
    #{config := C} = I4,
    ?assertEqual([<<"/app/bin/app">>, <<"start">>], maps:get(entrypoint, C)),
    ?assertEqual([<<"--port">>, <<"8080">>], maps:get(cmd, C)),
    ?assertEqual(<<"/app">>, maps:get(workdir, C)),
    ?assertEqual(<<"1000:1000">>, maps:get(user, C)),
    %% Values, not state: the original image is unchanged.
    ?assertEqual(undefined, maps:get(entrypoint, maps:get(config, I0))).

env_merge_test() ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:env(I0, #{<<"PORT">> => <<"4000">>, <<"MIX_ENV">> => <<"prod">>}),
    ?assertEqual([{<<"MIX_ENV">>, <<"prod">>}, {<<"PORT">>, <<"4000">>}], env(I1)),
    I2 = ocibuild:env(I1, #{<<"PORT">> => <<"5000">>, <<"A">> => <<"1">>, "LANG" => "C.UTF-8"}),
    %% PORT keeps its place with the new value; new names follow in sorted order.
    ?assertEqual(
        [{<<"MIX_ENV">>, <<"prod">>}, {<<"PORT">>, <<"5000">>}, {<<"A">>, <<"1">>}, {<<"LANG">>, <<"C.UTF-8">>}],
        env(I2)
    ),
    ?assertEqual(env(I2), env(ocibuild:env(I2, #{}))),
    ?assertEqual(env(I2), env(ocibuild:env(I2, #{<<"A">> => <<"1">>}))).

env(#{config := #{env := Env}}) -> Env.

expose_test() ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:expose(I0, 8080),
    I2 = ocibuild:expose(I1, <<"53/udp">>),
    I3 = ocibuild:expose(I2, "9000"),
    I4 = ocibuild:expose(I3, <<"8080/tcp">>),
    ?assertEqual([<<"8080/tcp">>, <<"53/udp">>, <<"9000/tcp">>], maps:get(exposed_ports, maps:get(config, I4))),
    [
        ?assertEqual({error, {invalid_option, expose, Bad}}, ocibuild:expose(I0, Bad))
     || Bad <- [0, 65536, -1, <<"http">>, <<"80/foo">>, <<"080">>, <<"80/tcp/x">>, <<>>, 80.0, {80}]
    ].

labels_and_annotations_test() ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:label(I0, <<"org.opencontainers.image.title">>, <<"demo">>),
    I2 = ocibuild:label(I1, "team", "core"),
    I3 = ocibuild:label(I2, <<"team">>, <<"platform">>),
    ?assertEqual(
        #{<<"org.opencontainers.image.title">> => <<"demo">>, <<"team">> => <<"platform">>},
        maps:get(labels, maps:get(config, I3))
    ),
    I4 = ocibuild:annotation(I3, <<"org.opencontainers.image.source">>, <<"https://example.com/x">>),
    ?assertEqual(#{<<"org.opencontainers.image.source">> => <<"https://example.com/x">>}, maps:get(annotations, I4)),
    %% Annotations go to the manifest, labels to the config: they do not mix.
    ?assertEqual(maps:get(labels, maps:get(config, I3)), maps:get(labels, maps:get(config, I4))).

bad_config_values_test() ->
    {ok, I} = ocibuild:scratch(),
    Cases = [
        {{invalid_option, entrypoint, <<"/bin/sh">>}, ocibuild:entrypoint(I, <<"/bin/sh">>)},
        {{invalid_option, entrypoint, "/bin/sh"}, ocibuild:entrypoint(I, "/bin/sh")},
        {{invalid_option, entrypoint, [<<"a">> | <<"b">>]}, ocibuild:entrypoint(I, [<<"a">> | <<"b">>])},
        {{invalid_option, cmd, [<<"ok">>, 1]}, ocibuild:cmd(I, [<<"ok">>, 1])},
        {{invalid_option, cmd, [<<255>>]}, ocibuild:cmd(I, [<<255>>])},
        {{invalid_option, workdir, 42}, ocibuild:workdir(I, 42)},
        {{invalid_option, user, undefined}, ocibuild:user(I, undefined)},
        {{invalid_option, env, [{<<"A">>, <<"1">>}]}, ocibuild:env(I, [{<<"A">>, <<"1">>}])},
        {{invalid_value, env, <<"A=B">>, equals_in_name}, ocibuild:env(I, #{<<"A=B">> => <<"1">>})},
        {{invalid_value, env, <<>>, empty_name}, ocibuild:env(I, #{<<>> => <<"1">>})},
        {{invalid_option, env, {<<"A">>, 1}}, ocibuild:env(I, #{<<"A">> => 1})},
        {{invalid_option, label, {<<>>, <<"v">>}}, ocibuild:label(I, <<>>, <<"v">>)},
        {{invalid_option, annotation, {<<"k">>, v}}, ocibuild:annotation(I, <<"k">>, v)}
    ],
    [?assertEqual({error, Reason}, Result) || {Reason, Result} <- Cases].

%% NUL cannot reach a runtime intact (argv, env and paths are C strings), so every config
%% value and annotation refuses it, naming the field and the key that holds it.
nul_bytes_are_refused_everywhere_test() ->
    {ok, I} = ocibuild:scratch(),
    [?assertEqual({error, Reason}, Result) || {Reason, Result} <- nul_cases(I)].

nul_cases(I) ->
    [
        {{invalid_value, env, <<"A", 0>>, nul_byte}, ocibuild:env(I, #{<<"A", 0>> => <<"1">>})},
        {{invalid_value, env, <<"A">>, nul_byte}, ocibuild:env(I, #{<<"A">> => <<"1", 0, "2">>})},
        {{invalid_value, labels, <<"k", 0>>, nul_byte}, ocibuild:label(I, <<"k", 0>>, <<"v">>)},
        {{invalid_value, labels, <<"k">>, nul_byte}, ocibuild:label(I, <<"k">>, <<0>>)},
        {{invalid_value, annotations, <<0, "k">>, nul_byte}, ocibuild:annotation(I, <<0, "k">>, <<"v">>)},
        {{invalid_value, annotations, <<"k">>, nul_byte}, ocibuild:annotation(I, "k", [$v, 0])},
        {{invalid_value, entrypoint, <<"/bin/", 0>>, nul_byte}, ocibuild:entrypoint(I, [<<"ok">>, <<"/bin/", 0>>])},
        {{invalid_value, cmd, <<0>>, nul_byte}, ocibuild:cmd(I, [<<0>>])},
        {{invalid_value, workdir, <<"/app", 0>>, nul_byte}, ocibuild:workdir(I, <<"/app", 0>>)},
        {{invalid_value, user, <<"root", 0>>, nul_byte}, ocibuild:user(I, "root\0")}
    ].

%% A builder given `{error, _}' hands it on, so a pipeline ends in its first error.
errors_pass_through_builders_test() ->
    {ok, I} = ocibuild:scratch(),
    First = ocibuild:expose(I, 0),
    ?assertEqual({error, {invalid_option, expose, 0}}, First),
    Steps = [
        fun(X) -> ocibuild:add_layer(X, [{<<"/a">>, <<"a">>, 8#644}]) end,
        fun(X) -> ocibuild:add_layer(X, [], #{}) end,
        fun(X) -> ocibuild:copy(X, [{<<"a">>, <<"a">>}], <<"/app">>) end,
        fun(X) -> ocibuild:entrypoint(X, [<<"/x">>]) end,
        fun(X) -> ocibuild:cmd(X, []) end,
        fun(X) -> ocibuild:env(X, #{<<"A">> => <<"1">>}) end,
        fun(X) -> ocibuild:workdir(X, <<"/">>) end,
        fun(X) -> ocibuild:expose(X, 80) end,
        fun(X) -> ocibuild:label(X, <<"k">>, <<"v">>) end,
        fun(X) -> ocibuild:user(X, <<"1">>) end,
        fun(X) -> ocibuild:annotation(X, <<"k">>, <<"v">>) end
    ],
    ?assertEqual(First, lists:foldl(fun(Step, Acc) -> Step(Acc) end, First, Steps)),
    ?assertEqual(First, ocibuild:save(First, "/nonexistent/never-written.tar.gz")),
    ?assertEqual(First, ocibuild:save([I, First], "/nonexistent/never-written.tar.gz", #{})),
    ?assertEqual(First, ocibuild:export(First, "/nonexistent/never-written")),
    ?assertEqual(First, ocibuild:push(First, <<"localhost:1">>, <<"a:1">>)),
    ?assertEqual(First, ocibuild:push_multi([First], <<"localhost:1">>, <<"a:1">>, #{})).

parse_platform_test() ->
    ?assertEqual({ok, ?AMD64}, ocibuild:parse_platform(<<"linux/amd64">>)),
    ?assertEqual({ok, ?ARM64}, ocibuild:parse_platform("linux/arm64/v8")),
    [
        ?assertEqual({error, {invalid_platform, Bad}}, ocibuild:parse_platform(Bad))
     || Bad <- [<<>>, <<"linux">>, <<"linux/">>, <<"/amd64">>, <<"linux/arm64/v8/x">>, <<"linux//amd64">>, 42]
    ],
    ?assertEqual(
        {ok, [?AMD64, ?ARM64]}, ocibuild:parse_platforms(<<"linux/amd64, linux/arm64/v8">>)
    ),
    ?assertEqual({ok, [?AMD64]}, ocibuild:parse_platforms(<<"linux/amd64">>)),
    ?assertEqual({error, {invalid_platform, <<"bogus">>}}, ocibuild:parse_platforms(<<"linux/amd64,bogus">>)),
    ?assertEqual({error, {invalid_platform, <<>>}}, ocibuild:parse_platforms(<<"linux/amd64,">>)).

%% Building and writing images: the NIF, a private blob store, temp output dirs.

image_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun(Ctx) ->
        [
            {"add_layer appends layers", fun add_layer_appends/0},
            {"add_layer raises tagged reasons", ?_test(add_layer_errors(Ctx))},
            {"copy places files under a directory", ?_test(copy_files(Ctx))},
            {"export writes a valid layout with the config", ?_test(export_layout(Ctx))},
            {"save writes a docker-loadable tarball", ?_test(save_docker(Ctx))},
            {"save of several platforms writes an index", ?_test(save_multi(Ctx))},
            {"a tar:// base: chosen per platform by the core, its bytes behind a handle",
             ?_test(local_base_in_the_core(Ctx))},
            {"two saves with SOURCE_DATE_EPOCH are identical", ?_test(reproducible(Ctx))},
            {"save errors leave no partial file", ?_test(save_errors(Ctx))},
            {"sinks refuse NUL in hand-built image maps", ?_test(sinks_refuse_nul(Ctx))},
            {"save refuses tags that are not image references", ?_test(bad_tags(Ctx))},
            {"every exported function returns errors for bad arguments", ?_test(bad_arguments(Ctx))}
        ]
    end}.

app_image() ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:add_layer(
        I0, [{<<"/app/bin/app">>, <<"#!/bin/sh\necho hi\n">>, 8#755}], #{compression => gzip, layer_type => app}
    ),
    I2 = ocibuild:entrypoint(I1, [<<"/app/bin/app">>]),
    I3 = ocibuild:cmd(I2, [<<"start">>]),
    I4 = ocibuild:env(I3, #{<<"PORT">> => <<"4000">>, <<"LANG">> => <<"C.UTF-8">>}),
    I5 = ocibuild:workdir(I4, <<"/app">>),
    I6 = ocibuild:expose(I5, 4000),
    I7 = ocibuild:label(I6, <<"org.opencontainers.image.title">>, <<"app">>),
    I8 = ocibuild:user(I7, <<"nobody">>),
    ocibuild:annotation(I8, <<"org.opencontainers.image.version">>, <<"1.0">>).

add_layer_appends() ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:add_layer(I0, [{<<"/a">>, <<"a">>, 8#644}]),
    I2 = ocibuild:add_layer(I1, [{<<"/b">>, <<"b">>, 8#644}], #{compression => gzip, layer_type => deps}),
    [L1, L2] = maps:get(layers, I2),
    ?assertEqual(<<"application/vnd.oci.image.layer.v1.tar+zstd">>, maps:get(media_type, L1)),
    ?assertEqual(<<"application/vnd.oci.image.layer.v1.tar+gzip">>, maps:get(media_type, L2)),
    ?assertEqual(deps, maps:get(layer_type, L2)),
    ?assertNot(maps:is_key(layer_type, L1)),
    [?assertEqual(maps:get(digest, L), ocibuild_test_util:sha256_file(maps:get(blob, L))) || L <- [L1, L2]].

add_layer_errors({Root, _}) ->
    {ok, I} = ocibuild:scratch(),
    Add = fun(Files) -> ocibuild:add_layer(I, Files) end,
    ?assertEqual({error, {invalid_path, <<>>, empty}}, Add([{<<>>, <<"x">>, 8#644}])),
    ?assertEqual({error, {invalid_path, <<"a", 0>>, nul_byte}}, Add([{<<"a", 0>>, <<"x">>, 8#644}])),
    ?assertEqual({error, {invalid_path, <<"/../x">>, parent_component}}, Add([{<<"/../x">>, <<"x">>, 8#644}])),
    ?assertEqual({error, {duplicate_path, <<"/a/b">>}}, Add([{<<"/a/b">>, <<"1">>, 8#644}, {<<"a/./b/">>, <<"2">>, 8#644}])),
    ?assertEqual({error, {invalid_mode, <<"/x">>, 8#17777}}, Add([{<<"/x">>, <<"x">>, 8#17777}])),
    Missing = filename:join(Root, "missing"),
    ?assertMatch({error, {file_read, _, enoent}}, Add([{<<"/x">>, {file, Missing}, 8#644}])),
    ?assertEqual(
        {error, {invalid_option, compression, brotli}},
        ocibuild:add_layer(I, [{<<"/x">>, <<"x">>, 8#644}], #{compression => brotli})
    ),
    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", "soon", fun() ->
        ?assertEqual({error, {invalid_source_date_epoch, <<"soon">>}}, Add([{<<"/x">>, <<"x">>, 8#644}]))
    end).

copy_files({Root, _}) ->
    Exe = filename:join(Root, "tool"),
    ok = file:write_file(Exe, <<"#!/bin/sh\n">>),
    ok = file:change_mode(Exe, 8#750),
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:copy(
        I0, [{<<"config.json">>, <<"{}">>}, {"tool", {file, Exe}}, {<<"secret">>, <<"s">>, 8#600}], <<"/app/">>
    ),
    [#{blob := Blob}] = maps:get(layers, I1),
    %% Default compression is zstd, which erl_tar cannot read; rebuild the same files as gzip
    %% to look inside, and check the digest differs only by compression (same diff_id).
    I2 = ocibuild:add_layer(
        I0,
        [{<<"/app/config.json">>, <<"{}">>, 8#644}, {<<"/app/tool">>, {file, Exe}, 8#750}, {<<"/app/secret">>, <<"s">>, 8#600}],
        #{compression => gzip}
    ),
    [#{blob := GzBlob} = Gz] = maps:get(layers, I2),
    ?assertEqual(maps:get(diff_id, Gz), maps:get(diff_id, hd(maps:get(layers, I1)))),
    ?assert(filelib:is_regular(Blob)),
    {ok, Bin} = file:read_file(GzBlob),
    ?assertEqual(
        [{<<"app/config.json">>, <<"{}">>}, {<<"app/secret">>, <<"s">>}, {<<"app/tool">>, <<"#!/bin/sh\n">>}],
        lists:sort(ocibuild_test_util:untar_gz(Bin))
    ),
    ?assertEqual({error, {invalid_option, files, {only_one}}}, ocibuild:copy(I0, [{only_one}], <<"/app">>)),
    ?assertEqual({error, {invalid_option, files, [x | y]}}, ocibuild:copy(I0, [x | y], <<"/app">>)),
    ?assertEqual({error, {invalid_option, dest, 7}}, ocibuild:copy(I0, [{<<"a">>, <<"a">>}], 7)),
    ?assertEqual(
        {error, {invalid_path, <<"/app/../etc/passwd">>, parent_component}},
        ocibuild:copy(I0, [{<<"../etc/passwd">>, <<"x">>}], <<"/app">>)
    ).

export_layout({Root, _}) ->
    Dir = filename:join(Root, "exported"),
    Image = app_image(),
    ok = ocibuild:export(Image, Dir),
    {Index, [{Desc, Manifest, Config}]} = ocibuild_test_util:validate_layout(Dir),
    ?assertEqual(1, length(maps:get(<<"manifests">>, Index))),
    ?assertEqual(#{<<"org.opencontainers.image.version">> => <<"1.0">>}, maps:get(<<"annotations">>, Manifest)),
    [Layer] = maps:get(layers, Image),
    [LayerDesc] = maps:get(<<"layers">>, Manifest),
    ?assertEqual(maps:get(digest, Layer), maps:get(<<"digest">>, LayerDesc)),
    ?assertEqual(maps:get(size, Layer), maps:get(<<"size">>, LayerDesc)),
    ?assertEqual(maps:get(media_type, Layer), maps:get(<<"mediaType">>, LayerDesc)),
    ?assertEqual(<<"application/vnd.oci.image.manifest.v1+json">>, maps:get(<<"mediaType">>, Desc)),
    ?assertEqual(<<"linux">>, maps:get(<<"os">>, Config)),
    ?assert(is_binary(maps:get(<<"architecture">>, Config))),
    ?assertEqual(#{<<"type">> => <<"layers">>, <<"diff_ids">> => [maps:get(diff_id, Layer)]}, maps:get(<<"rootfs">>, Config)),
    C = maps:get(<<"config">>, Config),
    ?assertEqual([<<"/app/bin/app">>], maps:get(<<"Entrypoint">>, C)),
    ?assertEqual([<<"start">>], maps:get(<<"Cmd">>, C)),
    ?assertEqual([<<"LANG=C.UTF-8">>, <<"PORT=4000">>], maps:get(<<"Env">>, C)),
    ?assertEqual(<<"/app">>, maps:get(<<"WorkingDir">>, C)),
    ?assertEqual(#{<<"4000/tcp">> => #{}}, maps:get(<<"ExposedPorts">>, C)),
    ?assertEqual(#{<<"org.opencontainers.image.title">> => <<"app">>}, maps:get(<<"Labels">>, C)),
    ?assertEqual(<<"nobody">>, maps:get(<<"User">>, C)),
    [History] = maps:get(<<"history">>, Config),
    ?assertMatch(<<"ocibuild", _/binary>>, maps:get(<<"created_by">>, History)),
    ?assertEqual({error, {invalid_option, dir, 42}}, ocibuild:export(Image, 42)).

save_docker({Root, _}) ->
    Path = filename:join(Root, "app.tar.gz"),
    ok = ocibuild:save(app_image(), Path, #{tag => <<"myapp:1.0">>}),
    {ok, <<16#1f, 16#8b, _/binary>>} = file:read_file(Path),
    Out = ocibuild_test_util:extract_tarball(Path, filename:join(Root, "app-extracted")),
    {Index, [{Desc, Manifest, _Config}]} = ocibuild_test_util:validate_layout(Out),
    ?assertEqual(
        <<"myapp:1.0">>, maps:get(<<"org.opencontainers.image.ref.name">>, maps:get(<<"annotations">>, Desc))
    ),
    ?assertEqual(2, maps:get(<<"schemaVersion">>, Index)),
    {ok, DockerBin} = file:read_file(filename:join(Out, "manifest.json")),
    [Docker] = ocibuild_test_util:json(DockerBin),
    ?assertEqual([<<"myapp:1.0">>], maps:get(<<"RepoTags">>, Docker)),
    <<"sha256:", ConfigHex/binary>> = maps:get(<<"digest">>, maps:get(<<"config">>, Manifest)),
    ?assertEqual(<<"blobs/sha256/", ConfigHex/binary>>, maps:get(<<"Config">>, Docker)),
    ?assertEqual(
        [<<"blobs/sha256/", Hex/binary>> || #{<<"digest">> := <<"sha256:", Hex/binary>>} <- maps:get(<<"layers">>, Manifest)],
        maps:get(<<"Layers">>, Docker)
    ),
    %% format => oci leaves out the docker manifest.
    OciPath = filename:join(Root, "app-oci.tar.gz"),
    ok = ocibuild:save(app_image(), OciPath, #{tag => "myapp:1.0", format => oci}),
    OciOut = ocibuild_test_util:extract_tarball(OciPath, filename:join(Root, "app-oci-extracted")),
    _ = ocibuild_test_util:validate_layout(OciOut),
    ?assertNot(filelib:is_regular(filename:join(OciOut, "manifest.json"))).

save_multi({Root, _}) ->
    Base = app_image(),
    Images = [Base#{platform := ?AMD64}, Base#{platform := ?ARM64}],
    Path = filename:join(Root, "multi.tar.gz"),
    ok = ocibuild:save(Images, Path, #{tag => <<"multi:2">>}),
    Out = ocibuild_test_util:extract_tarball(Path, filename:join(Root, "multi-extracted")),
    {Index, Manifests} = ocibuild_test_util:validate_layout(Out),
    [Top] = maps:get(<<"manifests">>, Index),
    ?assertEqual(<<"application/vnd.oci.image.index.v1+json">>, maps:get(<<"mediaType">>, Top)),
    ?assertEqual(<<"multi:2">>, maps:get(<<"org.opencontainers.image.ref.name">>, maps:get(<<"annotations">>, Top))),
    Platforms = [maps:get(<<"platform">>, D) || {D, _, _} <- Manifests],
    ?assertEqual(
        [#{<<"os">> => <<"linux">>, <<"architecture">> => <<"amd64">>},
         #{<<"os">> => <<"linux">>, <<"architecture">> => <<"arm64">>, <<"variant">> => <<"v8">>}],
        Platforms
    ),
    ?assertEqual(
        [{<<"amd64">>, undefined}, {<<"arm64">>, <<"v8">>}],
        [{maps:get(<<"architecture">>, C), maps:get(<<"variant">>, C, undefined)} || {_, _, C} <- Manifests]
    ).

local_base_in_the_core({Root, _}) ->
    Arm64 = #{os => <<"linux">>, architecture => <<"arm64">>},
    Saved = [(app_image())#{platform := ?AMD64}, (app_image())#{platform := Arm64}],
    Path = filename:join(Root, "bases.tar.gz"),
    ok = ocibuild:save(Saved, Path, #{tag => <<"bases:1">>}),
    Ref = <<"tar://", (list_to_binary(Path))/binary>>,
    {ok, [Amd, Arm]} = ocibuild:from(Ref, #{}, #{platforms => [<<"linux/amd64">>, <<"linux/arm64">>]}),
    [?assertMatch(#{reference := Ref, manifest_digest := <<"sha256:", _/binary>>,
                    manifest := <<"{", _/binary>>, config := <<"{", _/binary>>,
                    layers := [#{blob := _}], handle := _}, B)
     || #{base := B} <- [Amd, Arm]],
    ?assertEqual(Arm64, maps:get(platform, Arm)),
    %% One matcher for every source: arm64/v8 is the arm64 image, as it is in a registry index.
    V8 = #{os => <<"linux">>, architecture => <<"arm64">>, variant => <<"v8">>},
    {ok, [ArmV8]} = ocibuild:from(Ref, #{}, #{platforms => [V8]}),
    ?assertEqual(maps:get(manifest_digest, maps:get(base, Arm)),
                 maps:get(manifest_digest, maps:get(base, ArmV8))),
    ?assertEqual(V8, maps:get(platform, ArmV8)),
    ?assertMatch({error, {no_matching_platform, #{wanted := <<"linux/s390x">>,
                                                  available := [<<"linux/amd64">>, <<"linux/arm64">>]}}},
                 ocibuild:from(Ref, #{}, #{platform => <<"linux/s390x">>})),
    %% An image on the base is written with the base's bytes from the handle: the map's copies
    %% never go back to the native library (spoiling them changes nothing).
    #{base := ArmBase} = Arm,
    Spoiled = Arm#{base := ArmBase#{manifest := <<"not json">>, config := <<"not json">>}},
    OnArm = ocibuild:copy(Spoiled, [{<<"extra">>, <<"x">>}], <<"/app">>),
    Out = filename:join(Root, "on-base.tar.gz"),
    ok = ocibuild:save(OnArm, Out, #{tag => <<"on-base:1">>}),
    Extracted = ocibuild_test_util:extract_tarball(Out, filename:join(Root, "on-base")),
    {_, [{_, Manifest, Config}]} = ocibuild_test_util:validate_layout(Extracted),
    ?assertEqual(maps:get(manifest_digest, maps:get(base, Arm)),
                 maps:get(<<"org.opencontainers.image.base.digest">>, maps:get(<<"annotations">>, Manifest))),
    ?assertEqual(2, length(maps:get(<<"layers">>, Manifest))),
    ?assertEqual(<<"arm64">>, maps:get(<<"architecture">>, Config)),
    %% The host's platform comes from the core's table too.
    ?assertMatch(#{os := <<"linux">>, architecture := A} when A =/= <<"x86_64">>,
                 ocibuild_local_base:host_platform()).

reproducible({Root, _}) ->
    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", "1700000000", fun() ->
        A = filename:join(Root, "repro-a.tar.gz"),
        B = filename:join(Root, "repro-b.tar.gz"),
        %% Each save rebuilds the layer from scratch, as a second build would.
        ok = ocibuild:save(app_image(), A, #{tag => <<"r:1">>}),
        ok = ocibuild:save(app_image(), B, #{tag => <<"r:1">>}),
        {ok, BinA} = file:read_file(A),
        {ok, BinB} = file:read_file(B),
        ?assert(BinA =:= BinB),
        Out = ocibuild_test_util:extract_tarball(A, filename:join(Root, "repro-extracted")),
        {_, [{_, _, Config}]} = ocibuild_test_util:validate_layout(Out),
        ?assertEqual(<<"2023-11-14T22:13:20Z">>, maps:get(<<"created">>, Config))
    end).

save_errors({Root, _}) ->
    Image = app_image(),
    %% Missing parent directories are created, like `mix release' does for its paths.
    Nested = filename:join([Root, "no-such-dir", "out.tar.gz"]),
    ?assertEqual(ok, ocibuild:save(Image, Nested)),
    ?assert(filelib:is_regular(Nested)),
    %% A parent that is a regular file cannot be: a clear I/O error, no output.
    NotADir = filename:join(Root, "plain-file"),
    ok = file:write_file(NotADir, <<"x">>),
    ?assertMatch({error, {io_error, _, _}}, ocibuild:save(Image, filename:join(NotADir, "out.tar.gz"))),
    %% Saving into a read-only directory fails and leaves nothing behind.
    ReadOnly = filename:join(Root, "read-only"),
    ok = file:make_dir(ReadOnly),
    ok = file:change_mode(ReadOnly, 8#555),
    try
        case ocibuild:save(Image, filename:join(ReadOnly, "out.tar.gz")) of
            {error, _} -> ?assertEqual({ok, []}, file:list_dir_all(ReadOnly));
            %% root ignores directory permissions; nothing to check then.
            ok -> ok
        end
    after
        file:change_mode(ReadOnly, 8#755)
    end,
    ?assertEqual({error, {invalid_option, format, tar}}, ocibuild:save(Image, filename:join(Root, "x.tar.gz"), #{format => tar})),
    ?assertEqual({error, {invalid_option, tag, 42}}, ocibuild:save(Image, filename:join(Root, "x.tar.gz"), #{tag => 42})),
    ?assertEqual({error, {invalid_option, images, []}}, ocibuild:save([], filename:join(Root, "x.tar.gz"))),
    ?assertMatch(
        {error, {invalid_platform, _}},
        ocibuild:save(Image#{platform := #{os => <<"linux">>, architecture => <<>>}}, filename:join(Root, "x.tar.gz"))
    ),
    ?assertMatch(
        {error, {blob_missing, _}},
        ocibuild:save(Image#{layers := [(hd(maps:get(layers, Image)))#{blob := <<"/nonexistent/blob">>}]}, filename:join(Root, "x.tar.gz"))
    ),
    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", "tomorrow", fun() ->
        ?assertEqual({error, {invalid_source_date_epoch, <<"tomorrow">>}}, ocibuild:save(Image, filename:join(Root, "x.tar.gz")))
    end),
    ?assertNot(filelib:is_regular(filename:join(Root, "x.tar.gz"))).

%% The image map is public, so the sinks check what the builders check: each NUL case set
%% straight into the map gives the reason the builder gave, and nothing is written.
sinks_refuse_nul({Root, _}) ->
    {ok, I} = ocibuild:scratch(),
    #{config := C} = I,
    HandBuilt = [
        I#{config := C#{env := [{<<"A", 0>>, <<"1">>}]}},
        I#{config := C#{env := [{<<"A">>, <<"1", 0, "2">>}]}},
        I#{config := C#{labels := #{<<"k", 0>> => <<"v">>}}},
        I#{config := C#{labels := #{<<"k">> => <<0>>}}},
        I#{annotations := #{<<0, "k">> => <<"v">>}},
        I#{annotations := #{<<"k">> => <<"v", 0>>}},
        I#{config := C#{entrypoint := [<<"ok">>, <<"/bin/", 0>>]}},
        I#{config := C#{cmd := [<<0>>]}},
        I#{config := C#{workdir := <<"/app", 0>>}},
        I#{config := C#{user := <<"root", 0>>}}
    ],
    Path = filename:join(Root, "nul.tar.gz"),
    Dir = filename:join(Root, "nul-layout"),
    lists:foreach(
        fun({{Reason, _FromBuilder}, Image}) ->
            ?assertEqual({error, Reason}, ocibuild:save(Image, Path)),
            ?assertEqual({error, Reason}, ocibuild:export(Image, Dir))
        end,
        lists:zip(nul_cases(I), HandBuilt)
    ),
    ?assertEqual(
        {error, {invalid_value, env, <<"A=B">>, equals_in_name}},
        ocibuild:save(I#{config := C#{env := [{<<"A=B">>, <<"1">>}]}}, Path)
    ),
    ?assertNot(filelib:is_file(Path)),
    ?assertNot(filelib:is_file(Dir)).

bad_tags({Root, _}) ->
    Image = app_image(),
    Path = filename:join(Root, "tagged.tar.gz"),
    Digest = <<"sha256:", (binary:copy(<<"ab">>, 32))/binary>>,
    Bad = [
        <<"bad tag!!">>, "bad tag!!", <<"MyApp:1">>, <<"app:">>, <<>>, <<"app", 0, ":1">>,
        <<"app:1", 0>>, <<"app:.hidden">>, <<"app:", (binary:copy(<<"t">>, 129))/binary>>,
        <<"app\n:1">>, <<"app@", Digest/binary>>, <<"-x.io/app:1">>
    ],
    lists:foreach(
        fun(Tag) ->
            Result = ocibuild:save(Image, Path, #{tag => Tag}),
            ?assertMatch({error, {invalid_tag, Tag, Rule}} when is_binary(Rule), Result),
            {error, Reason} = Result,
            Line = lists:flatten(io_lib:format("~ts", [ocibuild_release:format_error(Reason)])),
            ?assertEqual(nomatch, string:find(Line, "\n")),
            ?assertNot(filelib:is_file(Path))
        end,
        Bad
    ),
    {error, {invalid_tag, _, Rule}} = ocibuild:save(Image, Path, #{tag => <<"MyApp:1">>}),
    ?assertMatch({match, _}, re:run(Rule, "lower-case")),
    Good = [<<"myapp:1.0">>, "ghcr.io/org/app:v1", <<"localhost:5000/a/b">>, <<"app">>, <<"a_b.c-d:V_1.0-rc">>],
    [?assertEqual(ok, ocibuild:save(Image, Path, #{tag => Tag})) || Tag <- Good],
    ?assertEqual({ok, #{registry => <<"docker.io">>, repository => <<"library/myapp">>, tag => <<"1.0">>}},
                 ocibuild_input:parse_tag(<<"myapp:1.0">>)).

%% Every exported function of `ocibuild' and `ocibuild_layer' returns `{error, _}' for a bad
%% argument: none raises. None of these reach the network (arguments are checked first).
bad_arguments({Root, _}) ->
    {ok, I} = ocibuild:scratch(),
    Out = filename:join(Root, "bad-args"),
    Calls = [
        {from_1, fun() -> ocibuild:from(42) end},
        {from_1_tuple, fun() -> ocibuild:from({<<"a">>, 1}) end},
        {from_2_tar_bad_auth, fun() -> ocibuild:from(<<"tar://", (list_to_binary(Out))/binary>>, not_a_map) end},
        {from_2_bad_auth_keys, fun() -> ocibuild:from(<<"alpine">>, #{user => <<"x">>}) end},
        {from_2_bad_auth_value, fun() -> ocibuild:from(<<"alpine">>, #{token => 42}) end},
        {from_3_bad_opts, fun() -> ocibuild:from(<<"alpine">>, #{}, [platform]) end},
        {from_3_improper_platforms, fun() -> ocibuild:from(<<"tar:///nonexistent">>, #{}, #{platforms => [a | b]}) end},
        {from_3_bad_platform, fun() -> ocibuild:from(<<"tar:///nonexistent">>, #{}, #{platform => 42}) end},
        {push_3_not_image, fun() -> ocibuild:push(not_an_image, <<"localhost:1">>, <<"a:1">>) end},
        {push_3_bad_registry, fun() -> ocibuild:push(I, 42, <<"a:1">>) end},
        {push_3_bad_repo_tag, fun() -> ocibuild:push(I, <<"localhost:1">>, [a | b]) end},
        {push_4_bad_auth, fun() -> ocibuild:push(I, <<"localhost:1">>, <<"a:1">>, [x]) end},
        {push_5_bad_opts, fun() -> ocibuild:push(I, <<"localhost:1">>, <<"a:1">>, #{}, nope) end},
        {push_multi_4_improper, fun() -> ocibuild:push_multi([I | I], <<"localhost:1">>, <<"a:1">>, #{}) end},
        {push_multi_4_empty, fun() -> ocibuild:push_multi([], <<"localhost:1">>, <<"a:1">>, #{}) end},
        {push_multi_5_bad_opts, fun() -> ocibuild:push_multi([I], <<"localhost:1">>, <<"a:1">>, #{}, x) end},
        {add_layer_2_not_image, fun() -> ocibuild:add_layer(#{}, []) end},
        {add_layer_2_improper, fun() -> ocibuild:add_layer(I, [{<<"/a">>, <<"a">>, 8#644} | x]) end},
        {add_layer_3_bad_opts, fun() -> ocibuild:add_layer(I, [], [gzip]) end},
        {copy_3_not_image, fun() -> ocibuild:copy(42, [], <<"/app">>) end},
        {copy_3_files_not_list, fun() -> ocibuild:copy(I, #{}, <<"/app">>) end},
        {copy_3_bad_host_path, fun() -> ocibuild:copy(I, [{<<"a">>, {file, 42}}], <<"/app">>) end},
        {entrypoint_2_atom, fun() -> ocibuild:entrypoint(I, [sh]) end},
        {cmd_2_not_list, fun() -> ocibuild:cmd(I, 42) end},
        {env_2_list, fun() -> ocibuild:env(I, [{"A", "1"}]) end},
        {env_2_atom_value, fun() -> ocibuild:env(I, #{<<"A">> => one}) end},
        {workdir_2_atom, fun() -> ocibuild:workdir(I, app) end},
        {expose_2_negative, fun() -> ocibuild:expose(I, -80) end},
        {expose_2_map, fun() -> ocibuild:expose(I, #{}) end},
        {label_3_atoms, fun() -> ocibuild:label(I, a, b) end},
        {user_2_integer, fun() -> ocibuild:user(I, 0) end},
        {annotation_3_empty_key, fun() -> ocibuild:annotation(I, <<>>, <<"v">>) end},
        {annotation_3_wrong_config, fun() -> ocibuild:annotation(I#{config := #{}}, <<"k">>, <<"v">>) end},
        {export_2_bad_dir, fun() -> ocibuild:export(I, 42) end},
        {export_2_improper, fun() -> ocibuild:export([I | I], Out) end},
        {export_2_not_image, fun() -> ocibuild:export(#{a => 1}, Out) end},
        {save_2_bad_path, fun() -> ocibuild:save(I, {x}) end},
        {save_2_not_images, fun() -> ocibuild:save(42, Out) end},
        {save_3_bad_opts, fun() -> ocibuild:save(I, Out, [tag]) end},
        {save_3_bad_format, fun() -> ocibuild:save(I, Out, #{format => 42}) end},
        {save_3_wrong_layers, fun() -> ocibuild:save(I#{layers := [x]}, Out) end},
        {parse_platform_1, fun() -> ocibuild:parse_platform([a | b]) end},
        {parse_platforms_1, fun() -> ocibuild:parse_platforms(#{}) end},
        {layer_create_1_improper, fun() -> ocibuild_layer:create([a | b]) end},
        {layer_create_1_atom, fun() -> ocibuild_layer:create(files) end},
        {layer_create_2_bad_opts, fun() -> ocibuild_layer:create([], #{compression => 1}) end},
        {layer_create_2_huge_mode, fun() -> ocibuild_layer:create([{<<"/a">>, <<>>, 1 bsl 70}], #{}) end}
    ],
    Results = [{Name, returns_error(F)} || {Name, F} <- Calls],
    ?assertEqual([], [{Name, R} || {Name, R} <- Results, R =/= error]),
    ?assertNot(filelib:is_file(Out)).

returns_error(F) ->
    try F() of
        {error, _} -> error;
        Other -> {returned, Other}
    catch
        Class:Reason -> {raised, Class, Reason}
    end.
