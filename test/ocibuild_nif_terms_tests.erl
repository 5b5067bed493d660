%% EUnit: hostile terms straight into the NIF (what a hand-built map or a bug in a wrapper
%% would pass) come back as `{error, {invalid_option, Field, Why}}', never as a panic. rustler
%% panics on an improper list when it decodes one into a Vec; the NIF glue refuses them first.
-module(ocibuild_nif_terms_tests).

-include_lib("eunit/include/eunit.hrl").

-define(N, ocibuild_nif).

image(Fields) ->
    maps:merge(#{base => undefined, layers => [], config => #{}, annotations => #{},
                 platform => undefined}, Fields).

%% An image read back from a saved tarball (`ocibuild_layout:load_tarball_for_push/1').
loaded(Fields) ->
    Json = <<"{}">>,
    Digest = <<"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a">>,
    maps:merge(#{manifest => Json, manifest_digest => Digest, config => Json,
                 config_digest => Digest, layers => []}, Fields).

proper_list(Field) ->
    {error, {invalid_option, Field, <<"expected a proper list">>}}.

improper_lists_test_() ->
    Out = <<"/nonexistent/ocibuild-nif-terms.tar.gz">>,
    Push = #{created => 0, cache_dir => <<"/nonexistent/ocibuild-nif-terms-cache">>},
    Target = #{registry => <<"localhost:1">>, repo_tag => <<"a:b">>},
    [
        ?_assertEqual(proper_list(files), ?N:layer_create([{<<"/a">>, <<"x">>, 8#644} | tail], #{})),
        ?_assertEqual(proper_list(files), ?N:layer_create(not_a_list, #{})),
        ?_assertEqual(proper_list(images), ?N:image_save([image(#{}) | tail], Out, #{})),
        ?_assertEqual(proper_list(images), ?N:image_export([image(#{}) | tail], Out, #{})),
        ?_assertEqual(proper_list(layers), ?N:image_save([image(#{layers => [a | b]})], Out, #{})),
        ?_assertEqual(proper_list(env), ?N:image_save([image(#{config => #{env => [a | b]}})], Out, #{})),
        ?_assertEqual(proper_list(entrypoint),
                      ?N:image_save([image(#{config => #{entrypoint => [<<"sh">> | b]}})], Out, #{})),
        ?_assertEqual(proper_list(cmd), ?N:image_save([image(#{config => #{cmd => [<<"sh">> | b]}})], Out, #{})),
        ?_assertEqual(proper_list(platforms), ?N:registry_pull(<<"localhost:1/a:b">>, #{}, #{platforms => [a | b]})),
        ?_assertEqual(proper_list(images), ?N:registry_push([x | y], Target, Push)),
        ?_assertEqual(proper_list(tags), ?N:registry_push([image(#{})], Target#{tags => [<<"c">> | d]}, Push)),
        ?_assertEqual(proper_list(sboms), ?N:registry_push([image(#{})], Target, Push#{sboms => [a | b]})),
        ?_assertEqual(proper_list(layers), ?N:registry_push([loaded(#{layers => [a | b]})], Target, Push)),
        ?_assertEqual(proper_list(dependencies),
                      ?N:sbom_build(#{name => <<"a">>, version => <<"1">>, dependencies => [a | b]})),
        ?_assertEqual(proper_list(otp_apps),
                      ?N:sbom_build(#{name => <<"a">>, version => <<"1">>, otp_apps => [a | b]}))
    ].

%% Integers out of range (bignums, negatives) for sizes, modes and times.
integers_test_() ->
    Out = <<"/nonexistent/ocibuild-nif-terms.tar.gz">>,
    Layer = fun(Size) ->
        #{media_type => <<"application/vnd.oci.image.layer.v1.tar+gzip">>,
          digest => <<"sha256:", (binary:copy(<<"a">>, 64))/binary>>,
          diff_id => <<"sha256:", (binary:copy(<<"b">>, 64))/binary>>, size => Size}
    end,
    [
        ?_assertMatch({error, {invalid_option, _, _}}, ?N:layer_create([{<<"/a">>, <<"x">>, 1 bsl 70}], #{})),
        ?_assertMatch({error, {invalid_option, _, _}}, ?N:layer_create([{<<"/a">>, <<"x">>, -1}], #{})),
        ?_assertMatch({error, {invalid_option, mtime, _}},
                      ?N:layer_create([{<<"/a">>, <<"x">>, 8#644}], #{compression => gzip, mtime => 1 bsl 80})),
        ?_assertMatch({error, {invalid_option, size, _}}, ?N:image_save([image(#{layers => [Layer(-1)]})], Out, #{})),
        ?_assertMatch({error, {invalid_option, size, _}},
                      ?N:image_save([image(#{layers => [Layer(1 bsl 64)]})], Out, #{}))
    ].
