%% EUnit: SOURCE_DATE_EPOCH as the VM sees it (os:putenv/2 included), judged by the core.
-module(ocibuild_reproducible_tests).

-include_lib("eunit/include/eunit.hrl").

-define(R, ocibuild_reproducible).

with(Value, Fun) ->
    ocibuild_test_util:with_env("SOURCE_DATE_EPOCH", Value, Fun).

source_date_epoch_test_() ->
    Cases = [
        {false, {ok, undefined}},
        {"", {ok, undefined}},
        {"  ", {ok, undefined}},
        {"0", {ok, 0}},
        {" 1700000000 ", {ok, 1700000000}},
        {"18446744073709551615", {ok, 18446744073709551615}},
        {"18446744073709551616", {error, {invalid_source_date_epoch, <<"18446744073709551616">>}}},
        {"-1", {error, {invalid_source_date_epoch, <<"-1">>}}},
        {"+5", {error, {invalid_source_date_epoch, <<"+5">>}}},
        {"1e9", {error, {invalid_source_date_epoch, <<"1e9">>}}},
        {" soon", {error, {invalid_source_date_epoch, <<" soon">>}}}
    ],
    [{lists:flatten(io_lib:format("~p", [Value])),
      ?_assertEqual(Want, with(Value, fun ?R:source_date_epoch/0))}
     || {Value, Want} <- Cases].

defaults_test_() ->
    [
        ?_assertEqual({ok, 0}, with(false, fun ?R:layer_mtime/0)),
        ?_assertEqual({ok, 86400}, with("86400", fun ?R:layer_mtime/0)),
        ?_assertEqual({ok, 86400}, with("86400", fun ?R:created/0)),
        ?_assertMatch({error, {invalid_source_date_epoch, _}}, with("x", fun ?R:created/0)),
        ?_test(begin
                   Before = erlang:system_time(second),
                   {ok, Now} = with(false, fun ?R:created/0),
                   ?assert(Now >= Before andalso Now =< erlang:system_time(second))
               end)
    ].
