%% @doc The `rebar3 ocibuild' command: builds the project's relx release, then an OCI image of
%% it, and saves it as `<name>-<tag>.tar.gz' or pushes it to a registry.
%%
%% rebar3 loads it as a plugin (`ocibuild:init/1' calls `init/1' here):
%% ```
%% %% rebar.config
%% {project_plugins, [{ocibuild, {git, "https://github.com/.../ocibuild.git", {branch, "main"}}}]}.
%% {ocibuild, [{base_image, "debian:stable-slim"}, {workdir, "/app"}]}.
%% '''
%% ```
%% $ rebar3 as prod ocibuild -t myapp:1.0.0
%% '''
%%
%% The pipeline itself is `ocibuild_release:run/3'; this module is its rebar3 adapter (the
%% `ocibuild_adapter' behaviour). The adapter state is not the rebar state but a map
%% `#{rebar_state := rebar_state:t(), config := ocibuild_release:config()}' holding the
%% resolved configuration next to it, so the resolved config is never written into the user's
%% rebar configuration.
%%
%% rebar3's modules (`rebar_api', `rebar_state', `rebar_dir', `providers') exist only inside
%% rebar3, so they are called remotely and never included: this module compiles under `mix'
%% too. The pure helpers (`cli/1', `project/1', `read_lock/1', `relx_release/2',
%% `description/0') are exported for the tests.
-module(ocibuild_rebar3).

-behaviour(ocibuild_adapter).

-export([init/1, do/1, format_error/1]).
-export([get_config/1, find_release/2, info/2, console/2, error/2, get_app_version/1,
         get_dependencies/1]).
-export([cli/1, project/1, read_lock/1, relx_release/2, description/0]).

%% Only defined inside rebar3.
-ignore_xref([
    {providers, create, 1},
    {rebar_state, add_provider, 2},
    {rebar_state, command_parsed_args, 1},
    {rebar_state, get, 3},
    {rebar_dir, base_dir, 1},
    {rebar_dir, root_dir, 1},
    {rebar_api, info, 2},
    {rebar_api, warn, 2}
]).

-define(PROVIDER, ocibuild).
-define(DEPS, [release]).

-type state() :: #{rebar_state := term(), config := map()}.

%% ===================================================================
%% Provider
%% ===================================================================

%% @doc Register the `ocibuild' provider (namespace `default', after `release').
-spec init(State) -> {ok, State} when State :: term().
init(State) ->
    Provider = providers:create([
        {name, ?PROVIDER},
        {module, ?MODULE},
        {namespace, default},
        {bare, true},
        {deps, ?DEPS},
        {example, "rebar3 ocibuild -t myapp:1.0.0"},
        {opts, opts()},
        {short_desc, "Build an OCI image of the release (saved as a tarball or pushed)"},
        {desc, description()}
    ]),
    {ok, rebar_state:add_provider(State, Provider)}.

%% @doc Build the image of the release `rebar3 release' has just built.
-spec do(State) -> {ok, State} | {error, {?MODULE, term()}} when State :: term().
do(State) ->
    {Args, Rest} = rebar_state:command_parsed_args(State),
    case proplists:get_value(verify, Args) of
        undefined -> build(State, Args, Rest);
        Image -> verify(State, Image, proplists:get_value(key, Args), Rest)
    end.

build(State, Args, Rest) ->
    Cli = cli(Args),
    Project = project(rebar_state:get(State, ocibuild, [])),
    %% rebar3's global options end with a positional `task' (for `rebar3 help TASK'): a
    %% second positional argument lands there, any further ones in `Rest'.
    case [T || {task, T} <- Args] ++ Rest of
        [] ->
            case ocibuild_release:resolve_config(Cli, Project) of
                {ok, Config} ->
                    run(State, Config#{tag_required => true});
                {error, Reason} ->
                    {error, {?MODULE, Reason}}
            end;
        Unexpected ->
            {error, {?MODULE, {unexpected_arguments, Unexpected}}}
    end.

%% `--verify IMAGE --key cosign.pub': check what a push attached (`ocibuild_verify'), one
%% line per check; any failure, or nothing to check, fails the command.
verify(_State, _Image, undefined, _Rest) ->
    {error, {?MODULE, {invalid_option, key, missing}}};
verify(State, Image, Key, []) ->
    case ocibuild_verify:cli(Image, Key, fun(Line) -> io:format("~ts~n", [Line]) end) of
        ok -> {ok, State};
        {error, Reason} -> {error, {?MODULE, Reason}}
    end;
verify(_State, _Image, _Key, Unexpected) ->
    {error, {?MODULE, {unexpected_arguments, Unexpected}}}.

run(State, Config) ->
    case ocibuild_release:run(?MODULE, #{rebar_state => State, config => Config}, #{}) of
        {ok, _} -> {ok, State};
        {error, Reason} -> {error, {?MODULE, Reason}}
    end.

%% @doc One line for each error `do/1' returns: the same line `mix ocibuild' prints for the
%% same mistake (`ocibuild_release_messages:format_error/1').
-spec format_error(term()) -> iolist().
format_error(Reason) ->
    ocibuild_release_messages:format_error(Reason).

%% ===================================================================
%% Command line and rebar.config
%% ===================================================================

%% getopt specs from the option table both tools read: `rebar3 help ocibuild' prints them.
opts() ->
    ocibuild_options:getopt_specs() ++ verify_specs().

%% `--verify' and `--key' are rebar3's own: `mix ocibuild.verify' is a task of its own.
verify_specs() ->
    [{verify, undefined, "verify", string,
      "verify IMAGE instead of building: a registry reference (tag or digest) or a saved "
      "tarball (tar://PATH, *.tar, *.tar.gz); checks its cosign signature, attestations and "
      "SBOM with --key, one line per check, and fails if any check fails or nothing could be "
      "checked. Credentials as for --push"},
     {key, undefined, "key", string,
      "with --verify, the public key (PEM PUBLIC KEY, e.g. cosign.pub)"}].

%% @doc The provider's description as `rebar3 help ocibuild' takes it: an io:format/2
%% format, so a `~' in it (`~/.docker') is written `~~'.
-spec description() -> string().
description() ->
    lists:flatten(string:replace(desc(), "~", "~~", all)).

desc() ->
    "Build an OCI container image of the project's relx release and save it as a tarball\n"
    "(podman load / docker load) or push it to a registry. The release is built first\n"
    "(`rebar3 release`); run `rebar3 as prod ocibuild ...` for the prod profile.\n"
    "\n"
    "  rebar3 ocibuild -t myapp:1.0.0                        writes myapp-1.0.0.tar.gz\n"
    "  rebar3 ocibuild -t myapp:1.0.0 --push ghcr.io/myorg   pushes ghcr.io/myorg/myapp:1.0.0\n"
    "  rebar3 ocibuild --push ghcr.io/myorg myapp-1.0.0.tar.gz   pushes a saved tarball\n"
    "  rebar3 ocibuild --verify ghcr.io/myorg/myapp:1.0.0 --key cosign.pub   verifies a push\n"
    "\n"
    "Configuration in rebar.config, {ocibuild, [{Key, Value}, ...]} (the command line wins):\n"
    ++ ocibuild_options:text_project_keys() ++
    "\n"
    "Environment:\n"
    ++ ocibuild_options:text_environment() ++
    "\n"
    "The image runs <workdir>/bin/<release> foreground as user 65534. With a rebar.lock, the\n"
    "release is split into ERTS, dependency and application layers, so a rebuild after a\n"
    "code change uploads only the application layer.\n".

%% @doc The command line as `ocibuild_release:resolve_config/2' takes it, from getopt's parsed
%% options: repeated `-t', `-a' and `-l' in the order given; for other options the last wins.
-spec cli([atom() | {atom(), term()}]) -> map().
cli(Args) ->
    lists:foldl(fun cli_arg/2, #{}, Args).

cli_arg({relname, Value}, Cli) ->
    Cli#{release => Value};
cli_arg(Flag, Cli) when is_atom(Flag) ->
    cli_arg({Flag, true}, Cli);
cli_arg({Key, Value}, Cli) ->
    %% What the option table says the key is; anything else is one of rebar3's global
    %% options (`task', `verbose', ...).
    case [O || #{key := K} = O <- ocibuild_options:options(), K =:= Key] of
        [#{repeat := true}] -> Cli#{Key => maps:get(Key, Cli, []) ++ [Value]};
        [#{type := flag}] when Value =:= true -> Cli#{Key => true};
        [#{type := flag}] -> Cli;
        [_] -> Cli#{Key => Value};
        [] -> Cli
    end;
cli_arg(_Other, Cli) ->
    Cli.

%% @doc `{ocibuild, [...]}' from rebar.config as a map; the first of a repeated key wins,
%% as with `proplists:get_value/2' (profiles put their values first). Anything that is not a
%% proplist is passed on as is for `ocibuild_release:resolve_config/2' to reject.
-spec project(term()) -> map() | term().
project(Config) when is_list(Config) ->
    case lists:all(fun({K, _}) -> is_atom(K); (K) -> is_atom(K) end, Config) of
        true -> maps:from_list(lists:reverse(proplists:unfold(Config)));
        false -> Config
    end;
project(Config) ->
    Config.

%% ===================================================================
%% ocibuild_adapter
%% ===================================================================

%% @private
-spec get_config(state()) -> map().
get_config(#{config := Config}) ->
    Config.

%% @private The release's name and directory: `<base_dir>/rel/<Name>' (`_build/<profile>/rel').
-spec find_release(state(), map()) -> {ok, binary(), file:filename()} | {error, term()}.
find_release(#{rebar_state := RState} = State, Opts) ->
    Wanted =
        case maps:get(release, Opts, undefined) of
            undefined -> maps:get(release, get_config(State), undefined);
            Asked -> Asked
        end,
    case relx_release(rebar_state:get(RState, relx, []), Wanted) of
        {ok, Name, _Vsn} ->
            Dir = release_dir(RState, Name),
            case filelib:is_dir(filename:join(Dir, "bin")) of
                true -> {ok, Name, Dir};
                false -> {error, {release_not_built, Name, Dir}}
            end;
        {error, _} = Error ->
            Error
    end.

%% @private
-spec info(io:format(), [term()]) -> ok.
info(Format, Args) ->
    rebar_api:info(chars(Format), Args).

%% @private Printed exactly as given (no prefix, no newline added): live progress lines.
-spec console(io:format(), [term()]) -> ok.
console(Format, Args) ->
    io:format(Format, Args).

%% @private Warnings while building (`rebar_api:warn'); a failure itself is returned from
%% `do/1' and printed by rebar3 through `format_error/1'.
-spec error(io:format(), [term()]) -> ok.
error(Format, Args) ->
    rebar_api:warn(chars(Format), Args).

%% @private The release version when relx's configuration gives it as a string; when relx
%% computes it (`semver', `{git, short}', `{cmd, ...}'), `undefined': `ocibuild_release'
%% then reads it from the built release.
-spec get_app_version(state()) -> binary() | undefined.
get_app_version(#{rebar_state := RState} = State) ->
    Wanted = maps:get(release, get_config(State), undefined),
    case relx_release(rebar_state:get(RState, relx, []), Wanted) of
        {ok, _Name, Vsn} when is_binary(Vsn) -> Vsn;
        _ -> undefined
    end.

%% @private Dependencies from `rebar.lock' at the project root; `undefined' without one.
-spec get_dependencies(state()) ->
    {ok, [#{name := binary(), version := binary(), source := binary()}]} | {error, term()}
    | undefined.
get_dependencies(#{rebar_state := RState}) ->
    read_lock(filename:join(rebar_dir:root_dir(RState), "rebar.lock")).

chars(Format) when is_binary(Format) -> unicode:characters_to_list(Format);
chars(Format) when is_atom(Format) -> atom_to_list(Format);
chars(Format) -> unicode:characters_to_list(Format).

release_dir(RState, Name) ->
    filename:join([rebar_dir:base_dir(RState), "rel", Name]).

%% ===================================================================
%% Pure helpers
%% ===================================================================

%% @doc The release to image from relx's configuration: `Wanted' (a `--release' name) or,
%% when `undefined', relx's `default_release' or the only configured one. The version is a
%% binary when the configuration gives it as a string, otherwise relx's own term
%% (`semver', `{git, short}', ...).
-spec relx_release(list(), undefined | string() | binary()) ->
    {ok, Name :: binary(), Vsn :: binary() | term()} | {error, term()}.
relx_release(Relx, Wanted) when is_list(Relx) ->
    Releases = [{atom_to_binary(Name), version(Vsn)} || {release, {Name, Vsn}, _} <- Relx,
                                                        is_atom(Name)]
        ++ [{atom_to_binary(Name), version(Vsn)} || {release, {Name, Vsn}, _, _} <- Relx,
                                                    is_atom(Name)],
    Names = lists:usort([N || {N, _} <- Releases]),
    Default = [atom_to_binary(N) || {default_release, {N, _}} <- Relx, is_atom(N)],
    case {wanted(Wanted), Names, Default} of
        {undefined, [], _} -> {error, {ambiguous_release, []}};
        {Name, [], _} -> {error, {unknown_release, Name, []}};
        {undefined, [Only], _} -> pick(Only, Names, Releases);
        {undefined, _, [D | _]} -> pick(D, Names, Releases);
        {undefined, _, []} -> {error, {ambiguous_release, Names}};
        {Name, _, _} -> pick(Name, Names, Releases)
    end;
relx_release(_Relx, Wanted) ->
    case wanted(Wanted) of
        undefined -> {error, {ambiguous_release, []}};
        Name -> {error, {unknown_release, Name, []}}
    end.

wanted(undefined) -> undefined;
wanted(Name) -> unicode:characters_to_binary(Name).

version(Vsn) when is_list(Vsn) ->
    case io_lib:printable_unicode_list(Vsn) of
        true -> unicode:characters_to_binary(Vsn);
        false -> Vsn
    end;
version(Vsn) when is_binary(Vsn) -> Vsn;
version(Vsn) -> Vsn.

%% With several versions of one release configured, relx builds the highest: `undefined'
%% here, and `ocibuild_release' reads the version from the built release.
pick(Name, Names, Releases) ->
    case [V || {N, V} <- Releases, N =:= Name] of
        [] -> {error, {unknown_release, Name, Names}};
        [Vsn] -> {ok, Name, Vsn};
        _Many -> {ok, Name, undefined}
    end.

%% @doc The dependencies a `rebar.lock' lists; see `ocibuild_rebar_lock:read/1'.
-spec read_lock(file:filename()) ->
    {ok, [#{name := binary(), version := binary(), source := binary()}]} | {error, term()}
    | undefined.
read_lock(Path) ->
    ocibuild_rebar_lock:read(Path).
