%% @doc What a build tool gives `ocibuild_release:run/3': its configuration, where the release
%% is, and how to talk to the user. `ocibuild_rebar3' (rebar3) and `Mix.Tasks.Ocibuild' (Mix)
%% implement it; another build tool (erlang.mk, a Gleam or LFE tool) can too.
%%
%% `get_config/1' returns the map `ocibuild_release:resolve_config/2' makes from the command
%% line and the project file, so both tools share one meaning for every flag and key.
%%
%% ```
%% -behaviour(ocibuild_adapter).
%% get_config(State) -> State#state.config.
%% find_release(State, _Opts) -> {ok, <<"myapp">>, "_build/default/rel/myapp"}.
%% info(Format, Args) -> io:format(Format ++ "~n", Args).
%% '''
-module(ocibuild_adapter).

-callback get_config(State :: term()) -> ocibuild_release:config().
%% The resolved configuration (see `ocibuild_release:resolve_config/2').

-callback find_release(State :: term(), Opts :: map()) ->
    {ok, ReleaseName :: binary(), ReleasePath :: file:filename_all()} | {error, term()}.
%% The release to image: its name and the directory holding `bin/', `lib/', `releases/'.
%% `Opts' carries `release' (the name the user asked for, or `undefined').

-callback info(Format :: io:format(), Args :: [term()]) -> ok.
%% Progress and results (`Tagged: ...', `Digest: ...').

-callback console(Format :: io:format(), Args :: [term()]) -> ok.
%% Output printed as is, without the tool's log prefix (the live progress lines).

-callback error(Format :: io:format(), Args :: [term()]) -> ok.
%% Warnings and errors the user must see.

-callback get_app_version(State :: term()) -> binary() | undefined.
%% The release's version, for the default tag `<release>:<version>'.

-callback get_dependencies(State :: term()) ->
    {ok, [#{name := binary(), version := binary(), source := binary()}]} | {error, term()}
    | undefined.
%% The project's dependencies from its lock file (`rebar.lock', `mix.lock'); `undefined' when
%% there is no lock file (the release then goes into one layer).

-optional_callbacks([get_app_version/1, get_dependencies/1]).
