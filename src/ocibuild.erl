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
%% Builder functions raise `error(Reason)' on bad input, with the same tagged reasons the
%% `{error, Reason}' returns use: `{invalid_option, Name, Value}', `{invalid_path, Path, Why}',
%% `{duplicate_path, Path}', `{invalid_mode, Path, Mode}', `{file_read, HostPath, Posix}', ...
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
    parse_platforms/1
]).

%% rebar3 plugin entry point.
-export([init/1]).

-export_type([image/0, layer/0, platform/0, config/0, base/0, base_ref/0, auth/0]).

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
    source := #{registry := binary(), repository := binary(), auth := fun(() -> map())}
}.
%% A pulled base image: the exact manifest bytes the registry served and their digest (the
%% base's identity), its config, and its layers. Layer `blob's stay `undefined' until a sink
%% needs the bytes: `save'/`export' fetch them into the cache, a push to a registry that has
%% or can mount them never downloads them. `source.auth' holds the pull credentials behind a
%% fun so that printing an image never shows them.

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
    case pull(Ref, Auth, Opts) of
        {ok, Pulled} ->
            {ok, Stored} = ocibuild_registry:check_auth(Auth),
            AuthFun = fun() -> Stored end,
            Images = [pulled_image(P, AuthFun) || P <- Pulled],
            case maps:is_key(platforms, Opts) of
                true -> {ok, Images};
                false -> {ok, hd(Images)}
            end;
        {error, {invalid_reference, _}} ->
            %% The reference as the caller gave it (a tuple, a string), not as parsed.
            {error, {invalid_reference, Ref}};
        {error, _} = Error ->
            Error
    end;
from(_Ref, _Auth, Opts) ->
    {error, {invalid_option, options, Opts}}.

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

pulled_image(#{base := #{source := Source} = Base, platform := Platform}, AuthFun) ->
    {ok, Image} = scratch(),
    Image#{base := Base#{source := Source#{auth => AuthFun}}, platform := Platform};
pulled_image(#{base := Base, platform := Platform}, _AuthFun) ->
    {ok, Image} = scratch(),
    Image#{base := Base, platform := Platform}.

%% @equiv push(Image, Registry, RepoTag, #{}, #{})
-spec push(image(), text(), text()) -> {ok, binary()} | {error, term()}.
push(Image, Registry, RepoTag) ->
    push(Image, Registry, RepoTag, #{}, #{}).

%% @equiv push(Image, Registry, RepoTag, Auth, #{})
-spec push(image(), text(), text(), auth()) -> {ok, binary()} | {error, term()}.
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
-spec push(image(), text(), text(), auth(), map()) -> {ok, binary()} | {error, term()}.
push(Image, Registry, RepoTag, Auth, Opts) when is_map(Image), is_map(Opts) ->
    digest_of(ocibuild_registry:push([Image], Registry, RepoTag, Auth, Opts));
push(Image, _Registry, _RepoTag, _Auth, Opts) when is_map(Image) ->
    {error, {invalid_option, options, Opts}};
push(Image, _Registry, _RepoTag, _Auth, _Opts) ->
    {error, {invalid_option, image, Image}}.

%% @equiv push_multi(Images, Registry, RepoTag, Auth, #{})
-spec push_multi([image()], text(), text(), auth()) -> {ok, binary()} | {error, term()}.
push_multi(Images, Registry, RepoTag, Auth) ->
    push_multi(Images, Registry, RepoTag, Auth, #{}).

%% @doc Push platform images as one multi-platform image: each manifest by digest, then an
%% image index under the tag. Every image needs its `platform' set (as `from' with
%% `platforms' does). Returns the index digest. Options as `push/5'.
-spec push_multi([image()], text(), text(), auth(), map()) -> {ok, binary()} | {error, term()}.
push_multi([_ | _] = Images, Registry, RepoTag, Auth, Opts) when is_map(Opts) ->
    Unset = [I || I <- Images, not is_map(I) orelse maps:get(platform, I, undefined) =:= undefined],
    case Unset of
        [] -> digest_of(ocibuild_registry:push(Images, Registry, RepoTag, Auth, Opts#{index => true}));
        _ -> {error, {invalid_option, platform, <<"every image of push_multi needs a platform">>}}
    end;
push_multi(Images, _Registry, _RepoTag, _Auth, Opts) when is_map(Opts) ->
    {error, {invalid_option, images, Images}};
push_multi(_Images, _Registry, _RepoTag, _Auth, Opts) ->
    {error, {invalid_option, options, Opts}}.

digest_of({ok, #{digest := Digest}}) -> {ok, Digest};
digest_of({error, _} = Error) -> Error.

%% @equiv add_layer(Image, Files, #{})
-spec add_layer(image(), [ocibuild_layer:file_entry()]) -> image().
add_layer(Image, Files) ->
    add_layer(Image, Files, #{}).

%% @doc Add a layer built from `[{Path, Content, Mode}]'; Content is a binary, an iolist or
%% `{file, HostPath}'. Options as `ocibuild_layer:create/2' (`compression', `layer_type',
%% `mtime'). Raises `error(Reason)' if the layer cannot be built.
-spec add_layer(image(), [ocibuild_layer:file_entry()], ocibuild_layer:options()) -> image().
add_layer(#{layers := Layers} = Image, Files, Opts) ->
    case ocibuild_layer:create(Files, Opts) of
        {ok, Layer} -> Image#{layers := Layers ++ [Layer]};
        {error, Reason} -> erlang:error(Reason)
    end.

%% @doc Add a layer placing each `{Name, Content}' under the directory `Dest' (`{Name, Content,
%% Mode}' sets the mode). Data defaults to mode 8#644; `{file, HostPath}' keeps the host file's
%% permission bits.
-spec copy(image(), [{text(), ocibuild_layer:content()} | ocibuild_layer:file_entry()], text()) ->
    image().
copy(Image, Files, Dest) when is_list(Files) ->
    DestBin = required_text(dest, Dest),
    add_layer(Image, [copy_entry(DestBin, F) || F <- Files]);
copy(_Image, Files, _Dest) ->
    erlang:error({invalid_option, files, Files}).

copy_entry(Dest, {Name, Content}) ->
    copy_entry(Dest, {Name, Content, default_mode(Content)});
copy_entry(Dest, {Name, Content, Mode} = Entry) ->
    case ocibuild_input:image_path(Name) of
        {ok, NameBin} -> {<<Dest/binary, "/", NameBin/binary>>, Content, Mode};
        error -> erlang:error({invalid_option, files, Entry})
    end;
copy_entry(_Dest, Entry) ->
    erlang:error({invalid_option, files, Entry}).

%% A missing host file keeps the default here; the core then reports `{file_read, Path, enoent}'.
default_mode({file, HostPath}) ->
    case file:read_file_info(HostPath) of
        {ok, Info} -> element(8, Info) band 8#7777;
        {error, _} -> 8#644
    end;
default_mode(_) ->
    8#644.

%% @doc Set the entrypoint: the command run when the container starts.
-spec entrypoint(image(), [text()]) -> image().
entrypoint(Image, Args) ->
    set_config(Image, entrypoint, text_list(entrypoint, Args)).

%% @doc Set the default arguments to the entrypoint.
-spec cmd(image(), [text()]) -> image().
cmd(Image, Args) ->
    set_config(Image, cmd, text_list(cmd, Args)).

%% @doc Set environment variables. Like Docker's `ENV': a name already set keeps its position
%% and takes the new value; new names are appended in sorted order; no name appears twice.
-spec env(image(), #{text() => text()}) -> image().
env(#{config := #{env := Env0}} = Image, Vars) when is_map(Vars) ->
    New = lists:sort([env_var(K, V) || {K, V} <- maps:to_list(Vars)]),
    set_config(Image, env, lists:foldl(fun merge_env/2, Env0, New));
env(_Image, Vars) ->
    erlang:error({invalid_option, env, Vars}).

env_var(Name, Value) ->
    case {ocibuild_input:text(Name), ocibuild_input:text(Value)} of
        {{ok, N}, {ok, V}} when N =/= <<>> ->
            case binary:match(N, [<<"=">>, <<0>>]) of
                nomatch -> {N, V};
                _ -> erlang:error({invalid_option, env, {Name, Value}})
            end;
        _ ->
            erlang:error({invalid_option, env, {Name, Value}})
    end.

merge_env({Name, _} = Var, Env) ->
    case lists:keymember(Name, 1, Env) of
        true -> lists:keyreplace(Name, 1, Env, Var);
        false -> Env ++ [Var]
    end.

%% @doc Set the working directory.
-spec workdir(image(), text()) -> image().
workdir(Image, Dir) ->
    set_config(Image, workdir, required_text(workdir, Dir)).

%% @doc Expose a port: an integer (TCP) or `<<"Port/Proto">>' with Proto `tcp', `udp' or
%% `sctp'. Exposing the same port twice has no further effect.
-spec expose(image(), 1..65535 | text()) -> image().
expose(#{config := #{exposed_ports := Ports}} = Image, Port) ->
    Spec = port_spec(Port),
    case lists:member(Spec, Ports) of
        true -> Image;
        false -> set_config(Image, exposed_ports, Ports ++ [Spec])
    end.

port_spec(Port) when is_integer(Port), Port >= 1, Port =< 65535 ->
    <<(integer_to_binary(Port))/binary, "/tcp">>;
port_spec(Port) ->
    case ocibuild_input:text(Port) of
        {ok, Text} ->
            case string:split(Text, "/") of
                [Num] -> port_spec(Port, Num, <<"tcp">>);
                [Num, Proto] -> port_spec(Port, Num, Proto);
                _ -> erlang:error({invalid_option, expose, Port})
            end;
        error ->
            erlang:error({invalid_option, expose, Port})
    end.

port_spec(Port, Num, Proto) ->
    Valid =
        lists:member(Proto, [<<"tcp">>, <<"udp">>, <<"sctp">>]) andalso
            try binary_to_integer(Num) of
                N -> N >= 1 andalso N =< 65535 andalso integer_to_binary(N) =:= Num
            catch
                error:badarg -> false
            end,
    case Valid of
        true -> <<Num/binary, "/", Proto/binary>>;
        false -> erlang:error({invalid_option, expose, Port})
    end.

%% @doc Add a label to the image config (a later value for the same key replaces it).
-spec label(image(), text(), text()) -> image().
label(#{config := #{labels := Labels}} = Image, Key, Value) ->
    {K, V} = pair(label, Key, Value),
    set_config(Image, labels, Labels#{K => V}).

%% @doc Set the user (name or uid, optionally `:group') the container runs as.
-spec user(image(), text()) -> image().
user(Image, User) ->
    set_config(Image, user, required_text(user, User)).

%% @doc Add an annotation to the image manifest (not the config), e.g.
%% `org.opencontainers.image.source'.
-spec annotation(image(), text(), text()) -> image().
annotation(#{annotations := Annotations} = Image, Key, Value) ->
    {K, V} = pair(annotation, Key, Value),
    Image#{annotations := Annotations#{K => V}}.

%% @doc Write the image as an OCI layout directory (`oci-layout', `index.json', `blobs/').
-spec export(image() | [image()], file:filename_all()) -> ok | {error, term()}.
export(Image, Dir) ->
    ocibuild_layout:export_directory(Image, Dir).

%% @equiv save(Image, Path, #{})
-spec save(image() | [image()], file:filename_all()) -> ok | {error, term()}.
save(Image, Path) ->
    save(Image, Path, #{}).

%% @doc Save the image, or a list of platform images, as a tarball for `podman load',
%% `docker load' or `skopeo'. Options: `tag' (e.g. `<<"myapp:1.0">>'), `format' (`docker',
%% the default, or `oci').
-spec save(image() | [image()], file:filename_all(), ocibuild_layout:save_options()) ->
    ok | {error, term()}.
save(Image, Path, Opts) ->
    ocibuild_layout:save_tarball(Image, Path, Opts).

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

%% Internal helpers.

set_config(#{config := Config} = Image, Key, Value) ->
    Image#{config := Config#{Key := Value}}.

required_text(Name, Value) ->
    case ocibuild_input:text(Value) of
        {ok, Bin} -> Bin;
        error -> erlang:error({invalid_option, Name, Value})
    end.

text_list(Name, Values) when is_list(Values) ->
    Texts = [ocibuild_input:text(V) || V <- Values],
    case lists:member(error, Texts) of
        false -> [Bin || {ok, Bin} <- Texts];
        true -> erlang:error({invalid_option, Name, Values})
    end;
text_list(Name, Values) ->
    erlang:error({invalid_option, Name, Values}).

pair(Name, Key, Value) ->
    case {ocibuild_input:text(Key), ocibuild_input:text(Value)} of
        {{ok, K}, {ok, V}} when K =/= <<>> -> {K, V};
        _ -> erlang:error({invalid_option, Name, {Key, Value}})
    end.
