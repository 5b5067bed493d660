%% Tests for ocibuild_vcs: URL cleaning, OCIBUILD_GIT_TIMEOUT, CI variables, git in real
%% temporary repositories, fake gits that misbehave, and the timeout that kills a git that
%% hangs. The process environment is never changed: a getenv fun stands in for it.
-module(ocibuild_vcs_tests).

-include_lib("eunit/include/eunit.hrl").

%% Fixtures shared with ocibuild_annotations_tests.
-export([env/1, git_repo/1, git/2, remove/1]).

-define(V, ocibuild_vcs).
-define(ORIGIN, "git@github.com:acme/hello.git").
-define(SOURCE, <<"https://github.com/acme/hello">>).
-define(NO_GIT, "/nonexistent/ocibuild-tests/git").

%%% Fixtures

%% A getenv fun over a fixed list of variables.
env(Vars) ->
    fun(Name) -> proplists:get_value(Name, Vars, false) end.

%% A temporary repository with one commit and, unless `none', an origin remote. Returns the
%% directory and the commit's full name.
git_repo(Origin) ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-vcs"),
    git(Dir, ["init", "-q"]),
    git(Dir, ["-c", "user.name=t", "-c", "user.email=t@e", "-c", "commit.gpgsign=false",
              "commit", "-q", "--allow-empty", "-m", "x"]),
    Origin =:= none orelse git(Dir, ["remote", "add", "origin", Origin]),
    {Dir, git(Dir, ["rev-parse", "HEAD"])}.

%% Run git in Dir, away from the user's and the system's git configuration; its trimmed
%% output, which must come with exit status 0.
git(Dir, Args) ->
    Env = [{"GIT_CONFIG_GLOBAL", "/dev/null"}, {"GIT_CONFIG_NOSYSTEM", "1"}],
    Port = open_port({spawn_executable, os:find_executable("git")},
                     [{args, Args}, {cd, Dir}, {env, Env}, exit_status, binary, stderr_to_stdout]),
    Out = port_output(Port, []),
    string:trim(Out).

port_output(Port, Acc) ->
    receive
        {Port, {data, Data}} -> port_output(Port, [Acc, Data]);
        {Port, {exit_status, 0}} -> iolist_to_binary(Acc);
        {Port, {exit_status, N}} -> error({git_failed, N, iolist_to_binary(Acc)})
    after 10000 -> error(git_timeout)
    end.

remove({Dir, _Head}) -> remove(Dir);
remove(Dir) -> ok = file:del_dir_r(Dir).

%% An executable script standing in for git.
fake_git(Dir, Body) ->
    Path = filename:join(Dir, "git"),
    ok = file:write_file(Path, ["#!/bin/sh\n", Body, "\n"]),
    ok = file:change_mode(Path, 8#755),
    Path.

%%% normalize_url/1

normalize_url_test_() ->
    Cases = [
        %% ssh becomes https; an ssh port means nothing to https; a trailing .git goes (as in
        %% ocibuild 0.10: the repository's page).
        {"git@github.com:acme/hello.git", {ok, <<"https://github.com/acme/hello">>}},
        {"github.com:acme/hello.git", {ok, <<"https://github.com/acme/hello">>}},
        {"git@host.example:/srv/repo.git", {ok, <<"https://host.example/srv/repo">>}},
        {"ssh://git@host:2222/org/repo.git", {ok, <<"https://host/org/repo">>}},
        {"ssh://host/org/repo", {ok, <<"https://host/org/repo">>}},
        {"git+ssh://git@host.example/x/y", {ok, <<"https://host.example/x/y">>}},
        %% User info, query and fragment go; scheme case is normalized; the rest stays.
        {"https://user:token@host/x", {ok, <<"https://host/x">>}},
        {"https://github.com/acme/hello?x=1#frag", {ok, <<"https://github.com/acme/hello">>}},
        {"HTTPS://github.com/acme/hello", {ok, <<"https://github.com/acme/hello">>}},
        {"http://git.local:8080/a/b.git", {ok, <<"http://git.local:8080/a/b">>}},
        {"https://[::1]:8443/a.git", {ok, <<"https://[::1]:8443/a">>}},
        {"https://example.com/a%20b.git", {ok, <<"https://example.com/a%20b">>}},
        {"git://git.kernel.org/pub/scm/git/git.git", {ok, <<"git://git.kernel.org/pub/scm/git/git">>}},
        {"git+https://u:p@example.com/a.git", {ok, <<"https://example.com/a">>}},
        {"  https://github.com/acme/hello\n", {ok, <<"https://github.com/acme/hello">>}},
        {"https://github.com/acme/hello.git/", {ok, <<"https://github.com/acme/hello">>}},
        {"https://example.com/a.git?x=1", {ok, <<"https://example.com/a">>}},
        {"https://example.com/a.github", {ok, <<"https://example.com/a.github">>}},
        %% Only a repository name loses .git, never a host or a bare .git path.
        {"https://git.git", {ok, <<"https://git.git">>}},
        {"https://example.com/.git", {ok, <<"https://example.com/.git">>}},
        {<<"https://github.com/acme/hello">>, {ok, <<"https://github.com/acme/hello">>}},
        %% Nothing a reader could fetch.
        {"/srv/git/hello.git", error},
        {"../hello", error},
        {"hello", error},
        {"file:///srv/git/hello.git", error},
        {"C:/src/hello", error},
        {"C:\\src\\hello", error},
        {"ftp://example.com/hello.git", error},
        {"https:///nohost", error},
        {"", error},
        {<<255, "https://x">>, error}
    ],
    [{lists:flatten(io_lib:format("~0p", [Url])), ?_assertEqual(Want, ?V:normalize_url(Url))}
     || {Url, Want} <- Cases].

%% A token in a remote URL never comes out, whatever the URL's form.
token_never_in_output_test_() ->
    Urls = [
        "https://x-access-token:s3cr3t@github.com/a/b.git",
        "https://s3cr3t@dev.azure.com/o/p/_git/b",
        "https://oauth2:s3cr3t@gitlab.com/a/b.git?private_token=s3cr3t#s3cr3t",
        "http://user:s3cr3t@[::1]:8080/a/b",
        "ssh://git:s3cr3t@github.com/a/b.git",
        "git+https://user:s3cr3t@github.com/a/b.git",
        "user:s3cr3t@github.com:a/b.git",
        "https://user:s3cr3t@with@at@github.com/a/b.git"
    ],
    [{Url, ?_assertEqual(nomatch, binary:match(term_to_binary(?V:normalize_url(Url)), <<"s3cr3t">>))}
     || Url <- Urls].

%%% git_timeout/1

git_timeout_test_() ->
    Cases = [
        {false, 5000}, {undefined, 5000}, {"", 5000}, {"  ", 5000}, {"soon", 5000},
        {"5s", 5000}, {"1.5", 5000}, {"0", 5000}, {"-5", 5000},
        {"1", 1}, {" 250 ", 250}, {<<"250">>, 250}, {"300000", 300000},
        {"300001", 300000}, {"999999999999", 300000}
    ],
    [?_assertEqual(Want, ?V:git_timeout(Value)) || {Value, Want} <- Cases].

%%% CI variables

ci_variables_test_() ->
    Info = fun(Vars) -> ?V:info(".", #{getenv => env(Vars), git => ?NO_GIT}) end,
    GitHub = [{"GITHUB_SERVER_URL", "https://github.com"}, {"GITHUB_REPOSITORY", "acme/app"},
              {"GITHUB_SHA", "abc123"}],
    GitLab = [{"CI_PROJECT_URL", "https://gitlab.com/g/app"}, {"CI_COMMIT_SHA", "def456"}],
    Azure = [{"BUILD_REPOSITORY_URI", "https://org@dev.azure.com/org/p/_git/app"},
             {"BUILD_SOURCEVERSION", "0f0f0f"}],
    [{"GitHub",
      ?_assertEqual(#{source => <<"https://github.com/acme/app">>, revision => <<"abc123">>},
                    Info(GitHub))},
     {"GitHub server URL with a trailing slash",
      ?_assertEqual(#{source => <<"https://ghe.example/acme/app">>, revision => <<"abc123">>},
                    Info([{"GITHUB_SERVER_URL", "https://ghe.example/"} | tl(GitHub)]))},
     {"GitLab",
      ?_assertEqual(#{source => <<"https://gitlab.com/g/app">>, revision => <<"def456">>},
                    Info(GitLab))},
     {"Azure Pipelines: the organisation user in the URL is dropped",
      ?_assertEqual(#{source => <<"https://dev.azure.com/org/p/_git/app">>, revision => <<"0f0f0f">>},
                    Info(Azure))},
     {"GitHub comes before GitLab and Azure",
      ?_assertEqual(#{source => <<"https://github.com/acme/app">>, revision => <<"abc123">>},
                    Info(Azure ++ GitLab ++ GitHub))},
     {"empty values count as unset",
      ?_assertEqual(#{source => <<"https://gitlab.com/g/app">>, revision => <<"def456">>},
                    Info([{"GITHUB_SERVER_URL", ""}, {"GITHUB_REPOSITORY", ""}, {"GITHUB_SHA", ""}
                          | GitLab]))},
     {"GITHUB_REPOSITORY without GITHUB_SERVER_URL names no source",
      ?_assertEqual(#{revision => <<"abc123">>}, Info(tl(GitHub)))},
     {"a CI source that is a local path is left out",
      ?_assertEqual(#{revision => <<"def456">>},
                    Info([{"CI_PROJECT_URL", "/builds/g/app"}, {"CI_COMMIT_SHA", "def456"}]))},
     {"no CI, no git", ?_assertEqual(#{}, Info([]))},
     {"info/2 also takes the getenv fun itself",
      ?_assertEqual(#{source => <<"https://gitlab.com/g/app">>, revision => <<"def456">>},
                    ?V:info(".", env(GitLab)))}].

%% A CI provider that gives both values is enough: git is not run at all.
ci_complete_skips_git_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-vcs-ci"),
    try
        Calls = filename:join(Dir, "calls"),
        Git = fake_git(Dir, ["echo called >> '", Calls, "'"]),
        Vars = [{"CI_PROJECT_URL", "https://gitlab.com/g/app"}, {"CI_COMMIT_SHA", "def456"}],
        ?assertEqual(#{source => <<"https://gitlab.com/g/app">>, revision => <<"def456">>},
                     ?V:info(Dir, #{getenv => env(Vars), git => Git})),
        ?assertNot(filelib:is_file(Calls)),
        %% The same fake git is run when CI gives only one value (the hook works).
        _ = ?V:info(Dir, #{getenv => env(tl(Vars)), git => Git}),
        ?assert(filelib:is_file(Calls))
    after
        remove(Dir)
    end.

%%% git

git_repository_test_() ->
    {setup, fun() -> git_repo(?ORIGIN) end, fun remove/1, fun({Dir, Head}) ->
        NoCi = env([]),
        [{"origin and HEAD of a real repository",
          ?_assertEqual(#{source => ?SOURCE, revision => Head}, ?V:info(Dir, NoCi))},
         {"a binary directory name",
          ?_assertEqual(#{source => ?SOURCE, revision => Head}, ?V:info(list_to_binary(Dir), NoCi))},
         {"a subdirectory of the repository",
          fun() ->
              Sub = filename:join(Dir, "sub"),
              ok = file:make_dir(Sub),
              ?assertEqual(#{source => ?SOURCE, revision => Head}, ?V:info(Sub, NoCi))
          end},
         {"CI gives the source, git the revision",
          ?_assertEqual(#{source => <<"https://gitlab.com/g/app">>, revision => Head},
                        ?V:info(Dir, env([{"CI_PROJECT_URL", "https://gitlab.com/g/app"}])))},
         {"CI gives the revision, git the source",
          ?_assertEqual(#{source => ?SOURCE, revision => <<"abc123">>},
                        ?V:info(Dir, env([{"GITHUB_SHA", "abc123"}])))},
         {"a git that cannot be found gives nothing",
          ?_assertEqual(#{}, ?V:info(Dir, #{getenv => NoCi, git => ?NO_GIT}))}]
    end}.

origin_with_token_test() ->
    {Dir, Head} = git_repo("https://x-access-token:s3cr3t@github.com/acme/hello.git?x=s3cr3t"),
    try
        Info = ?V:info(Dir, env([])),
        ?assertEqual(#{source => ?SOURCE, revision => Head}, Info),
        ?assertEqual(nomatch, binary:match(term_to_binary(Info), <<"s3cr3t">>))
    after
        remove(Dir)
    end.

no_origin_test() ->
    {Dir, Head} = git_repo(none),
    try
        ?assertEqual(#{revision => Head}, ?V:info(Dir, env([])))
    after
        remove(Dir)
    end.

%% A repository without commits has an origin but no HEAD to name.
no_commits_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-vcs-empty"),
    try
        git(Dir, ["init", "-q"]),
        git(Dir, ["remote", "add", "origin", ?ORIGIN]),
        ?assertEqual(#{source => ?SOURCE}, ?V:info(Dir, env([])))
    after
        remove(Dir)
    end.

not_a_repository_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-vcs-plain"),
    try
        ?assertEqual(#{}, ?V:info(Dir, env([]))),
        ?assertEqual(#{}, ?V:info(filename:join(Dir, "missing"), env([])))
    after
        remove(Dir)
    end.

%% What git writes to stderr is not part of its answer; a failed or odd answer is left out.
misbehaving_git_test_() ->
    Sha = "0123456789abcdef0123456789abcdef01234567",
    Cases = [
        {"stderr is kept apart from the output",
         ["echo 'warning: noise' >&2\n",
          "case \"$*\" in *get-url*) echo 'git@example.com:a/b.git' ;; *) echo ", Sha, " ;; esac"],
         #{source => <<"https://example.com/a/b">>, revision => list_to_binary(Sha)}},
        {"a non-zero exit discards the output",
         ["echo 'git@example.com:a/b.git'; echo ", Sha, "; exit 1"],
         #{}},
        {"a revision that is not an object name is left out",
         "case \"$*\" in *get-url*) echo 'https://example.com/a.git' ;; *) echo HEAD ;; esac",
         #{source => <<"https://example.com/a">>}},
        {"git runs with prompts disabled",
         ["[ \"$GIT_TERMINAL_PROMPT\" = 0 ] || exit 1\n"
          "case \"$*\" in *get-url*) echo 'https://example.com/a.git' ;; *) echo ", Sha, " ;; esac"],
         #{source => <<"https://example.com/a">>, revision => list_to_binary(Sha)}}
    ],
    {setup, fun() -> ocibuild_test_util:tmp_dir("ocibuild-vcs-fake") end, fun remove/1, fun(Root) ->
        [{Name, fun() ->
              Dir = filename:join(Root, integer_to_list(erlang:phash2(Name))),
              ok = file:make_dir(Dir),
              Git = fake_git(Dir, Body),
              ?assertEqual(Want, ?V:info(Dir, #{getenv => env([]), git => Git}))
          end}
         || {Name, Body, Want} <- Cases]
    end}.

%% A git that writes without end is cut at the output cap, at once, not kept in memory until
%% the timeout.
endless_git_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-vcs-endless"),
    Git = fake_git(Dir, "yes 'https://example.com/a.git'"),
    try
        T0 = erlang:monotonic_time(millisecond),
        Info = ?V:info(Dir, #{git => Git, getenv => env([{"OCIBUILD_GIT_TIMEOUT", "60000"}])}),
        ?assertEqual(#{}, Info),
        ?assert(erlang:monotonic_time(millisecond) - T0 < 20000)
    after
        remove(Dir)
    end.

%% A git that never answers is killed, with what it started, once OCIBUILD_GIT_TIMEOUT has
%% passed; no second git is started after it.
hanging_git_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-vcs-hang"),
    Pids = filename:join(Dir, "pids"),
    Git = fake_git(Dir, ["echo \"git $$\" >> '", Pids, "'\n",
                         "sleep 30 &\n",
                         "echo \"child $!\" >> '", Pids, "'\n",
                         "wait"]),
    try
        T0 = erlang:monotonic_time(millisecond),
        Info = ?V:info(Dir, #{git => Git, getenv => env([{"OCIBUILD_GIT_TIMEOUT", "200"}])}),
        Elapsed = erlang:monotonic_time(millisecond) - T0,
        ?assertEqual(#{}, Info),
        ?assert(Elapsed >= 200),
        ?assert(Elapsed < 1500),
        {ok, Lines} = file:read_file(Pids),
        Started = [{Role, binary_to_list(Pid)}
                   || Line <- binary:split(Lines, <<"\n">>, [global, trim_all]),
                      [Role, Pid] <- [binary:split(Line, <<" ">>)]],
        ?assertMatch([{<<"git">>, _}], [P || {<<"git">>, _} = P <- Started]),
        [?assertEqual({Role, gone}, {Role, wait_gone(Pid, 20)}) || {Role, Pid} <- Started]
    after
        remove(Dir)
    end.

%% A killed process may stay a zombie where nothing reaps orphans (a container's init);
%% it no longer runs, which is what matters.
wait_gone(Pid, 0) ->
    {running, Pid};
wait_gone(Pid, Tries) ->
    case string:trim(os:cmd("ps -o stat= -p " ++ Pid)) of
        "" -> gone;
        "Z" ++ _ -> gone;
        _ -> timer:sleep(50), wait_gone(Pid, Tries - 1)
    end.
