%% @doc Helpers for the EUnit suites: temp dirs, environment isolation, hashing, reading
%% tarballs and a small JSON decoder (OTP 25 has no json module).
-module(ocibuild_test_util).

-include_lib("eunit/include/eunit.hrl").

-export([
    setup/0,
    cleanup/1,
    sandbox/0,
    unsandbox/1,
    in_dir/2,
    tmp_dir/1,
    with_env/3,
    sha256_file/1,
    sha256/1,
    blob_path/2,
    read_blob/2,
    read_json_blob/2,
    untar_gz/1,
    untar_gz_table/1,
    json/1,
    validate_layout/1,
    extract_tarball/2,
    host_platform/0,
    write_file/3,
    small_release/2,
    wait_until/3,
    closed_port/0
]).

%% A loopback port with nothing behind it: connections are refused at once.
-spec closed_port() -> inet:port_number().
closed_port() ->
    {ok, S} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(S),
    ok = gen_tcp:close(S),
    Port.


%% Wait, up to `TimeoutMs', for `Check()' to be true; fails with `{timeout, What}'. For
%% conditions another thread settles a moment after the reply the test saw (a NIF job
%% deregisters after it sends its result): never sleep a fixed time instead.
-spec wait_until(term(), fun(() -> boolean()), non_neg_integer()) -> ok.
wait_until(What, Check, TimeoutMs) ->
    wait_until_deadline(What, Check, erlang:monotonic_time(millisecond) + TimeoutMs).

wait_until_deadline(What, Check, Deadline) ->
    case Check() of
        true ->
            ok;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error({timeout, What});
                false -> receive after 10 -> wait_until_deadline(What, Check, Deadline) end
            end
    end.

%% Write `Data' to `Path' (parents created) with `Mode'.
write_file(Path, Data, Mode) ->
    ok = filelib:ensure_dir(Path),
    ok = file:write_file(Path, Data),
    ok = file:change_mode(Path, Mode).

%% A release-shaped directory `Root/Name' (relx-style script, the app, start_erl.data), no
%% bundled ERTS: the smallest release `ocibuild_release:run/3' images.
small_release(Root, Name) ->
    Rel = filename:join(Root, Name),
    write_file(filename:join([Rel, "bin", "myapp"]), <<"#!/bin/sh\ncase $1 in foreground) ;; esac\n">>, 8#755),
    write_file(filename:join([Rel, "lib", "myapp-1.0.0", "ebin", "myapp.beam"]), <<"m">>, 8#644),
    write_file(filename:join([Rel, "releases", "start_erl.data"]), <<"13.2 1.0.0\n">>, 8#644),
    Rel.

%% The platform an image built here defaults to, in OCI's names (x86_64 is amd64).
host_platform() ->
    [Arch | _] = string:split(erlang:system_info(system_architecture), "-"),
    OciArch =
        case Arch of
            "x86_64" -> <<"amd64">>;
            "aarch64" -> <<"arm64">>;
            Other -> list_to_binary(Other)
        end,
    #{os => <<"linux">>, architecture => OciArch}.

%% Every suite runs with its own blob store and without SOURCE_DATE_EPOCH, so tests never write
%% into the repository and never depend on the caller's environment.
setup() ->
    Root = tmp_dir("ocibuild-eunit"),
    Saved = {os:getenv("OCIBUILD_CACHE_DIR"), os:getenv("SOURCE_DATE_EPOCH")},
    os:putenv("OCIBUILD_CACHE_DIR", filename:join(Root, "cache")),
    os:unsetenv("SOURCE_DATE_EPOCH"),
    {Root, Saved}.

cleanup({Root, {Cache, Epoch}}) ->
    restore("OCIBUILD_CACHE_DIR", Cache),
    restore("SOURCE_DATE_EPOCH", Epoch),
    ok = file:del_dir_r(Root).

%% A stricter setup/0, for suites that call the whole API (ocibuild_api_fuzz_tests does this by
%% hand today): a fresh root that holds the blob store, TMPDIR and the current directory, no
%% docker or podman credential files and no token or SOURCE_DATE_EPOCH from the caller, so
%% nothing a test writes or reads is outside the root. unsandbox/1 puts everything back and
%% removes the root.
-define(SANDBOXED_ENV, ["OCIBUILD_CACHE_DIR", "TMPDIR", "SOURCE_DATE_EPOCH", "DOCKER_CONFIG",
                        "REGISTRY_AUTH_FILE", "OCIBUILD_PUSH_TOKEN", "OCIBUILD_PULL_TOKEN"]).
sandbox() ->
    {ok, Cwd} = file:get_cwd(),
    Root = tmp_dir("ocibuild-sandbox"),
    Saved = [{Name, os:getenv(Name)} || Name <- ?SANDBOXED_ENV],
    [os:unsetenv(Name) || Name <- ?SANDBOXED_ENV],
    [ok = file:make_dir(filename:join(Root, D)) || D <- ["tmp", "cwd"]],
    os:putenv("OCIBUILD_CACHE_DIR", filename:join(Root, "cache")),
    os:putenv("TMPDIR", filename:join(Root, "tmp")),
    os:putenv("DOCKER_CONFIG", filename:join(Root, "docker")),
    os:putenv("REGISTRY_AUTH_FILE", filename:join(Root, "auth.json")),
    ok = file:set_cwd(filename:join(Root, "cwd")),
    #{root => Root, saved_env => Saved, saved_cwd => Cwd}.

unsandbox(#{root := Root, saved_env := Saved, saved_cwd := Cwd}) ->
    ok = file:set_cwd(Cwd),
    [restore(Name, Value) || {Name, Value} <- Saved],
    ok = file:del_dir_r(Root).

%% Run Fun with Dir as the current directory, restoring it afterwards.
in_dir(Dir, Fun) ->
    {ok, Old} = file:get_cwd(),
    ok = file:set_cwd(Dir),
    try
        Fun()
    after
        ok = file:set_cwd(Old)
    end.

restore(Name, false) -> os:unsetenv(Name);
restore(Name, Value) -> os:putenv(Name, Value).

tmp_dir(Prefix) ->
    Base =
        case os:getenv("TMPDIR") of
            T when T =:= false; T =:= "" -> "/tmp";
            T -> T
        end,
    Dir = filename:join(
        Base, io_lib:format("~s-~s-~b", [Prefix, os:getpid(), erlang:unique_integer([positive])])
    ),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    lists:flatten(Dir).

%% Run Fun with an environment variable set (or unset with `false'), restoring it afterwards.
with_env(Name, Value, Fun) ->
    Old = os:getenv(Name),
    case Value of
        false -> os:unsetenv(Name);
        _ -> os:putenv(Name, Value)
    end,
    try
        Fun()
    after
        restore(Name, Old)
    end.

sha256(Bin) ->
    Hex = binary:encode_hex(crypto:hash(sha256, Bin)),
    <<"sha256:", (string:lowercase(Hex))/binary>>.

sha256_file(Path) ->
    {ok, Bin} = file:read_file(Path),
    sha256(Bin).

blob_path(LayoutDir, <<"sha256:", Hex/binary>>) ->
    filename:join([LayoutDir, "blobs", "sha256", Hex]).

read_blob(LayoutDir, Digest) ->
    {ok, Bin} = file:read_file(blob_path(LayoutDir, Digest)),
    Bin.

read_json_blob(LayoutDir, Digest) ->
    json(read_blob(LayoutDir, Digest)).

%% [{Name, Bytes}] of the regular files in a gzip-compressed tar held in memory. zlib:gunzip/1
%% reads every member of a multi-member gzip stream (ocibuild's gzip is one member per 1 MiB);
%% erl_tar's `compressed` option stops after the first.
untar_gz(Bin) ->
    {ok, Files} = erl_tar:extract({binary, zlib:gunzip(Bin)}, [memory]),
    [{name(Name), Data} || {Name, Data} <- Files].

%% [{Name, Type, Size, Mtime, Mode, Uid, Gid}] for every entry, in archive order.
untar_gz_table(Bin) ->
    {ok, Rows} = erl_tar:table({binary, zlib:gunzip(Bin)}, [verbose]),
    [
        {name(Name), Type, Size, Mtime, Mode, Uid, Gid}
     || {Name, Type, Size, Mtime, Mode, Uid, Gid} <- Rows
    ].

%% erl_tar decodes UTF-8 names into character lists.
name(Name) -> unicode:characters_to_binary(Name).

%% A small strict JSON decoder: objects become maps with binary keys, arrays lists, strings
%% binaries, true/false/null atoms.
json(Bin) ->
    {Value, Rest} = value(skip(Bin)),
    <<>> = skip(Rest),
    Value.

value(<<${, R/binary>>) -> object(skip(R), #{});
value(<<$[, R/binary>>) -> array(skip(R), []);
value(<<$", R/binary>>) -> string(R, <<>>);
value(<<"true", R/binary>>) -> {true, R};
value(<<"false", R/binary>>) -> {false, R};
value(<<"null", R/binary>>) -> {null, R};
value(R) -> number(R).

object(<<$}, R/binary>>, Acc) when map_size(Acc) =:= 0 ->
    {Acc, R};
object(<<$", R0/binary>>, Acc) ->
    {Key, R1} = string(R0, <<>>),
    <<$:, R2/binary>> = skip(R1),
    {Value, R3} = value(skip(R2)),
    case skip(R3) of
        <<$,, R4/binary>> -> object(skip(R4), Acc#{Key => Value});
        <<$}, R4/binary>> -> {Acc#{Key => Value}, R4}
    end.

array(<<$], R/binary>>, []) ->
    {[], R};
array(R0, Acc) ->
    {Value, R1} = value(R0),
    case skip(R1) of
        <<$,, R2/binary>> -> array(skip(R2), [Value | Acc]);
        <<$], R2/binary>> -> {lists:reverse([Value | Acc]), R2}
    end.

string(<<$", R/binary>>, Acc) ->
    {Acc, R};
string(<<$\\, $u, Hex:4/binary, R/binary>>, Acc) ->
    C = binary_to_integer(Hex, 16),
    string(R, <<Acc/binary, C/utf8>>);
string(<<$\\, E, R/binary>>, Acc) ->
    C =
        case E of
            $n -> $\n;
            $t -> $\t;
            $r -> $\r;
            $b -> $\b;
            $f -> $\f;
            _ -> E
        end,
    string(R, <<Acc/binary, C>>);
string(<<C, R/binary>>, Acc) ->
    string(R, <<Acc/binary, C>>).

number(Bin) ->
    {Num, Rest} = lists:splitwith(
        fun(C) -> lists:member(C, "-+.eE0123456789") end, binary_to_list(Bin)
    ),
    Value =
        case string:to_integer(Num) of
            {I, []} -> I;
            _ -> list_to_float(Num)
        end,
    {Value, list_to_binary(Rest)}.

skip(<<C, R/binary>>) when C =:= $\s; C =:= $\t; C =:= $\n; C =:= $\r -> skip(R);
skip(R) -> R.

%% Walk an OCI layout the way a registry client would and check every descriptor: each blob
%% hashes to its name and has the announced size, every gzip layer's uncompressed sha256 is the
%% config's diff_id. Returns the index.json and, per image manifest, {Descriptor, Manifest,
%% Config}, in index order (nested indexes are followed).
validate_layout(Dir) ->
    {ok, <<"{\"imageLayoutVersion\":\"1.0.0\"}">>} = file:read_file(filename:join(Dir, "oci-layout")),
    {ok, IndexBin} = file:read_file(filename:join(Dir, "index.json")),
    Index = json(IndexBin),
    2 = maps:get(<<"schemaVersion">>, Index),
    {Index, lists:append([descend(Dir, D) || D <- maps:get(<<"manifests">>, Index)])}.

descend(Dir, #{<<"mediaType">> := MT, <<"digest">> := Digest} = Desc) ->
    Bin = checked_blob(Dir, Desc),
    Doc = json(Bin),
    case MT of
        <<"application/vnd.oci.image.index.v1+json">> ->
            lists:append([descend(Dir, D) || D <- maps:get(<<"manifests">>, Doc)]);
        <<"application/vnd.oci.image.manifest.v1+json">> ->
            MT = maps:get(<<"mediaType">>, Doc),
            #{<<"config">> := ConfigDesc, <<"layers">> := Layers} = Doc,
            <<"application/vnd.oci.image.config.v1+json">> = maps:get(<<"mediaType">>, ConfigDesc),
            Config = json(checked_blob(Dir, ConfigDesc)),
            DiffIds = maps:get(<<"diff_ids">>, maps:get(<<"rootfs">>, Config)),
            true = length(DiffIds) =:= length(Layers),
            lists:foreach(
                fun({L, DiffId}) ->
                    Blob = checked_blob(Dir, L),
                    case maps:get(<<"mediaType">>, L) of
                        <<"application/vnd.oci.image.layer.v1.tar+gzip">> ->
                            DiffId = sha256(zlib:gunzip(Blob));
                        <<"application/vnd.oci.image.layer.v1.tar+zstd">> ->
                            ok
                    end
                end,
                lists:zip(Layers, DiffIds)
            ),
            _ = Digest,
            [{Desc, Doc, Config}]
    end.

checked_blob(Dir, #{<<"digest">> := Digest, <<"size">> := Size}) ->
    Bin = read_blob(Dir, Digest),
    Digest = sha256(Bin),
    Size = byte_size(Bin),
    Bin.

%% Extract a (gzip or plain) tarball into Dir, refusing nothing: the tarballs are ours. A gzip
%% one is inflated with zlib:gunzip/1, which reads every member (see untar_gz/1).
extract_tarball(Path, Dir) ->
    {ok, Bytes} = file:read_file(Path),
    Tar =
        case Bytes of
            <<16#1f, 16#8b, _/binary>> -> zlib:gunzip(Bytes);
            _ -> Bytes
        end,
    ok = erl_tar:extract({binary, Tar}, [{cwd, Dir}]),
    Dir.

%% The fixtures themselves: everything is set inside and put back after.
sandbox_test() ->
    Before = [{Name, os:getenv(Name)} || Name <- ?SANDBOXED_ENV],
    {ok, Cwd} = file:get_cwd(),
    #{root := Root} = Sandbox = sandbox(),
    try
        {ok, Inside} = file:get_cwd(),
        ?assertEqual(filename:join(Root, "cwd"), Inside),
        ?assertEqual(filename:join(Root, "cache"), os:getenv("OCIBUILD_CACHE_DIR")),
        ?assertEqual(filename:join(Root, "tmp"), os:getenv("TMPDIR")),
        ?assertEqual(false, os:getenv("SOURCE_DATE_EPOCH")),
        ?assertEqual(false, os:getenv("OCIBUILD_PUSH_TOKEN")),
        ?assert(filelib:is_dir(os:getenv("TMPDIR")))
    after
        unsandbox(Sandbox)
    end,
    ?assertEqual({ok, Cwd}, file:get_cwd()),
    ?assertEqual(Before, [{Name, os:getenv(Name)} || Name <- ?SANDBOXED_ENV]),
    ?assertNot(filelib:is_dir(Root)).

in_dir_test() ->
    {ok, Cwd} = file:get_cwd(),
    Dir = tmp_dir("ocibuild-in-dir"),
    try
        ?assertEqual({ok, Dir}, in_dir(Dir, fun file:get_cwd/0)),
        ?assertError(boom, in_dir(Dir, fun() -> error(boom) end)),
        ?assertEqual({ok, Cwd}, file:get_cwd())
    after
        ok = file:del_dir_r(Dir)
    end.
