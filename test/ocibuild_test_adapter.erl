%% @doc An `ocibuild_adapter' for the EUnit suites: the state is a map holding the config, the
%% release and the lock-file answer; output goes to the calling process as messages so tests
%% can assert on it.
-module(ocibuild_test_adapter).

-behaviour(ocibuild_adapter).

-export([get_config/1, find_release/2, info/2, console/2, error/2, get_app_version/1,
         get_dependencies/1, messages/0]).

get_config(#{config := Config}) -> Config.

find_release(#{release := {Name, Path}}, #{release := Wanted}) when
    Wanted =:= undefined; Wanted =:= Name
->
    {ok, Name, Path};
find_release(_State, #{release := Wanted}) ->
    {error, {release_not_found, Wanted, enoent}}.

info(Format, Args) -> self() ! {ocibuild_output, info, flat(Format, Args)}, ok.
console(Format, Args) -> self() ! {ocibuild_output, console, flat(Format, Args)}, ok.
error(Format, Args) -> self() ! {ocibuild_output, error, flat(Format, Args)}, ok.

get_app_version(State) -> maps:get(version, State, undefined).

get_dependencies(State) -> maps:get(deps, State, undefined).

%% @doc Every line printed so far, `{Kind, Line}', in order; the mailbox is emptied.
messages() ->
    receive
        {ocibuild_output, Kind, Line} -> [{Kind, Line} | messages()]
    after 0 -> []
    end.

flat(Format, Args) -> unicode:characters_to_binary(io_lib:format(Format, Args)).
