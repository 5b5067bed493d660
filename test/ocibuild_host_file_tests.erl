%% EUnit: files the user names on the host are read only when regular and within a cap, and
%% written only over a missing or regular file (ocibuild_host_file), at every place that
%% reads or writes one. A FIFO is the attack: an Erlang open of one blocks until a writer
%% comes, so every call here runs in a helper with a bound and the test fails, not hangs.
-module(ocibuild_host_file_tests).

-include_lib("eunit/include/eunit.hrl").

-define(F, ocibuild_host_file).
%% Well above the 10 s the helper allows a swapped-in FIFO, far below a hang.
-define(BOUND_MS, 30000).

host_file_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun({Root, _}) ->
        [
            {"read: regular files only, within the cap", fun() -> read_rules(Root) end},
            {"write: missing or regular targets, atomically", fun() -> write_rules(Root) end},
            {"write: a killed writer leaves no temp file", timeout, 60, fun() -> killed_writer(Root) end},
            {"every reason is one line", fun format_lines/0},
            {"signing key", fun() -> signing_key(Root) end},
            {"rebar.lock", fun() -> rebar_lock(Root) end},
            {"start_erl.data and the release script", fun() -> release_files(Root) end},
            {"run: --sbom, -o and --sign-key", timeout, 120, fun() -> run_paths(Root) end},
            {"tarballs: push of a saved tarball and tar:// bases", fun() -> tarballs(Root) end},
            {"install_nif.escript: OCIBUILD_NIF_PATH", timeout, 60, fun() -> nif_path(Root) end}
        ]
    end}.

%% `Fun()' in another process; a call still running after the bound fails the test.
bounded(Fun) ->
    {Pid, Ref} = spawn_monitor(fun() -> exit({done, Fun()}) end),
    receive
        {'DOWN', Ref, process, Pid, {done, Result}} -> Result;
        {'DOWN', Ref, process, Pid, Crash} -> error({crashed, Crash})
    after ?BOUND_MS ->
        exit(Pid, kill),
        error(blocked_on_a_special_file)
    end.

fifo(Dir, Name) ->
    Path = filename:join(Dir, Name),
    ok = filelib:ensure_dir(Path),
    "" = os:cmd("mkfifo '" ++ Path ++ "'"),
    Path.

read_rules(Root) ->
    Dir = filename:join(Root, "read"),
    Fifo = fifo(Dir, "fifo"),
    Small = filename:join(Dir, "small"),
    ok = file:write_file(Small, <<"0123456789">>),
    Big = filename:join(Dir, "big"),
    ok = file:write_file(Big, binary:copy(<<"x">>, 200000)),
    ?assertEqual({error, {not_regular_file, other}}, bounded(fun() -> ?F:read(Fifo, 100) end)),
    ?assertEqual({error, {not_regular_file, directory}}, bounded(fun() -> ?F:read(Dir, 100) end)),
    ?assertEqual({error, {not_regular_file, device}}, bounded(fun() -> ?F:read("/dev/zero", 100) end)),
    ?assertEqual({error, enoent}, ?F:read(filename:join(Dir, "missing"), 100)),
    ?assertEqual({ok, <<"0123456789">>}, ?F:read(Small, 10)),
    ?assertEqual({ok, <<"0123456789">>}, ?F:read(list_to_binary(Small), 10)),
    ?assertEqual({error, {file_too_large, 9}}, ?F:read(Small, 9)),
    ?assertEqual({ok, binary:copy(<<"x">>, 200000)}, ?F:read(Big, 200000)),
    %% A file whose size says 0 but that streams (procfs) is bounded by the cap too.
    ?assertEqual({error, {file_too_large, 10}}, ?F:read("/proc/self/status", 10)),
    %% A symlink to a FIFO is the FIFO.
    Link = filename:join(Dir, "link"),
    ok = file:make_symlink(Fifo, Link),
    ?assertEqual({error, {not_regular_file, other}}, bounded(fun() -> ?F:read(Link, 100) end)).

write_rules(Root) ->
    Dir = filename:join(Root, "write"),
    Fifo = fifo(Dir, "fifo"),
    ?assertEqual({error, {not_regular_file, other}}, bounded(fun() -> ?F:write(Fifo, <<"x">>) end)),
    ?assertEqual({ok, other}, type(Fifo)),
    ?assertEqual({error, {not_regular_file, directory}}, ?F:write(Dir, <<"x">>)),
    ?assertEqual({error, {not_regular_file, device}}, ?F:check_writable("/dev/null")),
    Out = filename:join(Dir, "out.json"),
    ?assertEqual(ok, ?F:check_writable(Out)),
    ok = ?F:write(Out, [<<"{">>, "}"]),
    ?assertEqual({ok, <<"{}">>}, file:read_file(Out)),
    ok = ?F:write(Out, <<"second">>),
    ?assertEqual({ok, <<"second">>}, file:read_file(Out)),
    ?assertEqual({error, enoent}, ?F:write(filename:join([Dir, "no", "dir"]), <<"x">>)),
    %% Writes from many processes at once: each its own temp file, none left behind.
    Self = self(),
    [spawn(fun() -> Self ! {written, ?F:write(Out, integer_to_binary(N))} end) || N <- lists:seq(1, 20)],
    ?assertEqual(lists:duplicate(20, ok), [receive {written, R} -> R after ?BOUND_MS -> timeout end
                                           || _ <- lists:seq(1, 20)]),
    {ok, Names} = file:list_dir(Dir),
    ?assertEqual(["fifo", "out.json"], lists:sort(Names)).

%% Killed at whatever point (before the temp file, during its write, before the rename or
%% after), the writer leaves the target old or new and no temp name: checked for kills at
%% several delays, waiting (with a bound) for the watcher to clean up.
killed_writer(Root) ->
    Dir = filename:join(Root, "killed"),
    Out = filename:join(Dir, "sbom.json"),
    ok = filelib:ensure_dir(Out),
    Big = binary:copy(<<"x">>, 32 bsl 20),
    [begin
         Writer = spawn(fun() -> ?F:write(Out, Big) end),
         timer:sleep(Delay),
         exit(Writer, kill),
         ?assertEqual(ok, wait_until(fun() -> only_target(Dir) end, 10000))
     end || Delay <- [0, 1, 2, 5, 10, 20, 50]].

only_target(Dir) ->
    {ok, Names} = file:list_dir(Dir),
    Names -- ["sbom.json"] =:= [].

wait_until(Check, Ms) when Ms =< 0 ->
    {timeout, Check()};
wait_until(Check, Ms) ->
    case Check() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Check, Ms - 20)
    end.

type(Path) ->
    case file:read_link_info(Path) of
        {ok, Info} -> {ok, element(3, Info)};
        Error -> Error
    end.

format_lines() ->
    Reasons = [enoent, eacces, {not_regular_file, other}, {not_regular_file, directory},
               {not_regular_file, device}, {file_too_large, 5}, {file_replaced, <<"a\nb">>},
               {read_timeout, 10000}, {something, "else\n"}],
    [?assertEqual(nomatch, string:find(?F:format_error(R), "\n")) || R <- Reasons].

signing_key(Root) ->
    Fifo = fifo(filename:join(Root, "key"), "cosign.key"),
    Result = bounded(fun() -> ocibuild_signing:load(Fifo, undefined) end),
    ?assertMatch({error, {sign_key, _, {file_read, {not_regular_file, other}}}}, Result),
    {error, Reason} = Result,
    Line = lists:flatten(io_lib:format("~ts", [ocibuild_release:format_error(Reason)])),
    ?assertEqual(nomatch, string:find(Line, "\n")),
    ?assertNotEqual(nomatch, string:find(Line, "not a regular file")),
    ?assertMatch({error, {sign_key, _, {file_read, {not_regular_file, device}}}},
                 bounded(fun() -> ocibuild_signing:load("/dev/zero", undefined) end)).

rebar_lock(Root) ->
    Fifo = fifo(filename:join(Root, "lock"), "rebar.lock"),
    Result = bounded(fun() -> ocibuild_rebar3:read_lock(Fifo) end),
    ?assertEqual({error, {Fifo, {not_regular_file, other}}}, Result),
    {error, Why} = Result,
    Line = lists:flatten(io_lib:format("~ts", [ocibuild_rebar3:format_error({lock_file, Why})])),
    ?assertEqual(nomatch, string:find(Line, "\n")),
    ?assertNotEqual(nomatch, string:find(Line, "not a regular file")).

release_files(Root) ->
    Rel = ocibuild_test_util:small_release(Root, "fifo-files"),
    ok = file:delete(filename:join([Rel, "releases", "start_erl.data"])),
    fifo(filename:join(Rel, "releases"), "start_erl.data"),
    ?assertEqual([], bounded(fun() -> ocibuild_release_files:start_erl_data(Rel) end)),
    %% The release script as a FIFO: skipped from the layers with a warning, and the start
    %% command falls back to relx's `foreground' instead of waiting on it.
    ok = file:delete(filename:join([Rel, "bin", "myapp"])),
    fifo(filename:join(Rel, "bin"), "myapp"),
    Out = filename:join(Root, "fifo-files.tar.gz"),
    State = state(Root, Rel, #{output => Out}),
    ?assertMatch({ok, _}, bounded(fun() -> ocibuild_release:run(ocibuild_test_adapter, State, #{}) end)),
    {ok, #{images := [Img], cleanup := Cleanup}} = ocibuild_layout:load_tarball_for_push(Out),
    Cleanup(),
    #{<<"config">> := C} = ocibuild_test_util:json(maps:get(config, Img)),
    ?assertEqual([<<"/app/bin/myapp">>, <<"foreground">>], maps:get(<<"Entrypoint">>, C)).

%% `--sbom' and `-o' naming a FIFO (or a device: as root, the save's rename would have
%% replaced /dev/null) fail before any work, and leave the FIFO a FIFO; a FIFO signing key
%% fails the push before any byte is sent.
run_paths(Root) ->
    Rel = ocibuild_test_util:small_release(Root, "paths"),
    Dir = filename:join(Root, "paths-out"),
    Fifo = fifo(Dir, "target"),
    Run = fun(Cli) ->
        bounded(fun() -> ocibuild_release:run(ocibuild_test_adapter, state(Root, Rel, Cli), #{}) end)
    end,
    Sbom = Run(#{sbom => Fifo, output => filename:join(Dir, "x.tar.gz")}),
    ?assertEqual({error, {sbom_write, list_to_binary(Fifo), {not_regular_file, other}}}, Sbom),
    ?assertEqual({error, {output_write, list_to_binary(Fifo), {not_regular_file, other}}},
                 Run(#{output => Fifo})),
    ?assertEqual({error, {output_write, <<"/dev/null">>, {not_regular_file, device}}},
                 Run(#{output => "/dev/null"})),
    Key = Run(#{sign_key => Fifo, push => "localhost:1", tag => ["x:1"]}),
    ?assertMatch({error, {sign_key, _, {file_read, {not_regular_file, other}}}}, Key),
    [begin
         Line = lists:flatten(io_lib:format("~ts", [ocibuild_release:format_error(R)])),
         ?assertEqual(nomatch, string:find(Line, "\n"))
     end || {error, R} <- [Sbom, Key]],
    ?assertEqual({ok, other}, type(Fifo)),
    ?assertEqual({ok, character_device}, char_device("/dev/null")),
    {ok, Names} = file:list_dir(Dir),
    ?assertEqual(["target"], Names),
    ocibuild_test_adapter:messages().

char_device(Path) ->
    %% read_file_info calls a character device `device'; `stat' tells it apart.
    case string:trim(os:cmd("stat -c %F " ++ Path)) of
        "character special file" -> {ok, character_device};
        Other -> {error, Other}
    end.

tarballs(Root) ->
    Fifo = fifo(filename:join(Root, "tarballs"), "image.tar.gz"),
    ?assertMatch({error, {not_a_file, _, other}},
                 bounded(fun() -> ocibuild_layout:load_tarball_for_push(Fifo) end)),
    ?assertMatch({error, _},
                 bounded(fun() -> ocibuild:from(iolist_to_binary(["tar://", Fifo])) end)),
    ?assertMatch({error, {not_a_file, _, device}},
                 bounded(fun() -> ocibuild_layout:load_tarball_for_push("/dev/zero") end)).

%% The install script, from a copy of the checkout's layout: one line, status 1, no library.
nif_path(Root) ->
    Copy = filename:join(Root, "nif-install"),
    Script = filename:join([Copy, "native", "install_nif.escript"]),
    ok = filelib:ensure_dir(Script),
    {ok, _} = file:copy(filename:join([project_root(), "native", "install_nif.escript"]), Script),
    Fifo = fifo(Copy, "ocibuild_nif.so"),
    Output = bounded(fun() ->
        os:cmd("OCIBUILD_NIF_PATH='" ++ Fifo ++ "' timeout 25 escript '" ++ Script ++
               "' 2>&1; echo \"status=$?\"")
    end),
    ?assertMatch([_Line, "status=1"], string:split(string:trim(Output), "\n", all)),
    ?assertNotEqual(nomatch, string:find(Output, "not a regular file")),
    ?assertNot(filelib:is_file(filename:join([Copy, "priv", "ocibuild_nif.so"]))).

%% This checkout: where the ocibuild application's sources are.
project_root() ->
    filename:dirname(filename:dirname(proplists:get_value(source, ocibuild:module_info(compile)))).

state(_Root, Rel, Cli) ->
    {ok, Config} = ocibuild_release:resolve_config(Cli, #{base_image => "scratch"}),
    #{config => Config, release => {<<"myapp">>, Rel}, version => <<"1.0.0">>}.

