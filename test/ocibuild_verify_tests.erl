%% EUnit: `ocibuild:verify/3' (`ocibuild_verify') from Erlang: saved tarballs (the SBOM an
%% image carries is checked, what a tarball cannot hold is skipped), the key and argument
%% errors, an unreachable registry, and the one-line reasons the tasks print. Registries with
%% real signed pushes are test/supply/verify.sh's; the checks themselves are the core's
%% (`cargo test -p ocibuild_core inspect_tests').
-module(ocibuild_verify_tests).

-include_lib("eunit/include/eunit.hrl").

fixture(Name) ->
    Source = proplists:get_value(source, ocibuild:module_info(compile)),
    Root = filename:dirname(filename:dirname(Source)),
    unicode:characters_to_binary(
        filename:join([Root, "native", "ocibuild_core", "tests", "fixtures", "signing", Name])).

verify_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1,
     fun({Root, _}) ->
         [
             {"a saved image with its SBOM: the SBOM is checked, the rest skipped",
              fun() -> saved_with_sbom(Root) end},
             {"a saved image without an SBOM has nothing to check", fun() -> saved_without_sbom(Root) end},
             {"key errors come before any work", fun() -> key_errors(Root) end},
             {timeout, 60, {"an unreachable registry is an error term", fun unreachable/0}}
         ]
     end}.

sbom_layer() ->
    Input = ocibuild_sbom:input(#{name => <<"hello">>, version => <<"1.0.0">>,
                                  release_path => undefined, image => #{base => none},
                                  created => 0}),
    {ok, Sbom} = ocibuild_sbom:build(Input),
    {ok, Layer} = ocibuild_sbom:layer(Sbom, gzip),
    Layer.

saved(Root, Name, Layers) ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:add_layer(I0, [{<<"/app/a.txt">>, <<"a\n">>, 8#644}]),
    Image = I1#{layers := maps:get(layers, I1) ++ Layers},
    Path = filename:join(Root, Name),
    ok = ocibuild:save(Image, Path),
    Path.

saved_with_sbom(Root) ->
    Path = saved(Root, "with-sbom.tar.gz", [sbom_layer()]),
    Key = fixture("pkcs8.pub"),
    {ok, Checks} = ocibuild:verify(Path, #{}, #{key => Key}),
    ?assertMatch([#{kind := signature, outcome := skip}, #{kind := attestation, outcome := skip},
                  #{kind := sbom, outcome := ok}], Checks),
    [#{line := Sig}, _, #{line := Sbom, subject := <<"sha256:", _/binary>>}] = Checks,
    ?assertMatch(<<"skip signature sha256:", _/binary>>, Sig),
    ?assertNotEqual(nomatch, binary:match(Sbom, <<"SPDX-2.2">>)),
    %% tar:// says the same.
    Url = unicode:characters_to_binary(["tar://", Path]),
    ?assertEqual({ok, Checks}, ocibuild:verify(Url, #{}, #{key => Key})).

saved_without_sbom(Root) ->
    Path = saved(Root, "plain.tar", []),
    {error, {verification_failed, Checks}} =
        ocibuild:verify(Path, #{}, #{key => fixture("pkcs8.pub")}),
    ?assertEqual([skip, skip, skip], [O || #{outcome := O} <- Checks]),
    ?assertEqual("verification failed: nothing to check (every check was skipped)",
                 unicode:characters_to_list(ocibuild_release_messages:format_error({verification_failed, Checks}))).

key_errors(Root) ->
    Path = saved(Root, "k.tar", [sbom_layer()]),
    Missing = unicode:characters_to_binary(filename:join(Root, "nope.pub")),
    ?assertEqual({error, {key_read, Missing, enoent}}, ocibuild:verify(Path, #{}, #{key => Missing})),
    %% A private key, or anything that is not a P-256 public key.
    ?assertMatch({error, {public_key_error, <<_/binary>>}},
                 ocibuild:verify(Path, #{}, #{key => fixture("pkcs8.pem")})),
    ?assertMatch({error, {public_key_error, <<_/binary>>}},
                 ocibuild:verify(Path, #{}, #{key => fixture("rsa.pem")})),
    ?assertEqual({error, {invalid_option, key, missing}}, ocibuild:verify(Path, #{}, #{})),
    ?assertMatch({error, {tarball_not_found, _}},
                 ocibuild:verify(filename:join(Root, "gone.tar"), #{}, #{key => fixture("pkcs8.pub")})),
    [?assertMatch([_ | _], unicode:characters_to_list(ocibuild_release_messages:format_error(R)))
     || R <- [{key_read, Missing, enoent}, {public_key_error, <<"x">>}, {invalid_option, key, missing}]].

unreachable() ->
    Reg = <<"127.0.0.1:", (integer_to_binary(ocibuild_test_util:closed_port()))/binary>>,
    ?assertMatch({error, {http_error, Reg, _}},
                 ocibuild:verify(<<Reg/binary, "/x:y">>, #{}, #{key => fixture("pkcs8.pub")})),
    ?assertMatch({error, {invalid_option, auth, _}},
                 ocibuild:verify(<<Reg/binary, "/x:y">>, #{user => 1}, #{key => fixture("pkcs8.pub")})),
    ?assertEqual(0, ocibuild_nif:job_count()).

is_tarball_test() ->
    ?assert(ocibuild_verify:is_tarball("tar://x")),
    ?assert(ocibuild_verify:is_tarball(<<"out/app-1.tar.gz">>)),
    ?assert(ocibuild_verify:is_tarball("app.tar")),
    ?assertNot(ocibuild_verify:is_tarball("ghcr.io/acme/app:1.0")),
    ?assertNot(ocibuild_verify:is_tarball(".tar")),
    ?assertNot(ocibuild_verify:is_tarball(42)).

failed_checks_make_one_line_test() ->
    Checks = [#{outcome => ok, line => <<"ok   signature x">>},
              #{outcome => fail, line => <<"FAIL attestation sha256:a (.att layer 1): signature does not verify with k.pub">>},
              #{outcome => fail, line => <<"FAIL sbom y">>}],
    ?assertEqual("verification failed: attestation sha256:a (.att layer 1): signature does not "
                 "verify with k.pub (and 1 more failed check(s))",
                 unicode:characters_to_list(ocibuild_release_messages:format_error({verification_failed, Checks}))).
