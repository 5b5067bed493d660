%% @doc The built-in verifier: checks what a push attached to an image against a public key,
%% with no cosign installed. `ocibuild:verify/3', `mix ocibuild.verify' and
%% `rebar3 ocibuild --verify' all come here.
%%
%% ```
%% {ok, Checks} = ocibuild_verify:verify(<<"ghcr.io/acme/app:1.0.0">>, #{}, #{key => "cosign.pub"}),
%% [io:format("~ts~n", [Line]) || #{line := Line} <- Checks].
%% '''
%%
%% `Ref' is a registry reference (tag or digest) or a saved tarball: `tar://PATH', or a path
%% ending in `.tar', `.tar.gz' or `.tgz'. A tarball holds the image only, so its signature
%% and attestation checks are skipped (and say so); the SBOM it carries is checked.
%%
%% The checks (one `check()' each):
%% <ul>
%% <li>`signature': each layer of the `sha256-<hex>.sig' image (cosign simple signing)
%%     verifies with the key and its payload names the image digest (an index's, for a
%%     multi-platform image). No `.sig' fails.</li>
%% <li>`attestation': each layer of a platform manifest's `sha256-<hex>.att' image and each of
%%     its in-toto referrers is a DSSE envelope signed by the key whose in-toto Statement's
%%     subject is that manifest. None is a `skip'.</li>
%% <li>`sbom': each SPDX referrer parses as SPDX 2.2/2.3 JSON and names every package (name
%%     and version) of the SBOM the image carries at `/sbom.spdx.json'. No SBOM referrer
%%     fails when the image carries one, else is a `skip'.</li>
%% </ul>
%%
%% Result: `{ok, Checks}' when no check failed and at least one succeeded;
%% `{error, {verification_failed, Checks}}' otherwise (a failure, or nothing to check);
%% `{error, Reason}' when the image cannot be read at all (`{public_key_error, Why}',
%% `{key_read, Path, Why}', `{registry_error, ...}', `{unauthorized, ...}',
%% `{tarball_not_found, Path}', ...).
-module(ocibuild_verify).

-export([verify/3, cli/3, is_tarball/1, format_checks/1]).

-export_type([check/0]).

-type check() :: #{
    outcome := ok | fail | skip,
    kind := signature | attestation | sbom,
    subject := binary(),
    source := binary(),
    detail := binary(),
    line := binary()
}.
%% `subject': the manifest digest checked; `source': where the evidence was (`.sig layer 1',
%% `.att layer 1', `referrer sha256:...'); `line': what the tasks print, e.g.
%% `ok   signature sha256:... (.sig layer 1): verified with cosign.pub, signs ...'.

%% A PEM public key is a few hundred bytes; the cap only stops a device or huge file being read.
-define(MAX_KEY_BYTES, 1 bsl 20).

%% @doc Verify `Ref' with the public key at `maps:get(key, Opts)' (PEM `PUBLIC KEY', what
%% `cosign generate-key-pair' writes as `cosign.pub'). `Auth' as `ocibuild:push/5''s (`#{}':
%% the docker/podman config files, else anonymous); unused for a tarball.
-spec verify(binary() | string(), ocibuild_registry:auth(), map()) ->
    {ok, [check()]} | {error, {verification_failed, [check()]}} | {error, term()}.
verify(Ref, Auth, #{key := KeyPath} = Opts) ->
    case read_key(KeyPath) of
        {ok, Pem, Name} ->
            NifOpts = #{key => Pem, key_name => Name},
            case start(Ref, Auth, NifOpts, Opts) of
                {ok, JobId, Handle} -> result(await(JobId, Handle));
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end;
verify(_Ref, _Auth, Opts) when is_map(Opts) ->
    {error, {invalid_option, key, missing}};
verify(_Ref, _Auth, Opts) ->
    {error, {invalid_option, options, Opts}}.

%% @doc What `mix ocibuild.verify' and `rebar3 ocibuild --verify' do: verify `Ref' with the
%% key at `KeyPath', credentials from `OCIBUILD_PUSH_TOKEN' or `OCIBUILD_PUSH_USERNAME' /
%% `OCIBUILD_PUSH_PASSWORD' (else the config files, else anonymous), and `Print' each check's
%% line. `ok' when verified; `{error, Reason}' for the task to show in one line
%% (`ocibuild_release_messages:format_error/1') and exit 1.
-spec cli(binary() | string(), file:filename_all(), fun((binary()) -> term())) ->
    ok | {error, term()}.
cli(Ref, KeyPath, Print) ->
    case verify(Ref, ocibuild_release_publish:push_auth(), #{key => KeyPath}) of
        {ok, Checks} ->
            lists:foreach(Print, format_checks(Checks));
        {error, {verification_failed, Checks}} = Error ->
            lists:foreach(Print, format_checks(Checks)),
            Error;
        {error, _} = Error ->
            Error
    end.

%% @doc Whether `Ref' names a saved tarball rather than a registry image.
-spec is_tarball(term()) -> boolean().
is_tarball(Ref) ->
    case ocibuild_input:text(Ref) of
        {ok, <<"tar://", _/binary>>} -> true;
        {ok, Text} -> lists:any(fun(Ext) -> has_suffix(Text, Ext) end,
                                [<<".tar">>, <<".tar.gz">>, <<".tgz">>]);
        error -> false
    end.

%% @doc The lines the tasks print, one per check.
-spec format_checks([check()]) -> [binary()].
format_checks(Checks) ->
    [Line || #{line := Line} <- Checks].

%% Internal

read_key(Path0) ->
    case ocibuild_input:text(Path0) of
        {ok, Path} ->
            case ocibuild_host_file:read(Path, ?MAX_KEY_BYTES) of
                {ok, Pem} -> {ok, Pem, filename:basename(Path)};
                {error, Why} -> {error, {key_read, Path, Why}}
            end;
        error ->
            {error, {invalid_option, key, Path0}}
    end.

start(Ref, Auth, NifOpts, Opts) ->
    case is_tarball(Ref) of
        true ->
            {ok, Text} = ocibuild_input:text(Ref),
            Path = case Text of
                       <<"tar://", P/binary>> -> P;
                       P -> P
                   end,
            %% Extracted under `scratch' (default: the system's temp directory), then removed.
            Scratch = case maps:get(scratch, Opts, undefined) of
                          undefined -> #{};
                          Dir -> #{scratch => unicode:characters_to_binary(Dir)}
                      end,
            ocibuild_nif:verify_tarball(Path, maps:merge(NifOpts, Scratch));
        false ->
            case {ocibuild_registry:check_auth(Auth), ocibuild_input:text(Ref)} of
                {{ok, NifAuth}, {ok, NifRef}} ->
                    ocibuild_nif:verify_image(NifRef, NifAuth, NifOpts#{env => env_vars()});
                {{error, _} = Error, _} -> Error;
                {_, error} -> {error, {invalid_reference, Ref}}
            end
    end.

%% The environment registry work reads (insecure registries, timeouts, config files).
env_vars() ->
    maps:get(env, ocibuild_registry:sink_options()).

%% The job runs on the native library's runtime; while this process holds `Handle' it runs,
%% and if this process dies it is cancelled. Progress is not reported: verifying is a few
%% small fetches.
await(JobId, Handle) ->
    receive
        {ocibuild_job, JobId, {progress, _}} ->
            await(JobId, Handle);
        {ocibuild_job, JobId, {done, Result}} ->
            ok = ocibuild_nif:job_cancel(Handle),
            Result
    end.

result({ok, #{passed := true, checks := Checks}}) -> {ok, Checks};
result({ok, #{checks := Checks}}) -> {error, {verification_failed, Checks}};
result({error, _} = Error) -> Error.

has_suffix(Text, Ext) ->
    Size = byte_size(Text) - byte_size(Ext),
    Size > 0 andalso binary:part(Text, Size, byte_size(Ext)) =:= Ext.
