%% Fail fast: `ocibuild_registry:check_push/3', and a release push whose registry cannot be
%% reached failing before any layer is built. (The protocol itself, 401s and tokens without
%% push scope included, is tested against the in-process registry by
%% `cargo test -p ocibuild_core registry::preflight'.)
-module(ocibuild_push_preflight_tests).

-include_lib("eunit/include/eunit.hrl").

check_push_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun(_) ->
        Registry = iolist_to_binary(["127.0.0.1:", integer_to_list(ocibuild_test_util:closed_port())]),
        [
            %% Both retry a refused connection as any request is retried (about 3 s each).
            {"an unreachable registry is the http_error a push gives", {timeout, 60, fun() ->
                {error, {http_error, Registry, Why}} = ocibuild_registry:check_push(Registry, <<"app:1">>, #{}),
                ?assert(is_binary(Why)),
                {ok, Image} = ocibuild:scratch(),
                ?assertMatch({error, {http_error, Registry, _}},
                             ocibuild_registry:push([Image], Registry, <<"app:1">>, #{}, #{}))
            end}},
            ?_assertEqual({error, {invalid_option, registry, 42}},
                          ocibuild_registry:check_push(42, <<"app:1">>, #{})),
            ?_assertEqual({error, {invalid_reference, 7}},
                          ocibuild_registry:check_push(Registry, 7, #{})),
            ?_assertMatch({error, {invalid_reference, _}},
                          ocibuild_registry:check_push(Registry, <<"UPPER:1">>, #{})),
            ?_assertEqual({error, {invalid_option, auth, password}},
                          ocibuild_registry:check_push(Registry, <<"app:1">>, #{username => <<"u">>, password => 7})),
            {"the password is in no error", {timeout, 60, fun() ->
                Secret = <<"s3cr3t-pw">>,
                {error, Reason} = ocibuild_registry:check_push(Registry, <<"app:1">>,
                                                               #{username => <<"u">>, password => Secret}),
                ?assertEqual(nomatch, binary:match(term_to_binary(Reason), Secret))
            end}}
        ]
    end}.

%% `ocibuild_release:run/3' with a push target nothing listens on: the error the push would
%% have returned, no layer built ("Building" never printed), the blob store untouched.
release_push_fails_before_building_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun({Root, _}) ->
        {timeout, 60, fun() ->
            Registry = "127.0.0.1:" ++ integer_to_list(ocibuild_test_util:closed_port()),
            Rel = ocibuild_test_util:small_release(Root, "myapp"),
            {ok, Config} = ocibuild_release:resolve_config(
                #{push => Registry, tag => ["myapp:1"]}, #{base_image => "scratch"}),
            State = #{config => Config, release => {<<"myapp">>, Rel}},
            Store = ocibuild_blob_store:root(),
            Before = store_files(Store),
            Result = ocibuild_release:run(ocibuild_test_adapter, State, #{}),
            Lines = ocibuild_test_adapter:messages(),
            RegistryBin = list_to_binary(Registry),
            ?assertMatch({error, {http_error, RegistryBin, _}}, Result),
            ?assertEqual([], [L || {_, <<"Building", _/binary>> = L} <- Lines]),
            ?assertEqual([], [L || {_, <<"Pushing", _/binary>> = L} <- Lines]),
            ?assertEqual(Before, store_files(Store)),
            %% The same line the push's error gets from the tools.
            Message = iolist_to_binary(ocibuild_release_messages:format_error(element(2, Result))),
            ?assertNotEqual(nomatch, binary:match(Message, RegistryBin))
        end}
    end}.

store_files(Store) ->
    lists:sort(filelib:wildcard(filename:join(unicode:characters_to_list(Store), "**/*"))).
