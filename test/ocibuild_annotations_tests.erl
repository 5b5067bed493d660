%% Tests for ocibuild_annotations: the user's annotations checked, the automatic ones built.
-module(ocibuild_annotations_tests).

-include_lib("eunit/include/eunit.hrl").

-define(A, ocibuild_annotations).
-define(K(S), <<"org.opencontainers.image.", S>>).

validate_test_() ->
    [?_assertEqual({ok, #{<<"custom.key">> => <<"value">>}}, ?A:validate(#{<<"custom.key">> => <<"value">>})),
     ?_assertEqual({ok, #{}}, ?A:validate(#{})),
     ?_assertEqual({error, {protected_annotation, ?K("source")}}, ?A:validate(#{?K("source") => <<"evil">>})),
     ?_assertEqual({error, {protected_annotation, ?K("revision")}}, ?A:validate(#{?K("revision") => <<"x">>})),
     ?_assertEqual({error, {protected_annotation, ?K("base.name")}}, ?A:validate(#{?K("base.name") => <<"x">>})),
     ?_assertEqual({error, {protected_annotation, ?K("base.digest")}}, ?A:validate(#{?K("base.digest") => <<"x">>})),
     ?_assertMatch({error, {invalid_annotation, null_byte, _}}, ?A:validate(#{<<"bad\0key">> => <<"value">>})),
     ?_assertEqual({error, {invalid_annotation, null_byte, <<"k">>}}, ?A:validate(#{<<"k">> => <<"v\0">>})),
     ?_assertEqual({error, {invalid_annotation, path_traversal, <<"k">>}}, ?A:validate(#{<<"k">> => <<"a/../b">>})),
     ?_assertEqual({error, {invalid_annotation, path_traversal, <<"../k">>}}, ?A:validate(#{<<"../k">> => <<"v">>})),
     ?_assertEqual({error, {invalid_annotation, path_traversal, <<"k">>}}, ?A:validate(#{<<"k">> => <<"..">>})),
     ?_assertEqual({ok, #{<<"k">> => <<"v1..2">>}}, ?A:validate(#{<<"k">> => <<"v1..2">>})),
     ?_assertEqual({error, {invalid_annotation, empty_key, <<>>}}, ?A:validate(#{<<>> => <<"v">>})),
     %% created: a unix timestamp becomes ISO 8601; ISO 8601 stays; anything else is refused.
     ?_assertEqual({ok, #{?K("created") => <<"2023-11-14T22:13:20Z">>}},
                   ?A:validate(#{?K("created") => <<"1700000000">>})),
     ?_assertEqual({ok, #{?K("created") => <<"2024-02-29T12:00:00+01:00">>}},
                   ?A:validate(#{?K("created") => <<"2024-02-29T12:00:00+01:00">>})),
     ?_assertEqual({error, {invalid_annotation, created, <<"yesterday">>}},
                   ?A:validate(#{?K("created") => <<"yesterday">>})),
     %% The same input reports the same error: keys are checked in order.
     ?_assertEqual({error, {protected_annotation, ?K("revision")}},
                   ?A:validate(#{?K("source") => <<"a">>, ?K("revision") => <<"b">>}))].

auto_test_() ->
    NoCi = fun(_) -> false end,
    Image = #{base => #{reference => <<"localhost:5000/base:1">>, manifest_digest => <<"sha256:abc">>}},
    Config = #{version => <<"1.2.3">>, created => 0, getenv => NoCi, git => "/nonexistent/git"},
    GitHub = fun("GITHUB_SERVER_URL") -> "https://github.com";
                ("GITHUB_REPOSITORY") -> "acme/app";
                ("GITHUB_SHA") -> "abc123";
                (_) -> false
             end,
    [?_assertEqual(#{?K("version") => <<"1.2.3">>, ?K("created") => <<"1970-01-01T00:00:00Z">>,
                     ?K("base.name") => <<"localhost:5000/base:1">>, ?K("base.digest") => <<"sha256:abc">>},
                   ?A:auto(Image, "/rel", Config)),
     ?_assertEqual(#{?K("source") => <<"https://github.com/acme/app">>, ?K("revision") => <<"abc123">>,
                     ?K("created") => <<"1970-01-01T00:00:00Z">>},
                   ?A:auto(#{base => none}, "/rel", #{created => 0, getenv => GitHub})),
     ?_assertEqual(#{?K("created") => <<"1970-01-01T00:00:00Z">>},
                   ?A:auto(#{base => none}, "/rel", #{created => 0, getenv => GitHub, vcs_annotations => false})),
     ?_assertEqual(#{<<"a">> => <<"user">>, <<"b">> => <<"auto">>},
                   ?A:merge(#{<<"a">> => <<"auto">>, <<"b">> => <<"auto">>}, #{<<"a">> => <<"user">>})),
     ?_assertEqual(<<"2000-01-01T00:00:00Z">>, ?A:iso8601(946684800))].
