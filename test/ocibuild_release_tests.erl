%% EUnit: the release pipeline (ocibuild_release and the modules it delegates to), on fake
%% releases built by the tests. Real releases, registries and podman are in test/release/run.sh.
-module(ocibuild_release_tests).

-include_lib("eunit/include/eunit.hrl").

-define(R, ocibuild_release).

%%% Configuration

resolve_defaults_test() ->
    {ok, C} = ?R:resolve_config(#{}, #{}),
    ?assertMatch(#{base_image := <<"debian:stable-slim">>, tags := [], output := undefined,
                   push := undefined, workdir := <<"/app">>, uid := 65534,
                   chunk_size := 5242880, compression := auto, vcs_annotations := true,
                   platforms := [], cmd := undefined, tag_required := false}, C).

resolve_cli_over_project_test() ->
    Cli = #{tag => ["a:1;a:latest", "b:2"], base => "tar:///b.tar", uid => 0,
            chunk_size => 10, compression => "gzip", annotation => ["k=cli", "x=y=z"],
            label => ["l=1"], platform => "linux/amd64,linux/arm64", no_vcs_annotations => true,
            push => "localhost:5000/ns"},
    Project = [{base_image, "debian:12"}, {tag, "ignored:1"}, {annotations, #{k => file, f => "v"}},
               {labels, [{"m", "2"}]}, {workdir, "/srv//my app/"}, {env, #{'LANG' => "C.UTF-8"}},
               {expose, [8080, "53/udp"]}, {uid, 1000}, {vcs_annotations, true}],
    {ok, C} = ?R:resolve_config(Cli, Project),
    ?assertMatch(#{base_image := <<"tar:///b.tar">>,
                   tags := [<<"a:1">>, <<"a:latest">>, <<"b:2">>],
                   uid := 0, chunk_size := 10485760, compression := gzip,
                   annotations := #{<<"k">> := <<"cli">>, <<"f">> := <<"v">>, <<"x">> := <<"y=z">>},
                   labels := #{<<"l">> := <<"1">>, <<"m">> := <<"2">>},
                   workdir := <<"/srv/my app">>, env := #{<<"LANG">> := <<"C.UTF-8">>},
                   expose := [8080, <<"53/udp">>], vcs_annotations := false,
                   push := <<"localhost:5000/ns">>}, C),
    ?assertEqual(2, length(maps:get(platforms, C))).

resolve_project_tags_test() ->
    {ok, #{tags := T1}} = ?R:resolve_config(#{}, #{tag => <<"x:1;x:2">>}),
    ?assertEqual([<<"x:1">>, <<"x:2">>], T1),
    {ok, #{tags := T2}} = ?R:resolve_config(#{}, #{tag => ["x:1", "y:2"]}),
    ?assertEqual([<<"x:1">>, <<"y:2">>], T2),
    %% Elixir nil means "not set".
    {ok, #{base_image := <<"debian:stable-slim">>}} = ?R:resolve_config(#{}, #{base_image => nil}).

resolve_errors_test_() ->
    Err = fun(Cli, Project) -> element(2, ?R:resolve_config(Cli, Project)) end,
    [
        ?_assertEqual({unknown_config_key, bse_image}, Err(#{}, #{bse_image => "x"})),
        ?_assertEqual({invalid_option, compression, "brotli"}, Err(#{compression => "brotli"}, #{})),
        ?_assertEqual({invalid_option, chunk_size, 0}, Err(#{chunk_size => 0}, #{})),
        ?_assertMatch({invalid_uid, -1, _}, Err(#{uid => -1}, #{})),
        ?_assertMatch({invalid_uid, "x", _}, Err(#{}, #{uid => "x"})),
        ?_assertEqual({invalid_option, workdir, "app"}, Err(#{}, #{workdir => "app"})),
        ?_assertEqual({invalid_option, workdir, "/app/../etc"}, Err(#{}, #{workdir => "/app/../etc"})),
        ?_assertEqual({invalid_kv_format, "novalue"}, Err(#{label => ["novalue"]}, #{})),
        ?_assertEqual({tarball_without_push, <<"x.tar.gz">>}, Err(#{tarball => "x.tar.gz"}, #{})),
        ?_assertMatch({invalid_platform, _}, Err(#{platform => "linux"}, #{})),
        ?_assertEqual({invalid_option, vcs_annotations, "no"}, Err(#{}, #{vcs_annotations => "no"}))
    ].

sign_key_from_env_test() ->
    ocibuild_test_util:with_env("OCIBUILD_SIGN_KEY", "/keys/k.pem", fun() ->
        ?assertMatch({ok, #{sign_key := <<"/keys/k.pem">>}}, ?R:resolve_config(#{}, #{})),
        ?assertMatch({ok, #{sign_key := <<"/cli.pem">>}},
                     ?R:resolve_config(#{sign_key => "/cli.pem"}, #{}))
    end).

%%% Small functions from the 0.10 API

parse_tag_test_() ->
    [
        ?_assertEqual({<<"myapp">>, <<"1.0.0">>}, ?R:parse_tag(<<"myapp:1.0.0">>)),
        ?_assertEqual({<<"myapp">>, <<"latest">>}, ?R:parse_tag(<<"myapp">>)),
        ?_assertEqual({<<"ghcr.io/org/app">>, <<"v1">>}, ?R:parse_tag(<<"ghcr.io/org/app:v1">>)),
        ?_assertEqual({<<"localhost:5000/app">>, <<"latest">>}, ?R:parse_tag(<<"localhost:5000/app">>))
    ].

get_tags_test_() ->
    [
        ?_assertEqual([<<"myapp:v1">>, <<"myapp:latest">>],
                      ?R:get_tags([<<"myapp:v1;myapp:latest">>], [], <<"myapp">>, <<"1.0.0">>)),
        ?_assertEqual([<<"myapp:v1">>, <<"myapp:latest">>],
                      ?R:get_tags([], [<<"myapp:v1 ; myapp:latest">>], <<"myapp">>, <<"1.0.0">>)),
        ?_assertEqual([<<"c:1">>], ?R:get_tags([<<"c:1">>], [<<"f:1">>], <<"m">>, <<"1">>)),
        ?_assertEqual([<<"myapp:1.0.0">>], ?R:get_tags([], [], <<"myapp">>, <<"1.0.0">>)),
        ?_assertEqual([], ?R:expand_semicolon_tags(<<" ; ;">>))
    ].

kv_test_() ->
    [
        ?_assertEqual({ok, {<<"key">>, <<"value=with=equals">>}}, ?R:parse_kv_arg("key=value=with=equals")),
        ?_assertEqual({error, {invalid_kv_format, "no-equals"}}, ?R:parse_kv_arg("no-equals")),
        ?_assertEqual(#{<<"key">> => <<"value">>}, ?R:normalize_kv_map(#{"key" => "value"})),
        ?_assertEqual(#{<<"key">> => <<"value">>}, ?R:normalize_kv_map(#{key => value})),
        ?_assertEqual(#{}, ?R:normalize_kv_map(undefined))
    ].

misc_test_() ->
    [
        ?_assert(?R:is_tarball_path("a/b.tar.gz")),
        ?_assert(?R:is_tarball_path(<<"B.TGZ">>)),
        ?_assert(?R:is_tarball_path("x.tar.zstd")),
        ?_assertNot(?R:is_tarball_path("myapp:1.0")),
        ?_assertEqual(<<"1.50 KB">>, iolist_to_binary(?R:format_bytes(1536))),
        ?_assertEqual(<<"12 B">>, iolist_to_binary(?R:format_bytes(12))),
        ?_assertEqual(<<"2.00 GB">>, iolist_to_binary(?R:format_bytes(2 bsl 30))),
        ?_assertMatch(<<"[============>           ]  50% ", _/binary>>,
                      iolist_to_binary(?R:format_progress(50, 100))),
        ?_assertEqual(<<"3 B">>, iolist_to_binary(?R:format_progress(3, unknown))),
        ?_assertEqual(<<"/app/a/b/c">>, ?R:to_container_path("a\\b\\c")),
        ?_assertEqual("lib/x", ?R:make_relative_path("/r/rel", "/r/rel/lib/x")),
        ?_assert(?R:is_nil_or_undefined(nil)),
        ?_assertNot(?R:is_nil_or_undefined(false)),
        ?_assertEqual(<<"1.5">>, ?R:to_binary(1.5)),
        ?_assertEqual(ok, ?R:stop_httpc())
    ].

auth_from_env_test() ->
    Vars = ["OCIBUILD_PUSH_TOKEN", "OCIBUILD_PUSH_USERNAME", "OCIBUILD_PUSH_PASSWORD"],
    Saved = [{V, os:getenv(V)} || V <- Vars],
    try
        [os:unsetenv(V) || V <- Vars],
        ?assertEqual(#{}, ?R:get_push_auth()),
        os:putenv("OCIBUILD_PUSH_USERNAME", "u"),
        os:putenv("OCIBUILD_PUSH_PASSWORD", "p"),
        ?assertEqual(#{username => <<"u">>, password => <<"p">>}, ?R:get_push_auth()),
        os:putenv("OCIBUILD_PUSH_TOKEN", ""),
        ?assertEqual(#{username => <<"u">>, password => <<"p">>}, ?R:get_push_auth()),
        os:putenv("OCIBUILD_PUSH_TOKEN", "t"),
        ?assertEqual(#{token => <<"t">>}, ?R:get_push_auth()),
        ?assertEqual(#{}, ?R:get_pull_auth())
    after
        [case V of false -> os:unsetenv(N); _ -> os:putenv(N, V) end || {N, V} <- Saved]
    end.

%%% Layering

classify_test_() ->
    Deps = sets:from_list([<<"jason">>], [{version, 2}]),
    C = fun(Path, HasErts) -> ?R:classify_file_layer(Path, Deps, <<"myapp">>, <<"/app">>, HasErts) end,
    [
        ?_assertEqual(app, C(<<"/app/lib/myapp-1.0/ebin/myapp.beam">>, true)),
        ?_assertEqual(dep, C(<<"/app/lib/jason-1.4.1/ebin/jason.beam">>, true)),
        ?_assertEqual(erts, C(<<"/app/lib/kernel-8.5/ebin/kernel.beam">>, true)),
        ?_assertEqual(dep, C(<<"/app/lib/kernel-8.5/ebin/kernel.beam">>, false)),
        ?_assertEqual(erts, C(<<"/app/erts-13.2/bin/beam.smp">>, true)),
        ?_assertEqual(app, C(<<"/app/bin/myapp">>, true)),
        ?_assertEqual(app, C(<<"/app/releases/1.0/sys.config">>, true)),
        %% An OTP app whose name has a dash before its version is still split right.
        ?_assertEqual(erts, C(<<"/app/lib/my-otp-lib-1.0/ebin/x.beam">>, true))
    ].

partition_test() ->
    F = fun(P) -> {P, <<>>, 8#644} end,
    Files = [F(<<"/srv/erts-1/bin/beam">>), F(<<"/srv/lib/dep-1/a">>), F(<<"/srv/lib/app-2/b">>),
             F(<<"/srv/lib/stdlib-4/c">>), F(<<"/srv/bin/app">>)],
    Deps = [#{name => <<"dep">>, version => <<"1">>, source => <<"hex">>}],
    {E, D, A} = ?R:partition_files_by_layer(Files, Deps, <<"app">>, <<"/srv">>, true),
    ?assertEqual([<<"/srv/erts-1/bin/beam">>, <<"/srv/lib/stdlib-4/c">>], [P || {P, _, _} <- E]),
    ?assertEqual([<<"/srv/lib/dep-1/a">>], [P || {P, _, _} <- D]),
    ?assertEqual([<<"/srv/lib/app-2/b">>, <<"/srv/bin/app">>], [P || {P, _, _} <- A]).

%%% Release directories

release_dir_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun({Root, _}) ->
        [
            {"symlinks, special files and modes", fun() -> collect_files(Root) end},
            {"erts, native code, multi-platform", fun() -> erts_and_nifs(Root) end},
            {"run: save with smart layers", fun() -> run_save(Root) end},
            {"run: one layer without a lock file, custom workdir", fun() -> run_single_layer(Root) end},
            {"run: user errors", fun() -> run_errors(Root) end},
            {"run: a saved tarball has one tag", fun() -> run_two_tags(Root) end},
            {"build_image and build_release_layers", fun() -> build_functions(Root) end},
            {"tar:// base", fun() -> local_base(Root) end},
            {"run: SBOM layer and file, annotations", fun() -> run_supply(Root) end},
            {"run: supply-chain errors", fun() -> run_supply_errors(Root) end}
        ]
    end}.

%% A release-shaped directory: a relx-style script, a bundled ERTS, OTP, a dep and the app.
fake_release(Root, Name) ->
    Rel = filename:join(Root, Name),
    ocibuild_test_util:write_file(filename:join([Rel, "bin", "myapp"]), <<"#!/bin/sh\ncase $1 in foreground) ;; esac\n">>, 8#755),
    ocibuild_test_util:write_file(filename:join([Rel, "erts-13.2", "bin", "beam.smp"]), <<"beam">>, 8#755),
    ocibuild_test_util:write_file(filename:join([Rel, "lib", "kernel-8.5", "ebin", "kernel.beam"]), <<"k">>, 8#644),
    ocibuild_test_util:write_file(filename:join([Rel, "lib", "jason-1.4.1", "ebin", "jason.beam"]), <<"j">>, 8#644),
    ocibuild_test_util:write_file(filename:join([Rel, "lib", "myapp-1.0.0", "ebin", "myapp.beam"]), <<"m">>, 8#644),
    ocibuild_test_util:write_file(filename:join([Rel, "releases", "start_erl.data"]), <<"13.2 1.0.0\n">>, 8#644),
    Rel.

collect_files(Root) ->
    Rel = fake_release(Root, "links"),
    Outside = filename:join(Root, "outside.txt"),
    ok = file:write_file(Outside, <<"secret">>),
    ok = file:make_symlink("../lib/myapp-1.0.0/ebin/myapp.beam", filename:join([Rel, "bin", "alias.beam"])),
    ok = file:make_symlink("lib/myapp-1.0.0", filename:join(Rel, "current")),
    ok = file:make_symlink(Outside, filename:join(Rel, "escape")),
    ok = file:make_symlink("../../outside.txt", filename:join([Rel, "bin", "escape2"])),
    ok = file:make_symlink("nowhere", filename:join(Rel, "broken")),
    ok = file:make_symlink("loop", filename:join(Rel, "loop")),
    ok = file:make_symlink(".", filename:join([Rel, "lib", "self"])),
    "" = os:cmd("mkfifo " ++ filename:join(Rel, "fifo")),
    {ok, Files} = ?R:collect_release_files(Rel, #{workdir => "/opt/x"}),
    Paths = [P || {P, _, _} <- Files],
    ?assertEqual(lists:sort(Paths), Paths),
    ?assert(lists:member(<<"/opt/x/bin/alias.beam">>, Paths)),
    ?assert(lists:member(<<"/opt/x/current/ebin/myapp.beam">>, Paths)),
    [?assertNot(lists:member(<<"/opt/x/", N/binary>>, Paths))
     || N <- [<<"escape">>, <<"bin/escape2">>, <<"broken">>, <<"loop">>, <<"fifo">>]],
    %% A link within the release is stored as its target's content (a file, not a link).
    {_, {file, Target}, 8#644} = lists:keyfind(<<"/opt/x/bin/alias.beam">>, 1, Files),
    ?assertEqual({ok, <<"m">>}, file:read_file(Target)),
    ?assertMatch({_, {file, _}, 8#755}, lists:keyfind(<<"/opt/x/bin/myapp">>, 1, Files)),
    %% The self-link is a loop: nothing under lib/self.
    ?assertEqual([], [P || P <- Paths, binary:match(P, <<"/lib/self">>) =/= nomatch]),
    ?assertMatch({error, {release_not_found, _, enoent}},
                 ?R:collect_release_files(filename:join(Root, "nope"))).

erts_and_nifs(Root) ->
    Rel = fake_release(Root, "nifs"),
    ?assert(?R:has_bundled_erts(Rel)),
    ?assertEqual({ok, []}, ?R:check_for_native_code(Rel)),
    ocibuild_test_util:write_file(filename:join([Rel, "lib", "crypto-5.1", "priv", "lib", "crypto.so"]), <<"elf">>, 8#755),
    ?assertMatch({warning, [#{app := <<"crypto">>, extension := <<".so">>}]},
                 ?R:check_for_native_code(Rel)),
    {ok, Ps} = ocibuild:parse_platforms(<<"linux/amd64,linux/arm64">>),
    ?assertEqual(ok, ?R:validate_multiplatform(Rel, [hd(Ps)])),
    ?assertMatch({error, {bundled_erts, <<"multi-platform builds need ERTS", _/binary>>}},
                 ?R:validate_multiplatform(Rel, Ps)),
    NoErts = fake_release(Root, "noerts"),
    ok = file:del_dir_r(filename:join(NoErts, "erts-13.2")),
    ?assertNot(?R:has_bundled_erts(NoErts)),
    ?assertEqual(ok, ?R:validate_multiplatform(NoErts, Ps)).

state(Root, Name, Cli, Project, Extra) ->
    {ok, Config} = ?R:resolve_config(Cli, Project#{base_image => "scratch"}),
    maps:merge(#{config => Config, release => {<<"myapp">>, fake_release(Root, Name)}}, Extra).

run_save(Root) ->
    Out = filename:join(Root, "smart.tar.gz"),
    Deps = {ok, [#{name => <<"jason">>, version => <<"1.4.1">>, source => <<"hex">>}]},
    State = state(Root, "smart", #{output => Out, label => ["a=b"]}, #{}, #{deps => Deps, version => <<"1.0.0">>}),
    {ok, State} = ?R:run(ocibuild_test_adapter, State, #{}),
    Lines = ocibuild_test_adapter:messages(),
    ?assert(lists:member({info, <<"Tagged: myapp:1.0.0">>}, Lines)),
    {ok, #{images := [Img], tag := Tag, cleanup := Cleanup}} = ocibuild_layout:load_tarball_for_push(Out),
    Cleanup(),
    ?assertEqual(<<"myapp:1.0.0">>, Tag),
    %% ERTS, deps, app, and the SBOM last.
    ?assertEqual(4, length(maps:get(layers, Img))),
    Config = ocibuild_test_util:json(maps:get(config, Img)),
    #{<<"config">> := C} = Config,
    ?assertEqual([<<"/app/bin/myapp">>, <<"foreground">>], maps:get(<<"Entrypoint">>, C)),
    ?assertEqual(<<"65534">>, maps:get(<<"User">>, C)),
    ?assertEqual(<<"/app">>, maps:get(<<"WorkingDir">>, C)),
    ?assertEqual(#{<<"a">> => <<"b">>}, maps:get(<<"Labels">>, C)),
    History = [maps:get(<<"created_by">>, H, <<>>) || H <- maps:get(<<"history">>, Config)],
    ?assertEqual(4, length(History)).

run_single_layer(Root) ->
    Out = filename:join(Root, "single.tar.gz"),
    Cwd = filename:join(Root, "cwd"),
    ok = filelib:ensure_dir(filename:join(Cwd, "x")),
    State = state(Root, "single", #{tag => ["reg.example:5000/org/single:v2"], cmd => "console"},
                  #{workdir => "/srv/single"}, #{}),
    {ok, Old} = file:get_cwd(),
    ok = file:set_cwd(Cwd),
    try
        {ok, _} = ?R:run(ocibuild_test_adapter, State, #{})
    after
        ok = file:set_cwd(Old)
    end,
    %% Default output name: <last path segment of the repository>-<tag>.tar.gz.
    Default = filename:join(Cwd, "single-v2.tar.gz"),
    ?assert(filelib:is_regular(Default)),
    {ok, _} = file:copy(Default, Out),
    {ok, #{images := [Img], cleanup := Cleanup}} = ocibuild_layout:load_tarball_for_push(Out),
    Cleanup(),
    %% The release and the SBOM.
    ?assertEqual(2, length(maps:get(layers, Img))),
    #{<<"config">> := C} = ocibuild_test_util:json(maps:get(config, Img)),
    ?assertEqual([<<"/srv/single/bin/myapp">>, <<"console">>], maps:get(<<"Entrypoint">>, C)),
    ?assertEqual(<<"/srv/single">>, maps:get(<<"WorkingDir">>, C)),
    ocibuild_test_adapter:messages().

run_two_tags(Root) ->
    Out = filename:join(Root, "two.tar.gz"),
    State = state(Root, "two", #{output => Out, tag => ["two:1;two:latest"]}, #{}, #{}),
    {ok, _} = ?R:run(ocibuild_test_adapter, State, #{}),
    Lines = ocibuild_test_adapter:messages(),
    ?assertEqual([<<"Tagged: two:1">>], [L || {info, <<"Tagged: ", _/binary>> = L} <- Lines]),
    ?assert(lists:member({error, <<"warning: the tarball is tagged two:1 only; two:latest applies to --push">>},
                         Lines)).

run_errors(Root) ->
    Required = (state(Root, "errs", #{}, #{}, #{}))#{config := (maps:get(config, state(Root, "errs", #{}, #{}, #{})))#{tag_required := true}},
    ?assertEqual({error, missing_tag}, ?R:run(ocibuild_test_adapter, Required, #{})),
    Multi = state(Root, "errs", #{platform => "linux/amd64,linux/arm64", tag => ["x:1"]}, #{}, #{}),
    {error, {bundled_erts, _} = Reason} = ?R:run(ocibuild_test_adapter, Multi, #{}),
    ?assertMatch(<<"multi-platform builds need ERTS", _/binary>>, iolist_to_binary(?R:format_error(Reason))),
    Foreign = case ocibuild_local_base:host_platform() of
        #{architecture := <<"arm64">>} -> "linux/amd64";
        _ -> "linux/arm64"
    end,
    OneForeign = state(Root, "errs", #{platform => Foreign, tag => ["x:1"]}, #{}, #{}),
    {error, {bundled_erts, Msg}} = ?R:run(ocibuild_test_adapter, OneForeign, #{}),
    ?assertMatch({match, _}, re:run(Msg, "bundles ERTS built for linux/.* cannot run on " ++ Foreign)),
    #{architecture := HostArch} = ocibuild_local_base:host_platform(),
    HostOut = filename:join(Root, "host.tar.gz"),
    OnHost = state(Root, "errs", #{platform => "linux/" ++ binary_to_list(HostArch), tag => ["x:1"],
                                   output => HostOut}, #{}, #{}),
    ?assertMatch({ok, _}, ?R:run(ocibuild_test_adapter, OnHost, #{})),
    Missing = (state(Root, "errs", #{tag => ["x:1"]}, #{}, #{}))#{release := {<<"myapp">>, filename:join(Root, "none")}},
    {error, NotFound} = ?R:run(ocibuild_test_adapter, Missing, #{}),
    ?assertMatch(<<"release directory ", _/binary>>, iolist_to_binary(?R:format_error(NotFound))),
    Tarball = state(Root, "errs", #{tarball => "nope.tar.gz", push => "localhost:5000"}, #{}, #{}),
    ?assertEqual({error, {tarball_not_found, <<"nope.tar.gz">>}}, ?R:run(ocibuild_test_adapter, Tarball, #{})),
    %% Every reason formats as one line.
    [?assertEqual(nomatch, binary:match(iolist_to_binary(?R:format_error(E)), <<"\n">>))
     || E <- [missing_tag, {invalid_option, compression, "x"}, {unknown_config_key, k},
              {invalid_uid, -1, <<"why">>}, {invalid_created_timestamp, {negative_timestamp, <<"-1">>}},
              {invalid_created_timestamp, {invalid_format, <<"x">>}},
              {unauthorized, #{registry => <<"r">>, scope => <<"s">>, status => 401}},
              {registry_error, #{registry => <<"r">>, action => <<"put">>, status => 500,
                                 code => undefined, message => undefined}},
              {something, [unexpected, "term"]}]],
    ocibuild_test_adapter:messages().

build_functions(Root) ->
    {ok, Image} = ?R:build_image(<<"scratch">>, [{<<"/app/bin/x">>, <<"#!/bin/sh\n">>, 8#755}],
                                 #{release_name => x, expose => [8080], env => #{<<"A">> => <<"1">>}}),
    ?assertMatch(#{config := #{entrypoint := [<<"/app/bin/x">>, <<"foreground">>], user := <<"65534">>,
                               exposed_ports := [<<"8080/tcp">>]}}, Image),
    Rel = fake_release(Root, "layers"),
    {ok, Files} = ?R:collect_release_files(Rel),
    {ok, Scratch} = ocibuild:scratch(),
    Deps = [#{name => <<"jason">>, version => <<"1">>, source => <<"hex">>}],
    #{layers := Three} = ?R:build_release_layers(Scratch, Files, Rel, Deps, #{app_name => <<"myapp">>}),
    ?assertEqual([erts, deps, app], [T || #{layer_type := T} <- Three]),
    #{layers := One} = ?R:build_release_layers(Scratch, Files, Rel, [], #{app_name => <<"myapp">>}),
    ?assertEqual(1, length(One)).

local_base(Root) ->
    BaseTar = filename:join(Root, "base.tar.gz"),
    {ok, S} = ocibuild:scratch(),
    B = ocibuild:add_layer(ocibuild:env(S, #{<<"PATH">> => <<"/bin">>}), [{<<"/bin/sh">>, <<"sh">>, 8#755}]),
    ok = ocibuild:save(B, BaseTar, #{tag => <<"base:1">>}),
    {ok, FromTar} = ocibuild:from(<<"tar://", (list_to_binary(BaseTar))/binary>>),
    ?assertMatch(#{base := #{layers := [#{blob := _}]}}, FromTar),
    ?assertEqual({error, {invalid_reference, <<"tar://">>}}, ocibuild:from(<<"tar://">>)),
    ?assertMatch({error, {no_matching_platform, _}},
                 ocibuild:from(<<"tar://", (list_to_binary(BaseTar))/binary>>, #{},
                               #{platforms => [<<"linux/s390x">>, <<"linux/arm64">>]})),
    Out = filename:join(Root, "on-base.tar.gz"),
    State0 = state(Root, "onbase", #{output => Out, tag => ["x:1"]}, #{}, #{}),
    {ok, Config} = ?R:resolve_config(#{output => Out, tag => ["x:1"], base => "tar://" ++ BaseTar}, #{}),
    {ok, _} = ?R:run(ocibuild_test_adapter, State0#{config := Config}, #{}),
    {ok, #{images := [Img], cleanup := Cleanup}} = ocibuild_layout:load_tarball_for_push(Out),
    Cleanup(),
    %% The base's layer, the release's and the SBOM.
    ?assertEqual(3, length(maps:get(layers, Img))),
    #{<<"config">> := C} = ocibuild_test_util:json(maps:get(config, Img)),
    ?assertEqual([<<"PATH=/bin">>], maps:get(<<"Env">>, C)),
    ocibuild_test_adapter:messages().

%% The SBOM is the image's last layer and, with `sbom', a file; the user's annotations sit
%% on top of the automatic ones. A signing key without a push is not used (nothing to sign).
run_supply(Root) ->
    Out = filename:join(Root, "supply.tar.gz"),
    SbomPath = filename:join(Root, "supply.spdx.json"),
    Deps = {ok, [#{name => <<"jason">>, version => <<"1.4.1">>, source => <<"hex">>}]},
    Cli = #{output => Out, sbom => SbomPath, compression => "gzip",
            sign_key => filename:join(Root, "no-such-key.pem"),
            annotation => ["org.opencontainers.image.created=0", "team=core"]},
    State = state(Root, "supply", Cli, #{}, #{deps => Deps, version => <<"1.0.0">>}),
    {ok, _} = ?R:run(ocibuild_test_adapter, State, #{}),
    {ok, Sbom} = file:read_file(SbomPath),
    Doc = ocibuild_test_util:json(Sbom),
    ?assertEqual(<<"SPDX-2.2">>, maps:get(<<"spdxVersion">>, Doc)),
    Packages = maps:get(<<"packages">>, Doc),
    Versions = maps:from_list([{maps:get(<<"name">>, P), maps:get(<<"versionInfo">>, P, undefined)}
                               || P <- Packages]),
    ?assertEqual(<<"1.4.1">>, maps:get(<<"jason">>, Versions)),
    ?assertEqual(<<"1.0.0">>, maps:get(<<"myapp">>, Versions)),
    {ok, #{images := [Img], cleanup := Cleanup}} = ocibuild_layout:load_tarball_for_push(Out),
    try
        #{<<"annotations">> := Annotations} = ocibuild_test_util:json(maps:get(manifest, Img)),
        ?assertEqual(<<"1970-01-01T00:00:00Z">>, maps:get(<<"org.opencontainers.image.created">>, Annotations)),
        ?assertEqual(<<"core">>, maps:get(<<"team">>, Annotations)),
        ?assertEqual(<<"1.0.0">>, maps:get(<<"org.opencontainers.image.version">>, Annotations)),
        Last = lists:last(maps:get(layers, Img)),
        {ok, Blob} = file:read_file(maps:get(path, Last, maps:get(blob, Last, undefined))),
        {ok, [{Name, Embedded}]} = erl_tar:extract({binary, zlib:gunzip(Blob)}, [memory]),
        ?assertEqual("sbom.spdx.json", string:trim(Name, leading, "/")),
        ?assertEqual(Sbom, Embedded)
    after
        Cleanup()
    end,
    Lines = ocibuild_test_adapter:messages(),
    ?assertNot(lists:any(fun({_, L}) -> binary:match(L, <<"Signed">>) =/= nomatch end, Lines)).

run_supply_errors(Root) ->
    Run = fun(Cli) -> ?R:run(ocibuild_test_adapter, state(Root, "supply-errs", Cli#{tag => ["x:1"]}, #{}, #{}), #{}) end,
    ?assertEqual({error, {protected_annotation, <<"org.opencontainers.image.source">>}},
                 Run(#{annotation => ["org.opencontainers.image.source=https://evil.example"]})),
    ?assertMatch({error, {invalid_annotation, path_traversal, <<"x">>}}, Run(#{annotation => ["x=a/../b"]})),
    Missing = filename:join(Root, "missing.pem"),
    {error, {sign_key, _, {file_read, enoent}} = NoKey} = Run(#{push => "localhost:1", sign_key => Missing}),
    Garbage = filename:join(Root, "garbage.pem"),
    ok = file:write_file(Garbage, <<"not a key">>),
    {error, {sign_key, _, {sign_key_error, _}} = BadKey} = Run(#{push => "localhost:1", sign_key => Garbage}),
    [?assertEqual(nomatch, binary:match(iolist_to_binary(?R:format_error(E)), <<"\n">>))
     || E <- [NoKey, BadKey, {protected_annotation, <<"k">>}, {invalid_annotation, null_byte, <<"a\0b">>},
              {sign_key, <<"k.pem">>, {sign_key_password, missing}}]],
    ocibuild_test_adapter:messages().

%% Tags are expanded, judged and grouped in one place, the core (`reference_tags/1'): the
%% config keeps them in the order given, a push groups them by repository as written.
reference_tags_test() ->
    ?assertEqual({ok, #{tags => [<<"b:1">>, <<"a:1">>, <<"b:2">>, <<"localhost:5000/a">>],
                        groups => [#{name => <<"b">>, tags => [<<"b:1">>, <<"b:2">>],
                                     versions => [<<"1">>, <<"2">>]},
                                   #{name => <<"a">>, tags => [<<"a:1">>],
                                     versions => [<<"1">>]},
                                   #{name => <<"localhost:5000/a">>,
                                     tags => [<<"localhost:5000/a">>],
                                     versions => [<<"latest">>]}]}},
                 ocibuild_nif:reference_tags([<<" b:1 ; a:1;;">>, <<"b:2">>, <<"localhost:5000/a">>])),
    ?assertMatch({error, {invalid_tag, <<"bad tag!!">>, <<"each repository component", _/binary>>}},
                 ocibuild_nif:reference_tags([<<"ok:1;bad tag!!">>])),
    ?assertMatch({ok, #{tags := [<<"b:1">>, <<"a:1">>, <<"b:2">>]}},
                 ocibuild_release:resolve_config(#{tag => ["b:1;a:1", "b:2"]}, #{})),
    ?assertMatch({error, {invalid_option, tags, _}}, ocibuild_nif:reference_tags([foo])).

%% Defaults and bounds live in the core; the tasks' checks and help texts read them there.
core_options_test() ->
    #{chunk_size := Chunk, min_chunk_size := Min, max_chunk_size := Max,
      max_concurrency := Jobs, max_concurrency_limit := Limit} = ocibuild_nif:options_defaults(),
    ?assertEqual({5 * 1024 * 1024, 1024 * 1024, 4096 * 1024 * 1024, 4, 64}, {Chunk, Min, Max, Jobs, Limit}),
    ?assertEqual(Chunk, ocibuild_adapter:default_chunk_size()),
    ?assertMatch({ok, #{chunk_size := Chunk}}, ocibuild_release:resolve_config(#{}, #{})),
    ?assertMatch({ok, #{chunk_size := Max}},
                 ocibuild_release:resolve_config(#{chunk_size => Max div (1024 * 1024)}, #{})),
    ?assertEqual({error, {invalid_option, chunk_size, 4097}},
                 ocibuild_release:resolve_config(#{chunk_size => 4097}, #{})),
    ?assertEqual({error, {invalid_option, chunk_size, 0}},
                 ocibuild_release:resolve_config(#{chunk_size => 0}, #{})).

%% 0.10's expand_semicolon_tags/1 is the core's expansion, without the checks.
expand_semicolon_tags_test() ->
    ?assertEqual([<<"a:1">>, <<"Bad Tag">>, <<"a:latest">>],
                 ocibuild_release:expand_semicolon_tags(<<" a:1 ;Bad Tag;; a:latest\n">>)),
    ?assertEqual([<<"a:1">>], ocibuild_release:expand_semicolon_tags("a:1")),
    ?assertEqual([], ocibuild_release:expand_semicolon_tags(<<" ; ">>)),
    ?assertEqual({ok, [<<"x">>]}, ocibuild_nif:reference_tags_expand([<<"x;">>])).
