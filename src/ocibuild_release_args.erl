%% @doc Argument checks for `ocibuild_release''s public (ocibuild 0.10) functions: each checks
%% its arguments' shapes before any work, so a bad one is `{error, {invalid_option, Name,
%% Value}}' (the first bad one), never an exception from deep inside a helper.
%%
%% ```
%% ocibuild_release_args:with_args([{tag, text, Tag}], fun() -> do(Tag) end).
%% '''
-module(ocibuild_release_args).

-export([with_args/2, option_args/2, valid_arg/2, host_path/1, is_nil_or_undefined/1]).

%% @doc True for `nil' (Elixir) and `undefined' (Erlang).
-spec is_nil_or_undefined(term()) -> boolean().
is_nil_or_undefined(nil) -> true;
is_nil_or_undefined(undefined) -> true;
is_nil_or_undefined(_) -> false.


%% @doc `Run()' when every `{Name, Kind, Value}' of `Checks' holds, else the first bad one as
%% `{error, {invalid_option, Name, Value}}'.
-spec with_args([{atom(), atom(), term()}], fun(() -> Result)) ->
    Result | {error, {invalid_option, atom(), term()}}.
with_args([], Run) ->
    Run();
with_args([{Name, Kind, Value} | Rest], Run) ->
    case valid_arg(Kind, Value) of
        true -> with_args(Rest, Run);
        false -> {error, {invalid_option, Name, Value}}
    end.

%% @doc Checks for the options present in `Opts' (absent ones take their defaults).
option_args(Kinds, Opts) when is_map(Opts) ->
    [{Name, Kind, Value} || {Name, Kind} <- Kinds, {ok, Value} <- [maps:find(Name, Opts)],
                            not is_nil_or_undefined(Value)];
option_args(_Kinds, _NotAMap) ->
    [].

%% @doc Whether `V' is of the kind `Kind' (`text', `path', `map', `files', ...).
-spec valid_arg(atom(), term()) -> boolean().
valid_arg(text, V) -> ocibuild_input:text(V) =/= error;
%% `file:filename_all()': a binary or a string, in the file name encoding (`filelib' needs a
%% string for some).
valid_arg(path, V) when is_binary(V) -> is_host_text(ocibuild_input:host_path(V));
valid_arg(path, V) when is_list(V) -> valid_arg(text, V) andalso is_host_text(ocibuild_input:host_path(V));
valid_arg(path, _V) -> false;
valid_arg(optional_path, V) -> is_nil_or_undefined(V) orelse valid_arg(path, V);
valid_arg(scalar, V) -> is_scalar(V);
valid_arg(map, V) -> is_map(V);
valid_arg(image, V) -> is_map(V) andalso ocibuild_input:is_proper_list(maps:get(layers, V, undefined));
valid_arg(images, V) -> is_map(V) orelse valid_arg(list, V);
valid_arg(boolean, V) -> is_boolean(V);
valid_arg(list, V) -> ocibuild_input:is_proper_list(V);
valid_arg(text_list, V) -> valid_arg(list, V) andalso lists:all(fun(T) -> valid_arg(text, T) end, V);
valid_arg(files, V) -> element(1, ocibuild_input:files(V)) =:= ok;
valid_arg(deps, V) -> is_nil_or_undefined(V) orelse (valid_arg(list, V) andalso lists:all(fun is_dep/1, V));
%% The SBOM reads each dependency's name, version and source from its map.
valid_arg(sbom_deps, V) ->
    valid_arg(list, V) andalso lists:all(fun(D) -> is_map(D) andalso is_dep(D) end, V);
valid_arg(dep_list, V) -> valid_arg(list, V) andalso lists:all(fun is_dep/1, V);
valid_arg(set, V) -> sets:is_set(V);
valid_arg(non_neg_integer, V) -> is_integer(V) andalso V >= 0;
valid_arg(pos_integer, V) -> is_integer(V) andalso V > 0;
valid_arg(total, V) -> V =:= unknown orelse valid_arg(non_neg_integer, V);
valid_arg(adapter, V) -> is_adapter(V).

is_host_text({ok, Bin}) -> is_list(unicode:characters_to_list(Bin, file:native_name_encoding()));
is_host_text(error) -> false.

%% What `bin/1' turns into a binary.
is_scalar(V) when is_binary(V); is_atom(V); is_number(V) -> true;
is_scalar(V) when is_list(V) ->
    ocibuild_input:text(V) =/= error orelse
        (try iolist_size(V) of
             _ -> true
         catch
             error:badarg -> false
         end);
is_scalar(_) -> false.

%% A lock-file dependency: a map with a name, or a bare name.
is_dep(#{name := Name}) -> is_scalar(Name);
is_dep(Name) -> is_scalar(Name) andalso not is_map(Name).

%% A module with the callbacks `run/3' and `push_tarball/4' call.
is_adapter(Module) when is_atom(Module) ->
    _ = code:ensure_loaded(Module),
    lists:all(fun({F, A}) -> erlang:function_exported(Module, F, A) end,
              [{get_config, 1}, {find_release, 2}, {info, 2}, {console, 2}, {error, 2}]);
is_adapter(_) ->
    false.

%% @doc A path the checks accepted, as a binary in the file name encoding.
-spec host_path(file:filename_all()) -> binary().
host_path(Path) ->
    {ok, Bin} = ocibuild_input:host_path(Path),
    Bin.
