-module(ocibuild_rebar3_tests).

-include_lib("eunit/include/eunit.hrl").

%% The pure parts of the rebar3 adapter: no rebar3 modules are called.

%% getopt gives repeated options as repeated keys, in command-line order.
cli_repeated_options_test() ->
    Args = [
        {tag, "app:1.0;app:latest"},
        {annotation, "a=1"},
        {label, "team=core"},
        {tag, "app:stable"},
        {annotation, "b=x=y"},
        {label, "tier=web"}
    ],
    ?assertEqual(
        #{
            tag => ["app:1.0;app:latest", "app:stable"],
            annotation => ["a=1", "b=x=y"],
            label => ["team=core", "tier=web"]
        },
        ocibuild_rebar3:cli(Args)
    ).

cli_every_option_test() ->
    Args = [
        {output, "first.tar.gz"},
        {output, "out.tar.gz"},
        {push, "ghcr.io/org"},
        {platform, "linux/amd64,linux/arm64"},
        {base, "tar:///tmp/base.tar.gz"},
        {relname, "other"},
        {cmd, "start"},
        {uid, 1000},
        {chunk_size, 8},
        {sbom, "sbom.json"},
        no_vcs_annotations,
        {sign_key, "key.pem"},
        {compression, "zstd"},
        {tarball, "saved.tar.gz"}
    ],
    ?assertEqual(
        #{
            output => "out.tar.gz",
            push => "ghcr.io/org",
            platform => "linux/amd64,linux/arm64",
            base => "tar:///tmp/base.tar.gz",
            release => "other",
            cmd => "start",
            uid => 1000,
            chunk_size => 8,
            sbom => "sbom.json",
            no_vcs_annotations => true,
            sign_key => "key.pem",
            compression => "zstd",
            tarball => "saved.tar.gz"
        },
        ocibuild_rebar3:cli(Args)
    ).

cli_absent_options_test() ->
    ?assertEqual(#{}, ocibuild_rebar3:cli([])),
    %% A boolean-typed flag set to false is the same as not given; unknown keys are ignored.
    ?assertEqual(#{}, ocibuild_rebar3:cli([{no_vcs_annotations, false}, {relvsn, "1"}])),
    ?assertEqual(#{no_vcs_annotations => true},
                 ocibuild_rebar3:cli([{no_vcs_annotations, true}])).

project_test() ->
    ?assertEqual(#{}, ocibuild_rebar3:project([])),
    %% The first of a repeated key wins (a profile's value comes first); bare atoms are true.
    ?assertEqual(
        #{base_image => "alpine:3.19", workdir => "/srv", vcs_annotations => true},
        ocibuild_rebar3:project([{base_image, "alpine:3.19"}, {workdir, "/srv"},
                                 {base_image, "debian:stable-slim"}, vcs_annotations])
    ),
    %% Not a proplist: passed on for resolve_config/2 to reject.
    ?assertEqual(not_a_list, ocibuild_rebar3:project(not_a_list)),
    ?assertEqual(["x"], ocibuild_rebar3:project(["x"])).

lock_versioned_format_test() ->
    Lock = with_file(
        "{\"1.2.0\",\n"
        "[{<<\"cowboy\">>,{pkg,<<\"cowboy\">>,<<\"2.10.0\">>},0},\n"
        " {<<\"alias\">>,{pkg,<<\"real_name\">>,<<\"1.0.0\">>,<<\"OLD\">>,<<\"NEW\">>},1},\n"
        " {<<\"mylib\">>,{git,\"https://example.invalid/mylib.git\",\n"
        "                 {ref,\"0123456789abcdef0123456789abcdef01234567\"}},0}]}.\n"
        "[\n"
        "{pkg_hash,[\n"
        " {<<\"cowboy\">>, <<\"ABC\">>}]},\n"
        "{pkg_hash_ext,[\n"
        " {<<\"cowboy\">>, <<\"DEF\">>}]}\n"
        "].\n",
        fun ocibuild_rebar3:read_lock/1
    ),
    ?assertEqual(
        {ok, [
            #{name => <<"cowboy">>, version => <<"2.10.0">>, source => <<"hex">>},
            #{name => <<"alias">>, version => <<"1.0.0">>, source => <<"hex">>},
            #{name => <<"mylib">>, version => <<"0123456789abcdef0123456789abcdef01234567">>,
              source => <<"https://example.invalid/mylib.git">>}
        ]},
        Lock
    ).

lock_old_format_test() ->
    Lock = with_file(
        "[{<<\"jsx\">>,{pkg,<<\"jsx\">>,<<\"2.9.0\">>},0},\n"
        " {<<\"sub\">>,{git_subdir,\"https://example.invalid/mono.git\",{ref,\"abc\"},\n"
        "                \"apps/sub\"},1}].\n",
        fun ocibuild_rebar3:read_lock/1
    ),
    ?assertEqual(
        {ok, [
            #{name => <<"jsx">>, version => <<"2.9.0">>, source => <<"hex">>},
            #{name => <<"sub">>, version => <<"abc">>,
              source => <<"https://example.invalid/mono.git">>}
        ]},
        Lock
    ).

lock_empty_test() ->
    %% What `rebar3 compile' writes for a project without dependencies.
    ?assertEqual({ok, []}, with_file("[].\n", fun ocibuild_rebar3:read_lock/1)),
    ?assertEqual({ok, []}, with_file("", fun ocibuild_rebar3:read_lock/1)).

lock_absent_test() ->
    Dir = temp_dir(),
    ?assertEqual(undefined, ocibuild_rebar3:read_lock(filename:join(Dir, "rebar.lock"))),
    ok = file:del_dir(Dir).

lock_errors_test() ->
    ?assertMatch({error, {_, {_Line, erl_parse, _}}},
                 with_file("[{<<\"a\">>,", fun ocibuild_rebar3:read_lock/1)),
    ?assertMatch({error, {_, unknown_format}},
                 with_file("{no, lock, here}.\n", fun ocibuild_rebar3:read_lock/1)),
    %% Every error is one printable line.
    [
        ?assertEqual(nomatch, string:find(
            lists:flatten(io_lib:format("~ts", [ocibuild_rebar3:format_error(E)])), "\n"))
     || E <- [{lock_file, {"rebar.lock", {3, erl_parse, ["syntax error before: ", "'.'"]}}},
              {lock_file, {"rebar.lock", unknown_format}},
              {lock_file, {"rebar.lock", eacces}},
              {ambiguous_release, []},
              {unknown_release, <<"other">>, [<<"myapp">>]},
              {unknown_release, <<"other">>, []},
              {ambiguous_release, [<<"a">>, <<"b">>]},
              {release_not_built, <<"a">>, "_build/default/rel/a"},
              {unexpected_arguments, ["x", "y"]}]
    ].

relx_release_test() ->
    One = [{release, {myapp, "1.0.0"}, [myapp]}, {include_erts, true}],
    ?assertEqual({ok, <<"myapp">>, <<"1.0.0">>}, ocibuild_rebar3:relx_release(One, undefined)),
    ?assertEqual({ok, <<"myapp">>, <<"1.0.0">>}, ocibuild_rebar3:relx_release(One, "myapp")),
    ?assertEqual({error, {unknown_release, <<"other">>, [<<"myapp">>]}},
                 ocibuild_rebar3:relx_release(One, <<"other">>)),
    ?assertEqual({error, {ambiguous_release, []}},
                 ocibuild_rebar3:relx_release([], undefined)),
    ?assertEqual({error, {unknown_release, <<"other">>, []}},
                 ocibuild_rebar3:relx_release([], "other")),
    %% A computed version is relx's own term; the built release says what it became.
    ?assertEqual({ok, <<"myapp">>, {git, short}},
                 ocibuild_rebar3:relx_release([{release, {myapp, {git, short}}, [myapp], []}],
                                              undefined)),
    Two = [{release, {a, "1"}, [a]}, {release, {b, "2"}, [b]}],
    ?assertEqual({error, {ambiguous_release, [<<"a">>, <<"b">>]}},
                 ocibuild_rebar3:relx_release(Two, undefined)),
    ?assertEqual({ok, <<"b">>, <<"2">>}, ocibuild_rebar3:relx_release(Two, "b")),
    ?assertEqual({ok, <<"b">>, <<"2">>},
                 ocibuild_rebar3:relx_release([{default_release, {b, "2"}} | Two], undefined)),
    %% Several versions of one release: relx builds the highest, read back from disk.
    ?assertEqual({ok, <<"a">>, undefined},
                 ocibuild_rebar3:relx_release([{release, {a, "1"}, [a]}, {release, {a, "2"}, [a]}],
                                              undefined)).

%% Helpers

with_file(Content, Fun) ->
    Dir = temp_dir(),
    Path = filename:join(Dir, "rebar.lock"),
    ok = file:write_file(Path, Content),
    try
        Fun(Path)
    after
        ok = file:delete(Path),
        ok = file:del_dir(Dir)
    end.

temp_dir() ->
    ocibuild_test_util:tmp_dir("ocibuild-rebar3").

%% `rebar3 ocibuild -t 'bad tag!!'': the config is refused before any build, and rebar3
%% prints format_error/1's one line. (do/1 needs a rebar3 state; resolve_config/2 is the step
%% it takes the command line through.)
bad_tag_test() ->
    [
        begin
            Cli = ocibuild_rebar3:cli([{tag, "app:1"}, {tag, Tag}]),
            {error, Reason} = ocibuild_release:resolve_config(Cli, ocibuild_rebar3:project([])),
            ?assertMatch({invalid_tag, _, _}, Reason),
            Line = lists:flatten(io_lib:format("~ts", [ocibuild_rebar3:format_error(Reason)])),
            ?assertMatch("invalid image tag " ++ _, Line),
            ?assertEqual(nomatch, string:find(Line, "\n"))
        end
     || Tag <- ["bad tag!!", "MyApp:1", "ok:1;no tag", "app:\n1", [$a, 0]]
    ],
    ?assertEqual(
        "invalid image tag \"bad tag!!\": each repository component must be lower-case letters "
        "and digits, joined by single '.', '_', '__' or runs of '-'",
        lists:flatten(io_lib:format("~ts", [ocibuild_rebar3:format_error(
            element(2, ocibuild_release:resolve_config(#{tag => ["bad tag!!"]}, #{})))]))
    ),
    %% A project file tag is checked the same way.
    ?assertMatch({error, {invalid_tag, <<"Up:1">>, _}},
                 ocibuild_release:resolve_config(#{}, ocibuild_rebar3:project([{tag, "Up:1"}]))),
    ?assertMatch({ok, #{tags := [<<"app:1">>, <<"ghcr.io/org/app:2">>]}},
                 ocibuild_release:resolve_config(#{tag => ["app:1;ghcr.io/org/app:2"]}, #{})).

%% `rebar3 ocibuild' and `mix ocibuild' read one option table: the same long flags, the same
%% short aliases, and the help shows the default the configuration really falls back to.
one_option_table_test() ->
    Specs = ocibuild_options:getopt_specs(),
    Longs = lists:sort([L || {_, _, L, _, _} <- Specs, L =/= undefined]),
    MixLongs = lists:sort([string:replace(atom_to_list(K), "_", "-", all)
                           || {K, _} <- ocibuild_options:mix_switches()]),
    ?assertEqual(Longs, [lists:flatten(L) || L <- MixLongs]),
    Shorts = lists:sort([{[S], L} || {_, S, L, _, _} <- Specs, S =/= undefined]),
    MixShorts = lists:sort([{atom_to_list(A), string:replace(atom_to_list(K), "_", "-", all)}
                            || {A, K} <- ocibuild_options:mix_aliases()]),
    ?assertEqual(Shorts, [{A, lists:flatten(L)} || {A, L} <- MixShorts]),
    %% `--release' keeps relx's own key, so `rebar3 release' builds the release imaged.
    ?assertMatch([{relname, undefined, "release", string, _}],
                 [S || {_, _, "release", _, _} = S <- Specs]),
    %% The positional tarball after --push.
    ?assertMatch([{tarball, undefined, undefined, string, _}],
                 [S || {tarball, _, _, _, _} = S <- Specs]),
    {ok, #{chunk_size := Bytes, uid := Uid}} = ocibuild_release:resolve_config(#{}, #{}),
    [ChunkHelp] = [H || {chunk_size, _, _, _, H} <- Specs],
    ?assertNotEqual(nomatch, string:find(ChunkHelp, "Default: " ++ integer_to_list(Bytes div (1024 * 1024)) ++ ".")),
    [UidHelp] = [H || {uid, _, _, _, H} <- Specs],
    ?assertNotEqual(nomatch, string:find(UidHelp, "Default: " ++ integer_to_list(Uid) ++ ".")).

%% `rebar3 help ocibuild' prints the description as an io:format/2 format: it must print as
%% itself, tildes included (`~/.docker/config.json').
help_text_is_a_format_test() ->
    Desc = ocibuild_rebar3:description(),
    Printed = lists:flatten(io_lib:format(Desc, [])),
    ?assertNotEqual(nomatch, string:find(Printed, "~/.docker/config.json")),
    ?assertNotEqual(nomatch, string:find(Printed, "OCIBUILD_PUSH_TOKEN")).
