%% Tests for ocibuild_vcs: CI variables, git in a real temporary repository, URL cleaning and
%% the timeout that kills a git that hangs.
-module(ocibuild_vcs_tests).

-include_lib("eunit/include/eunit.hrl").

-define(V, ocibuild_vcs).

env(Vars) ->
    fun(Name) -> proplists:get_value(Name, Vars, false) end.

normalize_url_test_() ->
    Cases = [
        {"git@github.com:acme/hello.git", {ok, <<"https://github.com/acme/hello.git">>}},
        {"ssh://git@gitlab.com:2222/acme/hello.git", {ok, <<"https://gitlab.com/acme/hello.git">>}},
        {"git+ssh://git@host.example/x/y", {ok, <<"https://host.example/x/y">>}},
        {"https://user:ghp_token123@github.com/acme/hello.git", {ok, <<"https://github.com/acme/hello.git">>}},
        {"https://github.com/acme/hello?x=1#frag", {ok, <<"https://github.com/acme/hello">>}},
        {"http://git.local:8080/a/b.git", {ok, <<"http://git.local:8080/a/b.git">>}},
        {"git://git.kernel.org/pub/scm/git/git.git", {ok, <<"git://git.kernel.org/pub/scm/git/git.git">>}},
        {"  https://github.com/acme/hello\n", {ok, <<"https://github.com/acme/hello">>}},
        {"/srv/git/hello.git", error},
        {"file:///srv/git/hello.git", error},
        {"../hello", error},
        {"", error}
    ],
    [{Url, ?_assertEqual(Want, ?V:normalize_url(Url))} || {Url, Want} <- Cases].

token_never_in_output_test() ->
    {ok, Clean} = ?V:normalize_url(<<"https://x-access-token:s3cr3t@github.com/a/b.git">>),
    ?assertEqual(nomatch, binary:match(Clean, <<"s3cr3t">>)).

git_timeout_test_() ->
    [?_assertEqual(5000, ?V:git_timeout(false)),
     ?_assertEqual(5000, ?V:git_timeout("")),
     ?_assertEqual(5000, ?V:git_timeout("soon")),
     ?_assertEqual(5000, ?V:git_timeout("0")),
     ?_assertEqual(5000, ?V:git_timeout("-5")),
     ?_assertEqual(250, ?V:git_timeout(" 250 ")),
     ?_assertEqual(300000, ?V:git_timeout("999999999"))].

ci_variables_test_() ->
    NoGit = #{git => "/nonexistent/git"},
    Info = fun(Vars) -> ?V:info(".", NoGit#{getenv => env(Vars)}) end,
    [?_assertEqual(#{source => <<"https://github.com/acme/app">>, revision => <<"abc123">>},
                   Info([{"GITHUB_SERVER_URL", "https://github.com/"}, {"GITHUB_REPOSITORY", "acme/app"},
                         {"GITHUB_SHA", "abc123"}])),
     ?_assertEqual(#{source => <<"https://gitlab.com/g/app">>, revision => <<"def">>},
                   Info([{"CI_PROJECT_URL", "https://gitlab.com/g/app"}, {"CI_COMMIT_SHA", "def"}])),
     ?_assertEqual(#{source => <<"https://dev.azure.com/o/p/_git/app">>, revision => <<"0f0f">>},
                   Info([{"BUILD_REPOSITORY_URI", "https://o@dev.azure.com/o/p/_git/app"},
                         {"BUILD_SOURCEVERSION", "0f0f"}])),
     %% GitHub first; empty values count as unset.
     ?_assertEqual(#{revision => <<"def">>},
                   Info([{"GITHUB_SHA", ""}, {"CI_COMMIT_SHA", "def"}])),
     ?_assertEqual(#{}, Info([]))].

git_repository_test_() ->
    {setup, fun make_repo/0, fun(Dir) -> file:del_dir_r(Dir) end, fun(Dir) ->
        Head = string:trim(os:cmd("git -C " ++ Dir ++ " rev-parse HEAD")),
        NoCi = env([]),
        [?_assertEqual(#{source => <<"https://github.com/acme/hello.git">>, revision => list_to_binary(Head)},
                       ?V:info(Dir, #{getenv => NoCi})),
         %% A CI source wins; git gives the revision the CI variables lack.
         ?_assertEqual(#{source => <<"https://gitlab.com/g/app">>, revision => list_to_binary(Head)},
                       ?V:info(Dir, #{getenv => env([{"CI_PROJECT_URL", "https://gitlab.com/g/app"}])})),
         ?_assertEqual(#{}, ?V:info(filename:dirname(Dir), #{getenv => NoCi}))]
    end}.

make_repo() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-vcs"),
    Git = "git -C " ++ Dir ++ " -c user.name=t -c user.email=t@ocibuild.invalid ",
    _ = os:cmd(Git ++ "init -q"),
    _ = os:cmd(Git ++ "commit -q --allow-empty -m x"),
    _ = os:cmd(Git ++ "remote add origin git@github.com:acme/hello.git"),
    Dir.

%% A git that never answers is killed when the timeout passes; nothing is left running.
hanging_git_test() ->
    Dir = ocibuild_test_util:tmp_dir("ocibuild-hang"),
    Marker = "ocibuild-hang-" ++ integer_to_list(erlang:unique_integer([positive])),
    Fake = filename:join(Dir, "git"),
    ok = file:write_file(Fake, ["#!/bin/sh\nexec sleep 30 ", Marker, "\n"]),
    ok = file:change_mode(Fake, 8#755),
    try
        T0 = erlang:monotonic_time(millisecond),
        Info = ?V:info(Dir, #{git => Fake, getenv => env([{"OCIBUILD_GIT_TIMEOUT", "200"}])}),
        Elapsed = erlang:monotonic_time(millisecond) - T0,
        ?assertEqual(#{}, Info),
        ?assert(Elapsed < 1500),
        timer:sleep(100),
        ?assertEqual("", string:trim(os:cmd("pgrep -f " ++ Marker)))
    after
        file:del_dir_r(Dir)
    end.
