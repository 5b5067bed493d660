%% EUnit: native/install_nif.escript's downloads are bounded in memory. A mirror (loopback
%% here) that sends without end is cut at the cap with one error line, instead of filling the
%% compiling machine's memory before the checksum is looked at; an ordinary answer still
%% arrives whole. The script runs from a copy of the checkout's layout, with its `checksums'
%% command (which fetches every target's artifact and prints its sha256).
%%
%% And its manifest (priv/.ocibuild_nif.manifest): an install whose inputs are unchanged runs
%% no cargo and downloads nothing; any change to them (a source edited, added or removed, the
%% library changed or deleted, a variable that changes the build) installs again. cargo is a
%% shim on PATH that records each call and "builds" a fixed library.
-module(ocibuild_install_nif_tests).

-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-define(BOUND_MS, 60000).

download_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun({Root, _}) ->
        [
            {"an endless download is cut at the cap", timeout, 90, fun() -> endless(Root) end},
            {"a small download arrives whole", timeout, 90, fun() -> small(Root) end}
        ]
    end}.

endless(Root) ->
    {Port, Server} = serve(endless),
    try
        Output = checksums(Root, Port),
        ?assertMatch([_Line, "status=1"], string:split(string:trim(Output), "\n", all)),
        ?assertNotEqual(nomatch, string:find(Output, "the download is larger than"))
    after
        exit(Server, kill)
    end.

small(Root) ->
    {Port, Server} = serve(small),
    try
        Lines = string:split(string:trim(checksums(Root, Port)), "\n", all),
        ?assertEqual("status=0", lists:last(Lines)),
        Sha = string:lowercase(binary_to_list(binary:encode_hex(crypto:hash(sha256, <<"hello">>)))),
        [?assertMatch([Sha, "ocibuild_nif-" ++ _], string:lexemes(L, " ")) || L <- lists:droplast(Lines)]
    after
        exit(Server, kill)
    end.

skip_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun({Root, _}) ->
        {inorder, [
            {"an unchanged install runs no cargo; each change installs again", timeout, 120,
                fun() -> source_changes(Root) end},
            {"a source dated in the future (or this second) is never trusted", timeout, 60,
                fun() -> racy(Root) end},
            {"a library replaced by another of the same size installs again", timeout, 60,
                fun() -> same_size_library(Root) end},
            {"a library dated in the future is recorded by its hash", timeout, 60,
                fun() -> future_library(Root) end},
            {"a verified download is not repeated", timeout, 60, fun() -> precompiled(Root) end}
        ]}
    end}.

source_changes(Root) ->
    Dir = checkout_copy(Root, "changes"),
    Lib = filename:join([Dir, "native", "ocibuild_core", "src", "lib.rs"]),
    Extra = filename:join([Dir, "native", "ocibuild_core", "src", "extra.rs"]),
    Library = filename:join([Dir, "priv", "ocibuild_nif.so"]),
    ?assertEqual(1, install(Dir, [])),
    ?assert(filelib:is_regular(filename:join([Dir, "priv", ".ocibuild_nif.manifest"]))),
    ?assertEqual({ok, <<"fake library">>}, file:read_file(Library)),
    ?assertEqual(1, install(Dir, [])),
    ?assertEqual(1, install(Dir, [])),
    edit(Lib, <<"pub fn changed() {}">>),
    ?assertEqual(2, install(Dir, [])),
    ?assertEqual(2, install(Dir, [])),
    edit(Extra, <<"pub fn extra() {}">>),
    ?assertEqual(3, install(Dir, [])),
    ?assertEqual(3, install(Dir, [])),
    ok = file:delete(Extra),
    settle(),
    ?assertEqual(4, install(Dir, [])),
    ok = file:delete(Library),
    ?assertEqual(5, install(Dir, [])),
    ?assertEqual({ok, <<"fake library">>}, file:read_file(Library)),
    ok = file:write_file(Library, <<"not the library">>),
    ?assertEqual(6, install(Dir, [])),
    ?assertEqual({ok, <<"fake library">>}, file:read_file(Library)),
    ?assertEqual(6, install(Dir, [])),
    ?assertEqual(7, install(Dir, [{"RUSTFLAGS", "-C opt-level=2"}])),
    ?assertEqual(7, install(Dir, [{"RUSTFLAGS", "-C opt-level=2"}])),
    ?assertEqual(8, install(Dir, [])),
    edit(filename:join(Dir, "Cargo.lock"), <<"# another lock\n">>),
    ?assertEqual(9, install(Dir, [])),
    ok = file:write_file(filename:join([Dir, "priv", ".ocibuild_nif.manifest"]), <<"{not a manifest">>),
    ?assertEqual(10, install(Dir, [])),
    ?assertEqual(10, install(Dir, [])).

racy(Root) ->
    Dir = checkout_copy(Root, "racy"),
    Lib = filename:join([Dir, "native", "ocibuild_core", "src", "lib.rs"]),
    ok = file:change_time(Lib, calendar:gregorian_seconds_to_datetime(
        calendar:datetime_to_gregorian_seconds(calendar:universal_time()) + 3600)),
    ?assertEqual(1, install(Dir, [])),
    ?assertNot(filelib:is_file(filename:join([Dir, "priv", ".ocibuild_nif.manifest"]))),
    ?assertEqual(2, install(Dir, [])).

%% The library is recorded by its identity (size, times, inode), not its hash: a replacement
%% of the same size must still be noticed, written in place right after the install (same
%% inode, the same second as the install if the clock allows) or renamed over it with its
%% mtime set back.
same_size_library(Root) ->
    Dir = checkout_copy(Root, "same-size"),
    Library = filename:join([Dir, "priv", "ocibuild_nif.so"]),
    ?assertEqual(1, install(Dir, [])),
    ?assertEqual({ok, <<"fake library">>}, file:read_file(Library)),
    {ok, Before} = file:read_file_info(Library),
    ok = file:write_file(Library, <<"fake librarX">>),
    ?assertEqual(2, install(Dir, [])),
    ?assertEqual({ok, <<"fake library">>}, file:read_file(Library)),
    ?assertEqual(2, install(Dir, [])),
    Other = Library ++ ".other",
    ok = file:write_file(Other, <<"fake librarY">>),
    {ok, Installed} = file:read_file_info(Library),
    ok = file:write_file_info(Other, Installed),
    ok = file:rename(Other, Library),
    {ok, After} = file:read_file_info(Library),
    ?assertEqual({Before#file_info.size, Installed#file_info.mtime}, {After#file_info.size, After#file_info.mtime}),
    ?assertEqual(3, install(Dir, [])),
    ?assertEqual({ok, <<"fake library">>}, file:read_file(Library)),
    ?assertEqual(3, install(Dir, [])).

%% Its times cannot vouch for it, so the manifest holds its sha256 (the check then reads it),
%% and a same-size replacement is still noticed. build.sh leaves a library with the bytes it
%% would copy alone, so the future date survives the install.
future_library(Root) ->
    Dir = checkout_copy(Root, "future"),
    Library = filename:join([Dir, "priv", "ocibuild_nif.so"]),
    ok = ocibuild_test_util:write_file(Library, <<"fake library">>, 8#755),
    ok = file:change_time(Library, calendar:gregorian_seconds_to_datetime(
        calendar:datetime_to_gregorian_seconds(calendar:universal_time()) + 3600)),
    settle(),
    ?assertEqual(1, install(Dir, [])),
    Facts = manifest_facts(Dir),
    ?assertMatch([{library, <<"priv/ocibuild_nif.so">>, _}],
                 [F || F <- Facts, element(1, F) =/= dir, element(2, F) =:= <<"priv/ocibuild_nif.so">>]),
    ?assertEqual(1, install(Dir, [])),
    {ok, Info} = file:read_file_info(Library),
    ok = file:write_file(Library, <<"fake librarX">>),
    ok = file:write_file_info(Library, Info),
    ?assertEqual(2, install(Dir, [])),
    ?assertEqual({ok, <<"fake library">>}, file:read_file(Library)).

manifest_facts(Dir) ->
    {ok, Bytes} = file:read_file(filename:join([Dir, "priv", ".ocibuild_nif.manifest"])),
    [{ocibuild_nif_manifest, 2} | Facts] = binary_to_term(Bytes),
    Facts.

precompiled(Root) ->
    Dir = checkout_copy(Root, "precompiled"),
    Artifacts = filename:join(Dir, "artifacts"),
    Name = string:trim(os:cmd("escript '" ++ filename:join([Dir, "native", "install_nif.escript"]) ++ "' artifact")),
    Gz = zlib:gzip(<<"downloaded library">>),
    ok = ocibuild_test_util:write_file(filename:join(Artifacts, Name), Gz, 8#644),
    Sha = string:lowercase(binary_to_list(binary:encode_hex(crypto:hash(sha256, Gz)))),
    ok = file:write_file(filename:join([Dir, "native", "checksums.txt"]), [Sha, "  ", Name, "\n"]),
    settle(),
    Env = [{"OCIBUILD_NIF_URL", "file://" ++ Artifacts}],
    ?assertEqual(0, install(Dir, Env)),
    Library = filename:join([Dir, "priv", "ocibuild_nif.so"]),
    ?assertEqual({ok, <<"downloaded library">>}, file:read_file(Library)),
    % Gone from the mirror: a second download would fail and fall back to cargo.
    ok = file:delete(filename:join(Artifacts, Name)),
    ?assertEqual(0, install(Dir, Env)),
    ?assertEqual({ok, <<"downloaded library">>}, file:read_file(Library)).

%% A copy of what the script reads: itself, build.sh, the version, a workspace with one fake
%% crate, no checksums (a development version: built from source), and the cargo shim.
checkout_copy(Root, Name) ->
    Dir = filename:join(Root, "skip-" ++ Name),
    [
        {ok, _} = copy(filename:join(project_root(), F), filename:join(Dir, F))
     || F <- ["native/install_nif.escript", "native/build.sh", "src/ocibuild.app.src"]
    ],
    ok = ocibuild_test_util:write_file(filename:join(Dir, "Cargo.toml"), <<"[workspace]\n">>, 8#644),
    ok = ocibuild_test_util:write_file(filename:join(Dir, "Cargo.lock"), <<"# lock\n">>, 8#644),
    ok = ocibuild_test_util:write_file(
        filename:join([Dir, "native", "ocibuild_core", "Cargo.toml"]), <<"[package]\n">>, 8#644),
    ok = ocibuild_test_util:write_file(
        filename:join([Dir, "native", "ocibuild_core", "src", "lib.rs"]), <<"pub fn f() {}">>, 8#644),
    Shim =
        "#!/bin/sh\n"
        "# The cargo shim: one line per call, and a fixed library where build.sh looks.\n"
        "echo \"$*\" >>\"$CARGO_SHIM_LOG\"\n"
        "mkdir -p \"$CARGO_TARGET_DIR/release\"\n"
        "printf 'fake library' >\"$CARGO_TARGET_DIR/release/libocibuild_nif.so\"\n",
    ok = ocibuild_test_util:write_file(filename:join([Dir, "bin", "cargo"]), Shim, 8#755),
    settle(),
    Dir.

copy(From, To) ->
    ok = filelib:ensure_dir(To),
    file:copy(From, To).

%% Writes, then waits until the clock has left the second of the write: the script trusts no
%% file changed in the current second (an mtime in seconds cannot show a second edit in it),
%% nor in the first 100 ms after it (file times lag the clock by up to a tick).
edit(Path, Bytes) ->
    ok = file:write_file(Path, Bytes),
    settle().

settle() ->
    Now = os:system_time(second),
    wait_until(fun() -> (os:system_time(millisecond) - 100) div 1000 > Now end, 3000).

wait_until(Done, Left) when Left =< 0 ->
    ?assert(Done());
wait_until(Done, Left) ->
    case Done() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Done, Left - 20)
    end.

%% Runs the installer in Dir with Env added (and cargo shimmed); returns how many times cargo
%% has been called there so far. The installer must succeed.
install(Dir, Env) ->
    Log = filename:join(Dir, "cargo-calls.log"),
    Vars = [{"PATH", filename:join(Dir, "bin") ++ ":" ++ os:getenv("PATH")},
            {"CARGO_TARGET_DIR", filename:join(Dir, "target")},
            {"CARGO_SHIM_LOG", Log}] ++ Env,
    Exports = lists:append([Name ++ "='" ++ Value ++ "' " || {Name, Value} <- Vars]),
    Script = filename:join([Dir, "native", "install_nif.escript"]),
    Output = os:cmd("env " ++ Exports ++ "timeout 50 escript '" ++ Script ++ "' 2>&1; echo \"status=$?\""),
    ?assertEqual("status=0", lists:last(string:split(string:trim(Output), "\n", all)), Output),
    case file:read_file(Log) of
        {ok, Calls} -> length(binary:matches(Calls, <<"\n">>));
        {error, enoent} -> 0
    end.

checksums(Root, Port) ->
    Copy = filename:join(Root, "install-nif-" ++ integer_to_list(Port)),
    Script = filename:join([Copy, "native", "install_nif.escript"]),
    AppSrc = filename:join([Copy, "src", "ocibuild.app.src"]),
    ok = filelib:ensure_dir(Script),
    ok = filelib:ensure_dir(AppSrc),
    {ok, _} = file:copy(filename:join([project_root(), "native", "install_nif.escript"]), Script),
    {ok, _} = file:copy(filename:join([project_root(), "src", "ocibuild.app.src"]), AppSrc),
    Command = "OCIBUILD_NIF_URL=http://127.0.0.1:" ++ integer_to_list(Port) ++
        " timeout 50 escript '" ++ Script ++ "' checksums 2>&1; echo \"status=$?\"",
    {Pid, Ref} = spawn_monitor(fun() -> exit({done, os:cmd(Command)}) end),
    receive
        {'DOWN', Ref, process, Pid, {done, Output}} -> Output
    after ?BOUND_MS ->
        exit(Pid, kill),
        error(install_script_did_not_finish)
    end.

%% A loopback HTTP server: `endless' answers 200 and sends zeros until the client goes;
%% `small' answers every request with the 5 bytes "hello".
serve(Mode) ->
    Self = self(),
    Server = spawn(fun() ->
        {ok, Listen} = gen_tcp:listen(0, [binary, {active, false}, {reuseaddr, true}, {ip, loopback}]),
        {ok, Port} = inet:port(Listen),
        Self ! {port, self(), Port},
        accept(Listen, Mode)
    end),
    receive
        {port, Server, Port} -> {Port, Server}
    after 5000 -> error(server_did_not_start)
    end.

accept(Listen, Mode) ->
    {ok, Socket} = gen_tcp:accept(Listen),
    Handler = spawn(fun() -> receive go -> answer(Socket, Mode) end end),
    ok = gen_tcp:controlling_process(Socket, Handler),
    Handler ! go,
    accept(Listen, Mode).

answer(Socket, Mode) ->
    {ok, _Request} = gen_tcp:recv(Socket, 0, 10000),
    case Mode of
        endless ->
            ok = gen_tcp:send(Socket, <<"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n">>),
            flood(Socket, binary:copy(<<0>>, 1 bsl 20));
        small ->
            ok = gen_tcp:send(Socket, <<"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                        "Connection: close\r\n\r\nhello">>),
            gen_tcp:close(Socket)
    end.

flood(Socket, Piece) ->
    case gen_tcp:send(Socket, Piece) of
        ok -> flood(Socket, Piece);
        {error, _} -> gen_tcp:close(Socket)
    end.

project_root() ->
    filename:dirname(filename:dirname(proplists:get_value(source, ocibuild:module_info(compile)))).
