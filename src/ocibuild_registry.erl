%% @doc Registry work: pulling base images and pushing images (built ones, or ones read back
%% from a saved tarball: both are image sources to the one push in the native library).
%%
%% The network work runs on a runtime inside the native library, never on a BEAM scheduler.
%% Each function here starts a job and waits for it in `receive', turning the job's progress
%% messages into calls of the caller's `progress' fun, so it may be called from any process,
%% from many at once. If the calling process dies, its job is cancelled and its temp files
%% are removed.
%%
%% Auth (`auth()'):
%% <ul>
%% <li>`#{username => U, password => P}': Basic, or the bearer token a token server gives for
%%     them; both empty means anonymous.</li>
%% <li>`#{token => T}': a ready bearer token.</li>
%% <li>`#{}': look the registry up in `~/.docker/config.json' (or `$DOCKER_CONFIG'): `auths',
%%     `credHelpers', `credsStore'; then podman's `auth.json' (`$REGISTRY_AUTH_FILE'). Nothing
%%     found means anonymous.</li>
%% </ul>
%% Credentials are never part of an error term or a progress report. They go only to the
%% registry's own scheme, host and port: a redirect or upload URL on another origin is
%% followed without them (S3-backed registries), and one that would leave HTTPS for plain
%% HTTP is refused with `{https_downgrade, #{registry => R, to => Origin}}'.
%%
%% Time is bounded: no response headers within `OCIBUILD_REGISTRY_TIMEOUT' seconds (default
%% 60; decimals allowed), or a body, ours or the registry's, moving less than
%% `OCIBUILD_MIN_TRANSFER_RATE' bytes/s (default 1024; 0 turns it off) over
%% `OCIBUILD_TRANSFER_RATE_WINDOW' seconds (default 60), counts as a failed attempt; when
%% the retries run out the result is `{timeout, #{registry, action, phase => headers,
%% limit_ms}}' or `{timeout, #{registry, action, phase => body, min_rate, window_ms}}'.
%% A registry's error body reaches `{registry_error, ...}' only as the spec's `code' and
%% `message' (200 characters at most).
-module(ocibuild_registry).

-export([
    pull/3,
    nif_images/1,
    sink_options/0,
    push/5,
    push_loaded/5,
    check_push/3,
    check_auth/1,
    progress_option/1,
    platforms/1
]).

-export_type([auth/0, progress_fun/0, progress/0, push_report/0]).

-type auth() :: #{username => binary() | string(), password => binary() | string(),
                  token => binary() | string()}.

-type progress() :: #{
    phase := manifest | config | layer | upload | exists | mounted | manifest_put,
    digest := binary() | undefined,
    bytes_received := non_neg_integer(),
    bytes_sent => non_neg_integer(),
    total_bytes := non_neg_integer() | undefined
}.
%% Pull phases: `manifest', `config', `layer' (a base layer downloaded into the cache).
%% Push phases: `upload' (bytes of one blob), `exists' (the registry had it), `mounted'
%% (mounted from another repository), `manifest_put'. Push events carry `bytes_sent' too.

-type progress_fun() :: fun((progress()) -> term()).

-type push_report() :: #{
    digest := binary(),
    uploaded_bytes := non_neg_integer(),
    uploaded := non_neg_integer(),
    existing := non_neg_integer(),
    mounted := non_neg_integer(),
    attached := #{
        referrers := [#{subject := binary(), digest := binary(), api := boolean()}],
        signature_tag := binary() | undefined,
        provenance := [#{subject := binary(), statement := binary(),
                         referrer := #{subject := binary(), digest := binary(), api := boolean()} | undefined,
                         attestation_tag := binary() | undefined}]
    }
}.

%% Bounds are the native core's (`ocibuild_core::options').
-define(CORE(Key), maps:get(Key, ocibuild_nif:options_defaults())).

%% @doc Resolve `Ref' (a binary reference or `{Registry, Repo, TagOrDigest}') to one base per
%% platform: `#{base := Base, platform := Platform}' maps. Options: `platforms' (a list; empty
%% or absent means the host's), `progress'.
-spec pull(binary() | string() | {term(), term(), term()}, auth(), map()) ->
    {ok, [#{base := map(), platform := ocibuild:platform()}]} | {error, term()}.
pull(Ref, Auth, Opts) ->
    maybe_job(
        [fun() -> check_auth(Auth) end, fun() -> reference(Ref) end, fun() -> platforms(Opts) end],
        fun([NifAuth, NifRef, Platforms]) ->
            ocibuild_nif:registry_pull(NifRef, NifAuth, #{platforms => Platforms, env => env_vars()})
        end,
        Opts
    ).

%% @doc What a layout sink needs to fetch the base layers that are not local yet itself: the
%% blob cache and the environment registry work reads.
-spec sink_options() -> #{cache_dir := binary(), env := #{binary() => binary()}}.
sink_options() ->
    #{cache_dir => ocibuild_blob_store:root(), env => env_vars()}.

%% @doc Push images to `Registry' as `RepoTag'. One image puts its manifest under the tag;
%% with `index => true' (or several images) each manifest is put by digest and an image index
%% under the tag. Options: `tags' (extra tags: the same manifest re-put, no blob traffic),
%% `chunk_size' (bytes, default 5 MB: larger blobs go in chunks), `max_concurrency' (parallel
%% blob uploads, default 4), `progress', `sboms' (one SBOM from `ocibuild_sbom:build/1', an
%% SPDX document or `undefined' per image, attached to its manifest as an OCI 1.1 referrer),
%% `sign' (an `ocibuild_signing:key()':
%% a cosign signature of what the tags point at, at tag `sha256-<hex>.sig'), `provenance'
%% (from `ocibuild_provenance:input/1': a SLSA provenance statement per image, signed with
%% `sign' as a DSSE envelope and attached as a referrer and at tag `sha256-<hex>.att'). Returns
%% a report whose `digest' is the manifest's (or the index's) and whose `attached' says what
%% was attached (`referrers': `[#{subject, digest, api}]', `signature_tag', `provenance':
%% `[#{subject, statement, referrer, attestation_tag}]').
-spec push([ocibuild:image()], binary() | string(), binary() | string(), auth(), map()) ->
    {ok, push_report()} | {error, term()}.
push(Images, Registry, RepoTag, Auth, Opts) ->
    maybe_job(
        [
            fun() -> images(Images) end,
            fun() -> target(Registry, RepoTag, Auth, Opts) end,
            fun() -> push_options(Opts) end,
            fun() -> ocibuild_reproducible:created() end
        ],
        fun([NifImages, Target, NifOpts, Created]) ->
            ocibuild_nif:registry_push(NifImages, Target, NifOpts#{created => Created})
        end,
        Opts
    ).

%% @doc Push images read back from a saved tarball (`ocibuild_layout:load_tarball_for_push/1'),
%% their bytes exactly as saved. `RepoTag' `undefined' uses the `name:tag' saved in the
%% tarball (a bare saved tag such as `latest' names no repository: then `RepoTag' is needed).
%% A multi-platform tarball is pushed as an index. Options as `push/5'.
-spec push_loaded(ocibuild_layout:loaded(), binary() | string(), binary() | string() | undefined,
                  auth(), map()) ->
    {ok, push_report()} | {error, term()}.
push_loaded(#{images := [_ | _] = Loaded} = Tarball, Registry, RepoTag0, Auth, Opts) ->
    case is_map_list(Loaded) andalso lists:all(fun has_layer_list/1, Loaded) of
        true -> push_loaded_checked(Tarball, Registry, RepoTag0, Auth, Opts);
        false -> {error, {invalid_option, loaded, Tarball}}
    end;
push_loaded(Tarball, _Registry, _RepoTag, _Auth, _Opts) ->
    {error, {invalid_option, loaded, Tarball}}.

has_layer_list(#{layers := Layers}) -> is_map_list(Layers);
has_layer_list(_) -> false.

push_loaded_checked(#{images := Loaded} = Tarball, Registry, RepoTag0, Auth, Opts) ->
    RepoTag =
        case RepoTag0 of
            undefined -> ocibuild_layout:push_reference(Tarball);
            _ -> RepoTag0
        end,
    case RepoTag of
        undefined ->
            {error,
                {invalid_option, tag, <<"the tarball names no repository (no name:tag); give one">>}};
        _ ->
            %% Several images make an index in the core; a saved index of one stays an index.
            Multi = maps:get(is_multi_platform, Tarball, false) =:= true,
            maybe_job(
                [
                    fun() -> {ok, [loaded_image(I) || I <- Loaded]} end,
                    fun() -> target(Registry, RepoTag, Auth, Opts) end,
                    fun() -> push_options(Opts#{index => Multi}) end
                ],
                fun([NifImages, Target, NifOpts]) ->
                    %% The same push as for built images: a loaded image is one more source.
                    ocibuild_nif:registry_push(NifImages, Target, NifOpts)
                end,
                Opts
            )
    end.

%% @doc Before building anything to push: does `Registry' answer, and do the credentials let
%% us push to `RepoTag''s repository? `GET /v2/', then an upload session opened with the push
%% scope (`repository:<repo>:pull,push') and cancelled at once, through the same client,
%% credential lookup, retries and timeouts as `push/5'. Returns `ok', or the error `push/5'
%% would have returned: `{http_error, Registry, Why}' (unreachable), `{unauthorized, #{registry,
%% scope, status}}' (credentials refused, or a token without push), `{auth_error, Registry,
%% Why}', `{timeout, ...}', `{registry_error, ...}' (e.g. not a registry), ...
-spec check_push(binary() | string(), binary() | string(), auth()) -> ok | {error, term()}.
check_push(Registry, RepoTag, Auth) ->
    Checked = maybe_job(
        [fun() -> target(Registry, RepoTag, Auth, #{}) end],
        fun([Target]) ->
            ocibuild_nif:registry_check_push(Target, #{env => env_vars()})
        end,
        #{}
    ),
    case Checked of
        {ok, #{registry := _, repository := _}} -> ok;
        {error, _} = Error -> Error
    end.

%% Only what the native library reads: the `get_data' funs stay here.
loaded_image(#{layers := Layers} = Image) ->
    Image#{layers := [maps:without([get_data], L) || L <- Layers]}.

%% @doc Check an auth map and normalise it for the native library: `undefined' means "look
%% it up in the config files". Values are checked for type only; they are never echoed back
%% in the error (it names the offending key).
-spec check_auth(term()) -> {ok, undefined | map()} | {error, {invalid_option, auth, term()}}.
check_auth(Auth) when is_map(Auth), map_size(Auth) =:= 0 ->
    {ok, undefined};
check_auth(#{token := Token} = Auth) when map_size(Auth) =:= 1 ->
    case ocibuild_input:text(Token) of
        {ok, T} -> {ok, #{token => T}};
        error -> {error, {invalid_option, auth, token}}
    end;
check_auth(#{username := User, password := Pass} = Auth) when map_size(Auth) =:= 2 ->
    case {ocibuild_input:text(User), ocibuild_input:text(Pass)} of
        {{ok, U}, {ok, P}} -> {ok, #{username => U, password => P}};
        {error, _} -> {error, {invalid_option, auth, username}};
        {_, error} -> {error, {invalid_option, auth, password}}
    end;
check_auth(Auth) when is_map(Auth) ->
    {error, {invalid_option, auth, {keys, lists:sort(maps:keys(Auth))}}};
check_auth(_) ->
    {error, {invalid_option, auth, not_a_map}}.

%% @doc The `progress' option, checked: a fun of arity 1 or `undefined'.
-spec progress_option(map()) -> {ok, progress_fun() | undefined} | {error, term()}.
progress_option(Opts) when not is_map(Opts) ->
    {error, {invalid_option, options, Opts}};
progress_option(Opts) ->
    case maps:get(progress, Opts, undefined) of
        undefined -> {ok, undefined};
        F when is_function(F, 1) -> {ok, F};
        Other -> {error, {invalid_option, progress, Other}}
    end.

%% Internal: argument checks, then the job.

%% Run each check in order (each `{ok, V}' or `{error, R}'); with all values, start the job.
maybe_job(Checks, Start, Opts) ->
    case progress_option(Opts) of
        {ok, Progress} ->
            case collect(Checks, []) of
                {ok, Values} -> run(fun() -> Start(Values) end, Progress);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

collect([], Acc) ->
    {ok, lists:reverse(Acc)};
collect([Check | Rest], Acc) ->
    case Check() of
        {ok, V} -> collect(Rest, [V | Acc]);
        {error, _} = Error -> Error
    end.

%% Start a job and wait for it. The handle is passed along the wait loop and released only at
%% the end: while this process holds it, the job runs; if this process dies, it is freed and
%% the job is aborted.
run(Start, Progress) ->
    case Start() of
        {ok, JobId, Handle} -> await(JobId, Handle, Progress);
        {error, _} = Error -> Error
    end.

await(JobId, Handle, Progress) ->
    receive
        {ocibuild_job, JobId, {progress, Info}} ->
            report(Progress, Info),
            await(JobId, Handle, Progress);
        {ocibuild_job, JobId, {done, Result}} ->
            ok = ocibuild_nif:job_cancel(Handle),
            Result
    end.

%% A progress fun that fails must not take the push down with it.
report(undefined, _Info) ->
    ok;
report(Fun, Info) ->
    try
        Fun(Info)
    catch
        _:_ -> ok
    end.

reference({Registry, Repo, Ref} = Tuple) ->
    case {ocibuild_input:text(Registry), ocibuild_input:text(Repo), ocibuild_input:text(Ref)} of
        {{ok, A}, {ok, B}, {ok, C}} -> {ok, {A, B, C}};
        _ -> {error, {invalid_reference, Tuple}}
    end;
reference(Ref) ->
    case ocibuild_input:text(Ref) of
        {ok, Bin} -> {ok, Bin};
        error -> {error, {invalid_reference, Ref}}
    end.

%% @doc The `platform' / `platforms' options as a list of platform maps (empty: the host's).
-spec platforms(map()) -> {ok, [ocibuild:platform()]} | {error, term()}.
platforms(Opts) when not is_map(Opts) ->
    {error, {invalid_option, options, Opts}};
platforms(Opts) ->
    case {maps:get(platforms, Opts, undefined), maps:get(platform, Opts, undefined)} of
        {undefined, undefined} -> {ok, []};
        {undefined, P} -> platform_list([P]);
        {Ps, _} when is_list(Ps) ->
            case ocibuild_input:is_proper_list(Ps) of
                true -> platform_list(Ps);
                false -> {error, {invalid_option, platforms, Ps}}
            end;
        {Ps, _} -> {error, {invalid_option, platforms, Ps}}
    end.

platform_list(Ps) ->
    Parsed = [platform(P) || P <- Ps],
    case [E || {error, _} = E <- Parsed] of
        [] -> {ok, [P || {ok, P} <- Parsed]};
        [E | _] -> E
    end.

platform(#{os := _, architecture := _} = P) -> {ok, P};
platform(P) when is_binary(P); is_list(P) -> ocibuild:parse_platform(P);
platform(P) -> {error, {invalid_platform, P}}.

images([_ | _] = Images) ->
    case is_map_list(Images) of
        true -> {ok, nif_images(Images)};
        false -> {error, {invalid_option, images, Images}}
    end;
images(Images) ->
    {error, {invalid_option, images, Images}}.

is_map_list(List) ->
    ocibuild_input:is_proper_list(List) andalso lists:all(fun erlang:is_map/1, List).

%% @doc Images as the native library takes them. Base sources keep their pull credentials
%% behind a fun (so printing an image shows no secret); the native library needs the map.
-spec nif_images([ocibuild:image()]) -> [map()] | {error, {invalid_option, images, term()}}.
nif_images(Images) ->
    case ocibuild_input:is_proper_list(Images) of
        true -> [nif_image(I) || I <- Images];
        false -> {error, {invalid_option, images, Images}}
    end.

nif_image(#{base := #{source := #{auth := AuthFun} = Source} = Base} = Image) when
    is_function(AuthFun, 0)
->
    Image#{base := Base#{source := Source#{auth := AuthFun()}}};
nif_image(Image) ->
    Image.

target(Registry, RepoTag, Auth, Opts) ->
    Tags = maps:get(tags, Opts, []),
    case {ocibuild_input:text(Registry), ocibuild_input:text(RepoTag), check_auth(Auth), texts(Tags)} of
        {error, _, _, _} -> {error, {invalid_option, registry, Registry}};
        {_, error, _, _} -> {error, {invalid_reference, RepoTag}};
        {_, _, {error, _} = Error, _} -> Error;
        {_, _, _, error} -> {error, {invalid_option, tags, Tags}};
        {{ok, R}, {ok, RT}, {ok, A}, {ok, T}} ->
            {ok, #{registry => R, repo_tag => RT, tags => T, auth => A}}
    end.

texts(List) ->
    case ocibuild_input:is_proper_list(List) of
        true ->
            Texts = [ocibuild_input:text(T) || T <- List],
            case lists:member(error, Texts) of
                true -> error;
                false -> {ok, [T || {ok, T} <- Texts]}
            end;
        false ->
            error
    end.

push_options(Opts) ->
    Checks = [
        {chunk_size, fun(N) -> is_integer(N) andalso N > 0 end},
        {max_concurrency, fun(N) -> is_integer(N) andalso N >= 1 andalso N =< ?CORE(max_concurrency_limit) end},
        {index, fun erlang:is_boolean/1},
        {sboms, fun(L) -> ocibuild_input:is_proper_list(L) andalso lists:all(fun is_sbom/1, L) end},
        %% A key from `ocibuild_signing:load/1,2', or none.
        {sign, fun(K) -> K =:= undefined orelse ocibuild_signing:is_key(K) end},
        %% From `ocibuild_provenance:input/1' (the native library checks its fields).
        {provenance, fun(P) -> P =:= undefined orelse is_map(P) end}
    ],
    case ocibuild_input:check_options(Checks, Opts) of
        ok ->
            Attach = maps:from_list(
                [{sboms, S} || S <- [maps:get(sboms, Opts, [])], S =/= []] ++
                [{sign, ocibuild_signing:handle(K)} || K <- [maps:get(sign, Opts, undefined)], K =/= undefined] ++
                [{provenance, P} || P <- [maps:get(provenance, Opts, undefined)], P =/= undefined]
            ),
            %% Unset sizes take the native library's defaults, defined there only.
            Sizes = maps:with([chunk_size, max_concurrency], Opts),
            {ok, (maps:merge(Attach, Sizes))#{
                index => maps:get(index, Opts, false),
                cache_dir => ocibuild_blob_store:root(),
                env => env_vars()
            }};
        {error, _} = Error ->
            Error
    end.

%% An SBOM from `ocibuild_sbom:build/1', or an SPDX document as a binary.
is_sbom(undefined) -> true;
is_sbom(S) -> is_reference(S) orelse is_binary(S).

%% The variables registry work reads (credentials files, TLS roots, insecure registries,
%% credential helpers on PATH, timeouts), as this VM sees them: os:putenv/2 changes the VM's
%% copy of the environment, which native code cannot see.
env_vars() ->
    Names = ["DOCKER_CONFIG", "HOME", "REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "PATH",
             "SSL_CERT_FILE", "OCIBUILD_INSECURE_REGISTRIES", "OCIBUILD_REGISTRY_TIMEOUT",
             "OCIBUILD_MIN_TRANSFER_RATE", "OCIBUILD_TRANSFER_RATE_WINDOW"],
    maps:from_list([
        {list_to_binary(N), unicode:characters_to_binary(V, unicode, file:native_name_encoding())}
     || N <- Names, V <- [os:getenv(N)], V =/= false
    ]).
