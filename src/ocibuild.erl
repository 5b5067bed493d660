%% @doc Build OCI container images from the BEAM, without Docker or any container runtime.
%%
%% An image is a plain map (a value: every function returns a new one). Its config, manifest
%% and digest are derived from it when it is written out with `export/2' or `save/2,3'.
%%
%% ```
%% {ok, Image0} = ocibuild:scratch(),
%% Image1 = ocibuild:copy(Image0, [{<<"myapp">>, {file, "_build/myapp"}}], <<"/app">>),
%% Image2 = ocibuild:entrypoint(Image1, [<<"/app/myapp">>, <<"start">>]),
%% Image3 = ocibuild:env(Image2, #{<<"PORT">> => <<"4000">>}),
%% ok = ocibuild:save(Image3, "myapp.tar.gz", #{tag => <<"myapp:1.0">>}).
%% '''
%%
%% The image map:
%% ```
%% #{base        => none | base(),        % none: scratch; base(): set by `from/1,2,3'
%%   layers      => [ocibuild_layer:layer()],   % ours, in order, after the base's
%%   config      => #{entrypoint    => undefined | [binary()],
%%                    cmd           => undefined | [binary()],
%%                    env           => [{Name :: binary(), Value :: binary()}],
%%                    workdir       => undefined | binary(),
%%                    exposed_ports => [binary()],          % <<"8080/tcp">>
%%                    labels        => #{binary() => binary()},
%%                    user          => undefined | binary()},
%%   annotations => #{binary() => binary()},  % manifest annotations
%%   platform    => undefined | platform()}   % undefined: linux/<host architecture>
%% '''
%% To build for another platform, set it on the map:
%% `Image#{platform := #{os => <<"linux">>, architecture => <<"arm64">>}}'; a list of such
%% images saves as one multi-platform index.
%%
%% Builder functions (`add_layer', `copy', `entrypoint', `env', ...) return the new image, as
%% in 0.10; given a bad argument they return `{error, Reason}' instead, and given
%% `{error, Reason}' in place of an image they return it unchanged, so a pipeline of builders
%% ends in the first error and `save', `export' and `push' return it:
%% `{invalid_option, Name, Value}' (a value of the wrong type or shape),
%% `{invalid_value, Field, Key, nul_byte | equals_in_name | empty_name}' (a NUL byte in any
%% config value or annotation, `=' in an env name), `{invalid_path, Path, Why}',
%% `{duplicate_path, Path}', `{invalid_mode, Path, Mode}', `{file_read, HostPath, Posix}',
%% `{special_file, HostPath, fifo | socket | character_device | block_device}'. The sinks
%% check the same values again, so an image map edited by hand is refused just the same.
-module(ocibuild).

-export([
    scratch/0,
    from/1,
    from/2,
    from/3,
    push/3,
    push/4,
    push/5,
    push_multi/4,
    push_multi/5,
    add_layer/2,
    add_layer/3,
    copy/3,
    entrypoint/2,
    cmd/2,
    env/2,
    workdir/2,
    expose/2,
    label/3,
    user/2,
    annotation/3,
    export/2,
    save/2,
    save/3,
    parse_platform/1,
    parse_platforms/1,
    verify/3
]).

%% rebar3 plugin entry point.
-export([init/1]).

%% Builder steps, checked: the values they take, and the image map they change.
-import(ocibuild_image_input, [
    update/2, bad_input/1, images_or_error/1, set_config/3, required_text/2, checked_text/2,
    text_list/2, proper_list/2, pair/4, env_var/2, port_spec/1, copy_entry/2
]).

-export_type([image/0, built/0, layer/0, platform/0, config/0, base/0, base_ref/0, auth/0]).

-type layer() :: ocibuild_layer:layer().

-type platform() :: #{os := binary(), architecture := binary(), variant => binary()}.

-type config() :: #{
    entrypoint := undefined | [binary()],
    cmd := undefined | [binary()],
    env := [{binary(), binary()}],
    workdir := undefined | binary(),
    exposed_ports := [binary()],
    labels := #{binary() => binary()},
    user := undefined | binary()
}.

-type base() :: #{
    reference := binary(),
    manifest := binary(),
    manifest_digest := binary(),
    config := binary(),
    layers := [map()],
    handle => reference(),
    source => #{registry := binary(), repository := binary(), auth => fun(() -> map())}
}.
%% A base image: the exact manifest bytes the registry served and their digest (the base's
%% identity), its config, and its layers. Sinks read the manifest and config, and the
%% credentials its layers are fetched with, from `handle' (they stay in the native library;
%% the map's copies are for reading and never go back). Layer `blob's stay
%% `undefined' until a sink needs the bytes: `save'/`export' fetch them into the cache
%% themselves, a push to a registry that has or can mount them never downloads them.
%% `source' (a pulled base) says where it came from. A base map built by hand has no handle:
%% then its `manifest', `config' and `source.auth' (a fun, so printing the image shows no
%% secret) are what sinks read.

-type base_ref() :: {Registry :: binary(), Repo :: binary(), TagOrDigest :: binary()}.
-type auth() :: ocibuild_registry:auth().

-type image() :: #{
    base := none | base(),
    layers := [layer()],
    config := config(),
    annotations := #{binary() => binary()},
    platform := undefined | platform()
}.

-type text() :: binary() | string().

-type built() :: built().
%% What a builder returns, and takes: the image, or the first error of the pipeline.

%% @doc The rebar3 plugin entry point: registers `rebar3 ocibuild' (see `ocibuild_rebar3').
-spec init(rebar_state:t()) -> {ok, rebar_state:t()}.
init(State) ->
    ocibuild_rebar3:init(State).

%% @doc An empty image with no base, for statically linked programs or full control.
-spec scratch() -> {ok, image()}.
scratch() ->
    Config = #{
        entrypoint => undefined,
        cmd => undefined,
        env => [],
        workdir => undefined,
        exposed_ports => [],
        labels => #{},
        user => undefined
    },
    {ok, #{base => none, layers => [], config => Config, annotations => #{}, platform => undefined}}.

%% @equiv from(Ref, #{}, #{})
-spec from(binary() | string() | base_ref()) -> {ok, image()} | {error, term()}.
from(Ref) ->
    from(Ref, #{}, #{}).

%% @equiv from(Ref, Auth, #{})
-spec from(binary() | string() | base_ref(), auth()) -> {ok, image()} | {error, term()}.
from(Ref, Auth) ->
    from(Ref, Auth, #{}).

%% @doc Start from a base image in a registry: `<<"alpine:3.19">>' (Docker Hub),
%% `<<"ghcr.io/org/app:v1">>', `<<"localhost:5000/x@sha256:...">>' or
%% `{Registry, Repo, TagOrDigest}'; or from a tarball on disk, `<<"tar://base.tar.gz">>' (see
%% `ocibuild_local_base'). Reads the manifest (an index picks the platform) and the
%% config; layers are fetched only when a sink needs them.
%%
%% Options: `platform' (a map or `<<"linux/arm64">>'; default: the host's), `platforms' (a
%% list: returns `{ok, [Image]}', one per platform), `progress' (a fun receiving
%% `#{phase, bytes_received, total_bytes, digest}' maps). `Auth' as in `ocibuild_registry'.
%%
%% Errors: `{invalid_reference, Ref}', `{no_matching_platform, #{wanted, available}}',
%% `{digest_mismatch, ...}' (a pinned digest the registry did not serve),
%% `{unauthorized, #{registry, scope, status}}', `{registry_error, #{status, code, ...}}',
%% `{http_error, Registry, Why}'.
-spec from(binary() | string() | base_ref(), auth(), map()) ->
    {ok, image()} | {ok, [image()]} | {error, term()}.
from(Ref, Auth, Opts) when is_map(Opts) ->
    Platforms = maps:get(platforms, Opts, []),
    case {ocibuild_registry:check_auth(Auth), ocibuild_input:is_proper_list(Platforms)} of
        {{error, _} = Error, _} -> Error;
        {_, false} -> {error, {invalid_option, platforms, Platforms}};
        {{ok, _}, true} -> from_checked(Ref, Auth, Opts)
    end;
from(_Ref, _Auth, Opts) ->
    {error, {invalid_option, options, Opts}}.

from_checked(Ref, Auth, Opts) ->
    case pull(Ref, Auth, Opts) of
        {ok, Pulled} ->
            Images = [pulled_image(P) || P <- Pulled],
            case {maps:is_key(platforms, Opts), Images} of
                {true, _} -> {ok, Images};
                {false, [Image | _]} -> {ok, Image};
                {false, []} -> {error, {invalid_reference, Ref}}
            end;
        {error, {invalid_reference, _}} ->
            %% The reference as the caller gave it (a tuple, a string), not as parsed.
            {error, {invalid_reference, Ref}};
        {error, _} = Error ->
            Error
    end.

%% `tar://PATH' is a base saved on disk (no network); anything else names a registry image.
pull(Ref, Auth, Opts) ->
    case ocibuild_local_base:is_local(Ref) of
        true ->
            case ocibuild_registry:platforms(Opts) of
                {ok, Platforms} -> ocibuild_local_base:load(Ref, Platforms);
                {error, _} = Error -> Error
            end;
        false ->
            ocibuild_registry:pull(Ref, Auth, Opts)
    end.

%% The credentials the base was pulled with stay with its bytes, behind the base's handle.
pulled_image(#{base := Base, platform := Platform}) ->
    {ok, Image} = scratch(),
    Image#{base := Base, platform := Platform}.

%% @equiv push(Image, Registry, RepoTag, #{}, #{})
-spec push(built(), text(), text()) -> {ok, binary()} | {error, term()}.
push(Image, Registry, RepoTag) ->
    push(Image, Registry, RepoTag, #{}, #{}).

%% @equiv push(Image, Registry, RepoTag, Auth, #{})
-spec push(built(), text(), text(), auth()) -> {ok, binary()} | {error, term()}.
push(Image, Registry, RepoTag, Auth) ->
    push(Image, Registry, RepoTag, Auth, #{}).

%% @doc Push the image to `Registry' (`<<"ghcr.io">>', `<<"localhost:5000">>', or with a
%% namespace, `<<"ghcr.io/org">>') as `RepoTag' (`<<"myapp:1.0">>'). Returns the manifest
%% digest.
%%
%% Blobs go first (HEAD, cross-repository mount for a base on the same registry, then upload);
%% the manifest is put only once every blob is in, so a failed push never leaves a tag on a
%% broken image. Options: `tags' (more tags for the same manifest), `chunk_size' (default
%% 5 MB; larger blobs are uploaded in chunks), `max_concurrency' (default 4), `progress'.
%% Plain HTTP is used for loopback registries and those in `OCIBUILD_INSECURE_REGISTRIES'.
-spec push(built(), text(), text(), auth(), map()) -> {ok, binary()} | {error, term()}.
push({error, _} = Error, _Registry, _RepoTag, _Auth, _Opts) ->
    Error;
push(Image, Registry, RepoTag, Auth, Opts) when is_map(Image), is_map(Opts) ->
    case images_or_error(Image) of
        {ok, Images} -> digest_of(ocibuild_registry:push(Images, Registry, RepoTag, Auth, Opts));
        {error, _} = Error -> Error
    end;
push(Image, _Registry, _RepoTag, _Auth, Opts) when is_map(Image) ->
    {error, {invalid_option, options, Opts}};
push(Image, _Registry, _RepoTag, _Auth, _Opts) ->
    {error, {invalid_option, image, Image}}.

%% @equiv push_multi(Images, Registry, RepoTag, Auth, #{})
-spec push_multi([built()], text(), text(), auth()) -> {ok, binary()} | {error, term()}.
push_multi(Images, Registry, RepoTag, Auth) ->
    push_multi(Images, Registry, RepoTag, Auth, #{}).

%% @doc Push platform images as one multi-platform image: each manifest by digest, then an
%% image index under the tag. Every image needs its `platform' set (as `from' with
%% `platforms' does). Returns the index digest. Options as `push/5'.
-spec push_multi([built()], text(), text(), auth(), map()) -> {ok, binary()} | {error, term()}.
push_multi([_ | _] = Images, Registry, RepoTag, Auth, Opts) when is_map(Opts) ->
    case images_or_error(Images) of
        {ok, _} ->
            Unset = [I || I <- Images, not is_map(I) orelse maps:get(platform, I, undefined) =:= undefined],
            case Unset of
                [] -> digest_of(ocibuild_registry:push(Images, Registry, RepoTag, Auth, Opts#{index => true}));
                _ -> {error, {invalid_option, platform, <<"every image of push_multi needs a platform">>}}
            end;
        {error, _} = Error ->
            Error
    end;
push_multi(Images, _Registry, _RepoTag, _Auth, Opts) when is_map(Opts) ->
    {error, {invalid_option, images, Images}};
push_multi(_Images, _Registry, _RepoTag, _Auth, Opts) ->
    {error, {invalid_option, options, Opts}}.

digest_of({ok, #{digest := Digest}}) -> {ok, Digest};
digest_of({error, _} = Error) -> Error.

%% @equiv add_layer(Image, Files, #{})
-spec add_layer(built(), [ocibuild_layer:file_entry()]) -> built().
add_layer(Image, Files) ->
    add_layer(Image, Files, #{}).

%% @doc Add a layer built from `[{Path, Content, Mode}]'; Content is a binary, an iolist or
%% `{file, HostPath}' (a regular file: FIFOs, sockets and devices are refused). Options as
%% `ocibuild_layer:create/2' (`compression', `layer_type', `mtime', `progress'). Returns
%% `{error, Reason}' if the layer cannot be built.
-spec add_layer(built(), [ocibuild_layer:file_entry()], ocibuild_layer:options()) ->
    built().
add_layer(Image, Files, Opts) ->
    update(Image, fun(#{layers := Layers} = I) ->
        case ocibuild_layer:create(Files, Opts) of
            {ok, Layer} -> I#{layers := Layers ++ [Layer]};
            {error, Reason} -> bad_input(Reason)
        end
    end).

%% @doc Add a layer placing each `{Name, Content}' under the directory `Dest' (`{Name, Content,
%% Mode}' sets the mode). Data defaults to mode 8#644; `{file, HostPath}' keeps the host file's
%% permission bits.
-spec copy(built(), [{text(), ocibuild_layer:content()} | ocibuild_layer:file_entry()], text()) ->
    built().
copy(Image, Files, Dest) ->
    update(Image, fun(I) ->
        DestBin = required_text(dest, Dest),
        Entries = [copy_entry(DestBin, F) || F <- proper_list(files, Files)],
        case add_layer(I, Entries) of
            {error, Reason} -> bad_input(Reason);
            Added -> Added
        end
    end).

%% @doc Set the entrypoint: the command run when the container starts.
-spec entrypoint(built(), [text()]) -> built().
entrypoint(Image, Args) ->
    update(Image, fun(I) -> set_config(I, entrypoint, text_list(entrypoint, Args)) end).

%% @doc Set the default arguments to the entrypoint.
-spec cmd(built(), [text()]) -> built().
cmd(Image, Args) ->
    update(Image, fun(I) -> set_config(I, cmd, text_list(cmd, Args)) end).

%% @doc Set environment variables. Like Docker's `ENV': a name already set keeps its position
%% and takes the new value; new names are appended in sorted order; no name appears twice.
%% Names cannot be empty or contain `=' or NUL; values cannot contain NUL.
-spec env(built(), #{text() => text()}) -> built().
env(Image, Vars) when is_map(Vars) ->
    update(Image, fun(#{config := #{env := Env0}} = I) ->
        New = lists:sort([env_var(K, V) || {K, V} <- maps:to_list(Vars)]),
        set_config(I, env, lists:foldl(fun ocibuild_image_input:merge_env/2, Env0, New))
    end);
env(Image, Vars) ->
    update(Image, fun(_) -> bad_input({invalid_option, env, Vars}) end).

%% @doc Set the working directory.
-spec workdir(built(), text()) -> built().
workdir(Image, Dir) ->
    update(Image, fun(I) -> set_config(I, workdir, checked_text(workdir, Dir)) end).

%% @doc Expose a port: an integer (TCP) or `<<"Port/Proto">>' with Proto `tcp', `udp' or
%% `sctp'. Exposing the same port twice has no further effect.
-spec expose(built(), 1..65535 | text()) -> built().
expose(Image, Port) ->
    update(Image, fun(#{config := #{exposed_ports := Ports}} = I) ->
        Spec = port_spec(Port),
        case lists:member(Spec, Ports) of
            true -> I;
            false -> set_config(I, exposed_ports, Ports ++ [Spec])
        end
    end).

%% @doc Add a label to the image config (a later value for the same key replaces it).
-spec label(built(), text(), text()) -> built().
label(Image, Key, Value) ->
    update(Image, fun(#{config := #{labels := Labels}} = I) ->
        {K, V} = pair(label, labels, Key, Value),
        set_config(I, labels, Labels#{K => V})
    end).

%% @doc Set the user (name or uid, optionally `:group') the container runs as.
-spec user(built(), text()) -> built().
user(Image, User) ->
    update(Image, fun(I) -> set_config(I, user, checked_text(user, User)) end).

%% @doc Add an annotation to the image manifest (not the config), e.g.
%% `org.opencontainers.image.source'.
-spec annotation(built(), text(), text()) -> built().
annotation(Image, Key, Value) ->
    update(Image, fun(#{annotations := Annotations} = I) ->
        {K, V} = pair(annotation, annotations, Key, Value),
        I#{annotations := Annotations#{K => V}}
    end).

%% @doc Write the image as an OCI layout directory (`oci-layout', `index.json', `blobs/').
-spec export(built() | [built()], file:filename_all()) -> ok | {error, term()}.
export(Image, Dir) ->
    case images_or_error(Image) of
        {ok, _} -> ocibuild_layout:export_directory(Image, Dir);
        {error, _} = Error -> Error
    end.

%% @equiv save(Image, Path, #{})
-spec save(built() | [built()], file:filename_all()) -> ok | {error, term()}.
save(Image, Path) ->
    save(Image, Path, #{}).

%% @doc Save the image, or a list of platform images, as a tarball for `podman load',
%% `docker load' or `skopeo'. Options: `tag' (e.g. `<<"myapp:1.0">>'; an image reference
%% `[registry/]repository[:tag]' with a lower-case repository, else
%% `{error, {invalid_tag, Tag, Rule}}'), `format' (`docker', the default, or `oci'). A `Path'
%% ending in `.tar' is a plain tar, any other gzip with the layers stored, not recompressed.
-spec save(built() | [built()], file:filename_all(), ocibuild_layout:save_options()) ->
    ok | {error, term()}.
save(Image, Path, Opts) when is_map(Opts) ->
    case images_or_error(Image) of
        {error, _} = Error -> Error;
        _ -> ocibuild_layout:save_tarball(Image, Path, Opts)
    end;
save(_Image, _Path, Opts) ->
    {error, {invalid_option, options, Opts}}.

%% @doc Parse `"os/arch"' or `"os/arch/variant"', e.g. `<<"linux/arm64/v8">>'.
-spec parse_platform(text()) -> {ok, platform()} | {error, {invalid_platform, term()}}.
parse_platform(Spec) ->
    case ocibuild_input:text(Spec) of
        {ok, Bin} ->
            case ocibuild_nif:platform_parse(Bin) of
                {ok, Platform} -> {ok, Platform};
                {error, _} -> {error, {invalid_platform, Spec}}
            end;
        error ->
            {error, {invalid_platform, Spec}}
    end.

%% @doc Parse a comma-separated list of platforms, e.g. `<<"linux/amd64,linux/arm64">>'.
-spec parse_platforms(text()) -> {ok, [platform()]} | {error, {invalid_platform, term()}}.
parse_platforms(Specs) ->
    case ocibuild_input:text(Specs) of
        %% No platform at all, as in ocibuild 0.10 (CI passes an unset input as "").
        {ok, <<>>} -> {ok, []};
        {ok, Bin} -> parse_each([string:trim(S) || S <- string:split(Bin, ",", all)], []);
        error -> {error, {invalid_platform, Specs}}
    end.

parse_each([], Acc) ->
    {ok, lists:reverse(Acc)};
parse_each([Spec | Rest], Acc) ->
    case parse_platform(Spec) of
        {ok, Platform} -> parse_each(Rest, [Platform | Acc]);
        {error, _} = Error -> Error
    end.

%% @doc Verify what a push attached to `Ref' (a registry reference, or a saved tarball as
%% `tar://PATH' or a `.tar'/`.tar.gz' path) with the public key at `maps:get(key, Opts)':
%% signatures, attestations and the SBOM, one check each. `{ok, Checks}' or
%% `{error, {verification_failed, Checks}}'; see `ocibuild_verify' for what is checked.
-spec verify(binary() | string(), auth(), map()) ->
    {ok, [ocibuild_verify:check()]} | {error, term()}.
verify(Ref, Auth, Opts) ->
    ocibuild_verify:verify(Ref, Auth, Opts).
