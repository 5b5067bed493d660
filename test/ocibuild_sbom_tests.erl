%% EUnit: the SBOM is built once by the native library; its layer, the `--sbom' file and the
%% document all come from that one handle, byte for byte what the document says.
-module(ocibuild_sbom_tests).

-include_lib("eunit/include/eunit.hrl").

-define(B, ocibuild_sbom).

sbom_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, [
        {"the handle gives the document input/1 describes", fun document/0},
        {"the layer is the one a document binary gives", fun layer/0},
        {"write/2 writes the document; a directory is refused", fun write/0},
        {"bad input is a tagged error", fun bad_input/0},
        {"a push takes handles, documents or undefined", fun push_sboms/0}
    ]}.

input() ->
    ?B:input(#{name => <<"hello">>, version => <<"1.0.0">>, release_path => undefined,
               image => #{base => none}, created => 86400,
               dependencies => [#{name => <<"jason">>, version => <<"1.4.1">>, source => <<"hex">>},
                                #{name => <<"gitdep">>, version => <<"abc">>,
                                  source => <<"https://tok:en@github.com/acme/gitdep.git">>}],
               source => <<"https://github.com/acme/hello">>,
               revision => binary:copy(<<"a">>, 40)}).

document() ->
    {ok, Sbom} = ?B:build(input()),
    ?assert(is_reference(Sbom)),
    {ok, Json} = ?B:document(input()),
    {ok, Json} = ocibuild_nif:sbom_document(Sbom),
    Doc = ocibuild_test_util:json(Json),
    ?assertEqual(<<"SPDX-2.2">>, maps:get(<<"spdxVersion">>, Doc)),
    ?assertEqual(<<"1970-01-02T00:00:00Z">>,
                 maps:get(<<"created">>, maps:get(<<"creationInfo">>, Doc))),
    Names = [maps:get(<<"name">>, P) || P <- maps:get(<<"packages">>, Doc)],
    ?assertEqual([<<"gitdep">>, <<"hello">>, <<"jason">>], lists:sort(Names)),
    %% The lock file's token never reaches the document.
    ?assertEqual(nomatch, binary:match(Json, <<"tok:en">>)).

layer() ->
    {ok, Sbom} = ?B:build(input()),
    {ok, Json} = ?B:document(input()),
    [begin
         {ok, FromHandle} = ?B:layer(Sbom, Compression),
         {ok, FromDocument} = ?B:layer(Json, Compression),
         ?assertEqual(FromDocument, FromHandle),
         ?assertEqual(sbom, maps:get(layer_type, FromHandle))
     end || Compression <- [gzip, zstd]],
    {ok, #{blob := Blob}} = ?B:layer(Sbom, gzip),
    {ok, Gz} = file:read_file(Blob),
    ?assertEqual([{<<"sbom.spdx.json">>, Json}],
                 [{N, D} || {N, D} <- ocibuild_test_util:untar_gz(Gz), N =:= <<"sbom.spdx.json">>]),
    ?assertMatch({error, {invalid_option, compression, _}}, ?B:layer(Sbom, brotli)).

write() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-sbom"),
    Path = filename:join(Dir, "sbom.spdx.json"),
    {ok, Sbom} = ?B:build(input()),
    ok = ?B:write(Sbom, Path),
    {ok, Json} = ?B:document(input()),
    ?assertEqual({ok, Json}, file:read_file(Path)),
    ?assertMatch({error, _}, ?B:write(Sbom, Dir)),
    ?assertMatch({error, {invalid_option, sbom, _}}, ?B:write(make_ref(), Path)).

bad_input() ->
    Input = input(),
    ?assertMatch({error, {invalid_option, dependencies, _}},
                 ?B:build(Input#{dependencies => [#{name => <<"x">>}]})),
    ?assertMatch({error, {invalid_option, otp_apps, _}}, ?B:build(Input#{otp_apps => [{a}]})),
    ?assertMatch({error, {invalid_option, base, _}}, ?B:build(Input#{base => #{reference => <<"b">>}})),
    ?assertMatch({error, {invalid_digest, _}},
                 ?B:build(Input#{base => #{reference => <<"b">>, digest => <<"sha256:x">>}})),
    ?assertMatch({error, {invalid_option, sbom, _}}, ?B:build(Input#{name => <<>>})),
    ?assertMatch({error, {invalid_option, sbom, _}}, ocibuild_nif:sbom_layer(not_an_sbom, #{})).

%% The push decodes `sboms' before it connects: a reference that is no SBOM is refused, and
%% handles, documents and `undefined' pass the decoding (the push then fails to connect to a
%% port nothing listens on, which is not a decoding error).
push_sboms() ->
    Image = #{base => undefined, layers => [], config => #{}, annotations => #{}, platform => undefined},
    Target = #{registry => <<"localhost:1">>, repo_tag => <<"a:b">>},
    Push = #{created => 0, cache_dir => <<"/nonexistent/ocibuild-sbom-cache">>},
    ?assertMatch({error, {invalid_option, sboms, _}},
                 ocibuild_nif:registry_push([Image], Target, Push#{sboms => [make_ref()]})),
    ?assertMatch({error, {invalid_option, sboms, _}},
                 ocibuild_nif:registry_push([Image, Image], Target, Push#{sboms => [undefined]})).
