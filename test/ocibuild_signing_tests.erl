%% EUnit: signing keys are opened once, by the native library, and only a handle comes back.
%% The PEM fixtures are the core's (native/ocibuild_core/tests/fixtures/signing; cosign.key
%% holds pkcs8.pem, encrypted with the password `test-password').
-module(ocibuild_signing_tests).

-include_lib("eunit/include/eunit.hrl").

-define(S, ocibuild_signing).

fixture(Name) ->
    Source = proplists:get_value(source, ocibuild:module_info(compile)),
    Root = filename:dirname(filename:dirname(Source)),
    unicode:characters_to_binary(
        filename:join([Root, "native", "ocibuild_core", "tests", "fixtures", "signing", Name])).

openssl_keys_load_as_handles_test() ->
    [begin
         Path = fixture(Name),
         {ok, Key} = ?S:load(Path, undefined),
         ?assert(?S:is_key(Key)),
         ?assertEqual(Path, ?S:path(Key)),
         ?assert(is_reference(?S:handle(Key)))
     end || Name <- ["sec1.pem", "pkcs8.pem"]].

%% Printed the way a crash report or a config dump would print it, a key shows its path and a
%% reference: no line of the PEM, no password.
a_printed_key_holds_no_secret_test() ->
    Path = fixture("cosign.key"),
    {ok, Key} = ?S:load(Path, "test-password"),
    Printed = lists:flatten(io_lib:format("~p ~w", [Key, Key])),
    {ok, Pem} = file:read_file(Path),
    Body = [L || L <- binary:split(Pem, <<"\n">>, [global]), byte_size(L) > 16,
                 binary:match(L, <<"-----">>) =:= nomatch],
    ?assertNotEqual([], Body),
    [?assertEqual(nomatch, string:find(Printed, binary_to_list(L))) || L <- Body],
    ?assertEqual(nomatch, string:find(Printed, "test-password")).

cosign_key_password_test_() ->
    Path = fixture("cosign.key"),
    [
        ?_assertMatch({ok, _}, ?S:load(Path, <<"test-password">>)),
        ?_assertEqual({error, {sign_key, Path, {sign_key_password, wrong}}},
                      ?S:load(Path, "wrong")),
        ?_assertEqual({error, {sign_key, Path, {sign_key_password, missing}}},
                      ?S:load(Path, false)),
        %% COSIGN_PASSWORD is what load/1 reads.
        ?_assertMatch({ok, _}, ocibuild_test_util:with_env("COSIGN_PASSWORD", "test-password",
                                                           fun() -> ?S:load(Path) end))
    ].

unusable_keys_are_refused_with_a_reason_test_() ->
    Missing = <<"/nonexistent/ocibuild-signing/key.pem">>,
    [
        ?_assertMatch({error, {sign_key, _, {sign_key_error, <<_/binary>>}}},
                      ?S:load(fixture("rsa.pem"), undefined)),
        ?_assertMatch({error, {sign_key, _, {sign_key_error, <<_/binary>>}}},
                      ?S:load(fixture("p384.pem"), undefined)),
        ?_assertEqual({error, {sign_key, Missing, {file_read, enoent}}}, ?S:load(Missing, undefined))
    ].

is_key_test_() ->
    [
        ?_assertNot(?S:is_key(#{path => <<"k">>, secret => fun() -> {<<"pem">>, undefined} end})),
        ?_assertNot(?S:is_key(make_ref())),
        ?_assertNot(?S:is_key(undefined))
    ].

%% The push takes the handle and nothing else: a reference that is not a key, or the old
%% `#{pem, password}' map, is refused before any connection.
push_takes_only_a_loaded_key_test_() ->
    Image = #{base => undefined, layers => [], config => #{}, annotations => #{}, platform => undefined},
    Target = #{registry => <<"localhost:1">>, repo_tag => <<"a:b">>},
    Push = #{created => 0, cache_dir => <<"/nonexistent/ocibuild-signing-cache">>},
    Refused = {error, {invalid_option, sign, <<"expected a key from ocibuild_signing:load/1,2">>}},
    [
        ?_assertEqual(Refused, ocibuild_nif:registry_push([Image], Target, Push#{sign => make_ref()})),
        ?_assertEqual(Refused, ocibuild_nif:registry_push([Image], Target,
                                                          Push#{sign => #{pem => <<"x">>}})),
        ?_assertMatch({error, {invalid_option, sign, _}},
                      ocibuild_registry:push([Image], <<"localhost:1">>, <<"a:b">>, #{},
                                             #{sign => #{pem => <<"x">>, password => undefined}}))
    ].
