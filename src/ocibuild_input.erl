%% @doc Caller input to NIF input: strings and iolists become binaries, file lists are checked
%% for shape. Anything that does not fit becomes `{invalid_option, Name, Value}'.
%%
%% Internal to ocibuild. Values the core validates (layer paths, modes) are passed through
%% untouched so the core's reasons (`invalid_path', `invalid_mode', ...) reach the caller.
-module(ocibuild_input).

-export([text/1, image_path/1, host_path/1, files/1, check_options/2, is_proper_list/1, parse_tag/1]).
-export([quote/1]).

%% @doc UTF-8 text from a binary or a (possibly nested) character list.
-spec text(term()) -> {ok, binary()} | error.
text(Value) when is_binary(Value); is_list(Value) ->
    try unicode:characters_to_binary(Value) of
        Bin when is_binary(Bin) -> {ok, Bin};
        _Incomplete -> error
    catch
        error:badarg -> error
    end;
text(_) ->
    error.

%% @doc A path inside the image. Binaries pass through byte for byte (the core rejects empty
%% paths, NUL bytes and `..'); strings are encoded as UTF-8.
-spec image_path(term()) -> {ok, binary()} | error.
image_path(Value) when is_binary(Value) -> {ok, Value};
image_path(Value) when is_list(Value) -> text(Value);
image_path(_) -> error.

%% @doc A path on the host, in the VM's file name encoding.
-spec host_path(term()) -> {ok, binary()} | error.
host_path(Value) when is_binary(Value) ->
    {ok, Value};
host_path(Value) when is_atom(Value) ->
    native_name(Value);
host_path(Value) when is_list(Value) ->
    %% `filename:flatten/1' would take `[a | b]' for "ab": an improper list is no path.
    case is_deep_proper_list(Value) of
        true -> native_name(Value);
        false -> error
    end;
host_path(_) ->
    error.

native_name(Value) ->
    try unicode:characters_to_binary(filename:flatten(Value), unicode, file:native_name_encoding()) of
        Bin when is_binary(Bin) -> {ok, Bin};
        _ -> error
    catch
        error:_ -> error
    end.

is_deep_proper_list([]) -> true;
is_deep_proper_list([H | T]) -> (not is_list(H) orelse is_deep_proper_list(H)) andalso is_deep_proper_list(T);
is_deep_proper_list(_) -> false.

%% @doc Normalise `[{Path, Content, Mode}]' for the NIF. Content is a binary, an iolist (made
%% into a binary) or `{file, HostPath}' (streamed from disk by the core).
-spec files(term()) ->
    {ok, [{binary(), binary() | {file, binary()}, non_neg_integer()}]}
    | {error, {invalid_option, files, term()}}.
files(Files) ->
    case is_proper_list(Files) of
        true ->
            try
                {ok, [file_entry(Entry) || Entry <- Files]}
            catch
                throw:{bad_entry, Entry} -> {error, {invalid_option, files, Entry}}
            end;
        false ->
            {error, {invalid_option, files, Files}}
    end.

file_entry({Path, Content, Mode} = Entry) when is_integer(Mode), Mode >= 0 ->
    case {image_path(Path), content(Content)} of
        {{ok, P}, {ok, C}} -> {P, C, Mode};
        _ -> throw({bad_entry, Entry})
    end;
file_entry(Entry) ->
    throw({bad_entry, Entry}).

content(Bin) when is_binary(Bin) ->
    {ok, Bin};
content({file, HostPath}) ->
    case host_path(HostPath) of
        {ok, P} -> {ok, {file, P}};
        error -> error
    end;
content(IoList) when is_list(IoList) ->
    try
        {ok, iolist_to_binary(IoList)}
    catch
        error:badarg -> error
    end;
content(_) ->
    error.

%% @doc True for `[]' and lists that end in `[]' (`[a | b]' does not), which list
%% comprehensions and `lists' functions need.
-spec is_proper_list(term()) -> boolean().
is_proper_list(List) when is_list(List) ->
    try length(List) of
        _ -> true
    catch
        error:badarg -> false
    end;
is_proper_list(_) ->
    false.

%% @doc An image name given to `save' or the tasks' `-t': an image reference
%% `[registry/]repository[:tag]', checked by the core's reference parser (the one judge of the
%% grammar). Returns the parts, or `{invalid_tag, Tag, Rule}' with `Rule' the broken rule in
%% one line. A `@digest' is refused: a saved or pushed image is named by its tag.
-spec parse_tag(term()) ->
    {ok, #{registry := binary(), repository := binary(), tag := binary()}}
    | {error, {invalid_tag, term(), binary()}}.
parse_tag(Tag) ->
    case text(Tag) of
        {ok, Bin} ->
            case ocibuild_nif:reference_parse(Bin) of
                {ok, #{digest := undefined} = Parts} ->
                    {ok, maps:remove(digest, Parts)};
                {ok, _} ->
                    {error, {invalid_tag, Tag, <<"name the image as [registry/]repository[:tag], "
                                                 "without a @digest">>}};
                {error, {_Rule, Explanation}} when is_binary(Explanation) ->
                    {error, {invalid_tag, Tag, Explanation}};
                {error, _} ->
                    {error, {invalid_tag, Tag, <<"a tag must be UTF-8 text">>}}
            end;
        error ->
            {error, {invalid_tag, Tag, <<"a tag must be text">>}}
    end.

%% @doc A value the user gave, quoted on one line for a message: text in double quotes with
%% control characters (newlines, NUL) escaped, anything else as a term.
-spec quote(term()) -> string().
quote(Value) ->
    case text(Value) of
        {ok, Bin} -> lists:flatten(io_lib:write_string(unicode:characters_to_list(Bin)));
        error -> lists:flatten(io_lib:format("~0tp", [Value]))
    end.

%% @doc Check the options present in `Opts' with a predicate each; keys not listed are ignored
%% (callers may pass options meant for other layers of a build).
-spec check_options([{atom(), fun((term()) -> boolean())}], map()) ->
    ok | {error, {invalid_option, atom(), term()}}.
check_options([], _Opts) ->
    ok;
check_options([{Name, Valid} | Rest], Opts) ->
    case maps:find(Name, Opts) of
        {ok, Value} ->
            case Valid(Value) of
                true -> check_options(Rest, Opts);
                false -> {error, {invalid_option, Name, Value}}
            end;
        error ->
            check_options(Rest, Opts)
    end.
