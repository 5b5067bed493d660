%% @doc What a build tool gives `ocibuild_release:run/3': its configuration, where the release
%% is, and how to talk to the user. `ocibuild_rebar3' (rebar3) and `Mix.Tasks.Ocibuild' (Mix)
%% implement it; another build tool (erlang.mk, a Gleam or LFE tool) can too.
%%
%% `get_config/1' returns either the map `ocibuild_release:resolve_config/2' makes from the
%% command line and the project file (so both tools share one meaning for every flag and key),
%% or the looser map ocibuild 0.10's adapters return (strings or binaries, `nil', `undefined'
%% or empty values for "not set", `platform' as `<<"linux/amd64,linux/arm64">>', `tags' as a
%% list, `chunk_size' in bytes); `run/3' puts the latter through the same checks (see
%% `ocibuild_release_config:from_adapter/1').
%%
%% ```
%% -behaviour(ocibuild_adapter).
%% get_config(State) -> State#state.config.
%% find_release(State, _Opts) -> {ok, <<"myapp">>, "_build/default/rel/myapp"}.
%% info(Format, Args) -> io:format(Format ++ "~n", Args).
%% '''
-module(ocibuild_adapter).

-export([
    get_app_version/2,
    get_dependencies/2,
    default_chunk_size/0,
    default_chunk_size_mb/0,
    min_chunk_size/0,
    min_chunk_size_mb/0,
    max_chunk_size/0,
    max_chunk_size_mb/0
]).

%% ocibuild 0.10's upload chunk limits, kept for the adapters that call these helpers. The
%% values are those of ocibuild 0.10.4's `ocibuild_adapter' (hexdocs and source: 1, 5 and
%% 100 MB). `--chunk-size' here accepts up to 4096 MB; see README.md, "Differences from
%% ocibuild 0.10".
-define(MB, (1024 * 1024)).
-define(MIN_CHUNK_MB, 1).
-define(MAX_CHUNK_MB, 100).

-callback get_config(State :: term()) -> ocibuild_release:config() | map().
%% The resolved configuration (see `ocibuild_release:resolve_config/2'), or a 0.10-style map.

-callback find_release(State :: term(), Opts :: map()) ->
    {ok, ReleaseName :: binary(), ReleasePath :: file:filename_all()} | {error, term()}.
%% The release to image: its name and the directory holding `bin/', `lib/', `releases/'.
%% `Opts' is what the caller gave `run/3', with `release' (the name the user asked for, or
%% `undefined').

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

%% @doc `Adapter:get_app_version(State)' when the adapter has it, else `undefined'.
-spec get_app_version(module(), term()) -> binary() | undefined.
get_app_version(Adapter, State) ->
    case implements(Adapter, get_app_version) of
        true -> Adapter:get_app_version(State);
        false -> undefined
    end.

%% @doc The adapter's lock-file dependencies; `[]' when it has no `get_dependencies/1', no
%% lock file, or the lock file cannot be read (as in 0.10, which then builds one layer).
-spec get_dependencies(module(), term()) ->
    [#{name := binary(), version := binary(), source := binary()}].
get_dependencies(Adapter, State) ->
    case implements(Adapter, get_dependencies) of
        true ->
            case Adapter:get_dependencies(State) of
                {ok, Deps} when is_list(Deps) -> Deps;
                _ -> []
            end;
        false ->
            []
    end.

%% `function_exported/3' is false for a module not loaded yet, which a caller asking before
%% any other call into the adapter would take for "not implemented".
%% Anything but a module name implements nothing, so the helpers give their defaults.
implements(Adapter, Callback) when is_atom(Adapter) ->
    _ = code:ensure_loaded(Adapter),
    erlang:function_exported(Adapter, Callback, 1);
implements(_NotAModule, _Callback) ->
    false.

%% @doc Chunk size of uploads when none is given, in bytes (5 MB): the native core's
%% default (`ocibuild_core::options').
-spec default_chunk_size() -> pos_integer().
default_chunk_size() -> maps:get(chunk_size, ocibuild_nif:options_defaults()).

%% @doc `default_chunk_size/0' in MB.
-spec default_chunk_size_mb() -> pos_integer().
default_chunk_size_mb() -> default_chunk_size() div ?MB.

%% @doc ocibuild 0.10's smallest chunk size, in bytes (1 MB).
-spec min_chunk_size() -> pos_integer().
min_chunk_size() -> ?MIN_CHUNK_MB * ?MB.

%% @doc `min_chunk_size/0' in MB.
-spec min_chunk_size_mb() -> pos_integer().
min_chunk_size_mb() -> ?MIN_CHUNK_MB.

%% @doc ocibuild 0.10's largest chunk size, in bytes (100 MB).
-spec max_chunk_size() -> pos_integer().
max_chunk_size() -> ?MAX_CHUNK_MB * ?MB.

%% @doc `max_chunk_size/0' in MB.
-spec max_chunk_size_mb() -> pos_integer().
max_chunk_size_mb() -> ?MAX_CHUNK_MB.
