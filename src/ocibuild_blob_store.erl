%% @doc Where built layers live: a content-addressed store `Root/blobs/sha256/<hex>', with the
%% layer cache's records in `Root/layers/'.
%%
%% Root is `$OCIBUILD_CACHE_DIR' if set, else `_build/ocibuild_cache' under the current
%% directory. Layer maps point at files in this store (their `blob' key), so large layers never
%% sit in BEAM memory. The store is bounded: `gc/1' removes blobs and records unused for longer
%% than `max_age', then the least recently used beyond `max_size', and every layer build runs
%% it at most once an hour on its own (`auto_gc/0').
%%
%% ```
%% {ok, #{removed := N, freed_bytes := B, kept := K}} = ocibuild_blob_store:gc(#{}).
%% '''
-module(ocibuild_blob_store).

-export([root/0, gc/0, gc/1, auto_gc/0, layer_cache/0, limits/0]).

-export_type([gc_options/0, gc_report/0]).

-type gc_options() :: #{
    root => file:filename_all(),
    max_age => non_neg_integer(),
    max_size => non_neg_integer(),
    grace => non_neg_integer()
}.
%% `max_age' and `grace' in seconds, `max_size' in bytes.

-type gc_report() :: #{
    removed := non_neg_integer(),
    freed_bytes := non_neg_integer(),
    kept := non_neg_integer(),
    kept_bytes := non_neg_integer()
}.

%% Defaults: unused for 30 days, beyond 10 GiB; nothing younger than an hour is removed,
%% as another build may be writing it or has just recorded it.
-define(DEFAULT_MAX_AGE, 30 * 86400).
-define(DEFAULT_MAX_SIZE, 10 bsl 30).
-define(GRACE, 3600).
%% How often a layer build collects on its own.
-define(AUTO_INTERVAL, 3600).

-spec root() -> binary().
root() ->
    Dir =
        case os:getenv("OCIBUILD_CACHE_DIR") of
            Env when Env =:= false; Env =:= "" -> filename:join("_build", "ocibuild_cache");
            Env -> Env
        end,
    unicode:characters_to_binary(filename:absname(Dir), unicode, file:native_name_encoding()).

%% @equiv gc(#{})
-spec gc() -> {ok, gc_report()} | {error, term()}.
gc() ->
    gc(#{}).

%% @doc Collect the store now: remove blobs and layer-cache records unused for longer than
%% `max_age' seconds (default `$OCIBUILD_CACHE_MAX_AGE', else 30 days), then the least
%% recently used until the store holds at most `max_size' bytes (default
%% `$OCIBUILD_CACHE_MAX_SIZE', else 10 GiB). Nothing younger than `grace' seconds (default an
%% hour) is removed, names that are not the store's are left alone and symlinks are not
%% followed. `root' defaults to `root/0'.
%%
%% Errors: `{invalid_option, Name, Value}' (a bad option or environment variable),
%% `{io_error, Context, Message}'.
-spec gc(gc_options()) -> {ok, gc_report()} | {error, term()}.
gc(Opts) when is_map(Opts) ->
    case check_gc_options(Opts) of
        ok ->
            case limits() of
                {ok, Limits} ->
                    Root = maps:get(root, Opts, root()),
                    NifOpts = maps:merge(Limits#{grace => ?GRACE, interval => 0},
                                         maps:with([max_age, max_size, grace], Opts)),
                    ocibuild_nif:blob_store_gc(path(Root), NifOpts);
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end;
gc(Opts) ->
    {error, {invalid_option, options, Opts}}.

%% @private The automatic bound, after each layer build: collect with the environment's limits
%% when the last collection is an hour old. Best effort: a build never fails for it.
-spec auto_gc() -> ok.
auto_gc() ->
    case limits() of
        {ok, Limits} ->
            _ = ocibuild_nif:blob_store_gc(root(),
                                           Limits#{grace => ?GRACE, interval => ?AUTO_INTERVAL}),
            ok;
        {error, _} ->
            ok
    end.

%% @doc The layer cache mode from `$OCIBUILD_LAYER_CACHE': `on' (the default; file status
%% first, then content hashes), `content' (always hash the files) or `off' (always build).
-spec layer_cache() -> {ok, on | content | off} | {error, term()}.
layer_cache() ->
    case os:getenv("OCIBUILD_LAYER_CACHE") of
        V when V =:= false; V =:= ""; V =:= "on" -> {ok, on};
        "content" -> {ok, content};
        "off" -> {ok, off};
        Other -> {error, {invalid_option, 'OCIBUILD_LAYER_CACHE', env_value(Other)}}
    end.

%% @doc `max_age' (seconds) and `max_size' (bytes) from the environment:
%% `OCIBUILD_CACHE_MAX_AGE' is days, or a number ending in `s', `m', `h' or `d';
%% `OCIBUILD_CACHE_MAX_SIZE' is bytes, or a number ending in `K', `M', `G' or `T' (powers of
%% 1024).
-spec limits() -> {ok, #{max_age := non_neg_integer(), max_size := non_neg_integer()}} |
                  {error, term()}.
limits() ->
    Age = env_amount("OCIBUILD_CACHE_MAX_AGE", ?DEFAULT_MAX_AGE, 86400,
                     #{$s => 1, $m => 60, $h => 3600, $d => 86400}),
    Size = env_amount("OCIBUILD_CACHE_MAX_SIZE", ?DEFAULT_MAX_SIZE, 1,
                      #{$K => 1 bsl 10, $M => 1 bsl 20, $G => 1 bsl 30, $T => 1 bsl 40}),
    case {Age, Size} of
        {{ok, A}, {ok, S}} -> {ok, #{max_age => A, max_size => S}};
        {{error, _} = Error, _} -> Error;
        {_, {error, _} = Error} -> Error
    end.

env_amount(Name, Default, Unit, Suffixes) ->
    case os:getenv(Name) of
        V when V =:= false; V =:= "" ->
            {ok, Default};
        Raw ->
            Bad = {error, {invalid_option, list_to_atom(Name), env_value(Raw)}},
            {Digits, Scale} =
                case lists:reverse(string:trim(Raw)) of
                    [Last | Rest] when is_map_key(Last, Suffixes) ->
                        {lists:reverse(Rest), maps:get(Last, Suffixes)};
                    _ ->
                        {string:trim(Raw), Unit}
                end,
            case string:to_integer(Digits) of
                {N, ""} when is_integer(N), N >= 0, N * Scale < 1 bsl 64 -> {ok, N * Scale};
                _ -> Bad
            end
    end.

env_value(Raw) ->
    unicode:characters_to_binary(Raw).

check_gc_options(Opts) ->
    Checks = [
        {root, fun(R) -> is_binary(R) orelse io_lib:char_list(R) end},
        {max_age, fun is_u64/1},
        {max_size, fun is_u64/1},
        {grace, fun is_u64/1}
    ],
    ocibuild_input:check_options(Checks, Opts).

is_u64(N) ->
    is_integer(N) andalso N >= 0 andalso N < 1 bsl 64.

path(Root) when is_binary(Root) ->
    Root;
path(Root) ->
    unicode:characters_to_binary(filename:absname(Root), unicode, file:native_name_encoding()).
