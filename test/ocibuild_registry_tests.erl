%% Registry API checks that need no registry: argument validation, error terms, and jobs
%% against a port nothing listens on. The real registries are exercised by test/registry/run.sh.
-module(ocibuild_registry_tests).

-include_lib("eunit/include/eunit.hrl").

image() ->
    {ok, I0} = ocibuild:scratch(),
    ocibuild:add_layer(I0, [{<<"/a.txt">>, <<"a\n">>, 8#644}]).

invalid_references_test_() ->
    [
        ?_assertEqual({error, {invalid_reference, Ref}}, ocibuild:from(Ref))
     || Ref <- [<<"">>, <<"UPPER/case:1">>, <<"a:b:c">>, <<"repo@sha256:abc">>, <<"x:">>, <<"a b">>]
    ] ++
        [
            ?_assertMatch({error, {invalid_reference, _}}, ocibuild:from(42)),
            ?_assertMatch({error, {invalid_reference, _}}, ocibuild:from({<<"r">>, 1, <<"t">>})),
            ?_assertEqual(
                {error, {invalid_reference, {<<"localhost:5000">>, <<"Bad">>, <<"t">>}}},
                ocibuild:from({<<"localhost:5000">>, <<"Bad">>, <<"t">>})
            ),
            ?_assertEqual({error, {invalid_reference, "a:b:c"}}, ocibuild:from("a:b:c"))
        ].

invalid_auth_is_named_without_its_value_test() ->
    Secret = <<"s3cr3t-value">>,
    {error, Reason} = ocibuild:from(<<"localhost:1/x:y">>, #{username => <<"u">>, pass => Secret}),
    ?assertMatch({invalid_option, auth, _}, Reason),
    ?assertEqual(nomatch, binary:match(term_to_binary(Reason), Secret)),
    ?assertMatch({error, {invalid_option, auth, password}},
                 ocibuild:from(<<"localhost:1/x:y">>, #{username => <<"u">>, password => 7})),
    ?assertMatch({error, {invalid_option, auth, not_a_map}}, ocibuild:from(<<"localhost:1/x:y">>, secret)).

invalid_options_test_() ->
    I = image(),
    Port = integer_to_binary(ocibuild_test_util:closed_port()),
    Reg = <<"127.0.0.1:", Port/binary>>,
    [
        ?_assertMatch({error, {invalid_option, progress, _}},
                      ocibuild:from(<<Reg/binary, "/x:y">>, #{}, #{progress => not_a_fun})),
        ?_assertMatch({error, {invalid_platform, _}},
                      ocibuild:from(<<Reg/binary, "/x:y">>, #{}, #{platform => <<"linux">>})),
        ?_assertMatch({error, {invalid_option, chunk_size, 0}},
                      ocibuild:push(I, Reg, <<"x:y">>, #{}, #{chunk_size => 0})),
        ?_assertMatch({error, {invalid_option, max_concurrency, 0}},
                      ocibuild:push(I, Reg, <<"x:y">>, #{}, #{max_concurrency => 0})),
        ?_assertMatch({error, {invalid_reference, _}}, ocibuild:push(I, Reg, <<"Bad Tag">>)),
        ?_assertMatch({error, {invalid_reference, _}}, ocibuild:push(I, Reg, <<"x@sha256:", (binary:copy(<<"a">>, 64))/binary>>)),
        ?_assertMatch({error, {invalid_reference, _}},
                      ocibuild:push(I, Reg, <<"x:y">>, #{}, #{tags => [<<"bad tag">>]})),
        ?_assertMatch({error, {invalid_option, image, _}}, ocibuild:push(not_an_image, Reg, <<"x:y">>)),
        ?_assertMatch({error, {invalid_option, platform, _}},
                      ocibuild:push_multi([I, I], Reg, <<"x:y">>, #{})),
        ?_assertMatch({error, {invalid_option, images, []}}, ocibuild:push_multi([], Reg, <<"x:y">>, #{}))
    ].

%% Nothing listens: the error names the registry and the failure, after bounded retries.
unreachable_registry_test_() ->
    {timeout, 60, fun() ->
        Port = integer_to_binary(ocibuild_test_util:closed_port()),
        Reg = <<"127.0.0.1:", Port/binary>>,
        ?assertMatch({error, {http_error, Reg, _}}, ocibuild:from(<<Reg/binary, "/x:y">>)),
        ?assertMatch({error, {http_error, Reg, _}}, ocibuild:push(image(), Reg, <<"x:y">>)),
        %% Each job deregisters just after it sends its reply, so wait (bounded) for that.
        ocibuild_test_util:wait_until(jobs_done, fun() -> ocibuild_nif:job_count() =:= 0 end, 10000)
    end}.

%% A progress fun that crashes does not take the call down.
failing_progress_fun_test_() ->
    {timeout, 60, fun() ->
        Port = integer_to_binary(ocibuild_test_util:closed_port()),
        Reg = <<"127.0.0.1:", Port/binary>>,
        Bad = fun(_) -> error(boom) end,
        ?assertMatch({error, {http_error, _, _}}, ocibuild:push(image(), Reg, <<"x:y">>, #{}, #{progress => Bad}))
    end}.

check_auth_test() ->
    ?assertEqual({ok, undefined}, ocibuild_registry:check_auth(#{})),
    ?assertEqual({ok, #{token => <<"t">>}}, ocibuild_registry:check_auth(#{token => "t"})),
    ?assertEqual({ok, #{username => <<"u">>, password => <<"p">>}},
                 ocibuild_registry:check_auth(#{username => "u", password => <<"p">>})),
    ?assertEqual({error, {invalid_option, auth, {keys, [password]}}},
                 ocibuild_registry:check_auth(#{password => <<"p">>})).

%% Pulled images keep their credentials behind a fun: printing one shows no secret.
pulled_image_hides_credentials_test() ->
    Secret = <<"hunter2-secret">>,
    {ok, Stored} = ocibuild_registry:check_auth(#{username => <<"u">>, password => Secret}),
    Fun = fun() -> Stored end,
    Image = #{base => #{source => #{registry => <<"r">>, repository => <<"x">>, auth => Fun}}},
    Printed = iolist_to_binary(io_lib:format("~p", [Image])),
    ?assertEqual(nomatch, binary:match(Printed, Secret)),
    [#{base := #{source := #{auth := Map}}}] = ocibuild_registry:nif_images([Image]),
    ?assertEqual(Stored, Map).

%% A registry that takes connections and never answers: OCIBUILD_REGISTRY_TIMEOUT (read
%% from this VM's environment, so os:putenv/2 counts) bounds each attempt, and the error
%% says which registry and what timed out.
silent_registry_times_out_test_() ->
    {timeout, 60, fun() ->
        {Holder, Port} = silent_listener(),
        Reg = <<"127.0.0.1:", (integer_to_binary(Port))/binary>>,
        with_env("OCIBUILD_REGISTRY_TIMEOUT", "0.2", fun() ->
            ?assertMatch({error, {timeout, #{registry := Reg, phase := headers, limit_ms := 200,
                                             action := <<_/binary>>}}},
                         ocibuild:from(<<Reg/binary, "/x:y">>))
        end),
        exit(Holder, kill)
    end}.

invalid_timeouts_are_invalid_options_test_() ->
    Reg = <<"127.0.0.1:", (integer_to_binary(ocibuild_test_util:closed_port()))/binary>>,
    [
        ?_assertMatch({error, {invalid_option, 'OCIBUILD_REGISTRY_TIMEOUT', _}},
                      with_env("OCIBUILD_REGISTRY_TIMEOUT", "soon", fun() -> ocibuild:from(<<Reg/binary, "/x:y">>) end)),
        ?_assertMatch({error, {invalid_option, 'OCIBUILD_MIN_TRANSFER_RATE', _}},
                      with_env("OCIBUILD_MIN_TRANSFER_RATE", "-1", fun() -> ocibuild:from(<<Reg/binary, "/x:y">>) end))
    ].

with_env(Name, Value, Fun) ->
    true = os:putenv(Name, Value),
    try Fun() after os:unsetenv(Name) end.

%% A loopback listener that accepts connections and holds them without a word.
silent_listener() ->
    Parent = self(),
    Holder = spawn(fun() ->
        {ok, L} = gen_tcp:listen(0, [binary, {ip, {127, 0, 0, 1}}, {active, false}]),
        {ok, Port} = inet:port(L),
        Parent ! {silent_port, Port},
        hold(L, [])
    end),
    receive {silent_port, Port} -> {Holder, Port} end.

hold(L, Held) ->
    case gen_tcp:accept(L) of
        {ok, S} -> hold(L, [S | Held]);
        {error, _} -> ok
    end.

%% The new reasons read as one actionable line in rebar3 and mix output.
timeout_and_downgrade_reasons_are_explained_test_() ->
    Action = <<"GET manifest x:y">>,
    [
        ?_assertEqual(Expected, iolist_to_binary(ocibuild_release:format_error(Reason)))
     || {Reason, Expected} <- [
            {{timeout, #{registry => <<"r:1">>, action => Action, phase => headers, limit_ms => 200}},
             <<"r:1 did not answer GET manifest x:y within 200 ms (OCIBUILD_REGISTRY_TIMEOUT)">>},
            {{timeout, #{registry => <<"r:1">>, action => Action, phase => body, min_rate => 1024,
                         window_ms => 60000}},
             <<"r:1: GET manifest x:y moved less than 1024 bytes/s over 60000 ms (OCIBUILD_MIN_TRANSFER_RATE)">>},
            {{https_downgrade, #{registry => <<"r">>, to => <<"http://s3.example:80">>}},
             <<"r sent us from HTTPS to plain HTTP (http://s3.example:80): refused">>}
        ]
    ].
