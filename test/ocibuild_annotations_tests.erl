%% Tests for ocibuild_annotations: the user's annotations checked, the automatic ones built
%% from CI variables, a real git repository and the base image, and the two merged.
-module(ocibuild_annotations_tests).

-include_lib("eunit/include/eunit.hrl").

-define(A, ocibuild_annotations).
-define(K(S), <<"org.opencontainers.image.", S>>).
-define(EPOCH, <<"1970-01-01T00:00:00Z">>).
-define(NO_GIT, "/nonexistent/ocibuild-tests/git").

%%% validate/1

validate_test_() ->
    Ok = fun(Map) -> {ok, Map} end,
    Cases = [
        {#{}, Ok(#{})},
        {#{<<"custom.key">> => <<"value">>}, Ok(#{<<"custom.key">> => <<"value">>})},
        {#{?K("version") => <<"1.0">>, ?K("licenses") => <<"MIT">>},
         Ok(#{?K("version") => <<"1.0">>, ?K("licenses") => <<"MIT">>})},
        %% `..' only as a whole path component.
        {#{<<"k">> => <<"v1..2">>}, Ok(#{<<"k">> => <<"v1..2">>})},
        {#{<<"k">> => <<"a/..b/c.">>}, Ok(#{<<"k">> => <<"a/..b/c.">>})},
        {#{<<"k">> => <<"https://example.com/a/b">>}, Ok(#{<<"k">> => <<"https://example.com/a/b">>})},
        {#{<<"k">> => <<"..">>}, {error, {invalid_annotation, path_traversal, <<"k">>}}},
        {#{<<"k">> => <<"../x">>}, {error, {invalid_annotation, path_traversal, <<"k">>}}},
        {#{<<"k">> => <<"a/../b">>}, {error, {invalid_annotation, path_traversal, <<"k">>}}},
        {#{<<"k">> => <<"a/..">>}, {error, {invalid_annotation, path_traversal, <<"k">>}}},
        {#{<<"a/../b">> => <<"v">>}, {error, {invalid_annotation, path_traversal, <<"a/../b">>}}},
        {#{<<"bad\0key">> => <<"v">>}, {error, {invalid_annotation, null_byte, <<"bad\0key">>}}},
        {#{<<"k">> => <<"v\0">>}, {error, {invalid_annotation, null_byte, <<"k">>}}},
        {#{<<>> => <<"v">>}, {error, {invalid_annotation, empty_key, <<>>}}},
        {#{<<"k">> => <<255>>}, {error, {invalid_annotation, not_utf8, <<"k">>}}},
        {#{<<"k">> => "v"}, {error, {invalid_annotation, not_a_string, <<"k">>}}},
        {#{k => <<"v">>}, {error, {invalid_annotation, not_a_string, k}}},
        {#{<<"k">> => <<>>}, Ok(#{<<"k">> => <<>>})},
        {#{<<"k">> => <<"ünïcödé"/utf8>>}, Ok(#{<<"k">> => <<"ünïcödé"/utf8>>})},
        %% The keys ocibuild computes.
        {#{?K("source") => <<"https://evil.example/x">>}, {error, {protected_annotation, ?K("source")}}},
        {#{?K("revision") => <<"x">>}, {error, {protected_annotation, ?K("revision")}}},
        {#{?K("base.name") => <<"x">>}, {error, {protected_annotation, ?K("base.name")}}},
        {#{?K("base.digest") => <<"x">>}, {error, {protected_annotation, ?K("base.digest")}}}
    ],
    [{lists:flatten(io_lib:format("~0p", [In])), ?_assertEqual(Want, ?A:validate(In))}
     || {In, Want} <- Cases].

created_test_() ->
    Created = fun(Value) -> ?A:validate(#{?K("created") => Value, <<"other">> => <<"1700000000">>}) end,
    Kept = fun(Value) -> {ok, #{?K("created") => Value, <<"other">> => <<"1700000000">>}} end,
    Refused = fun(Value) -> {error, {invalid_created_timestamp, {invalid_format, Value}}} end,
    Negative = fun(Value) -> {error, {invalid_created_timestamp, {negative_timestamp, Value}}} end,
    Cases = [
        %% Unix seconds become ISO 8601 UTC; no other key is touched.
        {<<"0">>, Kept(?EPOCH)},
        {<<"1700000000">>, Kept(<<"2023-11-14T22:13:20Z">>)},
        {<<"253402300799">>, Kept(<<"9999-12-31T23:59:59Z">>)},
        %% RFC 3339 date-times stay exactly as given.
        {<<"2024-02-29T12:00:00Z">>, Kept(<<"2024-02-29T12:00:00Z">>)},
        {<<"2024-02-29T12:00:00+01:00">>, Kept(<<"2024-02-29T12:00:00+01:00">>)},
        {<<"2024-02-29T12:00:00.123456-05:30">>, Kept(<<"2024-02-29T12:00:00.123456-05:30">>)},
        {<<"2016-12-31t23:59:60z">>, Kept(<<"2016-12-31t23:59:60z">>)},
        %% Anything else.
        {<<"yesterday">>, Refused(<<"yesterday">>)},
        {<<>>, Refused(<<>>)},
        {<<"-5">>, Negative(<<"-5">>)},
        {<<"-">>, Refused(<<"-">>)},
        {<<"1700000000.5">>, Refused(<<"1700000000.5">>)},
        {<<"253402300800">>, Refused(<<"253402300800">>)},
        {<<"2024-02-29">>, Refused(<<"2024-02-29">>)},
        {<<"2024-02-29T12:00:00">>, Refused(<<"2024-02-29T12:00:00">>)},
        {<<"2024-02-29 12:00:00Z">>, Refused(<<"2024-02-29 12:00:00Z">>)},
        {<<"2023-02-29T12:00:00Z">>, Refused(<<"2023-02-29T12:00:00Z">>)},
        {<<"2024-13-01T12:00:00Z">>, Refused(<<"2024-13-01T12:00:00Z">>)},
        {<<"2024-01-01T24:00:00Z">>, Refused(<<"2024-01-01T24:00:00Z">>)},
        {<<"2024-01-01T12:00:00+0100">>, Refused(<<"2024-01-01T12:00:00+0100">>)},
        {<<"2024-01-01T12:00:00+24:00">>, Refused(<<"2024-01-01T12:00:00+24:00">>)},
        {<<" 1700000000">>, Refused(<<" 1700000000">>)}
    ],
    [{binary_to_list(In), ?_assertEqual(Want, Created(In))} || {In, Want} <- Cases].

%% Several problems: always the same one is reported. Malformed keys and values (in key
%% order) come before protected keys, which come before `created'.
validate_order_test_() ->
    [?_assertEqual({error, {protected_annotation, ?K("revision")}},
                   ?A:validate(#{?K("source") => <<"a">>, ?K("revision") => <<"b">>})),
     ?_assertEqual({error, {invalid_annotation, path_traversal, <<"a">>}},
                   ?A:validate(#{<<"b">> => <<"\0">>, <<"a">> => <<"../x">>})),
     ?_assertEqual({error, {invalid_annotation, null_byte, <<"zz">>}},
                   ?A:validate(#{?K("source") => <<"a">>, <<"zz">> => <<"\0">>})),
     ?_assertEqual({error, {protected_annotation, ?K("source")}},
                   ?A:validate(#{?K("source") => <<"a">>, ?K("created") => <<"never">>})),
     %% A key with both a NUL byte and `..': the NUL byte is named.
     ?_assertEqual({error, {invalid_annotation, null_byte, <<"../\0">>}},
                   ?A:validate(#{<<"../\0">> => <<"v">>}))].

%%% auto/3

base_image() ->
    #{base => #{reference => <<"localhost:5000/base:1">>, manifest_digest => <<"sha256:abc">>}}.

auto_test_() ->
    NoCi = ocibuild_vcs_tests:env([]),
    Quiet = #{created => 0, getenv => NoCi, git => ?NO_GIT},
    [{"version, created and the base",
      ?_assertEqual(#{?K("version") => <<"1.2.3">>, ?K("created") => ?EPOCH,
                      ?K("base.name") => <<"localhost:5000/base:1">>,
                      ?K("base.digest") => <<"sha256:abc">>},
                    ?A:auto(base_image(), "/rel", Quiet#{version => <<"1.2.3">>}))},
     {"scratch: no base annotations",
      ?_assertEqual(#{?K("created") => ?EPOCH}, ?A:auto(#{base => none}, "/rel", Quiet))},
     {"an image without a base key",
      ?_assertEqual(#{?K("created") => ?EPOCH}, ?A:auto(#{}, "/rel", Quiet))},
     {"a base known by name only",
      ?_assertEqual(#{?K("created") => ?EPOCH, ?K("base.name") => <<"alpine:3">>},
                    ?A:auto(#{base => #{reference => <<"alpine:3">>}}, "/rel", Quiet))},
     {"0.10's app_version",
      ?_assertEqual(#{?K("created") => ?EPOCH, ?K("version") => <<"0.1.0">>},
                    ?A:auto(#{base => none}, "/rel", Quiet#{app_version => <<"0.1.0">>}))},
     {"no version annotation for an undefined or empty version",
      [?_assertEqual(#{?K("created") => ?EPOCH},
                     ?A:auto(#{base => none}, "/rel", Quiet#{version => V}))
       || V <- [undefined, <<>>]]},
     {"created from the config",
      ?_assertEqual(#{?K("created") => <<"2023-11-14T22:13:20Z">>},
                    ?A:auto(#{base => none}, "/rel", Quiet#{created => 1700000000}))}].

auto_ci_test_() ->
    Auto = fun(Vars) ->
        ?A:auto(#{base => none}, "/rel",
                #{created => 0, getenv => ocibuild_vcs_tests:env(Vars), git => ?NO_GIT})
    end,
    [{"GitHub Actions",
      ?_assertEqual(#{?K("source") => <<"https://github.com/acme/app">>,
                      ?K("revision") => <<"abc123">>, ?K("created") => ?EPOCH},
                    Auto([{"GITHUB_SERVER_URL", "https://github.com"},
                          {"GITHUB_REPOSITORY", "acme/app"}, {"GITHUB_SHA", "abc123"}]))},
     {"GitLab CI",
      ?_assertEqual(#{?K("source") => <<"https://gitlab.example/g/app">>,
                      ?K("revision") => <<"def456">>, ?K("created") => ?EPOCH},
                    Auto([{"CI_PROJECT_URL", "https://gitlab.example/g/app"},
                          {"CI_COMMIT_SHA", "def456"}]))},
     {"Azure Pipelines",
      ?_assertEqual(#{?K("source") => <<"https://dev.azure.com/o/p/_git/app">>,
                      ?K("revision") => <<"0f0f">>, ?K("created") => ?EPOCH},
                    Auto([{"BUILD_REPOSITORY_URI", "https://o@dev.azure.com/o/p/_git/app"},
                          {"BUILD_SOURCEVERSION", "0f0f"}]))},
     {"vcs_annotations false: none, even on CI",
      ?_assertEqual(#{?K("created") => ?EPOCH},
                    ?A:auto(#{base => none}, "/rel",
                            #{created => 0, vcs_annotations => false,
                              getenv => ocibuild_vcs_tests:env([{"GITHUB_SHA", "abc123"},
                                                               {"CI_COMMIT_SHA", "def456"}])}))}].

auto_git_test_() ->
    {setup, fun() -> ocibuild_vcs_tests:git_repo("git@github.com:acme/hello.git") end,
     fun ocibuild_vcs_tests:remove/1,
     fun({Dir, Head}) ->
         Config = #{created => 0, getenv => ocibuild_vcs_tests:env([])},
         [{"a real repository, by vcs_dir",
           ?_assertEqual(#{?K("source") => <<"https://github.com/acme/hello">>,
                           ?K("revision") => Head, ?K("created") => ?EPOCH},
                         ?A:auto(#{base => none}, "/elsewhere", Config#{vcs_dir => Dir}))},
          {"vcs_annotations false",
           ?_assertEqual(#{?K("created") => ?EPOCH},
                         ?A:auto(#{base => none}, Dir,
                                 Config#{vcs_dir => Dir, vcs_annotations => false}))},
          {"git runs in the current directory, not in the release's",
           fun() ->
               {ok, Saved} = file:get_cwd(),
               Outside = ocibuild_test_util:tmp_dir("ocibuild-annotations-rel"),
               ok = file:set_cwd(Dir),
               try
                   ?assertEqual(#{?K("source") => <<"https://github.com/acme/hello">>,
                                  ?K("revision") => Head, ?K("created") => ?EPOCH},
                                ?A:auto(#{base => none}, Outside, Config))
               after
                   ok = file:set_cwd(Saved),
                   ocibuild_vcs_tests:remove(Outside)
               end
           end}]
     end}.

auto_not_a_repository_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-annotations-plain"),
    try
        ?assertEqual(#{?K("created") => ?EPOCH},
                     ?A:auto(#{base => none}, Dir,
                             #{created => 0, vcs_dir => Dir, getenv => ocibuild_vcs_tests:env([])}))
    after
        ocibuild_vcs_tests:remove(Dir)
    end.

%% Without `created' in the config: SOURCE_DATE_EPOCH, else the current time.
auto_created_default_test_() ->
    Config = #{vcs_annotations => false},
    [{"SOURCE_DATE_EPOCH",
      ?_assertEqual(#{?K("created") => <<"1970-01-02T00:00:00Z">>},
                    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", "86400",
                                                fun() -> ?A:auto(#{base => none}, "/rel", Config) end))},
     {"now",
      fun() ->
          ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", false, fun() ->
              Before = ?A:iso8601(erlang:system_time(second)),
              #{?K("created") := Created} = ?A:auto(#{base => none}, "/rel", Config),
              After = ?A:iso8601(erlang:system_time(second)),
              %% ISO 8601 UTC times of one width sort as they happen.
              ?assert(Before =< Created andalso Created =< After)
          end)
      end}].

%%% merge/2 and iso8601/1

merge_test() ->
    Auto = #{<<"a">> => <<"auto">>, <<"b">> => <<"auto">>},
    ?assertEqual(#{<<"a">> => <<"user">>, <<"b">> => <<"auto">>, <<"c">> => <<"user">>},
                 ?A:merge(Auto, #{<<"a">> => <<"user">>, <<"c">> => <<"user">>})).

%% The user's `created' wins over the automatic one, once validate/1 has made it ISO 8601.
merge_created_test() ->
    {ok, User} = ?A:validate(#{?K("created") => <<"1700000000">>}),
    Auto = ?A:auto(#{base => none}, "/rel", #{created => 0, vcs_annotations => false}),
    ?assertEqual(#{?K("created") => <<"2023-11-14T22:13:20Z">>}, ?A:merge(Auto, User)).

iso8601_test_() ->
    [?_assertEqual(?EPOCH, ?A:iso8601(0)),
     ?_assertEqual(<<"2000-01-01T00:00:00Z">>, ?A:iso8601(946684800)),
     ?_assertEqual(<<"2024-02-29T23:59:59Z">>, ?A:iso8601(1709251199))].
