%% @doc Where an image's source comes from: the repository URL and the revision, for the
%% `org.opencontainers.image.source' and `.revision' annotations.
%%
%% CI variables come first, because a CI checkout may be detached or shallow and its remote
%% may carry a token: GitHub Actions (`GITHUB_SERVER_URL'/`GITHUB_REPOSITORY', `GITHUB_SHA'),
%% GitLab CI (`CI_PROJECT_URL', `CI_COMMIT_SHA'), Azure Pipelines (`BUILD_REPOSITORY_URI',
%% `BUILD_SOURCEVERSION'). A provider that gives one of the two leaves git to find the other.
%% Then git: `git remote get-url origin' and `git rev-parse HEAD', each bounded by
%% `OCIBUILD_GIT_TIMEOUT' milliseconds (default 5000, at most 300000); a git that does not
%% answer in time is killed. Nothing here fails: what cannot be found is left out.
%%
%% URLs are made fit to publish: ssh remotes become https, and user, password, query and
%% fragment are removed, so a token in a remote URL never reaches an image.
-module(ocibuild_vcs).

-export([info/1, info/2, normalize_url/1, git_timeout/1]).

-define(DEFAULT_TIMEOUT, 5000).
-define(MAX_TIMEOUT, 300000).

-type getenv() :: fun((string()) -> string() | false).

%% @doc Source and revision for the project in `Dir', from the process environment.
-spec info(file:filename_all()) -> #{source => binary(), revision => binary()}.
info(Dir) ->
    info(Dir, #{}).

%% @doc As `info/1'. Options: `getenv' (a fun like `os:getenv/1', for tests), `git' (the git
%% executable; default: git on PATH).
-spec info(file:filename_all(), #{getenv => getenv(), git => string()}) ->
    #{source => binary(), revision => binary()}.
info(Dir, Opts) ->
    Getenv = maps:get(getenv, Opts, fun os:getenv/1),
    FromCi = from_ci(Getenv),
    case maps:is_key(source, FromCi) andalso maps:is_key(revision, FromCi) of
        true ->
            FromCi;
        false ->
            Git = git(Opts, Dir, git_timeout(Getenv("OCIBUILD_GIT_TIMEOUT"))),
            maps:merge(Git, FromCi)
    end.

%% CI providers, in order; the first that names a source or a revision wins.
from_ci(Getenv) ->
    Get = fun(Name) ->
        case Getenv(Name) of
            false -> undefined;
            "" -> undefined;
            V -> unicode:characters_to_binary(V)
        end
    end,
    GitHub = case {Get("GITHUB_SERVER_URL"), Get("GITHUB_REPOSITORY")} of
        {undefined, _} -> undefined;
        {_, undefined} -> undefined;
        {Server, Repo} -> <<(string:trim(Server, trailing, "/"))/binary, "/", Repo/binary>>
    end,
    Providers = [
        {GitHub, Get("GITHUB_SHA")},
        {Get("CI_PROJECT_URL"), Get("CI_COMMIT_SHA")},
        {Get("BUILD_REPOSITORY_URI"), Get("BUILD_SOURCEVERSION")}
    ],
    case [P || {S, R} = P <- Providers, S =/= undefined orelse R =/= undefined] of
        [] -> #{};
        [{Source, Revision} | _] -> with_source(Source, with_revision(Revision, #{}))
    end.

git(Opts, Dir, Timeout) ->
    case maps:get(git, Opts, os:find_executable("git")) of
        false ->
            #{};
        Git ->
            Remote = run_git(Git, Dir, ["remote", "get-url", "origin"], Timeout),
            Head = run_git(Git, Dir, ["rev-parse", "--verify", "HEAD"], Timeout),
            with_source(first_line(Remote), with_revision(first_line(Head), #{}))
    end.

with_source(undefined, Map) -> Map;
with_source(Url, Map) ->
    case normalize_url(Url) of
        {ok, Clean} -> Map#{source => Clean};
        error -> Map
    end.

with_revision(undefined, Map) -> Map;
with_revision(Rev, Map) -> Map#{revision => Rev}.

first_line({ok, Out}) ->
    case string:trim(hd(string:split(Out, "\n")), both) of
        <<>> -> undefined;
        Line -> Line
    end;
first_line(error) ->
    undefined.

%% @doc The timeout in ms for a value of `OCIBUILD_GIT_TIMEOUT': the default for unset, empty,
%% invalid or non-positive values, capped at 300000.
-spec git_timeout(string() | false) -> pos_integer().
git_timeout(false) ->
    ?DEFAULT_TIMEOUT;
git_timeout(Value) ->
    case string:to_integer(string:trim(Value)) of
        {N, []} when is_integer(N), N > 0 -> min(N, ?MAX_TIMEOUT);
        _ -> ?DEFAULT_TIMEOUT
    end.

%% Run git in Dir; its stdout on exit status 0. A port would pass git's stderr (not a
%% repository, no such remote) straight to the terminal, so `sh' sends it to /dev/null and
%% `exec's git, which keeps the process id the timeout kills. Git and its arguments are
%% positional parameters of the script, never parsed by the shell.
run_git(Git, Dir, Args, Timeout) ->
    try
        Port = open_port({spawn_executable, "/bin/sh"}, [
            {args, ["-c", "exec \"$0\" \"$@\" 2>/dev/null", Git, "-c", "core.fsmonitor=false" | Args]},
            {cd, Dir},
            {env, [{"GIT_TERMINAL_PROMPT", "0"}, {"GIT_OPTIONAL_LOCKS", "0"}, {"LC_ALL", "C"}]},
            exit_status, binary, use_stdio, hide
        ]),
        collect(Port, [], erlang:monotonic_time(millisecond) + Timeout)
    catch
        error:_ -> error
    end.

collect(Port, Acc, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {Port, {data, Data}} ->
            collect(Port, [Acc, Data], Deadline);
        {Port, {exit_status, 0}} ->
            {ok, iolist_to_binary(Acc)};
        {Port, {exit_status, _}} ->
            error
    after Left ->
        kill(Port),
        error
    end.

%% A git that hangs (a stuck filesystem, a hook) is killed, not left behind.
kill(Port) ->
    case erlang:port_info(Port, os_pid) of
        {os_pid, Pid} -> os:cmd("kill -9 " ++ integer_to_list(Pid));
        undefined -> ok
    end,
    catch port_close(Port),
    receive {Port, {exit_status, _}} -> ok after 0 -> ok end,
    flush(Port).

flush(Port) ->
    receive {Port, _} -> flush(Port) after 0 -> ok end.

%% @doc A repository URL fit to publish: `git@host:org/repo.git' and `ssh://[user@]host[:port]/path'
%% become `https://host/path'; user info, query and fragment are dropped from any URL. Local
%% paths and `file://' URLs are `error': nobody else can fetch them.
-spec normalize_url(binary() | string()) -> {ok, binary()} | error.
normalize_url(Url0) ->
    Url = string:trim(unicode:characters_to_binary(Url0)),
    case uri_string:parse(Url) of
        #{scheme := Scheme, host := Host} = U when Host =/= <<>> ->
            Path = maps:get(path, U, <<>>),
            case string:lowercase(Scheme) of
                S when S =:= <<"ssh">>; S =:= <<"git+ssh">> ->
                    {ok, <<"https://", Host/binary, Path/binary>>};
                S when S =:= <<"https">>; S =:= <<"http">>; S =:= <<"git">> ->
                    Port = case maps:get(port, U, undefined) of
                        undefined -> <<>>;
                        P -> <<":", (integer_to_binary(P))/binary>>
                    end,
                    {ok, <<S/binary, "://", Host/binary, Port/binary, Path/binary>>};
                _ ->
                    error
            end;
        _ ->
            scp_like(Url)
    end.

%% `[user@]host:path', git's scp-like ssh syntax (no scheme, a colon before the first slash).
scp_like(Url) ->
    case re:run(Url, "^(?:[^@/]+@)?([A-Za-z0-9.-]+):(?!//)([^?#]+)", [{capture, all_but_first, binary}]) of
        {match, [Host, Path]} when Host =/= <<>> ->
            {ok, <<"https://", Host/binary, "/", (string:trim(Path, leading, "/"))/binary>>};
        _ ->
            error
    end.
