%% @doc Manifest annotations: the user's, checked, and the automatic ones.
%%
%% Automatic: `org.opencontainers.image.source' and `.revision' (see `ocibuild_vcs'),
%% `.version' (the release's), `.created' (ISO 8601; `SOURCE_DATE_EPOCH' when set) and
%% `.base.name'/`.base.digest'. The user's win over the automatic ones, except the four keys
%% ocibuild computes from facts (source, revision, base name and digest), which the user may
%% not set: an image claiming another source or base than its own would mislead its readers.
-module(ocibuild_annotations).

-export([validate/1, auto/3, merge/2, iso8601/1]).

-define(PREFIX, "org.opencontainers.image.").
-define(CREATED, <<?PREFIX "created">>).
-define(PROTECTED, [<<?PREFIX "source">>, <<?PREFIX "revision">>,
                    <<?PREFIX "base.name">>, <<?PREFIX "base.digest">>]).

%% @doc Check the user's annotations (ocibuild 0.10's `validate_annotations/1'): a NUL byte
%% or a `..' path component in a key or value, an empty key, or a protected key is an error;
%% `org.opencontainers.image.created' given as a unix timestamp becomes ISO 8601, one given
%% as an ISO 8601 date-time is kept, anything else is an error. Keys are checked in sorted
%% order, so the same input always reports the same error.
-spec validate(#{binary() => binary()}) -> {ok, #{binary() => binary()}} | {error, term()}.
validate(Annotations) when is_map(Annotations) ->
    try
        {ok, maps:from_list([check(K, V) || {K, V} <- lists:sort(maps:to_list(Annotations))])}
    catch
        throw:{annotation, Reason} -> {error, Reason}
    end.

check(Key, Value) ->
    Key =/= <<>> orelse throw({annotation, {invalid_annotation, empty_key, <<>>}}),
    [throw({annotation, {invalid_annotation, null_byte, Key}})
     || T <- [Key, Value], binary:match(T, <<0>>) =/= nomatch],
    [throw({annotation, {invalid_annotation, path_traversal, Key}})
     || T <- [Key, Value], lists:member(<<"..">>, binary:split(T, <<"/">>, [global]))],
    lists:member(Key, ?PROTECTED) andalso throw({annotation, {protected_annotation, Key}}),
    case Key of
        ?CREATED -> {Key, created(Value)};
        _ -> {Key, Value}
    end.

created(Value) ->
    case re:run(Value, "^[0-9]+$", [{capture, none}]) of
        match ->
            iso8601(binary_to_integer(Value));
        nomatch ->
            Iso = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
            case re:run(Value, Iso, [{capture, none}]) of
                match -> Value;
                nomatch -> throw({annotation, {invalid_annotation, created, Value}})
            end
    end.

%% @doc The automatic annotations (ocibuild 0.10's `build_auto_annotations/3'). `Config':
%% `vcs_annotations' (default true), `version' (the release version), `created' (unix
%% seconds; default `SOURCE_DATE_EPOCH', else now), `vcs_dir' (where git runs; default the
%% current directory, the project's), `getenv' (for tests). `Image' gives the base's name and
%% digest. `ReleasePath' is accepted for 0.10 callers: the repository is the project's, and a
%% release may be built outside it.
-spec auto(map(), file:filename_all(), map()) -> #{binary() => binary()}.
auto(Image, _ReleasePath, Config) ->
    Created = case maps:get(created, Config, undefined) of
        undefined ->
            case ocibuild_reproducible:created() of
                {ok, Now} -> Now;
                {error, _} -> erlang:system_time(second)
            end;
        Seconds ->
            Seconds
    end,
    Vcs = case maps:get(vcs_annotations, Config, true) of
        false ->
            #{};
        true ->
            {ok, Cwd} = file:get_cwd(),
            Dir = maps:get(vcs_dir, Config, Cwd),
            VcsOpts = maps:with([getenv, git], Config),
            maps:fold(fun(K, V, Acc) -> Acc#{<<?PREFIX, (atom_to_binary(K))/binary>> => V} end,
                      #{}, ocibuild_vcs:info(Dir, VcsOpts))
    end,
    Version = case maps:get(version, Config, undefined) of
        V when is_binary(V), V =/= <<>> -> #{<<?PREFIX "version">> => V};
        _ -> #{}
    end,
    Auto = maps:merge(maps:merge(Vcs, Version), base(Image)),
    Auto#{?CREATED => iso8601(Created)}.

base(#{base := #{reference := Ref, manifest_digest := Digest}}) ->
    #{<<?PREFIX "base.name">> => Ref, <<?PREFIX "base.digest">> => Digest};
base(_Image) ->
    #{}.

%% @doc Automatic annotations under the user's: the user's value wins for the same key.
-spec merge(map(), map()) -> map().
merge(Auto, User) ->
    maps:merge(Auto, User).

%% @doc Unix seconds as ISO 8601 UTC, `1970-01-01T00:00:00Z'.
-spec iso8601(non_neg_integer()) -> binary().
iso8601(Seconds) ->
    list_to_binary(calendar:system_time_to_rfc3339(Seconds, [{unit, second}, {offset, "Z"}])).
