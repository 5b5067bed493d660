%% EUnit: code written against ocibuild 0.10 runs unchanged and gets 0.10's results (issue 13).
%% Each test calls the API as the 0.10 docs (/work/shared/reference) show it; where ours
%% deliberately differs, README.md's "Differences from ocibuild 0.10" says so and the test
%% pins our behaviour instead.
-module(ocibuild_compat_tests).

-include_lib("eunit/include/eunit.hrl").

-define(R, ocibuild_release).
%% An adapter written to 0.10's behaviour: only the five required callbacks, the loose
%% config map 0.10's adapters return, and no `resolve_config' step.
-define(ADAPTER, ocibuild_compat_010_adapter).

compat_test_() ->
    {setup, fun setup/0, fun cleanup/1, fun({Root, _}) ->
        [
            {"run/3 with a 0.10 adapter's loose map saves the image", fun() -> run_loose(Root) end},
            {"run/3: strings, charlists and a platform binary", fun() -> run_strings(Root) end},
            {"run/3: bad loose values are {error, _}, never an exception", fun() -> run_errors(Root) end},
            {"run/3 passes its options to find_release/2", fun() -> run_opts(Root) end},
            {"run/3: an earlier 0.10's single `tag'", fun() -> run_single_tag(Root) end},
            {"run/3: the source annotation and the SBOM name one repository", fun() -> run_source(Root) end},
            {"build_image/3: SBOM layer, uid nil/undefined", fun() -> build_image(Root) end},
            {"build_image/3: release_path and dependencies give smart layers", fun() -> build_layers(Root) end},
            {"check_for_native_code/1 names the file", fun() -> native_code(Root) end},
            {"the 0.10 API of ocibuild, ocibuild_layer and ocibuild_layout", fun() -> image_api(Root) end},
            {"the 0.10 API of ocibuild_release", fun() -> release_api(Root) end}
        ]
    end}.

setup() ->
    load_adapter(),
    ocibuild_test_util:setup().

cleanup(State) ->
    code:purge(?ADAPTER),
    code:delete(?ADAPTER),
    ocibuild_test_util:cleanup(State).

%%% Pushing, as a 0.10 caller would, to a real registry on loopback

push_test_() ->
    {setup, fun push_setup/0, fun push_cleanup/1, fun({{Root, _}, Registry}) ->
        [
            {"ocibuild:push/3,4,5 and push_multi/4,5", fun() -> push_api(Root, Registry) end},
            {"ocibuild_release:push_image/5 and push_tarball/4", fun() -> release_push(Root, Registry) end},
            {"run/3 with a 0.10 adapter's push target", fun() -> run_push(Root, Registry) end}
        ]
    end}.

push_setup() ->
    load_adapter(),
    {Root, _} = Test = ocibuild_test_util:setup(),
    {Test, start_registry(filename:join(Root, "registry"), 3)}.

push_cleanup({Test, Registry}) ->
    stop_registry(Registry),
    cleanup(Test).

%% Debian's docker-registry (CNCF distribution 2.8) on a free loopback port, its storage under
%% `Dir'; ready once GET /v2/ answers. A port taken between picking and binding is retried.
start_registry(_Dir, 0) ->
    error(registry_did_not_start);
start_registry(Dir, Attempts) ->
    Port = free_port(),
    Config = filename:join(Dir, "config.yml"),
    ok = filelib:ensure_dir(Config),
    ok = file:write_file(Config, [
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ", Dir,
        "/storage\nhttp:\n  addr: 127.0.0.1:", integer_to_list(Port), "\n"
    ]),
    Server = open_port({spawn_executable, "/usr/bin/docker-registry"},
                       [{args, ["serve", Config]}, exit_status, stderr_to_stdout, binary]),
    {os_pid, OsPid} = erlang:port_info(Server, os_pid),
    Addr = <<"127.0.0.1:", (integer_to_binary(Port))/binary>>,
    case wait_registry(Server, Port, 300) of
        ok ->
            #{server => Server, os_pid => OsPid, addr => Addr};
        exited ->
            start_registry(Dir, Attempts - 1)
    end.

%% Every 100 ms, at most `Tries' times: the registry answers, or its process has exited.
wait_registry(_Server, _Port, 0) ->
    error(registry_did_not_answer);
wait_registry(Server, Port, Tries) ->
    receive
        {Server, {exit_status, _}} -> exited
    after 0 ->
        case v2_status(Port) of
            200 -> ok;
            _ ->
                timer:sleep(100),
                wait_registry(Server, Port, Tries - 1)
        end
    end.

v2_status(Port) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 1000) of
        {ok, S} ->
            ok = gen_tcp:send(S, <<"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n">>),
            Reply = gen_tcp:recv(S, 0, 2000),
            gen_tcp:close(S),
            case Reply of
                {ok, <<"HTTP/1.", _, " ", Code:3/binary, _/binary>>} -> binary_to_integer(Code);
                _ -> none
            end;
        {error, _} ->
            none
    end.

free_port() ->
    {ok, S} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(S),
    ok = gen_tcp:close(S),
    Port.

stop_registry(#{server := Server, os_pid := OsPid}) ->
    _ = os:cmd("kill " ++ integer_to_list(OsPid)),
    receive
        {Server, {exit_status, _}} -> ok
    after 10000 -> error({registry_did_not_stop, OsPid})
    end.

%% What the registry holds under `Ref' (`repo:tag' or `repo@digest'), read back with ocibuild:
%% an image whose base is the pushed one.
pulled(#{addr := Addr}, Ref) ->
    ocibuild:from(<<Addr/binary, "/", Ref/binary>>).

pushable(Layers) ->
    {ok, S} = ocibuild:scratch(),
    I = lists:foldl(fun(N, Acc) ->
        ocibuild:add_layer(Acc, [{<<"/app/f", (integer_to_binary(N))/binary>>, integer_to_binary(N), 8#644}])
    end, S, lists:seq(1, Layers)),
    ocibuild:entrypoint(I, [<<"/app/f1">>]).

%% The same image pushed three ways has one digest; SOURCE_DATE_EPOCH fixes its `created',
%% which otherwise is the second of each push.
push_api(Root, Registry) ->
    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", "1700000000", fun() -> push_api_epoch(Root, Registry) end).

push_api_epoch(_Root, #{addr := Reg} = Registry) ->
    I = pushable(2),
    {ok, D3} = ocibuild:push(I, Reg, <<"compat/api:3">>),
    {ok, D4} = ocibuild:push(I, Reg, <<"compat/api:4">>, #{}),
    {ok, D5} = ocibuild:push(I, Reg, <<"compat/api:5">>, #{}, #{chunk_size => 5 * 1024 * 1024}),
    ?assertEqual([D3, D3], [D4, D5]),
    ?assertMatch({ok, #{base := #{layers := [_, _]}}}, pulled(Registry, <<"compat/api@", D3/binary>>)),
    {ok, Platforms} = ocibuild:parse_platforms(<<"linux/amd64,linux/arm64">>),
    Images = [I#{platform := P} || P <- Platforms],
    {ok, M4} = ocibuild:push_multi(Images, Reg, <<"compat/multi:4">>, #{}),
    {ok, M5} = ocibuild:push_multi(Images, Reg, <<"compat/multi:5">>, #{}, #{}),
    ?assertEqual(M4, M5),
    ?assertMatch({ok, [_, _]}, ocibuild:from(<<Reg/binary, "/compat/multi:4">>, #{}, #{platforms => Platforms})).

release_push(Root, #{addr := Reg} = Registry) ->
    I = pushable(1),
    {ok, Digest} = ?R:push_image(I, Reg, <<"compat/release:1">>, #{}, #{}),
    ?assertMatch({ok, _}, pulled(Registry, <<"compat/release@", Digest/binary>>)),
    Tarball = filename:join(Root, "push_tarball.tar.gz"),
    ok = ?R:save_image(I, Tarball, #{tag => <<"compat/tarball:1">>}),
    State = #{test => self()},
    ?assertEqual({ok, State}, ?R:push_tarball(?ADAPTER, State, Tarball, #{registry => Reg})),
    ?assertEqual({ok, State}, ?R:push_tarball(?ADAPTER, State, Tarball,
                                              #{registry => Reg, tags => [<<"compat/tarball:2;compat/tarball:3">>],
                                                chunk_size => 5 * 1024 * 1024})),
    [?assertMatch({ok, #{base := #{layers := [_]}}}, pulled(Registry, <<"compat/tarball:", T/binary>>))
     || T <- [<<"1">>, <<"2">>, <<"3">>]].

run_push(Root, #{addr := Reg} = Registry) ->
    Loose = (loose_config(undefined))#{push := Reg, tags := [<<"compat/run:1.0.0">>, <<"compat/run:latest">>]},
    ?assertMatch({ok, _}, ?R:run(?ADAPTER, state(Root, "push", Loose), #{})),
    {ok, #{base := #{layers := Layers}}} = pulled(Registry, <<"compat/run:1.0.0">>),
    ?assertEqual(2, length(Layers)),
    ?assertMatch({ok, _}, pulled(Registry, <<"compat/run:latest">>)).

%%% The 0.10 adapter, compiled from source by the test

adapter_source() ->
    "-module(ocibuild_compat_010_adapter).\n"
    "-behaviour(ocibuild_adapter).\n"
    "-export([get_config/1, find_release/2, info/2, console/2, error/2]).\n"
    "get_config(#{config := Config}) -> Config.\n"
    "find_release(#{release := {Name, Path}, test := Test}, Opts) ->\n"
    "    Test ! {find_release_opts, Opts},\n"
    "    {ok, Name, Path}.\n"
    "info(Format, Args) -> io:format(user, Format ++ \"~n\", Args).\n"
    "console(Format, Args) -> io:format(user, Format ++ \"~n\", Args).\n"
    "error(Format, Args) -> io:format(user, Format ++ \"~n\", Args).\n".

load_adapter() ->
    {ok, Tokens, _} = erl_scan:string(adapter_source()),
    Forms = [begin {ok, F} = erl_parse:parse_form(T), F end || T <- split_forms(Tokens, [])],
    {ok, ?ADAPTER, Beam} = compile:forms(Forms, [return_errors]),
    {module, ?ADAPTER} = code:load_binary(?ADAPTER, "ocibuild_compat_010_adapter.erl", Beam).

split_forms([], []) -> [];
split_forms([{dot, _} = Dot | Rest], Acc) -> [lists:reverse([Dot | Acc]) | split_forms(Rest, [])];
split_forms([Token | Rest], Acc) -> split_forms(Rest, [Token | Acc]).

%% The map `ocibuild_mix'/`ocibuild_rebar3' 0.10 returned, with Elixir's nils and CI's empty
%% strings for what is not set, and keys of the adapter's own.
loose_config(Out) ->
    #{
        base_image => <<"scratch">>,
        workdir => <<"/app">>,
        env => #{<<"LANG">> => <<"C.UTF-8">>},
        expose => [8080],
        labels => #{<<"team">> => <<"core">>},
        cmd => nil,
        description => <<"compat test">>,
        tags => [<<"compat:1.0.0">>],
        output => Out,
        push => <<>>,
        chunk_size => 5242880,
        platform => <<>>,
        uid => nil,
        app_version => <<"1.0.0">>,
        vcs_annotations => false,
        annotations => #{},
        sbom => nil,
        sign_key => undefined,
        compression => gzip,
        release_name => myapp,
        release_path => <<"/ignored">>,
        releases_config => []
    }.

state(Root, Name, Config) ->
    #{config => Config, release => {<<"myapp">>, ocibuild_test_util:small_release(Root, Name)}, test => self()}.

%% The single image of a saved tarball: {Manifest, Config, LayoutDir}.
saved_image(Root, Tarball) ->
    Dir = ocibuild_test_util:extract_tarball(Tarball, ocibuild_test_util:tmp_dir(filename:join(Root, "x"))),
    {_Index, [{_Desc, Manifest, Config}]} = ocibuild_test_util:validate_layout(Dir),
    {Manifest, Config, Dir}.

layer_files(Dir, Layer) ->
    Blob = ocibuild_test_util:read_blob(Dir, maps:get(<<"digest">>, Layer)),
    [Name || {Name, _} <- ocibuild_test_util:untar_gz(Blob)].

%%% run/3

run_loose(Root) ->
    Out = list_to_binary(filename:join(Root, "loose.tar.gz")),
    State = state(Root, "loose", loose_config(Out)),
    ?assertEqual({ok, State}, ?R:run(?ADAPTER, State, #{})),
    {Manifest, Config, Dir} = saved_image(Root, Out),
    %% One release layer (no get_dependencies/1) and the SBOM, once.
    Layers = maps:get(<<"layers">>, Manifest),
    ?assertEqual(2, length(Layers)),
    ?assertEqual([<<"sbom.spdx.json">>], [string:trim(N, leading, "/") || N <- layer_files(Dir, lists:last(Layers))]),
    #{<<"config">> := C} = Config,
    ?assertEqual(<<"65534">>, maps:get(<<"User">>, C)),
    ?assertEqual([<<"/app/bin/myapp">>, <<"foreground">>], maps:get(<<"Entrypoint">>, C)),
    ?assertEqual([<<"LANG=C.UTF-8">>], maps:get(<<"Env">>, C)),
    ?assertEqual(#{<<"8080/tcp">> => #{}}, maps:get(<<"ExposedPorts">>, C)),
    ?assertEqual(#{<<"team">> => <<"core">>}, maps:get(<<"Labels">>, C)),
    Annotations = maps:get(<<"annotations">>, Manifest),
    ?assertEqual(<<"1.0.0">>, maps:get(<<"org.opencontainers.image.version">>, Annotations)),
    ?assertEqual(<<"compat test">>, maps:get(<<"org.opencontainers.image.description">>, Annotations)),
    ?assertNot(maps:is_key(<<"org.opencontainers.image.source">>, Annotations)).

%% Strings where 0.10 took binaries, a charlist uid, and one platform given as a binary.
run_strings(Root) ->
    Out = filename:join(Root, "strings.tar.gz"),
    #{architecture := Arch} = ocibuild_test_util:host_platform(),
    Loose = (loose_config(Out))#{
        base_image := "scratch",
        workdir := "/srv/app",
        tags := ["compat:2"],
        cmd := "start",
        uid := "1000",
        platform := <<"linux/", Arch/binary>>,
        env := #{"PORT" => "4000"},
        push := nil
    },
    ?assertMatch({ok, _}, ?R:run(?ADAPTER, state(Root, "strings", Loose), #{})),
    {Manifest, #{<<"config">> := C} = Config, _Dir} = saved_image(Root, Out),
    ?assertEqual(2, length(maps:get(<<"layers">>, Manifest))),
    ?assertEqual(<<"1000">>, maps:get(<<"User">>, C)),
    ?assertEqual([<<"/srv/app/bin/myapp">>, <<"start">>], maps:get(<<"Entrypoint">>, C)),
    ?assertEqual(<<"/srv/app">>, maps:get(<<"WorkingDir">>, C)),
    ?assertEqual(Arch, maps:get(<<"architecture">>, Config)).

run_errors(Root) ->
    Out = filename:join(Root, "errors.tar.gz"),
    Run = fun(Changes) ->
        ?R:run(?ADAPTER, state(Root, "errors", maps:merge(loose_config(Out), Changes)), #{})
    end,
    %% 0.10's terms.
    ?assertEqual({error, missing_tag}, Run(#{tags => []})),
    ?assertEqual({error, missing_tag}, Run(#{tags => nil})),
    ?assertMatch({error, {invalid_uid, -1, _}}, Run(#{uid => -1})),
    ?assertMatch({error, {invalid_uid, "root", _}}, Run(#{uid => "root"})),
    ?assertMatch({error, {invalid_created_timestamp, {negative_timestamp, <<"-1">>}}},
                 Run(#{annotations => #{<<"org.opencontainers.image.created">> => <<"-1">>}})),
    ?assertMatch({error, {invalid_created_timestamp, {invalid_format, <<"soon">>}}},
                 Run(#{annotations => #{<<"org.opencontainers.image.created">> => <<"soon">>}})),
    ?assertEqual({error, {protected_annotation, <<"org.opencontainers.image.source">>}},
                 Run(#{annotations => #{<<"org.opencontainers.image.source">> => <<"x">>}})),
    %% Ours: the checks the tasks' flags get.
    ?assertEqual({error, {invalid_platform, <<"linux">>}}, Run(#{platform => <<"linux">>})),
    ?assertEqual({error, {invalid_option, chunk_size, 0}}, Run(#{chunk_size => 0})),
    ?assertEqual({error, {invalid_option, compression, <<"brotli">>}}, Run(#{compression => <<"brotli">>})),
    ?assertEqual({error, {invalid_option, workdir, <<"app">>}}, Run(#{workdir => <<"app">>})),
    %% A builder's refusal (an environment variable name with `=') comes back too.
    ?assertMatch({error, {invalid_value, env, <<"A=B">>, equals_in_name}}, Run(#{env => #{<<"A=B">> => <<"1">>}})),
    ?assertMatch({error, {invalid_option, config, not_a_map}},
                 ?R:run(?ADAPTER, #{config => not_a_map, test => self()}, #{})),
    ?assertNot(filelib:is_regular(Out)).

run_single_tag(Root) ->
    Out = filename:join(Root, "single-tag.tar.gz"),
    Loose = maps:remove(tags, (loose_config(Out))#{tag => <<"compat:single">>}),
    ?assertMatch({ok, _}, ?R:run(?ADAPTER, state(Root, "single-tag", Loose), #{})),
    {ok, #{tag := Tag, cleanup := Cleanup}} = ocibuild_layout:load_tarball_for_push(Out),
    ok = Cleanup(),
    ?assertEqual(<<"compat:single">>, Tag).

run_opts(Root) ->
    flush_find_release(),
    Out = filename:join(Root, "opts.tar.gz"),
    {ok, _} = ?R:run(?ADAPTER, state(Root, "opts", loose_config(Out)), #{cmd => "console", mine => 1}),
    receive
        {find_release_opts, Opts} -> ?assertMatch(#{mine := 1, cmd := "console"}, Opts)
    after 0 -> ?assert(false)
    end,
    {_Manifest, #{<<"config">> := C}, _Dir} = saved_image(Root, Out),
    ?assertEqual([<<"/app/bin/myapp">>, <<"console">>], maps:get(<<"Entrypoint">>, C)).

%% A GitHub Actions build: the annotation has no `.git' (as 0.10), and the SBOM's app is
%% downloadable from the same URL at the same commit.
run_source(Root) ->
    Out = filename:join(Root, "source.tar.gz"),
    Sha = <<"0123456789abcdef0123456789abcdef01234567">>,
    Env = [{"GITHUB_SERVER_URL", "https://github.com"}, {"GITHUB_REPOSITORY", "acme/hello"},
           {"GITHUB_SHA", binary_to_list(Sha)}],
    Run = fun() ->
        ?R:run(?ADAPTER, state(Root, "source", (loose_config(Out))#{vcs_annotations := true}), #{})
    end,
    ?assertMatch({ok, _}, with_envs(Env, Run)),
    {Manifest, _Config, Dir} = saved_image(Root, Out),
    Annotations = maps:get(<<"annotations">>, Manifest),
    ?assertEqual(<<"https://github.com/acme/hello">>, maps:get(<<"org.opencontainers.image.source">>, Annotations)),
    ?assertEqual(Sha, maps:get(<<"org.opencontainers.image.revision">>, Annotations)),
    Sbom = sbom_of(Dir, lists:last(maps:get(<<"layers">>, Manifest))),
    [App] = [P || P <- maps:get(<<"packages">>, Sbom), maps:get(<<"name">>, P) =:= <<"myapp">>],
    ?assertEqual(<<"git+https://github.com/acme/hello@", Sha/binary>>, maps:get(<<"downloadLocation">>, App)).

with_envs([], Fun) -> Fun();
with_envs([{Name, Value} | Rest], Fun) ->
    ocibuild_test_util:with_env(Name, Value, fun() -> with_envs(Rest, Fun) end).

sbom_of(Dir, Layer) ->
    Blob = ocibuild_test_util:read_blob(Dir, maps:get(<<"digest">>, Layer)),
    [{_Name, Json}] = ocibuild_test_util:untar_gz(Blob),
    ocibuild_test_util:json(Json).

flush_find_release() ->
    receive
        {find_release_opts, _} -> flush_find_release()
    after 0 -> ok
    end.

%%% build_image/3

build_image(_Root) ->
    Files = [{<<"/app/bin/myapp">>, <<"#!/bin/sh\n">>, 8#755}],
    {ok, Image} = ?R:build_image(<<"scratch">>, Files, #{release_name => <<"myapp">>, uid => nil}),
    %% The release layer, then the SBOM layer, as 0.10.
    ?assertMatch(#{layers := [_, #{layer_type := sbom}]}, Image),
    ?assertMatch(#{config := #{user := <<"65534">>, entrypoint := [<<"/app/bin/myapp">>, <<"foreground">>]}},
                 Image),
    {ok, Undefined} = ?R:build_image(<<"scratch">>, Files, #{release_name => myapp, uid => undefined}),
    ?assertMatch(#{config := #{user := <<"65534">>}}, Undefined),
    {ok, Root0} = ?R:build_image(<<"scratch">>, Files, #{uid => 0}),
    ?assertMatch(#{config := #{user := <<"0">>}}, Root0),
    {ok, Two} = ?R:build_image(<<"scratch">>, Files),
    ?assertEqual(2, length(maps:get(layers, Two))),
    ?assertMatch({error, {invalid_uid, -5, _}}, ?R:build_image(<<"scratch">>, Files, #{uid => -5})),
    ?assertMatch({error, {invalid_value, env, <<"A=B">>, equals_in_name}},
                 ?R:build_image(<<"scratch">>, Files, #{env => #{<<"A=B">> => <<"1">>}})).

build_layers(Root) ->
    Rel = ocibuild_test_util:small_release(Root, "layered"),
    ocibuild_test_util:write_file(filename:join([Rel, "lib", "jason-1.4.1", "ebin", "jason.beam"]), <<"j">>, 8#644),
    {ok, Files} = ?R:collect_release_files(Rel),
    Deps = [#{name => <<"jason">>, version => <<"1.4.1">>, source => <<"hex">>}],
    {ok, Image} = ?R:build_image(<<"scratch">>, Files, #{
        release_name => <<"myapp">>, release_path => Rel, dependencies => Deps, app_version => <<"1.0.0">>
    }),
    ?assertEqual([deps, app, sbom], [T || #{layer_type := T} <- maps:get(layers, Image)]).

%%% Small functions

native_code(Root) ->
    Rel = ocibuild_test_util:small_release(Root, "nif"),
    ?assertEqual({ok, []}, ?R:check_for_native_code(Rel)),
    ocibuild_test_util:write_file(filename:join([Rel, "lib", "crypto-5.1", "priv", "lib", "crypto.so"]), <<"elf">>, 8#755),
    ?assertEqual({warning, [#{app => <<"crypto">>, file => <<"crypto.so">>, extension => <<".so">>,
                              path => <<"lib/crypto-5.1/priv/lib/crypto.so">>}]},
                 ?R:check_for_native_code(Rel)).

validate_annotations_test_() ->
    V = fun(A) -> ?R:validate_annotations(A) end,
    C = <<"org.opencontainers.image.created">>,
    [
        ?_assertEqual({ok, #{<<"custom.key">> => <<"value">>}}, V(#{<<"custom.key">> => <<"value">>})),
        ?_assertEqual({error, {protected_annotation, <<"org.opencontainers.image.source">>}},
                      V(#{<<"org.opencontainers.image.source">> => <<"evil">>})),
        ?_assertMatch({error, {invalid_annotation, null_byte, _}}, V(#{<<"bad\0key">> => <<"value">>})),
        ?_assertEqual({ok, #{C => <<"2024-01-01T00:00:00Z">>}}, V(#{C => <<"1704067200">>})),
        ?_assertEqual({error, {invalid_created_timestamp, {negative_timestamp, <<"-1">>}}}, V(#{C => <<"-1">>})),
        ?_assertEqual({error, {invalid_created_timestamp, {invalid_format, <<"soon">>}}}, V(#{C => <<"soon">>})),
        %% Ours keeps an offset as given (0.10 converted it to Z).
        ?_assertEqual({ok, #{C => <<"2024-01-01T01:00:00+01:00">>}}, V(#{C => <<"2024-01-01T01:00:00+01:00">>}))
    ].

paths_and_sizes_test_() ->
    [
        ?_assertEqual(<<"/app/bin/myapp">>, ?R:to_container_path("bin/myapp")),
        ?_assertEqual(<<"/app/bin/myapp">>, ?R:to_container_path(<<"bin/myapp">>)),
        ?_assertEqual(<<"/app/lib/a/b">>, ?R:to_container_path("lib\\a\\b")),
        ?_assertEqual(<<"/srv/x/bin/y">>, ?R:to_container_path("bin/y", <<"/srv/x/">>)),
        ?_assertEqual(<<"/bin/y">>, ?R:to_container_path("./bin/y", "/")),
        ?_assertEqual("lib/x", ?R:make_relative_path("/r/rel", "/r/rel/lib/x")),
        ?_assertEqual(<<"lib/x">>, ?R:make_relative_path(<<"/r/rel">>, <<"/r/rel/lib/x">>)),
        ?_assertEqual(<<"lib/x">>, ?R:make_relative_path("/r/rel", <<"/r/rel/lib/x">>)),
        ?_assertEqual(<<"12 B">>, iolist_to_binary(?R:format_bytes(12))),
        ?_assertEqual(<<"1.50 KB">>, iolist_to_binary(?R:format_bytes(1536))),
        ?_assertEqual(<<"5.00 MB">>, iolist_to_binary(?R:format_bytes(5 * 1024 * 1024))),
        ?_assertEqual(<<"1.00 GB">>, iolist_to_binary(?R:format_bytes(1 bsl 30)))
    ].

source_annotation_test_() ->
    N = fun ocibuild_vcs:normalize_url/1,
    [
        ?_assertEqual({ok, <<"https://github.com/org/repo">>}, N("git@github.com:org/repo.git")),
        ?_assertEqual({ok, <<"https://github.com/org/repo">>}, N("https://github.com/org/repo.git")),
        ?_assertEqual({ok, <<"https://github.com/org/repo">>}, N("https://github.com/org/repo"))
    ].

empty_platform_test_() ->
    [
        ?_assertEqual({ok, []}, ocibuild:parse_platforms(<<>>)),
        ?_assertEqual({ok, []}, ocibuild:parse_platforms("")),
        ?_assertMatch({ok, #{platforms := []}}, ?R:resolve_config(#{platform => ""}, #{})),
        ?_assertMatch({ok, #{platforms := []}}, ?R:resolve_config(#{}, #{platform => <<>>}))
    ].

adapter_helpers_test_() ->
    A = ocibuild_adapter,
    [
        ?_assertEqual(5 * 1024 * 1024, A:default_chunk_size()),
        ?_assertEqual(5, A:default_chunk_size_mb()),
        ?_assertEqual(1024 * 1024, A:min_chunk_size()),
        ?_assertEqual(1, A:min_chunk_size_mb()),
        ?_assertEqual(100 * 1024 * 1024, A:max_chunk_size()),
        ?_assertEqual(100, A:max_chunk_size_mb()),
        %% The resolved default is 0.10's.
        ?_assertMatch({ok, #{chunk_size := 5242880}}, ?R:resolve_config(#{}, #{})),
        ?_assertEqual(undefined, A:get_app_version(ocibuild_release, state)),
        ?_assertEqual([], A:get_dependencies(ocibuild_release, state)),
        ?_assertEqual(<<"1.0.0">>, A:get_app_version(ocibuild_test_adapter, #{version => <<"1.0.0">>})),
        ?_assertEqual([], A:get_dependencies(ocibuild_test_adapter, #{deps => {error, enoent}})),
        ?_assertEqual([#{name => <<"a">>, version => <<"1">>, source => <<"hex">>}],
                      A:get_dependencies(ocibuild_test_adapter,
                                         #{deps => {ok, [#{name => <<"a">>, version => <<"1">>, source => <<"hex">>}]}}))
    ].

%%% Every documented function, called as a 0.10 caller would

image_api(Root) ->
    {ok, S} = ocibuild:scratch(),
    I1 = ocibuild:add_layer(S, [{<<"/app/myapp">>, <<"bin">>, 8#755}, {<<"/app/config.json">>, <<"{}">>, 8#644}]),
    I2 = ocibuild:add_layer(I1, [{<<"/app/extra">>, <<"x">>, 8#644}], #{layer_type => app, compression => gzip}),
    I3 = ocibuild:copy(I2, [{<<"VERSION">>, <<"1.0\n">>}], <<"/app">>),
    I4 = ocibuild:entrypoint(I3, [<<"/app/myapp">>, <<"start">>]),
    I5 = ocibuild:cmd(I4, [<<"--port">>, <<"8080">>]),
    I6 = ocibuild:env(I5, #{<<"MIX_ENV">> => <<"prod">>}),
    I7 = ocibuild:expose(ocibuild:workdir(I6, <<"/app">>), 8080),
    I8 = ocibuild:annotation(ocibuild:label(ocibuild:user(I7, <<"65534">>), <<"k">>, <<"v">>),
                             <<"org.opencontainers.image.description">>, <<"d">>),
    ?assertEqual(3, length(maps:get(layers, I8))),
    ?assertMatch(#{config := #{entrypoint := [_, _], cmd := [_, _], workdir := <<"/app">>,
                               user := <<"65534">>, labels := #{<<"k">> := <<"v">>}},
                   annotations := #{<<"org.opencontainers.image.description">> := <<"d">>}}, I8),
    Layout = filename:join(Root, "api-layout"),
    ?assertEqual(ok, ocibuild:export(I8, Layout)),
    {_, [_]} = ocibuild_test_util:validate_layout(Layout),
    Tar = filename:join(Root, "api.tar.gz"),
    ?assertEqual(ok, ocibuild:save(I8, Tar)),
    ?assertEqual(ok, ocibuild:save(I8, Tar, #{tag => <<"myapp:1.0">>})),
    ?assertEqual(ok, ocibuild:save(I8, filename:join(Root, "api-oci.tar.gz"), #{tag => <<"myapp:1.0">>, format => oci})),
    %% from/1,2,3 on the saved image (no network in EUnit), with 0.10's platform maps.
    TarRef = <<"tar://", (list_to_binary(Tar))/binary>>,
    #{architecture := Arch} = Host = ocibuild_test_util:host_platform(),
    ?assertMatch({ok, #{base := #{}}}, ocibuild:from(TarRef)),
    ?assertMatch({ok, #{base := #{}}}, ocibuild:from(TarRef, #{})),
    ?assertMatch({ok, #{platform := #{architecture := Arch}}}, ocibuild:from(TarRef, #{}, #{platform => Host})),
    ?assertMatch({ok, [#{platform := #{architecture := Arch}}]},
                 ocibuild:from(TarRef, #{}, #{platforms => [Host]})),
    ?assertEqual({ok, #{os => <<"linux">>, architecture => <<"arm64">>, variant => <<"v8">>}},
                 ocibuild:parse_platform(<<"linux/arm64/v8">>)),
    ?assertMatch({ok, [#{architecture := <<"amd64">>}, #{architecture := <<"arm64">>}]},
                 ocibuild:parse_platforms(<<"linux/amd64,linux/arm64">>)),
    %% ocibuild_layer: a layer map with the blob's path where 0.10 held `data'.
    {ok, L1} = ocibuild_layer:create([{<<"/app/a">>, <<"a">>, 8#644}]),
    {ok, L2} = ocibuild_layer:create([{<<"/app/a">>, <<"a">>, 8#644}],
                                     #{mtime => 1700000000, layer_type => app, compression => gzip}),
    [?assertMatch(#{media_type := _, digest := <<"sha256:", _/binary>>, diff_id := <<"sha256:", _/binary>>,
                    size := _, blob := _}, L) || L <- [L1, L2]],
    ?assertEqual(<<"application/vnd.oci.image.layer.v1.tar+gzip">>, maps:get(media_type, L2)),
    %% ocibuild_layout.
    ?assertEqual(ok, ocibuild_layout:export_directory(I8, filename:join(Root, "api-layout2"))),
    ?assertEqual(ok, ocibuild_layout:save_tarball(I8, filename:join(Root, "api2.tar.gz"))),
    ?assertEqual(ok, ocibuild_layout:save_tarball(I8, filename:join(Root, "api3.tar.gz"), #{tag => <<"myapp:1.0">>})),
    {ok, #{images := [_], is_multi_platform := false, cleanup := Cleanup}} =
        ocibuild_layout:load_tarball_for_push(filename:join(Root, "api3.tar.gz")),
    ok = Cleanup(),
    {ok, #{images := [_], cleanup := Cleanup2}} =
        ocibuild_layout:load_tarball_for_push(filename:join(Root, "api3.tar.gz"), #{memory_threshold => 1024}),
    ok = Cleanup2(),
    %% A list of platform images saves as one index, through save/3 and save_tarball/3.
    {ok, Platforms} = ocibuild:parse_platforms(<<"linux/amd64,linux/arm64">>),
    Multi = [I8#{platform := P} || P <- Platforms],
    MultiTar = filename:join(Root, "api-multi.tar.gz"),
    ?assertEqual(ok, ocibuild:save(Multi, MultiTar, #{tag => <<"myapp:multi">>})),
    ?assertEqual(ok, ocibuild_layout:save_tarball(Multi, filename:join(Root, "api-multi2.tar.gz"),
                                                  #{tag => <<"myapp:multi">>})),
    {ok, #{images := [_, _], is_multi_platform := true, cleanup := Cleanup3}} =
        ocibuild_layout:load_tarball_for_push(MultiTar),
    ok = Cleanup3().

release_api(Root) ->
    Rel = ocibuild_test_util:small_release(Root, "api-rel"),
    ocibuild_test_util:write_file(filename:join([Rel, "lib", "jason-1.4.1", "ebin", "jason.beam"]), <<"j">>, 8#644),
    {ok, Files} = ?R:collect_release_files(Rel),
    {ok, Files} = ?R:collect_release_files(Rel, #{workdir => <<"/app">>}),
    ?assert(lists:keymember(<<"/app/bin/myapp">>, 1, Files)),
    Deps = [#{name => <<"jason">>, version => <<"1.4.1">>, source => <<"hex">>}],
    {_Erts, [_], _App} = ?R:partition_files_by_layer(Files, Deps, <<"myapp">>, <<"/app">>, false),
    ?assertEqual(dep, ?R:classify_file_layer(<<"/app/lib/jason-1.4.1/ebin/jason.beam">>,
                                             sets:from_list([<<"jason">>]), <<"myapp">>, <<"/app">>, false)),
    {ok, Scratch} = ocibuild:scratch(),
    #{layers := [_, _]} = ?R:build_release_layers(Scratch, Files, Rel, Deps, #{}),
    ?assertNot(?R:has_bundled_erts(Rel)),
    ?assertEqual(ok, ?R:validate_multiplatform(Rel, [ocibuild_test_util:host_platform()])),
    ?assertEqual([<<"myapp:v1">>, <<"myapp:latest">>], ?R:expand_semicolon_tags(<<"myapp:v1;myapp:latest">>)),
    ?assertEqual([<<"myapp:1.0.0">>], ?R:get_tags([], [], <<"myapp">>, <<"1.0.0">>)),
    ?assertEqual({<<"ghcr.io/org/app">>, <<"v1">>}, ?R:parse_tag(<<"ghcr.io/org/app:v1">>)),
    ?assertEqual({ok, {<<"key">>, <<"value">>}}, ?R:parse_kv_arg("key=value")),
    ?assertEqual(#{<<"key">> => <<"value">>}, ?R:normalize_kv_map(#{key => value})),
    ?assertEqual(<<"abc">>, ?R:to_binary("abc")),
    ?assertEqual(8#755, ?R:get_file_mode(filename:join([Rel, "bin", "myapp"]))),
    ?assert(?R:is_tarball_path("x.tar.zst")),
    ?assert(?R:is_nil_or_undefined(nil)),
    ?assert(is_boolean(?R:is_tty())),
    ?assert(is_map(?R:get_push_auth())),
    ?assert(is_map(?R:get_pull_auth())),
    ?assert(is_function(?R:make_progress_callback(), 1)),
    _ = ?R:start_progress_coordinator(),
    ?assertEqual(ok, ?R:clear_progress_line()),
    ?assertEqual(ok, ?R:stop_progress_coordinator()),
    ?assertEqual(ok, ?R:stop_httpc()),
    ?assertMatch(<<"[", _/binary>>, iolist_to_binary(?R:format_progress(1, 2))),
    {ok, Image} = ?R:build_image(<<"scratch">>, Files, #{release_name => <<"myapp">>}),
    Auto = ?R:build_auto_annotations(Image, Rel, #{vcs_annotations => false, app_version => <<"1.0.0">>}),
    ?assertMatch(#{<<"org.opencontainers.image.version">> := <<"1.0.0">>,
                   <<"org.opencontainers.image.created">> := _}, Auto),
    Out = filename:join(Root, "save_image.tar.gz"),
    ?assertEqual(ok, ?R:save_image(Image, Out, #{tag => <<"myapp:1.0.0">>})),
    %% push_tarball/4 without a registry: the error, not an exception.
    ?assertMatch({error, _}, ?R:push_tarball(?ADAPTER, #{}, Out, #{})).
