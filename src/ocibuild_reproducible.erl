%% @doc Reproducible-build time: `SOURCE_DATE_EPOCH'.
%%
%% The variable is read here, where `os:putenv/2' is seen, and judged by the native core's one
%% rule (`reproducible::source_date_epoch'): unset or blank means "not set"; otherwise a
%% non-negative integer of seconds, else `{error, {invalid_source_date_epoch, Raw}}'.
%%
%% Layer mtimes default to it (else 0), and an image's `created' time defaults to it (else
%% now), so with `SOURCE_DATE_EPOCH' set two saves of the same input are identical files.
-module(ocibuild_reproducible).

-export([source_date_epoch/0, layer_mtime/0, created/0]).

-spec source_date_epoch() ->
    {ok, non_neg_integer() | undefined} | {error, {invalid_source_date_epoch, binary()}}.
source_date_epoch() ->
    case os:getenv("SOURCE_DATE_EPOCH") of
        false -> {ok, undefined};
        Raw -> ocibuild_nif:reproducible_epoch(unicode:characters_to_binary(Raw))
    end.

%% @doc The mtime stamped on layer entries: `SOURCE_DATE_EPOCH', else 0.
-spec layer_mtime() -> {ok, non_neg_integer()} | {error, term()}.
layer_mtime() ->
    case source_date_epoch() of
        {ok, undefined} -> {ok, 0};
        Other -> Other
    end.

%% @doc The image `created' time: `SOURCE_DATE_EPOCH', else the current time.
-spec created() -> {ok, non_neg_integer()} | {error, term()}.
created() ->
    case source_date_epoch() of
        {ok, undefined} -> {ok, erlang:system_time(second)};
        Other -> Other
    end.
