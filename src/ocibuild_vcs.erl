%% @doc Where an image's source comes from: the repository URL and the revision, for the
%% `org.opencontainers.image.source' and `.revision' annotations.
%%
%% CI variables come first, because a CI checkout may be detached or shallow and its remote
%% may carry a token: GitHub Actions (`GITHUB_SERVER_URL' + `/' + `GITHUB_REPOSITORY',
%% `GITHUB_SHA'; Gitea and Forgejo Actions set the same), GitLab CI (`CI_PROJECT_URL',
%% `CI_COMMIT_SHA'), Azure Pipelines (`BUILD_REPOSITORY_URI', `BUILD_SOURCEVERSION'), in
%% that order. An empty variable counts as unset. The first provider that gives either value
%% is the one used; when it gives only one of the two, git supplies the other, since the
%% checkout CI builds from is the same commit of the same repository. A CI source that is not
%% a URL anyone else can fetch (see `normalize_url/1') counts as not given.
%%
%% Then git, run in the project directory: `git remote get-url origin' and
%% `git rev-parse --verify HEAD', each bounded by `OCIBUILD_GIT_TIMEOUT' milliseconds (see
%% `git_timeout/1'). A git that does not answer in time is killed together with anything it
%% started, and no further git command is run: a git that hung once (a stuck network
%% filesystem, a lock) would only make the build wait again. Git never prompts
%% (`GIT_TERMINAL_PROMPT=0'), its stderr is discarded rather than mixed into the answer, and a
%% revision is used only when it is a full object name.
%%
%% Nothing here fails: no git, not a repository, no `origin' remote, a non-zero exit or a
%% timeout leave the value out. URLs are made fit to publish: ssh remotes become https, a
%% trailing `.git' goes (the repository's page, as ocibuild 0.10 gave it), and user, password,
%% query and fragment are removed, so a token in a remote URL never reaches an image. Nothing is logged. Git runs through `/bin/sh' (to discard its stderr), so the git
%% half works on Unix hosts; elsewhere only the CI variables are read.
%%
%% ```
%% #{source := <<"https://github.com/acme/hello">>, revision := _} =
%%     ocibuild_vcs:info(".").
%% '''
-module(ocibuild_vcs).

-export([info/1, info/2, normalize_url/1, git_timeout/1]).

-export_type([info/0, getenv/0]).

-type info() :: #{source => binary(), revision => binary()}.
-type getenv() :: fun((string()) -> string() | false).

-define(DEFAULT_TIMEOUT, 5000).
-define(MAX_TIMEOUT, 300000).

%% @doc Source and revision of the project in `Dir', from the process environment and git.
-spec info(file:filename_all()) -> info().
info(Dir) ->
    info(Dir, #{}).

%% @doc As `info/1', with a getenv fun (like `os:getenv/1') standing for the process
%% environment, or options: `getenv' (that fun) and `git' (the git executable to run; default
%% git on `PATH'). Both are there for tests.
-spec info(file:filename_all(), getenv() | #{getenv => getenv(), git => file:filename_all()}) ->
    info().
info(Dir, Getenv) when is_function(Getenv, 1) ->
    info(Dir, #{getenv => Getenv});
info(Dir, Opts) when is_map(Opts) ->
    Getenv = maps:get(getenv, Opts, fun os:getenv/1),
    FromCi = from_ci(Getenv),
    case maps:is_key(source, FromCi) andalso maps:is_key(revision, FromCi) of
        true ->
            FromCi;
        false ->
            Timeout = git_timeout(env(Getenv, "OCIBUILD_GIT_TIMEOUT")),
            maps:merge(from_git(git_executable(Opts), Dir, Timeout), FromCi)
    end.

%% A variable's value as a binary; unset, empty and undecodable all count as unset.
env(Getenv, Name) ->
    case Getenv(Name) of
        Value when is_list(Value) ->
            case to_utf8(Value) of
                {ok, Bin} -> nonempty(string:trim(Bin));
                error -> undefined
            end;
        _ ->
            undefined
    end.

nonempty(<<>>) -> undefined;
nonempty(Bin) -> Bin.

from_ci(Getenv) ->
    Get = fun(Name) -> env(Getenv, Name) end,
    GitHub =
        case {Get("GITHUB_SERVER_URL"), Get("GITHUB_REPOSITORY")} of
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

git_executable(#{git := Git}) ->
    Git;
git_executable(_Opts) ->
    os:find_executable("git").

from_git(false, _Dir, _Timeout) ->
    #{};
from_git(Git, Dir, Timeout) ->
    %% A missing directory is checked here: the port would report it on the terminal.
    case filelib:is_dir(Dir) andalso run_git(Git, Dir, ["remote", "get-url", "origin"], Timeout) of
        false ->
            #{};
        timeout ->
            #{};
        Remote ->
            Head = run_git(Git, Dir, ["rev-parse", "--verify", "HEAD"], Timeout),
            with_source(first_line(Remote), with_revision(object_name(first_line(Head)), #{}))
    end.

with_source(undefined, Map) ->
    Map;
with_source(Url, Map) ->
    case normalize_url(Url) of
        {ok, Clean} -> Map#{source => Clean};
        error -> Map
    end.

with_revision(undefined, Map) -> Map;
with_revision(Rev, Map) -> Map#{revision => Rev}.

first_line({ok, Out}) ->
    case string:trim(hd(binary:split(Out, <<"\n">>))) of
        <<>> -> undefined;
        Line -> Line
    end;
first_line(_Failed) ->
    undefined.

%% A SHA-1 or SHA-256 object name; anything else is not a revision a reader can look up.
object_name(undefined) ->
    undefined;
object_name(Name) ->
    case re:run(Name, "^(?:[0-9a-f]{40}|[0-9a-f]{64})$", [{capture, none}]) of
        match -> Name;
        nomatch -> undefined
    end.

%% @doc The timeout in milliseconds for a value of `OCIBUILD_GIT_TIMEOUT' (as a string or
%% binary; `false' or `undefined' when unset): 5000 when unset, empty, not an integer or not
%% positive; at most 300000.
-spec git_timeout(string() | binary() | false | undefined) -> pos_integer().
git_timeout(Value) when is_list(Value); is_binary(Value) ->
    case string:to_integer(string:trim(Value)) of
        {N, Rest} when is_integer(N), N > 0, (Rest =:= [] orelse Rest =:= <<>>) ->
            min(N, ?MAX_TIMEOUT);
        _ ->
            ?DEFAULT_TIMEOUT
    end;
git_timeout(_Unset) ->
    ?DEFAULT_TIMEOUT.

%% Run git in Dir: `{ok, Stdout}' on exit status 0, `timeout' when it was killed, else
%% `error'. A port gives no way to keep a child's stderr apart (git's "not a git repository"
%% would reach the user's terminal), so `sh' sends it to /dev/null and `exec's git, which
%% keeps the process the timeout kills. Git and its arguments are positional parameters of
%% the script, never parsed by the shell.
run_git(Git, Dir, Args, Timeout) ->
    Script = "exec \"$0\" \"$@\" 2>/dev/null",
    try
        open_port({spawn_executable, "/bin/sh"}, [
            {args, ["-c", Script, Git, "-c", "core.fsmonitor=false" | Args]},
            {cd, Dir},
            {env, [{"GIT_TERMINAL_PROMPT", "0"}, {"GIT_OPTIONAL_LOCKS", "0"}, {"LC_ALL", "C"}]},
            exit_status, binary, use_stdio, hide
        ])
    of
        Port -> collect(Port, [], 0, erlang:monotonic_time(millisecond) + Timeout)
    catch
        error:_ -> error
    end.

%% A URL or a commit id is a line; more than this is not an answer we can use (a hook or a
%% broken git writing without end), and is not kept in memory.
-define(MAX_GIT_OUTPUT, 65536).

collect(Port, _Acc, Size, _Deadline) when Size > ?MAX_GIT_OUTPUT ->
    kill(Port),
    error;
collect(Port, Acc, Size, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {Port, {data, Data}} ->
            collect(Port, [Acc, Data], Size + byte_size(Data), Deadline);
        {Port, {exit_status, 0}} ->
            {ok, iolist_to_binary(Acc)};
        {Port, {exit_status, _}} ->
            error
    after Left ->
        kill(Port),
        timeout
    end.

%% The port's process leads a process group of its own (the emulator's child setup starts a
%% session for it), so signalling the group also ends whatever git started; the plain pid is
%% the fallback where that is not so.
kill(Port) ->
    case erlang:port_info(Port, os_pid) of
        {os_pid, OsPid} ->
            Pid = integer_to_list(OsPid),
            _ = os:cmd("kill -9 -" ++ Pid ++ " 2>/dev/null || kill -9 " ++ Pid ++ " 2>/dev/null"),
            ok;
        undefined ->
            ok
    end,
    catch port_close(Port),
    flush(Port).

flush(Port) ->
    receive
        {Port, _} -> flush(Port)
    after 0 -> ok
    end.

%% @doc A repository URL fit to publish. `git@host:org/repo.git' (git's scp-like syntax) and
%% `ssh://[user@]host[:port]/path' become `https://host/path' (the ssh port means nothing to
%% https); `git+https://' and `git+http://' lose the `git+'. User info, query and fragment are
%% removed from every URL, and so is a trailing `.git' (`https://github.com/org/repo.git' is
%% `https://github.com/org/repo', the page a registry links the image to, as in 0.10; git
%% clones either). Scheme (lowercased), host, port and the rest of the path of `http',
%% `https' and `git' URLs are kept as they are. Local paths, `file://' URLs, other schemes and
%% text that is not UTF-8 are `error': nobody else can fetch them.
%%
%% The cleaning is the native core's (`supply::vcs_url'), the same that keeps credentials out
%% of the SBOM's download locations.
-spec normalize_url(binary() | string()) -> {ok, binary()} | error.
normalize_url(Url) ->
    case to_utf8(Url) of
        {ok, Bin} ->
            case ocibuild_nif:vcs_url_normalize(Bin) of
                {ok, Clean} -> {ok, Clean};
                {error, not_public} -> error
            end;
        error ->
            error
    end.

to_utf8(Url) ->
    try unicode:characters_to_binary(Url) of
        Bin when is_binary(Bin) -> {ok, Bin};
        _ -> error
    catch
        error:_ -> error
    end.
