%% @doc The checks behind `ocibuild''s builders: each turns a value the caller gave into the
%% shape the image map holds, or stops the builder step with `bad_input/1'; `update/2' runs a
%% step and turns that into the `{error, Reason}' the builder returns.
%%
%% ```
%% update(Image, fun(I) -> set_config(I, workdir, checked_text(workdir, Dir)) end).
%% '''
-module(ocibuild_image_input).

-export([
    update/2, bad_input/1, images_or_error/1, set_config/3, required_text/2,
    checked_text/2, text_list/2, proper_list/2, pair/4, env_var/2, merge_env/2,
    port_spec/1, copy_entry/2
]).

-spec bad_input(term()) -> no_return().
bad_input(Reason) ->
    throw({?MODULE, Reason}).

%% Apply a builder step to an image: `{error, _}' in place of the image passes through, and
%% a bad argument found by the step (`bad_input/1') becomes the `{error, _}' returned.
update({error, _} = Error, _Step) ->
    Error;
update(Image, Step) ->
    case is_image(Image) of
        true ->
            try
                Step(Image)
            catch
                throw:{?MODULE, Reason} -> {error, Reason}
            end;
        false ->
            {error, {invalid_option, image, Image}}
    end.

%% The keys the builders read and write, with the types they rely on (`++' and the `lists'
%% functions need proper lists).
is_image(#{layers := Layers, annotations := Annotations, config := Config}) when
    is_list(Layers), is_map(Annotations), is_map(Config)
->
    case Config of
        #{env := Env, exposed_ports := Ports, labels := Labels, entrypoint := _, cmd := _,
          workdir := _, user := _} ->
            lists:all(fun ocibuild_input:is_proper_list/1, [Layers, Env, Ports]) andalso
                is_map(Labels);
        _ ->
            false
    end;
is_image(_) ->
    false.

%% `{ok, Images}' for one image or a proper list of them, else the first `{error, _}' given
%% in place of an image (a builder's failure) or `{invalid_option, images, _}'.
images_or_error({error, _} = Error) ->
    Error;
images_or_error(Image) when is_map(Image) ->
    images_or_error([Image]);
images_or_error(Images) when is_list(Images) ->
    case ocibuild_input:is_proper_list(Images) of
        true ->
            case [E || E <- Images, not is_image(E)] of
                [] -> {ok, Images};
                [{error, _} = Error | _] -> Error;
                [NotImage | _] -> {error, {invalid_option, image, NotImage}}
            end;
        false ->
            {error, {invalid_option, images, Images}}
    end;
images_or_error(Other) ->
    {error, {invalid_option, images, Other}}.

set_config(#{config := Config} = Image, Key, Value) ->
    Image#{config := Config#{Key := Value}}.

required_text(Name, Value) ->
    case ocibuild_input:text(Value) of
        {ok, Bin} -> Bin;
        error -> bad_input({invalid_option, Name, Value})
    end.

%% Text stored as one config value: no NUL, which would cut it short at the runtime.
checked_text(Name, Value) ->
    Bin = required_text(Name, Value),
    no_nul(Name, Bin, Bin),
    Bin.

text_list(Name, Values) ->
    Texts = [ocibuild_input:text(V) || V <- proper_list(Name, Values)],
    case lists:member(error, Texts) of
        false -> [Item || {ok, Item} <- Texts, no_nul(Name, Item, Item)];
        true -> bad_input({invalid_option, Name, Values})
    end.

proper_list(Name, Value) ->
    case ocibuild_input:is_proper_list(Value) of
        true -> Value;
        false -> bad_input({invalid_option, Name, Value})
    end.

pair(Name, Field, Key, Value) ->
    case {ocibuild_input:text(Key), ocibuild_input:text(Value)} of
        {{ok, K}, {ok, V}} when K =/= <<>> ->
            no_nul(Field, K, K),
            no_nul(Field, K, V),
            {K, V};
        _ ->
            bad_input({invalid_option, Name, {Key, Value}})
    end.

%% The same check the core makes when the image is written (`image::validate'), made here
%% too so the builder that was given the value is the one that reports it.
no_nul(Field, Key, Value) ->
    binary:match(Value, <<0>>) =:= nomatch orelse bad_input({invalid_value, Field, Key, nul_byte}).

copy_entry(Dest, {Name, Content}) ->
    copy_entry(Dest, {Name, Content, default_mode(Content)});
copy_entry(Dest, {Name, Content, Mode} = Entry) ->
    case ocibuild_input:image_path(Name) of
        {ok, NameBin} -> {<<Dest/binary, "/", NameBin/binary>>, Content, Mode};
        error -> bad_input({invalid_option, files, Entry})
    end;
copy_entry(_Dest, Entry) ->
    bad_input({invalid_option, files, Entry}).

%% A missing host file keeps the default here; the core then reports `{file_read, Path, enoent}'.
default_mode({file, HostPath}) ->
    case ocibuild_input:host_path(HostPath) of
        {ok, Path} -> host_mode(Path);
        error -> 8#644
    end;
default_mode(_) ->
    8#644.

host_mode(Path) ->
    case file:read_file_info(Path) of
        {ok, Info} -> element(8, Info) band 8#7777;
        {error, _} -> 8#644
    end.

env_var(Name, Value) ->
    case {ocibuild_input:text(Name), ocibuild_input:text(Value)} of
        {{ok, <<>>}, {ok, _}} ->
            bad_input({invalid_value, env, <<>>, empty_name});
        {{ok, N}, {ok, V}} ->
            no_nul(env, N, N),
            binary:match(N, <<"=">>) =:= nomatch orelse
                bad_input({invalid_value, env, N, equals_in_name}),
            no_nul(env, N, V),
            {N, V};
        _ ->
            bad_input({invalid_option, env, {Name, Value}})
    end.

merge_env({Name, _} = Var, Env) ->
    case lists:keymember(Name, 1, Env) of
        true -> lists:keyreplace(Name, 1, Env, Var);
        false -> Env ++ [Var]
    end.

port_spec(Port) when is_integer(Port), Port >= 1, Port =< 65535 ->
    <<(integer_to_binary(Port))/binary, "/tcp">>;
port_spec(Port) when is_binary(Port); is_list(Port) ->
    case ocibuild_input:text(Port) of
        {ok, Text} ->
            case string:split(Text, "/") of
                [Num] -> port_spec(Port, Num, <<"tcp">>);
                [Num, Proto] -> port_spec(Port, Num, Proto);
                _ -> bad_input({invalid_option, expose, Port})
            end;
        error ->
            bad_input({invalid_option, expose, Port})
    end;
port_spec(Port) ->
    bad_input({invalid_option, expose, Port}).

port_spec(Port, Num, Proto) ->
    Valid =
        lists:member(Proto, [<<"tcp">>, <<"udp">>, <<"sctp">>]) andalso
            try binary_to_integer(Num) of
                N -> N >= 1 andalso N =< 65535 andalso integer_to_binary(N) =:= Num
            catch
                error:badarg -> false
            end,
    case Valid of
        true -> <<Num/binary, "/", Proto/binary>>;
        false -> bad_input({invalid_option, expose, Port})
    end.
