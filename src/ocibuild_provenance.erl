%% @doc SLSA provenance of a release build: the facts a push's provenance statements are made
%% from (`input/1'), and `--provenance PATH' (`write/2').
%%
%% The statement itself names the pushed manifest by digest, which only the push knows: the
%% native core makes one per pushed platform image from this input (`supply::provenance'),
%% signs it as a DSSE envelope with the push's signing key and attaches it as an OCI 1.1
%% referrer and in cosign's `sha256-<hex>.att' image. The push report's
%% `attached => #{provenance => [#{subject, statement, referrer, attestation_tag}]}' carries
%% each statement back. What each field means is docs/buildtype/v1.md.
%%
%% ```
%% {ok, Input} = ocibuild_provenance:input(#{name => <<"hello">>, version => <<"1.0.0">>,
%%                                    release_path => Path, dependencies => Deps,
%%                                    created => Created, images => Images,
%%                                    tags => [<<"hello:1.0.0">>], config => Config,
%%                                    started_on => erlang:system_time(second)}),
%% {ok, Report} = ocibuild_registry:push(Images, Registry, <<"hello:1.0.0">>, Auth,
%%                                       #{sign => Key, provenance => Input}).
%% '''
-module(ocibuild_provenance).

-export([input/1, write/2, ci_variables/0, first_statement/1]).

%% The CI variables the builder id and invocation id are read from (GitHub Actions, GitLab
%% CI, Azure Pipelines). Read here, where `os:putenv/2' is seen.
-define(CI_VARIABLES, [
    "GITHUB_ACTIONS", "RUNNER_ENVIRONMENT", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY",
    "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT",
    "GITLAB_CI", "CI_SERVER_URL", "CI_PROJECT_PATH", "CI_RUNNER_ID", "CI_JOB_URL",
    "CI_PROJECT_URL", "CI_JOB_ID",
    "TF_BUILD", "SYSTEM_COLLECTIONURI", "SYSTEM_TEAMPROJECT", "BUILD_BUILDID"
]).

%% @doc The provenance input of one build. `Context': what `ocibuild_sbom:input/1' takes
%% (`name', `version', `release_path', `dependencies', `created', `source', `revision';
%% the lock file's dependencies may carry `sha256', the package hash the lock records), plus
%% `images' (the images pushed, in push order), `tags' (as the user gave them), `config' (the
%% resolved config: `platforms', `base_image', `compression', `workdir', `uid') and
%% `started_on' (unix seconds). The release facts (ERTS, OTP, base digest, platform) are the
%% ones the SBOM states: they are read by `ocibuild_sbom:input/1', once per image. An invalid
%% `SOURCE_DATE_EPOCH' is `{error, {invalid_source_date_epoch, Raw}}'.
-spec input(map()) -> {ok, map()} | {error, term()}.
input(#{images := [_ | _], tags := _, config := _, started_on := _} = Context) ->
    case ocibuild_reproducible:source_date_epoch() of
        {ok, Epoch} -> {ok, input(Context, Epoch)};
        {error, _} = Error -> Error
    end;
input(Other) ->
    {error, {invalid_option, provenance, Other}}.

input(#{images := Images, tags := Tags, config := Config, started_on := Started} = Context,
      SourceDateEpoch) ->
    Facts = [ocibuild_sbom:input(Context#{image => I}) || I <- Images],
    [First | _] = Facts,
    Optional = maps:with([erts_version, otp_version, source, revision], First),
    Optional#{
        name => maps:get(name, Context),
        version => maps:get(version, Context),
        tags => Tags,
        platforms => [ocibuild_local_base:platform_text(P) || P <- maps:get(platforms, Config, [])],
        base_image => maps:get(base_image, Config),
        compression => maps:get(compression, Config),
        tool_version => tool_version(),
        internal_parameters => internal_parameters(Config),
        dependencies => dependencies(maps:get(dependencies, Context, undefined)),
        images => [maps:with([platform, base], F) || F <- Facts],
        started_on => Started,
        source_date_epoch => SourceDateEpoch,
        ci => ci_variables()
    }.

%% @doc The CI variables that are set, as the VM sees them.
-spec ci_variables() -> #{binary() => binary()}.
ci_variables() ->
    maps:from_list([{list_to_binary(Name), unicode:characters_to_binary(Value)}
                    || Name <- ?CI_VARIABLES, Value <- [os:getenv(Name)], Value =/= false]).

%% @doc The statement of the first image a push report lists, if the push made provenance.
-spec first_statement(map()) -> {ok, binary()} | none.
first_statement(#{attached := #{provenance := [#{statement := Statement} | _]}}) ->
    {ok, Statement};
first_statement(_Report) ->
    none.

%% @doc Write `Statement' to `Path' (`--provenance PATH'), which must be missing or a regular
%% file; see `ocibuild_host_file:write/2' for the errors.
-spec write(binary(), file:name_all()) -> ok | {error, term()}.
write(Statement, Path) ->
    ocibuild_host_file:write(Path, Statement).

%% Settings the build used that the user did not pass for this build.
internal_parameters(Config) ->
    Internal = #{
        <<"builder_otp_release">> => list_to_binary(erlang:system_info(otp_release)),
        <<"builder_erts_version">> => list_to_binary(erlang:system_info(version))
    },
    maps:merge(Internal, maps:from_list(
        [{<<"workdir">>, W} || W <- [maps:get(workdir, Config, undefined)], is_binary(W)] ++
        [{<<"uid">>, integer_to_binary(U)} || U <- [maps:get(uid, Config, undefined)], is_integer(U)]
    )).

%% The lock file's entries, with the package hash where the lock gives a sha256.
dependencies(Deps) when is_list(Deps) ->
    [maps:merge(maps:with([name, version, source], D),
                maps:from_list([{sha256, H} || H <- [maps:get(sha256, D, undefined)], is_sha256(H)]))
     || D <- Deps, is_map(D)];
dependencies(_None) ->
    [].

is_sha256(H) when is_binary(H), byte_size(H) =:= 64 ->
    lists:all(fun(C) -> (C >= $0 andalso C =< $9) orelse (C >= $a andalso C =< $f)
                            orelse (C >= $A andalso C =< $F) end, binary_to_list(H));
is_sha256(_) ->
    false.

tool_version() ->
    case application:get_key(ocibuild, vsn) of
        {ok, Vsn} -> list_to_binary(Vsn);
        undefined -> undefined
    end.
