%% EUnit: native/install_nif.escript's downloads are bounded in memory. A mirror (loopback
%% here) that sends without end is cut at the cap with one error line, instead of filling the
%% compiling machine's memory before the checksum is looked at; an ordinary answer still
%% arrives whole. The script runs from a copy of the checkout's layout, with its `checksums'
%% command (which fetches every target's artifact and prints its sha256).
-module(ocibuild_install_nif_tests).

-include_lib("eunit/include/eunit.hrl").

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
