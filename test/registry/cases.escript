#!/usr/bin/env escript
%% Registry test cases: `escript cases.escript CASE ARG...' runs one case; `escript
%% cases.escript -- CASE ARG... -- CASE ARG...' runs several in order in this one VM,
%% printing `case N ok' or `case N failed' after the N-th (from 0) and exiting non-zero if any
%% failed. Each case drives the public API against the real registries test/registry/run.sh
%% started, asserts what it can see from Erlang, prints values the shell cross-checks with
%% skopeo and podman (KEY=VALUE lines), and fails with the reason on the first failed
%% assertion.
%%
%% Cases that change the environment the native library reads (DOCKER_CONFIG, SSL_CERT_FILE,
%% OCIBUILD_INSECURE_REGISTRIES, ...) get a VM of their own: its per-registry client cache
%% would carry the change into the cases after them. The others share one.
-mode(compile).
-compile([export_all, nowarn_export_all]).

main(["--" | Rest]) ->
    code:add_pathz(os:getenv("OCIBUILD_EBIN")),
    Cases = split_cases(Rest, [], []),
    Results = [run_numbered(N, C) || {N, C} <- lists:zip(lists:seq(0, length(Cases) - 1), Cases)],
    halt(case lists:all(fun(R) -> R end, Results) of true -> 0; false -> 1 end);
main([Case | Args]) ->
    code:add_pathz(os:getenv("OCIBUILD_EBIN")),
    halt(case run(Case, Args) of true -> 0; false -> 1 end).

%% "a", "b", "--", "c" -> [["a", "b"], ["c"]]
split_cases([], [], Acc) -> lists:reverse(Acc);
split_cases([], Cur, Acc) -> lists:reverse([lists:reverse(Cur) | Acc]);
split_cases(["--" | Rest], Cur, Acc) -> split_cases(Rest, [], [lists:reverse(Cur) | Acc]);
split_cases([A | Rest], Cur, Acc) -> split_cases(Rest, [A | Cur], Acc).

run_numbered(N, [Case | Args]) ->
    io:format("case ~b start ~s~n", [N, Case]),
    Ok = run(Case, Args),
    io:format("case ~b ~s~n", [N, case Ok of true -> "ok"; false -> "failed" end]),
    Ok.

run(Case, Args) ->
    try
        ?MODULE:(list_to_atom("case_" ++ Case))(Args),
        true
    catch
        Class:Reason:Stack ->
            io:format("case ~s failed: ~p:~p~n~p~n", [Case, Class, Reason, Stack]),
            false
    end.

%% ---- images -------------------------------------------------------------------------

%% A runnable image: a static busybox, a greeting, and a pseudo-random (incompressible,
%% deterministic) layer of `Mb' MiB, big enough to go up in chunks.
app(Mb) ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:add_layer(I0, [
        {<<"/bin/busybox">>, {file, "/bin/busybox"}, 8#755},
        {<<"/etc/greeting">>, <<"hello from the registry\n">>, 8#644}
    ], #{compression => gzip}),
    I2 = with_noise(I1, <<"/data/noise.bin">>, Mb, 1),
    I3 = ocibuild:entrypoint(I2, [<<"/bin/busybox">>]),
    ocibuild:cmd(I3, [<<"cat">>, <<"/etc/greeting">>]).

with_noise(Image, _Path, 0, _Seed) ->
    Image;
with_noise(Image, Path, Mb, Seed) ->
    ocibuild:add_layer(Image, [{Path, noise(Mb * 1024 * 1024, Seed), 8#644}], #{compression => zstd}).

noise(Bytes, Seed) ->
    rand:seed(exsss, {Seed, Seed * 7, Seed * 13}),
    rand:bytes(Bytes).

env(Name) ->
    case os:getenv(Name) of
        false -> error({missing_env, Name});
        V -> list_to_binary(V)
    end.

ok({ok, V}) -> V;
ok(Other) -> error({expected_ok, Other}).

expect(Pattern, Value) when Pattern =:= Value -> ok;
expect(Expected, Actual) -> error({expected, Expected, got, Actual}).

say(Key, Value) ->
    io:format("~s=~s~n", [Key, Value]).

write(File, Value) ->
    ok = file:write_file(File, Value).

%% Run a shell command; its exit status and output.
sh(Cmd) ->
    Port = open_port({spawn, Cmd}, [exit_status, binary, stderr_to_stdout, hide]),
    sh_collect(Port, <<>>).

sh_collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> sh_collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, S}} -> {S, Acc}
    end.

skopeo_digest(Ref) ->
    {0, Raw} = sh("skopeo --insecure-policy inspect --tls-verify=false --raw docker://" ++ binary_to_list(Ref)),
    <<"sha256:", (hex(crypto:hash(sha256, Raw)))/binary>>.

%% Lines of `jq -r Filter' over the raw manifest skopeo reads for Ref.
jq(Ref, Filter) ->
    Cmd = "skopeo --insecure-policy inspect --tls-verify=false --raw docker://" ++ binary_to_list(Ref)
        ++ " | jq -r " ++ Filter,
    {0, Out} = sh(Cmd),
    binary:split(string:trim(Out), <<"\n">>, [global, trim_all]).

%% OTP 25's binary:encode_hex/1 has no lowercase option.
hex(Bin) ->
    string:lowercase(binary:encode_hex(Bin)).

cache_dir() ->
    ocibuild_blob_store:root().

cache_path(Digest) ->
    <<"sha256:", Hex/binary>> = Digest,
    filename:join([cache_dir(), "blobs", "sha256", Hex]).

incoming_files() ->
    filelib:wildcard(binary_to_list(filename:join([cache_dir(), "blobs", "sha256", ".incoming-*"]))).

%% ---- cases ----------------------------------------------------------------------------

%% push Registry RepoTag OutFile [ChunkSize]: the app image with an extra tag; the digest is
%% written for the shell, which asks skopeo and podman about it.
case_push([Reg, RepoTag, Out | Rest]) ->
    Chunk = case Rest of [C] -> list_to_integer(C); [] -> 4 * 1024 * 1024 end,
    Self = self(),
    Progress = fun(P) -> Self ! {progress, P} end,
    Digest = ok(ocibuild:push(app(12), list_to_binary(Reg), list_to_binary(RepoTag), #{},
                              #{tags => [<<"extra">>], chunk_size => Chunk, progress => Progress})),
    Events = drain_progress([]),
    Uploads = [P || #{phase := upload} = P <- Events],
    true = length(Uploads) > 3 orelse error({too_few_progress_events, Events}),
    [true = is_integer(B) || #{bytes_sent := B} <- Uploads],
    write(Out, Digest),
    say("digest", Digest).

drain_progress(Acc) ->
    receive {progress, P} -> drain_progress([P | Acc])
    after 0 -> lists:reverse(Acc)
    end.

%% repush Registry RepoTag DigestFile: the same image again (the push case wrote its digest to
%% DigestFile) sends no blob bytes.
case_repush([Reg, RepoTag, DigestFile]) ->
    {ok, Digest} = file:read_file(DigestFile),
    Report = ok(ocibuild_registry:push([app(12)], list_to_binary(Reg), list_to_binary(RepoTag), #{}, #{})),
    expect(Digest, maps:get(digest, Report)),
    expect(0, maps:get(uploaded_bytes, Report)),
    expect(0, maps:get(uploaded, Report)),
    true = maps:get(existing, Report) >= 3,
    say("report", io_lib:format("~p", [Report])).

%% export_multi Dir: an amd64 + arm64 layout for skopeo to copy into a registry as a base.
case_export_multi([Dir]) ->
    Images = [(app(0))#{platform => P} || P <- platforms()],
    ok = ocibuild:export(Images, Dir).

%% export_single Dir: a single-platform runnable layout (for the Docker schema 2 base).
case_export_single([Dir]) ->
    ok = ocibuild:export(app(0), Dir).

platforms() ->
    [#{os => <<"linux">>, architecture => <<"amd64">>},
     #{os => <<"linux">>, architecture => <<"arm64">>}].

%% pull_multi Registry: pull both platforms of a base skopeo pushed, check each base digest
%% against the index skopeo sees, derive, push_multi, and refuse an absent platform.
case_pull_multi([Reg0]) ->
    Reg = list_to_binary(Reg0),
    Ref = <<Reg/binary, "/base/multi:1">>,
    Listed = jq(Ref, "'.manifests[] | .platform.architecture + \" \" + .digest'"),
    Expected = [list_to_tuple(binary:split(L, <<" ">>)) || L <- Listed],
    Images = ok(ocibuild:from(Ref, #{}, #{platforms => platforms()})),
    2 = length(Images),
    Got = [{A, D} || #{platform := #{architecture := A}, base := #{manifest_digest := D}} <- Images],
    expect(lists:sort(Expected), lists:sort(Got)),
    %% The default is the host's platform (this suite runs on amd64 or arm64).
    Host = ok(ocibuild:from(Ref)),
    #{platform := #{architecture := HostArch}} = Host,
    expect(true, lists:keymember(HostArch, 1, Expected)),
    {error, {no_matching_platform, #{wanted := <<"linux/s390x">>, available := Avail}}} =
        ocibuild:from(Ref, #{}, #{platform => <<"linux/s390x">>}),
    expect(2, length(Avail)),
    Derived = [ocibuild:add_layer(I, [{<<"/app/marker">>, <<"derived\n">>, 8#644}]) || I <- Images],
    Report = ok(ocibuild_registry:push(Derived, Reg, <<"derived/multi:1">>, #{}, #{index => true})),
    %% The base layer (the same bytes for both platforms) lives in another repository of the
    %% same registry: mounted, not sent.
    true = maps:get(mounted, Report) >= 1 orelse error({not_mounted, Report}),
    IndexDigest = maps:get(digest, Report),
    expect(IndexDigest, skopeo_digest(<<Reg/binary, "/derived/multi:1">>)),
    %% push_multi gives the same index digest for the same images.
    expect({ok, IndexDigest}, ocibuild:push_multi(Derived, Reg, <<"derived/multi:2">>, #{})),
    say("index", IndexDigest).

%% docker_base Registry: a Docker schema 2 base (skopeo --format v2s2) is read, its exact
%% manifest digest kept, and an image derived from it saves and runs.
case_docker_base([Reg0, Out]) ->
    Reg = list_to_binary(Reg0),
    Ref = <<Reg/binary, "/base/docker:1">>,
    Base = ok(ocibuild:from(Ref)),
    #{base := #{manifest := Raw, manifest_digest := D}} = Base,
    {_, _} = binary:match(Raw, <<"application/vnd.docker.distribution.manifest.v2+json">>),
    expect(skopeo_digest(Ref), D),
    I = ocibuild:cmd(Base, [<<"sh">>, <<"-c">>, <<"cat /etc/greeting /app/marker">>]),
    I2 = ocibuild:add_layer(I, [{<<"/app/marker">>, <<"derived from docker v2s2\n">>, 8#644}]),
    ok = ocibuild:save(I2, Out, #{tag => <<"registry-docker-derived:1">>}),
    Pushed = ok(ocibuild:push(I2, Reg, <<"derived/docker:1">>)),
    expect(Pushed, skopeo_digest(<<Reg/binary, "/derived/docker:1">>)).

%% digest_refs Registry Digest: repo@digest and repo:tag@digest resolve; the tuple form too.
case_digest_refs([Reg0, Repo0, Digest0]) ->
    Reg = list_to_binary(Reg0),
    Repo = list_to_binary(Repo0),
    Digest = list_to_binary(Digest0),
    #{base := #{manifest_digest := Digest}} = ok(ocibuild:from(<<Reg/binary, "/", Repo/binary, "@", Digest/binary>>)),
    #{base := #{manifest_digest := Digest}} =
        ok(ocibuild:from(<<Reg/binary, "/", Repo/binary, ":v1@", Digest/binary>>)),
    #{base := #{manifest_digest := Digest}} = ok(ocibuild:from({Reg, Repo, Digest})),
    #{base := #{manifest_digest := Digest}} = ok(ocibuild:from({Reg, Repo, <<"v1">>})),
    Absent = <<"sha256:", (binary:copy(<<"0">>, 64))/binary>>,
    {error, {registry_error, #{status := 404}}} = ocibuild:from(<<Reg/binary, "/", Repo/binary, "@", Absent/binary>>).

%% lazy_fetch ProxyAddr Repo Out: `from' reads manifest and config only; `save' fetches the
%% layers into the cache, a second save uses the cache, a corrupt cache entry is refetched.
%% Prints the layer digests; the shell counts blob GETs in the proxy log between steps.
case_lazy_fetch([Proxy0, Repo, Step, Out]) ->
    Ref = list_to_binary([Proxy0, "/", Repo, ":v1"]),
    Image = ok(ocibuild:from(Ref)),
    #{base := #{layers := Layers}} = Image,
    [undefined = maps:get(blob, L) || L <- Layers],
    case Step of
        "from" ->
            ok;
        "save" ->
            ok = ocibuild:save(Image, Out),
            [true = filelib:is_regular(cache_path(D)) orelse error({not_cached, D}) || #{digest := D} <- Layers],
            ok;
        "corrupt" ->
            [#{digest := D} | _] = lists:reverse(Layers),
            ok = file:write_file(cache_path(D), <<"not the layer">>),
            ok = ocibuild:save(Image, Out),
            {ok, Bin} = file:read_file(cache_path(D)),
            expect(D, <<"sha256:", (hex(crypto:hash(sha256, Bin)))/binary>>)
    end,
    say("layers", lists:join(",", [D || #{digest := D} <- Layers])).

%% downgrade Registry PlainOrigin: an HTTPS registry whose upload Location is plain HTTP:
%% refused with a tagged error naming the refused origin, nothing sent there.
case_downgrade([Reg0, PlainOrigin]) ->
    Reg = list_to_binary(Reg0),
    Result = ocibuild:push(app(0), Reg, <<"tls/downgrade:1">>, #{token => <<"not-for-plain-http">>}),
    {error, {https_downgrade, #{registry := Reg, to := To}}} = Result,
    expect(list_to_binary(PlainOrigin), To),
    say("to", To).

%% basic Registry: refused without and with wrong credentials, accepted with the right ones,
%% from an explicit map, docker's config.json, a credential helper and podman's auth.json.
case_basic([Reg0, Work]) ->
    Reg = list_to_binary(Reg0),
    User = env("REGISTRY_TEST_USER"),
    Pass = env("REGISTRY_TEST_PASSWORD"),
    I = app(0),
    {error, {unauthorized, #{registry := Reg, status := 401}}} = ocibuild:push(I, Reg, <<"auth/app:anon">>),
    {error, {unauthorized, #{status := 401}}} =
        ocibuild:push(I, Reg, <<"auth/app:wrong">>, #{username => User, password => <<"wrong">>}),
    {error, {unauthorized, _}} =
        ocibuild:push(I, Reg, <<"auth/app:anon2">>, #{username => <<>>, password => <<>>}),
    Digest = ok(ocibuild:push(I, Reg, <<"auth/app:explicit">>, #{username => User, password => Pass})),
    #{base := #{manifest_digest := Digest}} =
        ok(ocibuild:from(<<Reg/binary, "/auth/app:explicit">>, #{username => User, password => Pass})),
    Auth64 = base64:encode(<<User/binary, ":", Pass/binary>>),
    %% docker's config.json `auths', keyed with a scheme as `docker login' writes it.
    DockerDir = filename:join(Work, "docker-config"),
    ok = filelib:ensure_path(DockerDir),
    write(filename:join(DockerDir, "config.json"),
          ["{\"auths\": {\"http://", Reg, "\": {\"auth\": \"", Auth64, "\"}}}"]),
    os:putenv("DOCKER_CONFIG", DockerDir),
    Digest = ok(ocibuild:push(I, Reg, <<"auth/app:docker-config">>)),
    %% a credential helper named in credHelpers
    HelperDir = filename:join(Work, "helpers"),
    ok = filelib:ensure_path(HelperDir),
    Helper = filename:join(HelperDir, "docker-credential-ocitest"),
    %% The helper reads the secret from a file (a helper started by the native library sees
    %% the process environment, not os:putenv's additions; PATH is passed along explicitly).
    SecretFile = filename:join(HelperDir, "helper-secret"),
    write(SecretFile, Pass),
    write(Helper, ["#!/bin/sh\nread server\n",
                   "printf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}' \"$server\" '",
                   User, "' \"$(cat '", SecretFile, "')\"\n"]),
    ok = file:change_mode(Helper, 8#755),
    os:putenv("PATH", HelperDir ++ ":" ++ os:getenv("PATH")),
    write(filename:join(DockerDir, "config.json"), ["{\"credHelpers\": {\"", Reg, "\": \"ocitest\"}}"]),
    Digest = ok(ocibuild:push(I, Reg, <<"auth/app:helper">>)),
    %% podman's auth.json, when docker's config has nothing for this registry
    write(filename:join(DockerDir, "config.json"), <<"{}">>),
    AuthFile = filename:join(Work, "auth.json"),
    write(AuthFile, ["{\"auths\": {\"", Reg, "\": {\"auth\": \"", Auth64, "\"}}}"]),
    os:putenv("REGISTRY_AUTH_FILE", AuthFile),
    Digest = ok(ocibuild:push(I, Reg, <<"auth/app:podman">>)),
    say("digest", Digest).

%% token Registry TokenUrl: Bearer token auth. One token per scope serves a whole push; a
%% ready token (#{token => T}) works; anonymous pull is allowed, anonymous push is not.
case_token([Reg0, TokenUrl]) ->
    Reg = list_to_binary(Reg0),
    User = env("REGISTRY_TEST_USER"),
    Pass = env("REGISTRY_TEST_PASSWORD"),
    Creds = #{username => User, password => Pass},
    Digest = ok(ocibuild:push(app(6), Reg, <<"tok/app:1">>, Creds, #{chunk_size => 1024 * 1024})),
    #{base := #{manifest_digest := Digest}} = ok(ocibuild:from(<<Reg/binary, "/tok/app:1">>)),
    {error, {unauthorized, _}} = ocibuild:push(app(0), Reg, <<"tok/app:anon">>),
    %% A token fetched by hand, used as is.
    {ok, _} = application:ensure_all_started(inets),
    Url = TokenUrl ++ "?service=ocibuild-test&scope=repository:tok/ready:pull,push",
    Basic = "Basic " ++ binary_to_list(base64:encode(<<User/binary, ":", Pass/binary>>)),
    {ok, {{_, 200, _}, _, Body}} = httpc:request(get, {Url, [{"authorization", Basic}]}, [], [{body_format, binary}]),
    {match, [Token]} = re:run(Body, <<"\"token\"\\s*:\\s*\"([^\"]+)\"">>, [{capture, all_but_first, binary}]),
    ReadyDigest = ok(ocibuild:push(app(0), Reg, <<"tok/ready:1">>, #{token => Token})),
    say("digest", Digest),
    say("ready", ReadyDigest).

%% token_variants Registry TokenUrl Work: a token server that answers with `access_token'
%% only and 2-second tokens (held for the 60 s minimum, as docker does), and an identity token
%% from docker's config.json (`docker login' with an OAuth2 registry), exchanged with a
%% refresh-token POST.
case_token_variants([Reg0, TokenUrl, Work]) ->
    Reg = list_to_binary(Reg0),
    User = env("REGISTRY_TEST_USER"),
    Pass = env("REGISTRY_TEST_PASSWORD"),
    Creds = #{username => User, password => Pass},
    D1 = ok(ocibuild:push(app(0), Reg, <<"tokv/app:1">>, Creds)),
    timer:sleep(2500),
    D1 = ok(ocibuild:push(app(0), Reg, <<"tokv/app:2">>, Creds)),
    {ok, _} = application:ensure_all_started(inets),
    Url = TokenUrl ++ "?service=ocibuild-test&offline_token=true&scope=repository:tokv/app:pull",
    Basic = "Basic " ++ binary_to_list(base64:encode(<<User/binary, ":", Pass/binary>>)),
    {ok, {{_, 200, _}, _, Body}} = httpc:request(get, {Url, [{"authorization", Basic}]}, [], [{body_format, binary}]),
    {match, [Refresh]} = re:run(Body, <<"\"refresh_token\"\\s*:\\s*\"([^\"]+)\"">>, [{capture, all_but_first, binary}]),
    DockerDir = filename:join(Work, "docker-identity"),
    ok = filelib:ensure_path(DockerDir),
    write(filename:join(DockerDir, "config.json"),
          ["{\"auths\": {\"", Reg, "\": {\"auth\": \"", base64:encode(<<"<token>:">>),
           "\", \"identitytoken\": \"", Refresh, "\"}}}"]),
    os:putenv("DOCKER_CONFIG", DockerDir),
    D1 = ok(ocibuild:push(app(0), Reg, <<"tokv/app:3">>)).

%% ferro Registry: an OCI 1.1 registry (ferro-oci-server): push, pull back, multi-platform.
case_ferro([Reg0]) ->
    Reg = list_to_binary(Reg0),
    Digest = ok(ocibuild:push(app(6), Reg, <<"ferro/app:1">>, #{}, #{chunk_size => 1024 * 1024})),
    expect(Digest, skopeo_digest(<<Reg/binary, "/ferro/app:1">>)),
    #{base := #{manifest_digest := Digest}} = ok(ocibuild:from(<<Reg/binary, "/ferro/app:1">>)),
    Images = [(app(0))#{platform => P} || P <- platforms()],
    Index = ok(ocibuild:push_multi(Images, Reg, <<"ferro/multi:1">>, #{})),
    expect(Index, skopeo_digest(<<Reg/binary, "/ferro/multi:1">>)),
    [_, _] = ok(ocibuild:from(<<Reg/binary, "/ferro/multi:1">>, #{}, #{platforms => platforms()})),
    say("digest", Digest).

%% leak Registry ProxyAddr: failing pushes with a password; the error terms and everything
%% printed are checked by the shell (and here) for the password.
case_leak([Reg0, Proxy0]) ->
    Pass = env("REGISTRY_TEST_PASSWORD"),
    Creds = #{username => env("REGISTRY_TEST_USER"), password => <<Pass/binary, "-wrong">>},
    R1 = ocibuild:push(app(1), list_to_binary(Reg0), <<"leak/app:1">>, Creds),
    R2 = ocibuild:push(app(1), list_to_binary(Proxy0), <<"leak/app:2">>,
                       #{username => <<"u">>, password => Pass}),
    R3 = ocibuild:from(list_to_binary([Reg0, "/leak/none:1"]), Creds),
    Text = iolist_to_binary(io_lib:format("~p~n~p~n~p~n", [R1, R2, R3])),
    {error, _} = R1,
    {error, _} = R2,
    {error, _} = R3,
    io:format("~s", [Text]),
    nomatch = binary:match(Text, Pass).

%% ticker Registry: a process ticking every 10 ms keeps ticking during a ~100 MB push.
case_ticker([Reg]) ->
    Images = big_image(),
    Ticker = spawn_link(fun() -> tick(erlang:monotonic_time(millisecond), 0, 0) end),
    T0 = erlang:monotonic_time(millisecond),
    Digest = ok(ocibuild:push(Images, list_to_binary(Reg), <<"ticker/app:1">>)),
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    Ticker ! {report, self()},
    {MaxGap, Ticks} = receive {ticks, G, N} -> {G, N} end,
    say("push_ms", integer_to_list(Elapsed)),
    say("ticks", integer_to_list(Ticks)),
    say("max_gap_ms", integer_to_list(MaxGap)),
    say("digest", Digest),
    %% A blocked scheduler would show up as a gap of the push's whole length.
    true = MaxGap < 250 orelse error({ticker_stalled, MaxGap}),
    true = Ticks >= Elapsed div 20 orelse error({too_few_ticks, Ticks, Elapsed}).

tick(Last, MaxGap, N) ->
    receive
        {report, Pid} -> Pid ! {ticks, MaxGap, N}
    after 10 ->
        Now = erlang:monotonic_time(millisecond),
        tick(Now, max(MaxGap, Now - Last), N + 1)
    end.

%% ~100 MB in 4 layers of incompressible data.
big_image() ->
    {ok, I0} = ocibuild:scratch(),
    lists:foldl(fun(N, I) -> with_noise(I, <<"/data/part", (integer_to_binary(N))/binary>>, 25, N + 10) end,
                I0, [1, 2, 3, 4]).

%% concurrent Registry: four processes push four images, which share their first layers, at
%% once; all succeed and each tag reads back with its own digest.
%%
%% Each goes to its own repository. distribution 2.8's filesystem driver rewrites a
%% repository's blob link in place (truncate, then write; later versions write a temp file and
%% rename it), so two uploads of the same blob into one repository can make a concurrent
%% manifest PUT read an empty link and fail with DIGEST_INVALID: a registry race, not ours.
case_concurrent([Reg0]) ->
    Reg = list_to_binary(Reg0),
    Self = self(),
    Ref = fun(N) -> <<"conc/app", (integer_to_binary(N))/binary, ":", (integer_to_binary(N))/binary>> end,
    Pids = [spawn_link(fun() ->
                I = with_noise(app(0), <<"/data/mine">>, 3, 100 + N),
                Self ! {done, N, ocibuild:push(I, Reg, Ref(N), #{}, #{chunk_size => 1024 * 1024})}
            end) || N <- [1, 2, 3, 4]],
    Results = [receive {done, N, R} -> {N, R} after 120000 -> error(timeout) end || N <- [1, 2, 3, 4]],
    4 = length(Pids),
    [expect(ok(R), skopeo_digest(<<Reg/binary, "/", (Ref(N))/binary>>)) || {N, R} <- Results],
    4 = length(lists:usort([ok(R) || {_, R} <- Results])).

%% cancel ProxyAddr Repo: a process fetching a base layer through a slow proxy is killed;
%% its job ends and its temp file is removed. Starts from an empty cache.
case_cancel([Proxy0, Repo, Out]) ->
    case file:del_dir_r(cache_dir()) of
        ok -> ok;
        {error, enoent} -> ok
    end,
    Ref = list_to_binary([Proxy0, "/", Repo, ":v1"]),
    Image = ok(ocibuild:from(Ref)),
    Pid = spawn(fun() -> ocibuild:save(Image, Out) end),
    wait_until(fun() -> incoming_files() =/= [] end, 20000),
    1 = ocibuild_nif:job_count(),
    exit(Pid, kill),
    wait_until(fun() -> ocibuild_nif:job_count() =:= 0 end, 10000),
    wait_until(fun() -> incoming_files() =:= [] end, 10000),
    #{base := #{layers := Layers}} = Image,
    [false = filelib:is_regular(cache_path(D)) || #{digest := D, size := S} <- Layers, S > 1024 * 1024],
    expect(false, filelib:is_regular(Out)).

wait_until(Fun, Ms) when Ms =< 0 ->
    Fun() orelse error(timeout_waiting);
wait_until(Fun, Ms) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(50), wait_until(Fun, Ms - 50)
    end.

%% push_loaded Registry Work: saved tarballs (single and multi-platform) pushed later, with
%% their embedded tag or another, keep their manifest digests.
case_push_loaded([Reg0, Work]) ->
    Reg = list_to_binary(Reg0),
    Single = filename:join(Work, "single.tar.gz"),
    Multi = filename:join(Work, "multi.tar.gz"),
    ok = ocibuild:save(app(2), Single, #{tag => <<"loaded/single:1">>}),
    ok = ocibuild:save([(app(0))#{platform => P} || P <- platforms()], Multi, #{tag => <<"loaded/multi:1">>}),
    {ok, #{images := [#{manifest_digest := D1}], cleanup := C1} = L1} = ocibuild_layout:load_tarball_for_push(Single),
    #{digest := D1} = ok(ocibuild_registry:push_loaded(L1, Reg, undefined, #{}, #{})),
    expect(D1, skopeo_digest(<<Reg/binary, "/loaded/single:1">>)),
    #{digest := D1} = ok(ocibuild_registry:push_loaded(L1, Reg, <<"loaded/other:2">>, #{}, #{})),
    expect(D1, skopeo_digest(<<Reg/binary, "/loaded/other:2">>)),
    ok = C1(),
    {ok, #{images := [_, _] = Loaded, cleanup := C2} = L2} = ocibuild_layout:load_tarball_for_push(Multi),
    #{digest := Index} = ok(ocibuild_registry:push_loaded(L2, Reg, undefined, #{}, #{})),
    expect(Index, skopeo_digest(<<Reg/binary, "/loaded/multi:1">>)),
    Listed = jq(<<Reg/binary, "/loaded/multi:1">>, "'.manifests[].digest'"),
    expect(lists:sort([D || #{manifest_digest := D} <- Loaded]), lists:sort(Listed)),
    ok = C2().

%% tls Addr Mode: HTTPS to a registry on a non-loopback address.
%%   trusted   - SSL_CERT_FILE names the test CA: the push succeeds.
%%   untrusted - no CA: a certificate error, not retried forever, no downgrade to HTTP.
%%   insecure  - a plain-HTTP registry listed in OCIBUILD_INSECURE_REGISTRIES.
%%   unlisted  - the same registry, not listed: HTTPS is tried and fails.
case_tls([Addr, Mode]) ->
    Reg = list_to_binary(Addr),
    Result = ocibuild:push(app(0), Reg, <<"tls/app:1">>),
    case Mode of
        "trusted" -> expect(ok(Result), skopeo_digest(<<Reg/binary, "/tls/app:1">>));
        "insecure" -> expect(ok(Result), skopeo_digest(<<Reg/binary, "/tls/app:1">>));
        _ -> {error, {http_error, Reg, Why}} = Result, say("why", Why)
    end.
