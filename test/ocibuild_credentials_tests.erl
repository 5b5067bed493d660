%% Credentials resolved through the real NIF, inside the BEAM, where SIGCHLD is ignored and
%% the native code cannot learn a child's exit status with waitpid: a credential helper's
%% exit status still counts, and nothing it printed ever reaches an error term.
%%
%% Each test points DOCKER_CONFIG at a config whose credsStore is a fake
%% docker-credential-test script, and pulls from a loopback "registry" that asks for Basic
%% auth and records the Authorization header it gets.
-module(ocibuild_credentials_tests).

-include_lib("eunit/include/eunit.hrl").

-define(SECRET, <<"Zq-s3cret-never-shown">>).
-define(ANSWER, "{\"ServerURL\":\"x\",\"Username\":\"alice\",\"Secret\":\"Zq-s3cret-never-shown\"}").

%% An answer then exit 1 is a failure, although the answer alone would be usable.
valid_json_then_exit_1_is_an_error_test_() ->
    {timeout, 60, fun() ->
        {Reason, Seen} = pull_with_helper("printf '" ?ANSWER "'; exit 1"),
        ?assertMatch({credentials_error, <<"docker-credential-test">>, _}, Reason),
        {credentials_error, _, Why} = Reason,
        ?assertNotEqual(nomatch, binary:match(Why, <<"exit status 1">>)),
        assert_no_secret(Reason),
        %% The lookup failed before any request: the registry saw nothing.
        ?assertEqual([], Seen)
    end}.

valid_json_then_a_warning_is_an_error_without_the_secret_test_() ->
    {timeout, 60, fun() ->
        {Reason, Seen} = pull_with_helper("printf '" ?ANSWER "\\nwarning: slow keychain\\n'"),
        ?assertMatch({credentials_error, <<"docker-credential-test">>, _}, Reason),
        assert_no_secret(Reason),
        ?assertEqual(nomatch, binary:match(term_to_binary(Reason), <<"warning">>)),
        ?assertEqual([], Seen)
    end}.

%% The helper's credentials reach the registry, and the error of the failed pull does not
%% quote them.
a_helper_that_answers_is_used_test_() ->
    {timeout, 60, fun() ->
        {Reason, Seen} = pull_with_helper("printf '" ?ANSWER "'"),
        Expected = <<"Basic ", (base64:encode(<<"alice:", ?SECRET/binary>>))/binary>>,
        ?assert(lists:member(Expected, Seen)),
        ?assertNotMatch({credentials_error, _, _}, Reason),
        assert_no_secret(Reason)
    end}.

%% The helper runs with the VM's view of the environment (os:putenv/2), as it was found.
a_helper_sees_the_vms_environment_test_() ->
    {timeout, 60, fun() ->
        {Reason, Seen} = pull_with_helper("[ \"$HOME\" = \"$DOCKER_CONFIG\" ] || exit 7; printf '" ?ANSWER "'"),
        ?assertNotMatch({credentials_error, _, _}, Reason),
        ?assertNotEqual([], Seen)
    end}.

%% -- helpers ------------------------------------------------------------------------------

assert_no_secret(Reason) ->
    ?assertEqual(nomatch, binary:match(term_to_binary(Reason), ?SECRET)),
    Printed = iolist_to_binary(io_lib:format("~p", [Reason])),
    ?assertEqual(nomatch, binary:match(Printed, ?SECRET)).

%% Pull from a loopback registry with the helper script `Body'; the error reason and the
%% Authorization headers the registry saw (`none' for a request without one, left out).
pull_with_helper(Body) ->
    Dir = temp_dir(),
    Bin = filename:join(Dir, "bin"),
    Helper = filename:join(Bin, "docker-credential-test"),
    ok = filelib:ensure_dir(Helper),
    ok = file:write_file(Helper, ["#!/bin/sh\nread -r url\n", Body, "\n"]),
    ok = file:change_mode(Helper, 8#755),
    ok = file:write_file(filename:join(Dir, "config.json"), <<"{\"credsStore\": \"test\"}">>),
    {Listen, Port} = start_registry(self()),
    Env = [{"DOCKER_CONFIG", Dir},
           {"HOME", Dir},
           {"REGISTRY_AUTH_FILE", filename:join(Dir, "no-auth.json")},
           {"PATH", Bin ++ ":" ++ os:getenv("PATH", "/usr/bin:/bin")}],
    Saved = [{Name, os:getenv(Name)} || {Name, _} <- Env],
    try
        [os:putenv(Name, Value) || {Name, Value} <- Env],
        Ref = iolist_to_binary(["127.0.0.1:", integer_to_list(Port), "/app:v1"]),
        {error, Reason} = ocibuild:from(Ref),
        {Reason, [Auth || Auth <- seen_requests(), Auth =/= none]}
    after
        [restore_env(Name, Value) || {Name, Value} <- Saved],
        gen_tcp:close(Listen),
        file:del_dir_r(Dir)
    end.

restore_env(Name, false) -> os:unsetenv(Name);
restore_env(Name, Value) -> os:putenv(Name, Value).

temp_dir() ->
    Base = os:getenv("TMPDIR", "/tmp"),
    Name = io_lib:format("ocibuild-credentials-~s-~b", [os:getpid(), erlang:unique_integer([positive])]),
    Dir = filename:join(Base, lists:flatten(Name)),
    ok = file:make_dir(Dir),
    Dir.

%% The requests' Authorization headers, as the registry reported them (all already sent:
%% the pull has returned, and each reply is sent after its report).
seen_requests() ->
    receive
        {registry_request, Auth} -> [Auth | seen_requests()]
    after 0 -> []
    end.

%% A registry that answers every request without credentials with a Basic challenge, and
%% every request with them with 404 (nothing is stored), one request per connection.
start_registry(Test) ->
    {ok, Listen} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}}, {active, false},
                                      {packet, http_bin}, {reuseaddr, true}]),
    {ok, Port} = inet:port(Listen),
    Acceptor = spawn(fun() -> accept_loop(Listen, Test) end),
    ok = gen_tcp:controlling_process(Listen, Acceptor),
    {Listen, Port}.

accept_loop(Listen, Test) ->
    case gen_tcp:accept(Listen) of
        {ok, Socket} ->
            serve(Socket, Test),
            accept_loop(Listen, Test);
        {error, _} ->
            ok
    end.

serve(Socket, Test) ->
    case read_auth(Socket, none) of
        {ok, Auth} ->
            Test ! {registry_request, Auth},
            gen_tcp:send(Socket, reply(Auth));
        error ->
            ok
    end,
    gen_tcp:close(Socket).

read_auth(Socket, Auth) ->
    case gen_tcp:recv(Socket, 0, 10000) of
        {ok, {http_request, _, _, _}} -> read_auth(Socket, Auth);
        {ok, {http_header, _, 'Authorization', _, Value}} -> read_auth(Socket, Value);
        {ok, {http_header, _, _, _, _}} -> read_auth(Socket, Auth);
        {ok, http_eoh} -> {ok, Auth};
        _ -> error
    end.

reply(none) ->
    <<"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\n"
      "Content-Length: 0\r\nConnection: close\r\n\r\n">>;
reply(_) ->
    Body = <<"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest unknown\"}]}">>,
    [<<"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ">>,
     integer_to_binary(byte_size(Body)), <<"\r\nConnection: close\r\n\r\n">>, Body].
