%% @doc Manifest annotations: the user's, checked, and the automatic ones.
%%
%% Automatic: `org.opencontainers.image.source' and `.revision' (from `ocibuild_vcs'),
%% `.version' (the release's), `.created' (RFC 3339 UTC; `SOURCE_DATE_EPOCH' when set) and
%% `.base.name'/`.base.digest'. The user's win over the automatic ones, except the four keys
%% ocibuild derives from facts (source, revision, base name and digest), which the user may
%% not set at all: an image claiming another source or base than its own misleads whoever
%% audits it.
%%
%% ```
%% {ok, User} = ocibuild_annotations:validate(#{<<"org.opencontainers.image.created">> => <<"0">>}),
%% Auto = ocibuild_annotations:auto(Image, ReleasePath, #{version => <<"1.0.0">>}),
%% Annotations = ocibuild_annotations:merge(Auto, User).
%% '''
-module(ocibuild_annotations).

-export([validate/1, auto/3, merge/2, iso8601/1]).

-export_type([annotations/0, validate_error/0]).

-type annotations() :: #{binary() => binary()}.
-type validate_error() ::
    {invalid_annotation, empty_key | null_byte | path_traversal | not_utf8 | not_a_string, term()}
    | {invalid_created_timestamp, {invalid_format | negative_timestamp, binary()}}
    | {protected_annotation, binary()}.

-define(PREFIX, "org.opencontainers.image.").
-define(CREATED, <<?PREFIX "created">>).
-define(PROTECTED, [
    <<?PREFIX "source">>,
    <<?PREFIX "revision">>,
    <<?PREFIX "base.name">>,
    <<?PREFIX "base.digest">>
]).
%% 9999-12-31T23:59:59Z: a later time has no four-digit year.
-define(MAX_SECONDS, 253402300799).

%% @doc Check the user's annotations (ocibuild 0.10's `validate_annotations/1'). Three passes
%% over the keys in sorted order, so the same input always reports the same error:
%%
%% 1. every key and value: an empty key is `{invalid_annotation, empty_key, <<>>}'; a NUL byte
%%    `{invalid_annotation, null_byte, Key}'; a `..' path component (`..', `../x', `a/../b',
%%    not `v1..2') `{invalid_annotation, path_traversal, Key}'. Two more keep the manifest
%%    writable as JSON: a key or value that is not a binary is
%%    `{invalid_annotation, not_a_string, Key}', one that is not UTF-8
%%    `{invalid_annotation, not_utf8, Key}'.
%% 2. the computed keys (`org.opencontainers.image.source', `.revision', `.base.name',
%%    `.base.digest') are `{protected_annotation, Key}'.
%% 3. `org.opencontainers.image.created' given as unix seconds (digits only) becomes
%%    `YYYY-MM-DDTHH:MM:SSZ'; an RFC 3339 date-time (the ISO 8601 profile the OCI spec asks
%%    for, e.g. `2024-02-29T12:00:00.5+01:00') is kept as given; a negative number is
%%    `{invalid_created_timestamp, {negative_timestamp, Value}}'; anything else, an impossible
%%    date or a year past 9999 included, `{invalid_created_timestamp, {invalid_format, Value}}'
%%    (0.10's terms).
-spec validate(annotations()) -> {ok, annotations()} | {error, validate_error()}.
validate(Annotations) when is_map(Annotations) ->
    Sorted = lists:sort(maps:to_list(Annotations)),
    try
        lists:foreach(fun well_formed/1, Sorted),
        lists:foreach(fun not_protected/1, Sorted),
        {ok, maps:from_list([{Key, value(Key, Value)} || {Key, Value} <- Sorted])}
    catch
        throw:{?MODULE, Reason} -> {error, Reason}
    end.

reject(Reason) ->
    throw({?MODULE, Reason}).

well_formed({Key, Value}) when not is_binary(Key); not is_binary(Value) ->
    reject({invalid_annotation, not_a_string, Key});
well_formed({<<>>, _Value}) ->
    reject({invalid_annotation, empty_key, <<>>});
well_formed({Key, Value}) ->
    Both = [Key, Value],
    lists:any(fun has_null/1, Both) andalso reject({invalid_annotation, null_byte, Key}),
    lists:any(fun has_parent_dir/1, Both) andalso reject({invalid_annotation, path_traversal, Key}),
    lists:all(fun is_utf8/1, Both) orelse reject({invalid_annotation, not_utf8, Key}),
    ok.

has_null(Text) ->
    binary:match(Text, <<0>>) =/= nomatch.

has_parent_dir(Text) ->
    lists:member(<<"..">>, binary:split(Text, <<"/">>, [global])).

is_utf8(Text) ->
    unicode:characters_to_binary(Text) =:= Text.

not_protected({Key, _Value}) ->
    lists:member(Key, ?PROTECTED) andalso reject({protected_annotation, Key}),
    ok.

value(?CREATED, Value) -> created(Value);
value(_Key, Value) -> Value.

created(Value) ->
    case re:run(Value, "^(-?)[0-9]+$", [{capture, all_but_first, binary}]) of
        {match, [<<"-">>]} ->
            reject({invalid_created_timestamp, {negative_timestamp, Value}});
        {match, [<<>>]} ->
            case binary_to_integer(Value) of
                Seconds when Seconds =< ?MAX_SECONDS -> iso8601(Seconds);
                _ -> reject({invalid_created_timestamp, {invalid_format, Value}})
            end;
        nomatch ->
            is_rfc3339(Value) orelse reject({invalid_created_timestamp, {invalid_format, Value}}),
            Value
    end.

%% RFC 3339's date-time: `T' and `Z' in either case, optional fraction, `Z' or `+hh:mm'
%% offset, and fields in range (a leap second is allowed as :60).
is_rfc3339(Value) ->
    Pattern =
        "^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\\.[0-9]+)?"
        "(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))$",
    case re:run(Value, Pattern, [{capture, all_but_first, list}]) of
        {match, Fields} ->
            [Y, Mo, D, H, Mi, S | Offset] = [to_int(F) || F <- Fields],
            calendar:valid_date(Y, Mo, D) andalso H =< 23 andalso Mi =< 59 andalso S =< 60
                andalso valid_offset(Offset);
        nomatch ->
            false
    end.

to_int("") -> none;
to_int(Digits) -> list_to_integer(Digits).

valid_offset([]) -> true;
valid_offset([none, none]) -> true;
valid_offset([H, M]) -> H =< 23 andalso M =< 59.

%% @doc The automatic annotations (ocibuild 0.10's `build_auto_annotations/3'). `Config':
%% <ul>
%% <li>`vcs_annotations' (default `true'): add `.source' and `.revision' from
%%     `ocibuild_vcs:info/2';</li>
%% <li>`vcs_dir': where git runs; default the current directory, which is the project's
%%     (a release may be built outside the repository, so `ReleasePath' is not used; it is
%%     accepted for 0.10's callers);</li>
%% <li>`version' (0.10 also called it `app_version'): the release version, `.version';</li>
%% <li>`created': unix seconds for `.created'; default `SOURCE_DATE_EPOCH', else now;</li>
%% <li>`getenv', `git': passed to `ocibuild_vcs:info/2', for tests.</li>
%% </ul>
%% `Image''s `base' (`none' or a map with `reference' and `manifest_digest') gives
%% `.base.name' and `.base.digest', each when known.
-spec auto(map(), file:filename_all(), map()) -> annotations().
auto(Image, _ReleasePath, Config) ->
    lists:foldl(fun maps:merge/2, #{}, [
        vcs(Config),
        version(Config),
        base(Image),
        #{?CREATED => iso8601(created_seconds(Config))}
    ]).

vcs(#{vcs_annotations := false}) ->
    #{};
vcs(Config) ->
    Dir =
        case maps:find(vcs_dir, Config) of
            {ok, Given} -> Given;
            error -> cwd()
        end,
    Info = ocibuild_vcs:info(Dir, maps:with([getenv, git], Config)),
    maps:fold(fun(Key, Value, Acc) -> Acc#{<<?PREFIX, (atom_to_binary(Key))/binary>> => Value} end,
              #{}, Info).

cwd() ->
    case file:get_cwd() of
        {ok, Dir} -> Dir;
        {error, _} -> "."
    end.

version(Config) ->
    case maps:get(version, Config, maps:get(app_version, Config, undefined)) of
        Version when is_binary(Version), Version =/= <<>> -> #{<<?PREFIX "version">> => Version};
        _ -> #{}
    end.

created_seconds(#{created := Seconds}) when is_integer(Seconds), Seconds >= 0 ->
    Seconds;
created_seconds(_Config) ->
    case ocibuild_reproducible:created() of
        {ok, Seconds} -> Seconds;
        {error, _} -> erlang:system_time(second)
    end.

base(#{base := Base}) when is_map(Base) ->
    Known = [{<<?PREFIX "base.name">>, maps:get(reference, Base, undefined)},
             {<<?PREFIX "base.digest">>, maps:get(manifest_digest, Base, undefined)}],
    maps:from_list([{Key, Value} || {Key, Value} <- Known, is_binary(Value), Value =/= <<>>]);
base(_Image) ->
    #{}.

%% @doc The automatic annotations under the user's (already checked by `validate/1'): for the
%% same key the user's value wins.
-spec merge(annotations(), annotations()) -> annotations().
merge(Auto, User) ->
    maps:merge(Auto, User).

%% @doc Unix seconds as an RFC 3339 / ISO 8601 UTC time, `1970-01-01T00:00:00Z'.
-spec iso8601(non_neg_integer()) -> binary().
iso8601(Seconds) ->
    list_to_binary(calendar:system_time_to_rfc3339(Seconds, [{unit, second}, {offset, "Z"}])).
