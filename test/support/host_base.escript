#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%% The Erlang half of test/support/host_base.sh: builds the base image from the file list the
%% shell half made, saves it and optionally pushes the saved tarball.
%%
%%   OCIBUILD_EBIN=... escript host_base.escript LIST OUTPUT TAG ENV_PATH PLATFORMS PUSH_REF
%%
%% LIST: one line per file, `LAYER<TAB>MODE(octal)<TAB>IMAGE_PATH<TAB>HOST_PATH'; one layer per
%% distinct LAYER, in order of first appearance, each file streamed from the host
%% (`{file, HostPath}'). PLATFORMS (`linux/amd64,linux/arm64') may be empty: the host's.
%% PUSH_REF (`REGISTRY/REPO:TAG') may be empty: no push. Halts 1 with the reason on failure.
-mode(compile).

main([List, Output, Tag, EnvPath, Platforms, PushRef]) ->
    Ebin = os:getenv("OCIBUILD_EBIN"),
    true = is_list(Ebin) andalso code:add_patha(Ebin),
    try
        Images = build(layers(List), list_to_binary(EnvPath), Platforms),
        ok = check(save, ocibuild:save(Images, Output, #{tag => list_to_binary(Tag)})),
        io:format("host_base: saved ~s (~s)~n", [Output, Tag]),
        push(Output, PushRef),
        halt(0)
    catch
        throw:{failed, What, Reason} ->
            io:format(standard_error, "host_base: ~s failed: ~p~n", [What, Reason]),
            halt(1);
        Class:Reason:Stack ->
            io:format(standard_error, "host_base: ~p:~p~n~p~n", [Class, Reason, Stack]),
            halt(1)
    end;
main(_) ->
    io:format(standard_error, "usage: host_base.escript LIST OUTPUT TAG ENV_PATH PLATFORMS PUSH_REF~n", []),
    halt(2).

%% [{Layer, [FileEntry]}] in the order the layers first appear in the list.
layers(List) ->
    {ok, Bin} = file:read_file(List),
    Lines = [L || L <- binary:split(Bin, <<"\n">>, [global]), L =/= <<>>],
    lists:foldl(
        fun(Line, Acc) ->
            [Layer, Mode, ImagePath, HostPath] = binary:split(Line, <<"\t">>, [global]),
            File = {ImagePath, {file, HostPath}, binary_to_integer(Mode, 8)},
            case lists:keyfind(Layer, 1, Acc) of
                {Layer, Files} -> lists:keyreplace(Layer, 1, Acc, {Layer, Files ++ [File]});
                false -> Acc ++ [{Layer, [File]}]
            end
        end,
        [],
        Lines
    ).

build(Layers, EnvPath, Platforms) ->
    {ok, Scratch} = ocibuild:scratch(),
    WithLayers = lists:foldl(fun({_, Files}, I) -> ocibuild:add_layer(I, Files) end, Scratch, Layers),
    Image = ocibuild:env(WithLayers, #{<<"PATH">> => EnvPath}),
    case Platforms of
        "" ->
            Image;
        _ ->
            {ok, Ps} = check(platforms, ocibuild:parse_platforms(list_to_binary(Platforms))),
            [Image#{platform := P} || P <- Ps]
    end.

push(_Output, "") ->
    ok;
push(Output, PushRef) ->
    %% REGISTRY/REPO:TAG: the registry is everything before the first slash.
    [Registry, RepoTag] = string:split(PushRef, "/"),
    {ok, Loaded} = check(load, ocibuild_layout:load_tarball_for_push(Output)),
    Cleanup = maps:get(cleanup, Loaded),
    try
        {ok, #{digest := Digest}} =
            check(push, ocibuild_registry:push_loaded(Loaded, Registry, RepoTag, #{}, #{})),
        io:format("host_base: pushed ~s@~s~n", [PushRef, Digest])
    after
        Cleanup()
    end.

check(_What, {ok, _} = Ok) -> Ok;
check(_What, ok) -> ok;
check(What, {error, Reason}) -> throw({failed, What, Reason}).
