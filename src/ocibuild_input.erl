%% @doc Caller input to NIF input: strings and iolists become binaries, file lists are checked
%% for shape. Anything that does not fit becomes `{invalid_option, Name, Value}'.
%%
%% Internal to ocibuild. Values the core validates (layer paths, modes) are passed through
%% untouched so the core's reasons (`invalid_path', `invalid_mode', ...) reach the caller.
-module(ocibuild_input).

-export([text/1, image_path/1, host_path/1, files/1, check_options/2]).

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
host_path(Value) when is_list(Value); is_atom(Value) ->
    try filename:flatten(Value) of
        Flat ->
            case unicode:characters_to_binary(Flat, unicode, file:native_name_encoding()) of
                Bin when is_binary(Bin) -> {ok, Bin};
                _ -> error
            end
    catch
        error:_ -> error
    end;
host_path(_) ->
    error.

%% @doc Normalise `[{Path, Content, Mode}]' for the NIF. Content is a binary, an iolist (made
%% into a binary) or `{file, HostPath}' (streamed from disk by the core).
-spec files(term()) ->
    {ok, [{binary(), binary() | {file, binary()}, non_neg_integer()}]}
    | {error, {invalid_option, files, term()}}.
files(Files) when is_list(Files) ->
    try
        {ok, [file_entry(Entry) || Entry <- Files]}
    catch
        throw:{bad_entry, Entry} -> {error, {invalid_option, files, Entry}}
    end;
files(Files) ->
    {error, {invalid_option, files, Files}}.

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
