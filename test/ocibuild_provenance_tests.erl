%% EUnit tests for ocibuild_provenance (the provenance input of a build, the CI variables,
%% `--provenance PATH') and for the push option the native library decodes from it. The
%% statement's shape is tested by the native core's tests (supply::provenance); the statement a
%% real push attaches is checked by test/supply/provenance.sh with in-toto's own validators.
-module(ocibuild_provenance_tests).

-include_lib("eunit/include/eunit.hrl").

-define(P, ocibuild_provenance).
-define(CI, ["GITHUB_ACTIONS", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID",
             "GITHUB_RUN_ATTEMPT", "RUNNER_ENVIRONMENT", "GITLAB_CI", "TF_BUILD",
             "SOURCE_DATE_EPOCH"]).

base_digest() ->
    <<"sha256:", (binary:copy(<<"ab">>, 32))/binary>>.

image(Platform) ->
    {ok, Scratch} = ocibuild:scratch(),
    Scratch#{platform := Platform,
             base := #{reference => <<"debian:stable-slim">>, manifest_digest => base_digest()}}.

config() ->
    #{platforms => [#{os => <<"linux">>, architecture => <<"amd64">>},
                    #{os => <<"linux">>, architecture => <<"arm64">>}],
      base_image => <<"debian:stable-slim">>, compression => zstd,
      workdir => <<"/app">>, uid => 65534}.

context() ->
    #{name => <<"hello">>, version => <<"1.0.0">>, release_path => undefined,
      created => 0, started_on => 1700000000,
      dependencies => [
          #{name => <<"jason">>, version => <<"1.4.1">>, source => <<"hex">>,
            sha256 => binary:copy(<<"f">>, 64)},
          #{name => <<"bad">>, version => <<"1.0.0">>, source => <<"hex">>, sha256 => <<"xyz">>},
          #{name => <<"tiny">>, version => <<"0123">>, source => <<"https://example.invalid/t.git">>}
      ],
      source => <<"https://github.com/acme/hello">>,
      revision => binary:copy(<<"1">>, 40),
      images => [image(#{os => <<"linux">>, architecture => <<"amd64">>}),
                 image(#{os => <<"linux">>, architecture => <<"arm64">>})],
      tags => [<<"hello:1.0.0">>], config => config()}.

%% Runs `Fun' with the CI variables and SOURCE_DATE_EPOCH as given (the others unset), and
%% puts the VM's environment back afterwards.
with_env(Vars, Fun) ->
    Saved = [{N, os:getenv(N)} || N <- ?CI],
    [os:unsetenv(N) || N <- ?CI],
    [os:putenv(N, V) || {N, V} <- Vars],
    try Fun()
    after
        [case V of false -> os:unsetenv(N); _ -> os:putenv(N, V) end || {N, V} <- Saved]
    end.

input_states_the_build_test() ->
    {ok, Input} = with_env([], fun() -> ?P:input(context()) end),
    ?assertMatch(#{name := <<"hello">>, version := <<"1.0.0">>, tags := [<<"hello:1.0.0">>],
                   platforms := [<<"linux/amd64">>, <<"linux/arm64">>],
                   base_image := <<"debian:stable-slim">>, compression := zstd,
                   started_on := 1700000000, source_date_epoch := undefined, ci := #{},
                   source := <<"https://github.com/acme/hello">>}, Input),
    ?assertEqual(binary:copy(<<"1">>, 40), maps:get(revision, Input)),
    %% One entry per image: its platform and its base by digest, as the SBOM states them.
    ?assertEqual([#{platform => <<"linux/amd64">>,
                    base => #{reference => <<"debian:stable-slim">>, digest => base_digest()}},
                  #{platform => <<"linux/arm64">>,
                    base => #{reference => <<"debian:stable-slim">>, digest => base_digest()}}],
                 maps:get(images, Input)),
    ?assertMatch(#{<<"workdir">> := <<"/app">>, <<"uid">> := <<"65534">>,
                   <<"builder_otp_release">> := _}, maps:get(internal_parameters, Input)).

input_keeps_only_well_formed_lock_hashes_test() ->
    {ok, #{dependencies := Deps}} = with_env([], fun() -> ?P:input(context()) end),
    ?assertEqual([
        #{name => <<"jason">>, version => <<"1.4.1">>, source => <<"hex">>,
          sha256 => binary:copy(<<"f">>, 64)},
        #{name => <<"bad">>, version => <<"1.0.0">>, source => <<"hex">>},
        #{name => <<"tiny">>, version => <<"0123">>, source => <<"https://example.invalid/t.git">>}
    ], Deps).

input_reads_source_date_epoch_and_refuses_a_bad_one_test() ->
    ?assertMatch({ok, #{source_date_epoch := 951782400}},
                 with_env([{"SOURCE_DATE_EPOCH", "951782400"}], fun() -> ?P:input(context()) end)),
    ?assertEqual({error, {invalid_source_date_epoch, <<"yesterday">>}},
                 with_env([{"SOURCE_DATE_EPOCH", "yesterday"}], fun() -> ?P:input(context()) end)).

ci_variables_are_read_as_the_vm_sees_them_test() ->
    Vars = [{"GITHUB_ACTIONS", "true"}, {"GITHUB_SERVER_URL", "https://github.com"},
            {"GITHUB_REPOSITORY", "acme/hello"}, {"GITHUB_RUN_ID", "42"}],
    ?assertEqual(#{<<"GITHUB_ACTIONS">> => <<"true">>,
                   <<"GITHUB_SERVER_URL">> => <<"https://github.com">>,
                   <<"GITHUB_REPOSITORY">> => <<"acme/hello">>, <<"GITHUB_RUN_ID">> => <<"42">>},
                 with_env(Vars, fun ?P:ci_variables/0)),
    ?assertEqual(#{}, with_env([], fun ?P:ci_variables/0)).

first_statement_test_() ->
    Report = #{digest => <<"sha256:x">>,
               attached => #{provenance => [#{statement => <<"{\"a\":1}">>},
                                            #{statement => <<"{\"b\":2}">>}]}},
    [
        ?_assertEqual({ok, <<"{\"a\":1}">>}, ?P:first_statement(Report)),
        ?_assertEqual(none, ?P:first_statement(#{attached => #{provenance => []}})),
        ?_assertEqual(none, ?P:first_statement(#{attached => #{referrers => []}}))
    ].

write_goes_through_the_host_file_checks_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-provenance"),
    Path = filename:join(Dir, "provenance.json"),
    try
        ?assertEqual(ok, ?P:write(<<"{}">>, Path)),
        ?assertEqual({ok, <<"{}">>}, file:read_file(Path)),
        %% A directory in its place is refused, as for --sbom.
        ?assertMatch({error, _}, ?P:write(<<"{}">>, Dir))
    after
        file:del_dir_r(Dir)
    end.

%% The native library checks the input before any connection (`localhost:1' is never
%% reached): one `{invalid_option, provenance, <<"FIELD: why">>}' per mistake.
push_refuses_a_malformed_input_test_() ->
    {ok, Good} = with_env([], fun() -> ?P:input(context()) end),
    {ok, Scratch} = ocibuild:scratch(),
    Images = [Scratch, Scratch],
    Target = #{registry => <<"localhost:1">>, repo_tag => <<"a:b">>},
    Push = #{created => 0, cache_dir => <<"/nonexistent/ocibuild-provenance-cache">>},
    Refused = fun(Input) -> ocibuild_nif:registry_push(Images, Target, Push#{provenance => Input}) end,
    [
        ?_assertEqual({error, {invalid_option, provenance, <<"images: expected one entry per image">>}},
                      ocibuild_nif:registry_push([Scratch], Target, Push#{provenance => Good})),
        ?_assertEqual({error, {invalid_option, provenance, <<"expected a map from ocibuild_provenance:input/1">>}},
                      Refused(<<"statement">>)),
        ?_assertEqual({error, {invalid_option, provenance, <<"name: missing">>}},
                      Refused(maps:remove(name, Good))),
        ?_assertEqual({error, {invalid_option, provenance, <<"tags: expected a proper list">>}},
                      Refused(Good#{tags => [a | b]})),
        ?_assertMatch({error, {invalid_digest, _}},
                      Refused(Good#{images => [#{base => #{reference => <<"x">>, digest => <<"md5:1">>}},
                                                #{}]})),
        ?_assertMatch({error, {invalid_option, provenance, <<"started_on: ", _/binary>>}},
                      Refused(Good#{started_on => -1})),
        ?_assertMatch({error, {invalid_option, provenance, _}},
                      ocibuild_registry:push(Images, <<"localhost:1">>, <<"a:b">>, #{},
                                             #{provenance => [not_a_map]}))
    ].

%% rebar.lock's `pkg_hash_ext' (the outer checksum) is the sha256 the provenance states;
%% a value that is no sha256 is left out, and git dependencies get none.
rebar_lock_gives_package_hashes_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-provenance-lock"),
    Path = filename:join(Dir, "rebar.lock"),
    Hash = binary:copy(<<"AB">>, 32),
    Lock = iolist_to_binary([
        "{\"1.2.0\",\n"
        "[{<<\"cowboy\">>,{pkg,<<\"cowboy\">>,<<\"2.10.0\">>},0},\n"
        " {<<\"short\">>,{pkg,<<\"short\">>,<<\"1.0.0\">>},0},\n"
        " {<<\"mylib\">>,{git,\"https://example.invalid/mylib.git\",{ref,\"0123\"}},0}]}.\n"
        "[\n{pkg_hash,[{<<\"cowboy\">>, <<\"", binary:copy(<<"CD">>, 32), "\">>}]},\n"
        "{pkg_hash_ext,[{<<\"cowboy\">>, <<\"", Hash, "\">>}, {<<\"short\">>, <<\"DEF\">>}]}\n].\n"]),
    try
        ok = file:write_file(Path, Lock),
        ?assertEqual({ok, [
            #{name => <<"cowboy">>, version => <<"2.10.0">>, source => <<"hex">>,
              sha256 => string:lowercase(Hash)},
            #{name => <<"short">>, version => <<"1.0.0">>, source => <<"hex">>},
            #{name => <<"mylib">>, version => <<"0123">>, source => <<"https://example.invalid/mylib.git">>}
        ]}, ocibuild_rebar_lock:read(Path))
    after
        file:del_dir_r(Dir)
    end.

%% `{provenance_write, Path, Why}' gets its one line, as `sbom_write' does.
provenance_write_message_test() ->
    Line = unicode:characters_to_binary(
             ocibuild_release_messages:format_error({provenance_write, <<"out/p.json">>,
                                                      {not_regular_file, directory}})),
    ?assertMatch(<<"cannot write the provenance statement to out/p.json: ", _/binary>>, Line),
    ?assertEqual(nomatch, binary:match(Line, <<"\n">>)).
