-module(ocibuild_blob_store_tests).

-include_lib("eunit/include/eunit.hrl").
-include_lib("kernel/include/file.hrl").

-define(DAY, 86400).

gc_test_() ->
    {setup, fun ocibuild_test_util:setup/0, fun ocibuild_test_util:cleanup/1, fun(Ctx) ->
        [
            {"an empty store collects to nothing", ?_test(empty_store(Ctx))},
            {"old blobs and their records go, recent ones stay", ?_test(by_age(Ctx))},
            {"least recently used beyond max_size, a reused layer stays", ?_test(by_size(Ctx))},
            {"the environment's bounds", ?_test(env_bounds(Ctx))},
            {"bad options and environment", ?_test(bad_options(Ctx))},
            {"--gc-cache collects and builds nothing", ?_test(gc_cache_flag(Ctx))},
            {"--gc-cache is in both tasks' option table", fun flag_in_table/0}
        ]
    end}.

store({Root, _}, Name) ->
    filename:join(Root, Name).

%% A layer built into `Store', its blob and record set `Age' seconds back.
layer_in(Store, Name, Age) ->
    ocibuild_test_util:with_env("OCIBUILD_CACHE_DIR", Store, fun() ->
        {ok, #{blob := Blob} = Layer} =
            ocibuild_layer:create([{<<"/", Name/binary>>, binary:copy(Name, 1000), 8#644}]),
        [age(F, Age) || F <- [Blob | records(Store)], mtime(F) > now_s() - 60],
        Layer
    end).

records(Store) ->
    filelib:wildcard(filename:join([Store, "layers", "*"])).

age(Path, Age) ->
    ok = file:write_file_info(Path, #file_info{mtime = now_s() - Age}, [{time, posix}]).

mtime(Path) ->
    {ok, #file_info{mtime = M}} = file:read_file_info(Path, [{time, posix}]),
    M.

now_s() ->
    erlang:system_time(second).

empty_store(Ctx) ->
    Store = store(Ctx, "empty"),
    ?assertEqual({ok, #{removed => 0, freed_bytes => 0, kept => 0, kept_bytes => 0}},
                 ocibuild_blob_store:gc(#{root => Store})).

by_age(Ctx) ->
    Store = store(Ctx, "by-age"),
    #{blob := Old, size := OldSize} = layer_in(Store, <<"old">>, 40 * ?DAY),
    #{blob := Recent, size := RecentSize} = layer_in(Store, <<"recent">>, 2 * ?DAY),
    [_, _] = records(Store),
    {ok, Report} = ocibuild_blob_store:gc(#{root => Store}),
    ?assertMatch(#{removed := 2, kept := 2}, Report),
    ?assert(maps:get(freed_bytes, Report) > OldSize),
    ?assert(maps:get(kept_bytes, Report) > RecentSize),
    ?assertNot(filelib:is_regular(Old)),
    ?assert(filelib:is_regular(Recent)),
    [_] = records(Store).

by_size(Ctx) ->
    Store = store(Ctx, "by-size"),
    #{blob := A} = layer_in(Store, <<"a">>, 3 * ?DAY),
    #{blob := B} = layer_in(Store, <<"b">>, 2 * ?DAY),
    %% Building `a' again reuses it: now it is the most recently used.
    ocibuild_test_util:with_env("OCIBUILD_CACHE_DIR", Store, fun() ->
        {ok, #{blob := A}} = ocibuild_layer:create([{<<"/a">>, binary:copy(<<"a">>, 1000), 8#644}])
    end),
    {ok, #{removed := Removed}} = ocibuild_blob_store:gc(#{root => Store, max_size => 0}),
    %% b and its record; a and its record are younger than the grace period.
    ?assertEqual(2, Removed),
    ?assert(filelib:is_regular(A)),
    ?assertNot(filelib:is_regular(B)),
    {ok, #{removed := 2, kept := 0}} =
        ocibuild_blob_store:gc(#{root => Store, max_size => 0, grace => 0}).

env_bounds(Ctx) ->
    Store = store(Ctx, "env"),
    #{blob := Blob} = layer_in(Store, <<"env">>, 3 * ?DAY),
    ocibuild_test_util:with_env("OCIBUILD_CACHE_MAX_AGE", "4d", fun() ->
        ?assertMatch({ok, #{removed := 0}}, ocibuild_blob_store:gc(#{root => Store}))
    end),
    ocibuild_test_util:with_env("OCIBUILD_CACHE_MAX_SIZE", "1K", fun() ->
        ?assertMatch({ok, #{max_size := 1024}}, ocibuild_blob_store:limits())
    end),
    ocibuild_test_util:with_env("OCIBUILD_CACHE_MAX_AGE", "2", fun() ->
        ?assertMatch({ok, #{removed := 2}}, ocibuild_blob_store:gc(#{root => Store}))
    end),
    ?assertNot(filelib:is_regular(Blob)).

bad_options(Ctx) ->
    Store = store(Ctx, "bad"),
    ?assertEqual({error, {invalid_option, max_size, -1}},
                 ocibuild_blob_store:gc(#{root => Store, max_size => -1})),
    ?assertEqual({error, {invalid_option, options, nope}}, ocibuild_blob_store:gc(nope)),
    lists:foreach(
        fun({Var, Value}) ->
            ocibuild_test_util:with_env(Var, Value, fun() ->
                Expected = {error, {invalid_option, list_to_atom(Var), list_to_binary(Value)}},
                ?assertEqual(Expected, ocibuild_blob_store:gc(#{root => Store})),
                %% The tasks print one line naming the variable.
                Line = lists:flatten(ocibuild_release:format_error(element(2, Expected))),
                ?assertNotEqual(nomatch, string:find(Line, Var))
            end)
        end,
        [{"OCIBUILD_CACHE_MAX_AGE", "soon"}, {"OCIBUILD_CACHE_MAX_AGE", "-1d"},
         {"OCIBUILD_CACHE_MAX_SIZE", "10X"}, {"OCIBUILD_CACHE_MAX_SIZE", "99999999999T"}]).

gc_cache_flag(Ctx) ->
    Store = store(Ctx, "flag"),
    #{blob := Blob} = layer_in(Store, <<"flag">>, 40 * ?DAY),
    {ok, Config} = ocibuild_release:resolve_config(#{gc_cache => true}, #{}),
    %% No release: --gc-cache never looks for one.
    State = #{config => Config, release => {<<"none">>, <<"/nonexistent">>}},
    _ = ocibuild_test_adapter:messages(),
    Result = ocibuild_test_util:with_env("OCIBUILD_CACHE_DIR", Store, fun() ->
        ocibuild_release:run(ocibuild_test_adapter, State, #{})
    end),
    ?assertEqual({ok, State}, Result),
    ?assertNot(filelib:is_regular(Blob)),
    [{info, Line}] = ocibuild_test_adapter:messages(),
    ?assertNotEqual(nomatch, string:find(Line, "removed 2 files")).

flag_in_table() ->
    ?assertMatch([#{long := "gc-cache", type := flag}],
                 [O || #{key := gc_cache} = O <- ocibuild_options:options()]),
    ?assertEqual(#{gc_cache => true}, ocibuild_rebar3:cli([gc_cache])).
