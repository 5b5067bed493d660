%% @doc No public function raises, exits or hangs on a bad argument.
%%
%% Every exported function of the public modules is listed in `specs/0' with a kind for each
%% argument (which says how to build a valid value and which values are certainly wrong) and
%% a contract (which results are a success, which a refusal). Each function is called with
%% argument lists drawn from a pool of junk (atoms, huge and negative integers, floats,
%% improper lists, deep junk, NUL bytes, invalid UTF-8, maps of the wrong shape, pids, refs,
%% funs of the wrong arity, tuples, 300 KB binaries) by a seeded `rand', both all junk and
%% valid but for ONE position, so each argument check is reached. Each call runs in its own
%% process, bounded in time. A call fails the suite if it raises, exits, hangs, returns
%% something its contract does not allow, or succeeds with an argument that is certainly
%% wrong. A new export without a spec fails `every_export_has_a_spec_test'.
%%
%% Nothing leaves the machine: registries are a loopback listener answering 404, bases are
%% `tar://' files, and junk in a position that names a registry or a base is never text that
%% could name a real host. Everything is written under a temp directory (the current
%% directory, blob store and TMPDIR during the run), removed at the end.
-module(ocibuild_api_fuzz_tests).

-include_lib("eunit/include/eunit.hrl").

-define(SEED, {20261127, 1505, 12}).
-define(CALL_TIMEOUT_MS, 10000).
%% Calls per function with every argument junk, and per argument position with only it junk.
-define(ALL_JUNK_CALLS, 30).
-define(ONE_JUNK_CALLS, 60).

-define(MODULES, [ocibuild, ocibuild_layer, ocibuild_layout, ocibuild_registry, ocibuild_release,
                  ocibuild_adapter, ocibuild_local_base, ocibuild_rebar3]).

%% Exports that are not API for callers: the rebar3 plugin's entry points take rebar3's
%% state, its adapter callbacks the state `ocibuild_release:run/3' hands them (and log through
%% rebar3, which exists only inside rebar3), its pure helpers are exported for its tests;
%% behaviour_info/1 is generated for the adapter behaviour.
-define(NOT_FUZZED, [{ocibuild, init, 1}, {ocibuild_adapter, behaviour_info, 1},
                     {ocibuild_rebar3, init, 1}, {ocibuild_rebar3, do, 1},
                     {ocibuild_rebar3, get_config, 1}, {ocibuild_rebar3, find_release, 2},
                     {ocibuild_rebar3, info, 2}, {ocibuild_rebar3, console, 2},
                     {ocibuild_rebar3, error, 2}, {ocibuild_rebar3, get_app_version, 1},
                     {ocibuild_rebar3, get_dependencies, 1}, {ocibuild_rebar3, cli, 1},
                     {ocibuild_rebar3, project, 1}, {ocibuild_rebar3, read_lock, 1},
                     {ocibuild_rebar3, relx_release, 2}, {ocibuild_rebar3, description, 0}]).

%%% The specs: {Module, Function, [ArgKind], Contract}

specs() ->
    [
        %% ocibuild
        {ocibuild, scratch, [], ok_tuple},
        {ocibuild, from, [base_ref], ok_tuple},
        {ocibuild, from, [base_ref, auth], ok_tuple},
        {ocibuild, from, [base_ref, auth, from_opts], ok_tuple},
        {ocibuild, push, [image, registry, repo_tag], ok_tuple},
        {ocibuild, push, [image, registry, repo_tag, auth], ok_tuple},
        {ocibuild, push, [image, registry, repo_tag, auth, push_opts], ok_tuple},
        {ocibuild, push_multi, [platform_images, registry, repo_tag, auth], ok_tuple},
        {ocibuild, push_multi, [platform_images, registry, repo_tag, auth, push_opts], ok_tuple},
        {ocibuild, add_layer, [image, files], image},
        {ocibuild, add_layer, [image, files, layer_opts], image},
        {ocibuild, copy, [image, copy_files, text], image},
        {ocibuild, entrypoint, [image, text_list], image},
        {ocibuild, cmd, [image, text_list], image},
        {ocibuild, env, [image, env_map], image},
        {ocibuild, workdir, [image, text], image},
        {ocibuild, expose, [image, port], image},
        {ocibuild, label, [image, text, text], image},
        {ocibuild, user, [image, text], image},
        {ocibuild, annotation, [image, text, text], image},
        {ocibuild, export, [images, out_dir], ok_atom},
        {ocibuild, save, [images, out_file], ok_atom},
        {ocibuild, save, [images, out_file, save_opts], ok_atom},
        {ocibuild, parse_platform, [text_platform], ok_tuple},
        {ocibuild, parse_platforms, [text_platforms], ok_tuple},
        {ocibuild, verify, [registry_ref, auth, verify_opts], ok_tuple},
        %% ocibuild_layer
        {ocibuild_layer, create, [files], ok_tuple},
        {ocibuild_layer, create, [files, layer_opts], ok_tuple},
        {ocibuild_layer, nif_options, [layer_opts], ok_tuple},
        %% ocibuild_layout
        {ocibuild_layout, export_directory, [images, out_dir], ok_atom},
        {ocibuild_layout, save_tarball, [images, out_file], ok_atom},
        {ocibuild_layout, save_tarball, [images, out_file, save_opts], ok_atom},
        {ocibuild_layout, load_tarball_for_push, [tarball], loaded},
        {ocibuild_layout, load_tarball_for_push, [tarball, load_opts], loaded},
        {ocibuild_layout, push_reference, [loaded], binary_or_undefined},
        %% ocibuild_registry
        {ocibuild_registry, pull, [registry_ref, auth, from_opts], ok_tuple},
        {ocibuild_registry, nif_images, [image_list], list},
        {ocibuild_registry, sink_options, [], map},
        {ocibuild_registry, push, [image_list, registry, repo_tag, auth, push_opts], ok_tuple},
        {ocibuild_registry, push_loaded, [loaded, registry, repo_tag_or_undefined, auth, push_opts],
         ok_tuple},
        {ocibuild_registry, check_auth, [auth], ok_tuple},
        {ocibuild_registry, check_push, [registry, repo_tag, auth], ok_atom},
        {ocibuild_registry, progress_option, [from_opts], ok_tuple},
        {ocibuild_registry, platforms, [from_opts], ok_tuple},
        %% ocibuild_release (the 0.10 API and ours)
        {ocibuild_release, run, [adapter, adapter_state, run_opts], ok_tuple},
        {ocibuild_release, resolve_config, [cli, project], ok_tuple},
        {ocibuild_release, format_error, [reason], chardata},
        {ocibuild_release, build_image, [base_text, files], ok_tuple},
        {ocibuild_release, build_image, [base_text, files, build_opts], ok_tuple},
        {ocibuild_release, build_release_layers, [image, files, release_path_or_undefined,
                                                  deps_or_undefined, layer_opts], image},
        {ocibuild_release, collect_release_files, [release_dir], ok_tuple},
        {ocibuild_release, collect_release_files, [release_dir, workdir_opts], ok_tuple},
        {ocibuild_release, partition_files_by_layer, [files, deps, text, workdir, boolean],
         partition},
        {ocibuild_release, classify_file_layer, [text, dep_set, text, workdir, boolean], layer_class},
        {ocibuild_release, check_for_native_code, [release_dir], native_code},
        {ocibuild_release, has_bundled_erts, [release_dir], predicate},
        {ocibuild_release, validate_multiplatform, [release_dir, platform_list], ok_atom},
        {ocibuild_release, get_tags, [text_list, text_list, scalar, scalar], list},
        {ocibuild_release, parse_tag, [text], tag_pair},
        {ocibuild_release, expand_semicolon_tags, [text], list},
        {ocibuild_release, get_push_auth, [], map},
        {ocibuild_release, get_pull_auth, [], map},
        {ocibuild_release, push_image, [image, registry, repo_tag, auth, push_opts], ok_tuple},
        {ocibuild_release, push_tarball, [adapter, adapter_state, tarball, tarball_push_opts],
         ok_tuple},
        {ocibuild_release, validate_annotations, [annotations], ok_tuple},
        {ocibuild_release, build_auto_annotations, [image, release_dir, auto_config], map},
        {ocibuild_release, save_image, [images, out_file, save_opts], ok_atom},
        {ocibuild_release, is_tarball_path, [text], predicate},
        {ocibuild_release, parse_kv_arg, [text], ok_tuple},
        {ocibuild_release, normalize_kv_map, [anything], kv_map},
        {ocibuild_release, to_binary, [scalar], binary},
        {ocibuild_release, to_container_path, [text], binary},
        {ocibuild_release, to_container_path, [text, workdir], binary},
        {ocibuild_release, make_relative_path, [text, text], path},
        {ocibuild_release, get_file_mode, [host_file], integer},
        {ocibuild_release, format_bytes, [byte_count], iodata},
        {ocibuild_release, format_progress, [byte_count, byte_total], iodata},
        {ocibuild_release, is_tty, [], predicate},
        {ocibuild_release, is_nil_or_undefined, [anything], any_boolean},
        {ocibuild_release, make_progress_callback, [], progress_fun},
        {ocibuild_release, start_progress_coordinator, [], pid_or_undefined},
        {ocibuild_release, stop_progress_coordinator, [], ok_atom},
        {ocibuild_release, clear_progress_line, [], ok_atom},
        {ocibuild_release, stop_httpc, [], ok_atom},
        %% ocibuild_adapter: the helpers 0.10 adapters call (the callbacks are the adapter's)
        {ocibuild_adapter, get_app_version, [adapter, adapter_state], app_version},
        {ocibuild_adapter, get_dependencies, [adapter, adapter_state], list},
        {ocibuild_adapter, default_chunk_size, [], integer},
        {ocibuild_adapter, default_chunk_size_mb, [], integer},
        {ocibuild_adapter, min_chunk_size, [], integer},
        {ocibuild_adapter, min_chunk_size_mb, [], integer},
        {ocibuild_adapter, max_chunk_size, [], integer},
        {ocibuild_adapter, max_chunk_size_mb, [], integer},
        %% ocibuild_local_base: `tar://' bases, which `ocibuild:from/1,2,3' documents
        {ocibuild_local_base, is_local, [base_ref], predicate},
        {ocibuild_local_base, load, [base_ref, platform_list], ok_tuple},
        {ocibuild_local_base, host_platform, [], map},
        {ocibuild_local_base, platform_text, [platform], platform_text},
        %% ocibuild_rebar3: the provider's messages
        {ocibuild_rebar3, format_error, [reason], chardata}
    ].

%%% Contracts: `success', `refused' or `bad' for a result

contract(ok_tuple, {ok, _}) -> success;
contract(ok_atom, ok) -> success;
contract(image, Image) when is_map(Image) -> success;
contract(loaded, {ok, #{cleanup := Cleanup}}) when is_function(Cleanup, 0) -> success;
contract(binary_or_undefined, B) when is_binary(B) -> success;
contract(binary_or_undefined, undefined) -> refused;
contract(list, L) when is_list(L) -> success;
contract(map, M) when is_map(M) -> success;
contract(kv_map, M) when M =:= #{} -> refused;
contract(kv_map, M) when is_map(M) -> success;
contract(binary, B) when is_binary(B) -> success;
contract(integer, I) when is_integer(I) -> success;
contract(path, P) when is_binary(P) -> success;
contract(path, P) when is_list(P) -> success;
contract(tag_pair, {R, T}) when is_binary(R), is_binary(T) -> success;
contract(partition, {A, B, C}) when is_list(A), is_list(B), is_list(C) -> success;
contract(layer_class, C) when C =:= erts; C =:= dep; C =:= app -> success;
contract(native_code, {ok, []}) -> success;
contract(native_code, {warning, L}) when is_list(L) -> success;
contract(platform_text, <<"unknown">>) -> refused;
contract(platform_text, B) when is_binary(B) -> success;
contract(predicate, true) -> success;
contract(predicate, false) -> refused;
contract(any_boolean, B) when is_boolean(B) -> success;
contract(chardata, D) -> chardata(D);
contract(iodata, D) when is_list(D); is_binary(D) -> chardata(D);
contract(progress_fun, F) when is_function(F, 1) -> success;
contract(pid_or_undefined, P) when is_pid(P); P =:= undefined -> success;
contract(app_version, V) when is_binary(V) -> success;
contract(app_version, undefined) -> refused;
contract(_, {error, _}) -> refused;
contract(_, _) -> bad.

chardata(D) ->
    case catch unicode:characters_to_binary(D) of
        B when is_binary(B) -> success;
        _ -> bad
    end.

%% Functions whose refusal is not `{error, _}' (a predicate's `false', an adapter helper's
%% default): refusal is still what a certainly bad argument must get.
%% `[]' from get_dependencies is both "no dependencies" and the refusal of a bad adapter.
refusal_required(ocibuild_adapter, get_dependencies) -> false;
refusal_required(ocibuild_release, is_nil_or_undefined) -> false;
refusal_required(_, format_error) -> false;
refusal_required(_, _) -> true.

%%% Argument kinds: a valid value, and whether a value could be valid at all

valid(image, #{images := Images}) -> pick(Images);
valid(images, #{images := Images}) -> pick(Images);
valid(image_list, #{images := Images}) -> [pick(Images)];
valid(platform_images, #{images := Images}) ->
    [(pick(Images))#{platform := #{os => <<"linux">>, architecture => A}} || A <- [<<"amd64">>, <<"arm64">>]];
valid(base_ref, #{base := Base}) -> <<"tar://", Base/binary>>;
valid(registry_ref, #{registry := Registry}) -> <<Registry/binary, "/fuzz/x:1">>;
valid(registry, #{registry := Registry}) -> Registry;
valid(repo_tag, _Ctx) -> <<"fuzz/app:1">>;
valid(repo_tag_or_undefined, _Ctx) -> <<"fuzz/app:1">>;
valid(auth, _Ctx) -> #{username => <<"u">>, password => <<"p">>};
valid(from_opts, _Ctx) -> #{};
valid(verify_opts, _Ctx) -> #{key => public_key_fixture()};
valid(push_opts, _Ctx) -> #{chunk_size => 1024};
valid(layer_opts, _Ctx) -> #{compression => gzip};
valid(files, _Ctx) -> [{<<"/app/a.txt">>, <<"hi\n">>, 8#644}];
valid(copy_files, _Ctx) -> [{<<"a.txt">>, <<"hi\n">>}];
valid(text, _Ctx) -> <<"x">>;
valid(text_list, _Ctx) -> [<<"/bin/sh">>];
valid(text_platform, _Ctx) -> <<"linux/amd64">>;
valid(text_platforms, _Ctx) -> <<"linux/amd64,linux/arm64">>;
valid(env_map, _Ctx) -> #{<<"A">> => <<"1">>};
valid(port, _Ctx) -> 8080;
valid(out_dir, #{root := Root}) -> unique(Root, "layout");
valid(out_file, #{root := Root}) -> unique(Root, "image.tar.gz");
valid(save_opts, _Ctx) -> #{tag => <<"fuzz:1">>};
valid(tarball, #{base := Base}) -> Base;
valid(load_opts, _Ctx) -> #{};
valid(loaded, #{loaded := Loaded}) -> Loaded;
valid(adapter, _Ctx) -> ocibuild_test_adapter;
valid(adapter_state, _Ctx) -> #{config => #{tag => <<"fuzz:1">>}};
valid(run_opts, _Ctx) -> #{};
valid(cli, _Ctx) -> #{};
valid(project, _Ctx) -> #{};
valid(anything, _Ctx) -> <<"x">>;
valid(reason, _Ctx) -> {invalid_option, workdir, <<"x">>};
valid(scalar, _Ctx) -> <<"x">>;
valid(base_text, _Ctx) -> <<"scratch">>;
valid(build_opts, _Ctx) -> #{release_name => <<"fuzz">>};
valid(release_path_or_undefined, #{release := Release}) -> Release;
valid(release_dir, #{release := Release}) -> Release;
valid(deps, _Ctx) -> [#{name => <<"dep">>, version => <<"1.0.0">>, source => <<"hex">>}];
valid(deps_or_undefined, Ctx) -> valid(deps, Ctx);
valid(dep_set, _Ctx) -> sets:from_list([<<"dep">>]);
valid(workdir, _Ctx) -> <<"/app">>;
valid(workdir_opts, _Ctx) -> #{workdir => <<"/app">>};
valid(boolean, _Ctx) -> true;
valid(platform_list, _Ctx) -> [#{os => <<"linux">>, architecture => <<"amd64">>}];
valid(platform, _Ctx) -> #{os => <<"linux">>, architecture => <<"arm64">>, variant => <<"v8">>};
valid(annotations, _Ctx) -> #{<<"org.example.k">> => <<"v">>};
valid(auto_config, _Ctx) -> #{vcs_annotations => false, version => <<"1">>};
valid(tarball_push_opts, #{registry := Registry}) -> #{registry => Registry, tags => [<<"fuzz:1">>]};
valid(host_file, #{release := Release}) -> <<Release/binary, "/bin/fuzz">>;
valid(byte_count, _Ctx) -> 1536;
valid(byte_total, _Ctx) -> 4096.

%% False when no valid argument looks like `Value'; such an argument must be refused.
could_be_valid(Kind, V) when Kind =:= image; Kind =:= images ->
    is_map(V) orelse is_list(V) orelse is_error(V);
could_be_valid(Kind, V) when Kind =:= image_list; Kind =:= platform_images ->
    is_list(V) orelse is_error(V);
could_be_valid(Kind, V) when Kind =:= text; Kind =:= repo_tag; Kind =:= registry;
                             Kind =:= registry_ref; Kind =:= text_platform;
                             Kind =:= text_platforms; Kind =:= base_text; Kind =:= workdir ->
    is_text(V);
could_be_valid(base_ref, V) ->
    is_text(V) orelse is_tuple(V);
could_be_valid(repo_tag_or_undefined, V) ->
    is_text(V) orelse V =:= undefined;
could_be_valid(Kind, V) when Kind =:= out_dir; Kind =:= out_file; Kind =:= tarball ->
    is_name_all(V);
could_be_valid(Kind, V) when Kind =:= release_dir; Kind =:= host_file ->
    is_text(V);
could_be_valid(release_path_or_undefined, V) ->
    is_text(V) orelse V =:= undefined orelse V =:= nil;
could_be_valid(deps_or_undefined, V) ->
    is_list(V) orelse V =:= undefined orelse V =:= nil;
could_be_valid(Kind, V) when Kind =:= files; Kind =:= copy_files; Kind =:= text_list;
                             Kind =:= deps; Kind =:= platform_list ->
    is_list(V);
could_be_valid(port, V) ->
    (is_integer(V) andalso V >= 1 andalso V =< 65535) orelse is_text(V);
could_be_valid(boolean, V) ->
    is_boolean(V);
could_be_valid(adapter, V) ->
    is_atom(V);
could_be_valid(project, V) ->
    is_map(V) orelse is_list(V);
could_be_valid(scalar, V) ->
    is_binary(V) orelse is_atom(V) orelse is_number(V) orelse is_text(V);
could_be_valid(Kind, V) when Kind =:= byte_count; Kind =:= byte_total ->
    (is_integer(V) andalso V >= 0) orelse (Kind =:= byte_total andalso V =:= unknown);
could_be_valid(Kind, _V) when Kind =:= anything; Kind =:= reason; Kind =:= dep_set;
                              Kind =:= adapter_state ->
    true;
could_be_valid(_MapKind, V) ->
    is_map(V).

%% `file:name_all()', what the `file' module takes: a string, an atom, a binary, or a deep
%% list of characters and atoms.
is_name_all(V) when is_atom(V); is_binary(V) -> true;
is_name_all(V) -> is_deep_name(V).

is_deep_name([]) -> true;
is_deep_name([H | T]) when is_atom(H); is_integer(H), H >= 0 -> is_deep_name(T);
is_deep_name([H | T]) when is_list(H) -> is_deep_name(H) andalso is_deep_name(T);
is_deep_name(_) -> false.

is_error({error, _}) -> true;
is_error(_) -> false.

is_text(V) when is_binary(V) -> true;
is_text(V) when is_list(V) -> ocibuild_input:text(V) =/= error;
is_text(_) -> false.

%% Positions that name a registry or a base: text there would name some host, so junk there
%% is never valid text (a NUL byte, invalid UTF-8 and non-text terms only).
network_kind(Kind) -> lists:member(Kind, [base_ref, registry_ref, registry, base_text]).

%% The state is the adapter's own business (opaque to ocibuild): only the adapter is fuzzed.
fuzzed_kind(adapter_state) -> false;
fuzzed_kind(_) -> true.

%%% Junk

junk_pool() ->
    Dead = spawn(fun() -> ok end),
    Long = binary:copy(<<"a">>, 300000),
    [
        foo, undefined, nil, true, false, '', 'tar://x',
        0, -1, 1 bsl 70, -(1 bsl 70), 65536, 4294967296,
        1.5, -0.0, 1.0e300,
        [], [a | b], [<<"x">> | <<"y">>], [{<<"/a">>, <<"x">>, 8#644} | tail], [$a, $b | $c],
        [[[[[[[x]]]]]]], {{{{{}}}}}, [self()], [-1], [1 bsl 40], [#{}], [[a | b]],
        <<"a\0b">>, <<0>>, <<"/app/\0x">>, <<255, 254, 0>>, <<"x:1\0">>, [0],
        Long, lists:duplicate(100000, $a),
        #{}, #{1 => 2}, #{<<"k">> => self()}, #{username => 1}, #{token => [a | b]},
        #{username => <<"u">>}, #{a => b, c => d}, #{os => 1, architecture => []},
        self(), Dead, make_ref(),
        fun() -> ok end, fun(_, _, _) -> ok end, fun erlang:is_atom/1,
        {}, {a, b, c}, {error}, {file, 42}, {file, <<"a\0b">>}, {ok, 1}, {<<"r">>, <<"x">>, 42},
        {<<"a">>, <<"b">>, <<"c">>, <<"d">>}, {error, fuzz}
    ].

%% Option keys used anywhere in the API, so a junk map reaches the option checks. Keys that
%% name a registry or a base are left out: their text would name some host.
option_keys() ->
    [compression, layer_type, mtime, tag, format, platform, platforms, progress, tags, chunk_size,
     max_concurrency, index, sboms, sign, memory_threshold, workdir, env, expose, labels,
     annotations, cmd, uid, release_name, app_name, app_version, auth, dependencies,
     release_path, description, vcs_annotations, version, created, output, release, sbom,
     sign_key, username, password, token, config].

is_network_junk(V) ->
    not is_text(V) orelse (is_binary(V) andalso binary:match(V, <<0>>) =/= nomatch).

%% `format_error/1' takes any term: junk there is mostly our own tags with junk fields.
junk(reason, Pool, _Ctx) ->
    case rand:uniform(3) of
        1 -> pick(Pool);
        _ -> list_to_tuple([pick(reason_tags()) | [reason_field(Pool) || _ <- lists:seq(1, rand:uniform(3))]])
    end;
junk(Kind, Pool, Ctx) ->
    Candidates =
        case network_kind(Kind) of
            true -> [V || V <- Pool, is_network_junk(V)];
            false -> Pool
        end,
    Junk =
        case {rand:uniform(6), option_keys(Kind)} of
            %% An option map: its own keys, with junk, half the time.
            {N, [_ | _] = Keys} when N =< 3 -> junk_map(Keys, Pool);
            {1, _} -> junk_map(option_keys(), Pool);
            {2, _} -> deep_junk(3, Candidates);
            {3, _} -> mutate(valid(Kind, Ctx), Pool);
            _ -> pick(Candidates)
        end,
    case network_kind(Kind) andalso not is_network_junk(Junk) of
        true -> <<"a\0b">>;
        false -> Junk
    end.

%% A map of one to three of `Keys', each with junk: a third of the time list-shaped junk
%% (improper lists, lists of junk), which option checks that only look at `is_list' miss.
junk_map(Keys, Pool) ->
    Lists = [V || V <- Pool, is_list(V)],
    maps:from_list([
        {pick(Keys), case rand:uniform(3) of 1 -> pick(Lists); _ -> pick(Pool) end}
     || _ <- lists:seq(1, rand:uniform(3))
    ]).

%% The options each map kind reads (`[]': not an option map).
option_keys(from_opts) -> [platform, platforms, progress];
option_keys(push_opts) -> [tags, chunk_size, max_concurrency, index, sboms, sign, progress];
option_keys(layer_opts) -> [compression, layer_type, mtime, progress];
option_keys(save_opts) -> [tag, format];
option_keys(load_opts) -> [memory_threshold];
option_keys(run_opts) -> [cmd, release];
option_keys(cli) -> [tag, output, annotation, label, platform, cmd, uid, chunk_size, compression,
                     sbom, sign_key, vcs_annotations, release];
option_keys(project) -> [tag, workdir, env, expose, labels, annotations, uid, vcs_annotations,
                         compression, platform, cmd, description, app_name];
option_keys(build_opts) -> [release_name, app_name, app_version, workdir, env, expose, labels,
                            annotations, description, cmd, uid, auth, progress, compression,
                            dependencies, release_path];
option_keys(workdir_opts) -> [workdir];
option_keys(auto_config) -> [vcs_annotations, version, created, app_version];
option_keys(tarball_push_opts) -> [tags, chunk_size, sign];
option_keys(auth) -> [username, password, token];
option_keys(_) -> [].

%% Junk nested in lists, tuples and maps, the way a confused caller might build it.
deep_junk(0, Pool) ->
    pick(Pool);
deep_junk(Depth, Pool) ->
    case rand:uniform(4) of
        1 -> [deep_junk(Depth - 1, Pool), deep_junk(Depth - 1, Pool)];
        2 -> {deep_junk(Depth - 1, Pool), deep_junk(Depth - 1, Pool)};
        3 -> #{pick(option_keys()) => deep_junk(Depth - 1, Pool)};
        4 -> pick(Pool)
    end.

reason_tags() ->
    [sbom_write, sign_key, invalid_annotation, invalid_created_timestamp, protected_annotation,
     bundled_erts, unknown_config_key, invalid_kv_format, invalid_option, invalid_uid,
     invalid_value, special_file, invalid_tag, invalid_platform, tarball_without_push,
     tarball_not_found, release_not_found, release_not_directory, lock_file, base_image,
     no_matching_platform, unauthorized, registry_error, http_error, timeout, https_downgrade,
     auth_error, credentials_error, invalid_reference, digest_mismatch, file_read, io_error,
     bad_adapter_reply, negative_timestamp, file_read, sign_key_password, sign_key_error,
     unexpected_arguments, unknown_release, ambiguous_release, release_not_built,
     unknown_option, option_needs_value, invalid_option_value].

%% A field of a reason: junk, or a map with the keys the messages read, holding junk.
reason_field(Pool) ->
    case rand:uniform(4) of
        4 ->
            %% `{Path, {Line, Module, Term}}', a lock file's parse error
            {pick(Pool), {rand:uniform(10), pick([foo, erl_parse, ocibuild_release]), pick(Pool)}};
        1 ->
            maps:from_list([{K, pick(Pool)} || K <- [registry, status, scope, action, code, message,
                                                     to, wanted, limit_ms, min_rate, window_ms]]
                           ++ [{phase, pick([headers, body])}, {available, [pick(Pool)]}]);
        _ ->
            pick(Pool)
    end.

%% A valid value with one part spoiled, somewhere inside: a key dropped or given junk, a
%% list item spoiled or added, a list made improper, a tuple element spoiled, a NUL or a
%% byte that is not UTF-8 appended, a binary's last bytes cut (only a few: a valid output
%% path cut short must stay inside the temp root). This is how a hand-edited image map or a
%% loaded tarball goes wrong.
mutate(Map, Pool) when is_map(Map), map_size(Map) > 0 ->
    Key = pick(maps:keys(Map)),
    case rand:uniform(3) of
        1 -> maps:remove(Key, Map);
        _ -> Map#{Key := mutate_or_junk(maps:get(Key, Map), Pool)}
    end;
mutate([_ | _] = List, Pool) ->
    case rand:uniform(3) of
        1 ->
            I = rand:uniform(length(List)),
            {Before, [Item | After]} = lists:split(I - 1, List),
            Before ++ [mutate_or_junk(Item, Pool) | After];
        2 ->
            List ++ [pick(Pool)];
        3 ->
            lists:droplast(List) ++ [lists:last(List) | pick(Pool)]
    end;
mutate(Tuple, Pool) when is_tuple(Tuple), tuple_size(Tuple) > 0 ->
    I = rand:uniform(tuple_size(Tuple)),
    setelement(I, Tuple, mutate_or_junk(element(I, Tuple), Pool));
mutate(Bin, _Pool) when is_binary(Bin) ->
    case rand:uniform(3) of
        1 -> <<Bin/binary, 0>>;
        2 -> <<Bin/binary, 255>>;
        3 -> binary:part(Bin, 0, max(0, byte_size(Bin) - 3))
    end;
mutate(_Other, Pool) ->
    pick(Pool).

mutate_or_junk(Value, Pool) ->
    case rand:uniform(2) of
        1 -> mutate(Value, Pool);
        2 -> pick(Pool)
    end.

pick(List) ->
    lists:nth(rand:uniform(length(List)), List).

%%% The calls

%% One planned call: which positions are junk, and the argument builders.
plan(Specs, Ctx) ->
    Pool = junk_pool(),
    lists:append([plan_function(Spec, Pool, Ctx) || Spec <- Specs]).

plan_function({M, F, [], Contract}, _Pool, _Ctx) ->
    [{M, F, Contract, []}];
plan_function({M, F, Kinds, Contract}, Pool, Ctx) ->
    Fuzzable = [I || {I, K} <- enumerate(Kinds), fuzzed_kind(K)],
    AllJunk = [
        {M, F, Contract, [arg(K, I, Fuzzable, Pool, Ctx) || {I, K} <- enumerate(Kinds)]}
     || _ <- lists:seq(1, ?ALL_JUNK_CALLS), Fuzzable =/= []
    ],
    OneJunk = [
        {M, F, Contract, [arg(K, I, [Bad], Pool, Ctx) || {I, K} <- enumerate(Kinds)]}
     || Bad <- Fuzzable, _ <- lists:seq(1, ?ONE_JUNK_CALLS)
    ],
    AllJunk ++ OneJunk.

arg(Kind, I, JunkPositions, Pool, Ctx) ->
    case lists:member(I, JunkPositions) of
        true -> {junk, Kind, junk(Kind, Pool, Ctx)};
        false -> {valid, Kind}
    end.

enumerate(List) ->
    lists:zip(lists:seq(1, length(List)), List).

%% Run one call in its own process, bounded; `ok' or a description of what went wrong.
check_call({M, F, Contract, ArgSpecs}, Ctx) ->
    CertainlyBad = [V || {junk, K, V} <- ArgSpecs, not could_be_valid(K, V)],
    %% A call that must refuse gets a registry of its own, so a connection to it can only be
    %% this call's (a finished call's stray connection goes to its own, closed, port).
    {CallCtx, Tripwire} =
        case CertainlyBad of
            [] -> {Ctx, undefined};
            _ -> tripwire(Ctx)
        end,
    Valid = [{K, valid(K, CallCtx)} || {valid, K} <- ArgSpecs],
    Args = fill(ArgSpecs, Valid),
    Parent = self(),
    {Pid, Ref} = spawn_monitor(fun() ->
        Result =
            try apply(M, F, Args) of
                R -> {returned, R}
            catch
                Class:Reason:Stack -> {raised, Class, Reason, hd(Stack ++ [none])}
            end,
        Parent ! {self(), Result},
        release(Result)
    end),
    receive
        {Pid, Result} ->
            receive {'DOWN', Ref, process, Pid, _} -> ok end,
            case judge(M, F, Contract, Args, CertainlyBad, Result) of
                ok when CertainlyBad =/= [] -> refused_before_work(M, F, Args, Valid, Tripwire);
                Judged -> stop_tripwire(Tripwire), Judged
            end;
        {'DOWN', Ref, process, Pid, Why} ->
            stop_tripwire(Tripwire),
            {exited, M, F, short_args(Args), Why}
    after ?CALL_TIMEOUT_MS ->
        exit(Pid, kill),
        stop_tripwire(Tripwire),
        {hung, M, F, short_args(Args)}
    end.

fill([{junk, _, V} | Rest], Valid) -> [V | fill(Rest, Valid)];
fill([{valid, _} | Rest], [{_, V} | Valid]) -> [V | fill(Rest, Valid)];
fill([], []) -> [].

tripwire(Ctx) ->
    Connections = counters:new(1, []),
    {Registry, Listener} = start_registry(Connections),
    {Ctx#{registry := Registry}, {Listener, Connections}}.

stop_tripwire(undefined) -> ok;
stop_tripwire({Listener, _}) -> exit(Listener, kill).

%% A call given a certainly bad argument checks it before any network or file work: nothing
%% connected to its registry, and its output paths were not written.
refused_before_work(M, F, Args, Valid, {_, Connections} = Tripwire) ->
    stop_tripwire(Tripwire),
    Written = [P || {K, P} <- Valid, K =:= out_dir orelse K =:= out_file, filelib:is_file(P)],
    case {counters:get(Connections, 1), Written} of
        {0, []} -> ok;
        {N, _} -> {work_before_refusal, M, F, short_args(Args), #{connections => N, written => Written}}
    end.

%% A loaded tarball's directory is removed by its cleanup fun.
release({returned, {ok, #{cleanup := Cleanup}}}) when is_function(Cleanup, 0) -> Cleanup();
release(_) -> ok.

judge(M, F, _Contract, Args, _CertainlyBad, {raised, Class, Reason, Where}) ->
    {raised, M, F, short_args(Args), Class, short(Reason), Where};
judge(M, F, Contract, Args, CertainlyBad, {returned, Result}) ->
    case {contract(Contract, Result), CertainlyBad, refusal_required(M, F)} of
        {bad, _, _} -> {bad_result, M, F, short_args(Args), short(Result)};
        {success, [_ | _], true} -> {accepted_bad_argument, M, F, short_args(Args), short(Result)};
        _ -> ok
    end.

%% Failures are printed; 300 KB binaries are not.
short_args(Args) ->
    lists:flatten(["[", lists:join(", ", [short(A) || A <- Args]), "]"]).

short(Term) ->
    Text = lists:flatten(io_lib:format("~0tp", [Term])),
    case length(Text) > 160 of
        true -> lists:sublist(Text, 160) ++ "...";
        false -> Text
    end.

%%% Fixtures: a temp root that is the current directory, the blob store and TMPDIR, a base
%%% tarball, a small release, and a loopback registry that answers every request with 404.

setup() ->
    {ok, OldCwd} = file:get_cwd(),
    Root = list_to_binary(ocibuild_test_util:tmp_dir("ocibuild-api-fuzz")),
    Env = [{N, os:getenv(N)} || N <- ["OCIBUILD_CACHE_DIR", "TMPDIR", "SOURCE_DATE_EPOCH",
                                      "DOCKER_CONFIG", "REGISTRY_AUTH_FILE",
                                      "OCIBUILD_PUSH_TOKEN", "OCIBUILD_PULL_TOKEN"]],
    [os:unsetenv(N) || {N, _} <- Env],
    os:putenv("OCIBUILD_CACHE_DIR", binary_to_list(<<Root/binary, "/cache">>)),
    ok = file:make_dir(<<Root/binary, "/tmp">>),
    os:putenv("TMPDIR", binary_to_list(<<Root/binary, "/tmp">>)),
    %% No credentials files: `#{}' auth must not read the user's.
    os:putenv("DOCKER_CONFIG", binary_to_list(<<Root/binary, "/docker">>)),
    os:putenv("REGISTRY_AUTH_FILE", binary_to_list(<<Root/binary, "/auth.json">>)),
    ok = file:make_dir(<<Root/binary, "/cwd">>),
    ok = file:set_cwd(<<Root/binary, "/cwd">>),
    Connections = counters:new(1, []),
    {Registry, Listener} = start_registry(Connections),
    %% Inputs live apart from the outputs: a path cut short by the junk lists only them.
    Base = <<Root/binary, "/fixture/base.tar.gz">>,
    ok = filelib:ensure_dir(Base),
    {ok, Scratch} = ocibuild:scratch(),
    ok = ocibuild:save(ocibuild:add_layer(Scratch, [{<<"/b">>, <<"base">>, 8#644}]), Base,
                       #{tag => <<"fuzz/base:1">>}),
    Release = <<Root/binary, "/fixture/rel">>,
    ok = filelib:ensure_dir(<<Release/binary, "/lib/fuzz-1.0.0/ebin/x">>),
    ok = file:write_file(<<Release/binary, "/lib/fuzz-1.0.0/ebin/fuzz.app">>, <<"{}.">>),
    ok = filelib:ensure_dir(<<Release/binary, "/bin/x">>),
    ok = file:write_file(<<Release/binary, "/bin/fuzz">>, <<"#!/bin/sh\nforeground\n">>),
    ok = file:change_mode(<<Release/binary, "/bin/fuzz">>, 8#755),
    {ok, Loaded} = ocibuild_layout:load_tarball_for_push(Base),
    %% Valid images: one of ours with a layer and config, one on the saved base.
    Layered = ocibuild:label(ocibuild:entrypoint(ocibuild:add_layer(image(), [{<<"/app/x">>, <<"x">>, 8#755}]),
                                                 [<<"/app/x">>]), <<"k">>, <<"v">>),
    {ok, OnBase} = ocibuild:from(<<"tar://", Base/binary>>),
    Ctx = #{root => Root, base => Base, release => Release, registry => Registry, loaded => Loaded,
            images => [Layered, OnBase]},
    {Ctx, OldCwd, Env, Listener}.

cleanup({#{root := Root, loaded := #{cleanup := Cleanup}}, OldCwd, Env, Listener}) ->
    Cleanup(),
    exit(Listener, kill),
    ok = file:set_cwd(OldCwd),
    [case V of false -> os:unsetenv(N); _ -> os:putenv(N, V) end || {N, V} <- Env],
    ok = file:del_dir_r(Root).

unique(Root, Name) ->
    iolist_to_binary([Root, "/out-", integer_to_list(erlang:unique_integer([positive])), "-", Name]).

start_registry(Connections) ->
    Parent = self(),
    Pid = spawn(fun() ->
        {ok, Listen} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}}, {active, false},
                                          {reuseaddr, true}]),
        {ok, Port} = inet:port(Listen),
        Parent ! {registry_port, self(), Port},
        accept_loop(Listen, Connections)
    end),
    receive
        {registry_port, Pid, Port} ->
            {iolist_to_binary(["127.0.0.1:", integer_to_list(Port)]), Pid}
    after 5000 ->
        error(registry_not_started)
    end.

accept_loop(Listen, Connections) ->
    {ok, Socket} = gen_tcp:accept(Listen),
    counters:add(Connections, 1, 1),
    Handler = spawn(fun() -> answer_404(Socket) end),
    ok = gen_tcp:controlling_process(Socket, Handler),
    Handler ! go,
    accept_loop(Listen, Connections).

%% Read the request head (bounded), answer 404 and close.
answer_404(Socket) ->
    receive go -> ok end,
    _ = read_head(Socket, <<>>),
    _ = gen_tcp:send(Socket, <<"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n">>),
    gen_tcp:close(Socket).

read_head(Socket, Acc) ->
    case binary:match(Acc, <<"\r\n\r\n">>) of
        nomatch ->
            case gen_tcp:recv(Socket, 0, 5000) of
                {ok, More} when byte_size(Acc) < 65536 -> read_head(Socket, <<Acc/binary, More/binary>>);
                _ -> Acc
            end;
        _ ->
            Acc
    end.

%% A P-256 public key (the core's signing fixtures), for `ocibuild:verify/3'.
public_key_fixture() ->
    Source = proplists:get_value(source, ocibuild:module_info(compile)),
    Root = filename:dirname(filename:dirname(Source)),
    unicode:characters_to_binary(
        filename:join([Root, "native", "ocibuild_core", "tests", "fixtures", "signing", "pkcs8.pub"])).

image() ->
    {ok, Image} = ocibuild:scratch(),
    ocibuild:env(Image, #{<<"A">> => <<"1">>}).

%%% Tests

every_export_has_a_spec_test() ->
    Specified = [{M, F, length(Kinds)} || {M, F, Kinds, _} <- specs()],
    Exported = [{M, F, A} || M <- ?MODULES, {F, A} <- M:module_info(exports),
                             F =/= module_info],
    ?assertEqual([], (Exported -- Specified) -- ?NOT_FUZZED),
    ?assertEqual([], Specified -- Exported).

no_public_function_raises_or_hangs_test_() ->
    {timeout, 1800, fun no_public_function_raises_or_hangs/0}.

no_public_function_raises_or_hangs() ->
    {Ctx, _, _, _} = Fixture = setup(),
    try
        rand:seed(exsss, ?SEED),
        Outside = escaped(Ctx),
        Calls = plan(specs(), Ctx),
        Failures = [Failure || Call <- Calls, Failure <- [check_call(Call, Ctx)], Failure =/= ok],
        _ = ocibuild_release:stop_progress_coordinator(),
        io:format(user, "~napi fuzz: ~b calls of ~b functions, ~b failures~n",
                  [length(Calls), length(specs()), length(Failures)]),
        [io:format(user, "  ~0tp~n", [F]) || F <- Failures],
        ?assertEqual([], Failures),
        %% Nothing was written beside the temp root under a name cut from its own.
        ?assertEqual(Outside, escaped(Ctx)),
        #{loaded := #{cleanup := Cleanup}} = Ctx,
        ok = Cleanup(),
        %% Every loaded tarball's directory went with its cleanup or its process.
        TmpDir = <<(maps:get(root, Ctx))/binary, "/tmp">>,
        ?assert(wait_until(fun() -> {ok, []} =:= file:list_dir(TmpDir) end, 10000))
    after
        cleanup(Fixture)
    end.

%% A hand-edited image map with an improper list in any list field reaches the native
%% library through every sink; rustler's list iterator panics at an improper tail, so the
%% NIF must refuse it before iterating (`terms::list'), never raise `nif_panicked'.
improper_lists_in_an_image_are_refused_by_every_sink_test_() ->
    {timeout, 120, fun improper_lists_in_an_image_are_refused_by_every_sink/0}.

improper_lists_in_an_image_are_refused_by_every_sink() ->
    {#{root := Root, registry := Registry, images := [Layered, OnBase]}, _, _, _} = Fixture = setup(),
    try
        #{config := Config, layers := [Layer]} = Layered,
        #{base := Base} = OnBase,
        Spoiled = [
            Layered#{layers := [Layer | tail]},
            Layered#{config := Config#{cmd := [<<"x">> | <<"y">>]}},
            Layered#{config := Config#{entrypoint := [<<"/app/x">> | tail]}},
            Layered#{config := Config#{env := [{<<"A">>, <<"1">>} | tail]}},
            Layered#{config := Config#{exposed_ports := [<<"80/tcp">> | tail]}},
            OnBase#{base := Base#{layers := [hd(maps:get(layers, Base)) | tail]}}
        ],
        Sinks = [
            fun(I) -> ocibuild:export(I, iolist_to_binary([Root, "/improper-layout"])) end,
            fun(I) -> ocibuild:save(I, iolist_to_binary([Root, "/improper.tar.gz"])) end,
            fun(I) -> ocibuild:push(I, Registry, <<"fuzz/app:1">>) end,
            fun(I) -> ocibuild_registry:push([I], Registry, <<"fuzz/app:1">>, #{}, #{}) end,
            fun(I) -> ocibuild_layout:save_tarball([I, I], iolist_to_binary([Root, "/multi.tar.gz"])) end
        ],
        [?assertMatch({error, _}, Sink(Image)) || Image <- Spoiled, Sink <- Sinks],
        ?assertMatch({error, _}, ocibuild_nif:layer_create([{<<"/a">>, <<"x">>, 8#644} | tail],
                                                           #{compression => gzip, mtime => 0,
                                                             store => <<Root/binary, "/cache">>})),
        ?assertEqual([], [F || F <- ["improper-layout", "improper.tar.gz", "multi.tar.gz"],
                               filelib:is_file(filename:join(Root, F))])
    after
        cleanup(Fixture)
    end.

%% Entries beside the temp root whose names are a prefix of its name: what an output path
%% cut short would write.
escaped(#{root := Root}) ->
    Name = filename:basename(Root),
    {ok, Siblings} = file:list_dir_all(filename:dirname(Root)),
    lists:sort([S || S <- lists:map(fun name_binary/1, Siblings), S =/= Name,
                     binary:longest_common_prefix([S, Name]) =:= byte_size(S)]).

name_binary(Name) when is_binary(Name) -> Name;
name_binary(Name) -> unicode:characters_to_binary(Name, file:native_name_encoding()).

wait_until(Condition, Timeout) when Timeout =< 0 ->
    Condition();
wait_until(Condition, Timeout) ->
    case Condition() of
        true ->
            true;
        false ->
            timer:sleep(100),
            wait_until(Condition, Timeout - 100)
    end.
