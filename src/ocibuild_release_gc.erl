%% @doc `mix ocibuild --gc-cache' and `rebar3 ocibuild --gc-cache': collect the blob store
%% and layer cache with the environment's bounds (`ocibuild_blob_store:gc/1'), say what was
%% freed, and build nothing.
%%
%% ```
%% {ok, State} = ocibuild_release_gc:run(ocibuild_rebar3, State).
%% '''
-module(ocibuild_release_gc).

-export([run/2]).

-spec run(module(), term()) -> {ok, term()} | {error, term()}.
run(Adapter, State) ->
    Root = ocibuild_blob_store:root(),
    case ocibuild_blob_store:gc(#{root => Root}) of
        {ok, #{removed := Removed, freed_bytes := Freed, kept := Kept, kept_bytes := KeptBytes}} ->
            Adapter:info("Cache ~ts: removed ~b files (~ts), kept ~b (~ts)",
                         [Root, Removed, ocibuild_progress:format_bytes(Freed), Kept,
                          ocibuild_progress:format_bytes(KeptBytes)]),
            {ok, State};
        {error, _} = Error ->
            Error
    end.
