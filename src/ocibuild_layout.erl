%% @doc OCI image layouts, as a directory or a tarball, and reading a saved tarball back.
%%
%% ```
%% myimage/
%% ├── oci-layout          {"imageLayoutVersion":"1.0.0"}
%% ├── index.json          entry point; tagged with org.opencontainers.image.ref.name
%% ├── manifest.json       (tarball, format docker only) for `docker load'
%% └── blobs/sha256/...    manifests, configs, layers
%% '''
%%
%% One image writes one manifest; a list of images (each with its `platform' set) writes an
%% image index with one manifest per platform. Output is written beside its destination and
%% renamed into place at the end, so a failed save never leaves a partial file. With
%% `SOURCE_DATE_EPOCH' set, two saves of the same image are byte-identical.
%%
%% ```
%% ok = ocibuild_layout:export_directory(Image, "./myimage"),
%% ok = ocibuild_layout:save_tarball([Amd64, Arm64], "myimage.tar.gz", #{tag => <<"myapp:1.0">>}),
%% {ok, #{images := [_, _], cleanup := Cleanup}} = ocibuild_layout:load_tarball_for_push("myimage.tar.gz"),
%% ok = Cleanup().
%% '''
-module(ocibuild_layout).

-export([
    export_directory/2,
    save_tarball/2,
    save_tarball/3,
    load_tarball_for_push/1,
    load_tarball_for_push/2,
    push_reference/1
]).

-export_type([loaded_image/0, loaded_layer/0, loaded/0, save_options/0]).

-type save_options() :: #{tag => binary() | string(), format => docker | oci}.

-type loaded_layer() :: #{
    media_type := binary(),
    digest := binary(),
    diff_id := binary(),
    size := non_neg_integer(),
    path := binary(),
    get_data := fun(() -> {ok, binary()} | {error, term()})
}.
%% `path' is the verified blob extracted from the tarball; `get_data' reads it.

-type loaded_image() :: #{
    manifest := binary(),
    manifest_digest := binary(),
    config := binary(),
    config_digest := binary(),
    layers := [loaded_layer()],
    platform := ocibuild:platform() | undefined,
    annotations := #{binary() => binary()}
}.

-type loaded() :: #{
    images := [loaded_image()],
    tag := binary(),
    is_multi_platform := boolean(),
    cleanup := fun(() -> ok)
}.

%% @doc Write the image (or a list of platform images) as an OCI layout directory at `Dir'.
-spec export_directory(ocibuild:image() | [ocibuild:image()], file:filename_all()) ->
    ok | {error, term()}.
export_directory(ImageOrImages, Dir) ->
    with_target(ImageOrImages, Dir, dir, fun(Images, DirBin, Sink) ->
        ocibuild_nif:image_export(Images, DirBin, Sink#{tag => undefined})
    end).

%% @equiv save_tarball(ImageOrImages, Path, #{})
-spec save_tarball(ocibuild:image() | [ocibuild:image()], file:filename_all()) ->
    ok | {error, term()}.
save_tarball(ImageOrImages, Path) ->
    save_tarball(ImageOrImages, Path, #{}).

%% @doc Write the image (or a list of platform images) as a tarball that `podman load',
%% `docker load' and `skopeo' read. A `Path' ending in `.tar' gets a plain tar; any other
%% (`.tar.gz', `.tgz', ...) one gzip file in which the layer blobs, compressed already, are
%% stored as they are (deflate stored blocks) and only the tar headers and JSON files are
%% deflated, so saving costs no compression time. Every blob's digest is checked on the way.
%% A save whose output is already there, written by a save of exactly the same content and
%% untouched since (same inode, size, mtime and ctime), leaves it as it is.
%%
%% Options: `tag' (e.g. `<<"myapp:1.0">>', written as the ref.name annotation and, for docker
%% format, as `RepoTags'; `[registry/]repository[:tag]' with a lower-case repository, else
%% `{error, {invalid_tag, Tag, Rule}}'), `format' (`docker', the default, adds `manifest.json'; `oci' writes
%% the OCI layout only).
-spec save_tarball(ocibuild:image() | [ocibuild:image()], file:filename_all(), save_options()) ->
    ok | {error, term()}.
save_tarball(ImageOrImages, Path, Opts) when is_map(Opts) ->
    case save_options(Opts) of
        {ok, NifOpts} ->
            with_target(ImageOrImages, Path, path, fun(Images, PathBin, Sink) ->
                ocibuild_nif:image_save(Images, PathBin, maps:merge(Sink, save_records(NifOpts)))
            end);
        {error, _} = Error ->
            Error
    end;
save_tarball(_ImageOrImages, _Path, Opts) ->
    {error, {invalid_option, options, Opts}}.

%% @equiv load_tarball_for_push(Path, #{})
-spec load_tarball_for_push(file:filename_all()) -> {ok, loaded()} | {error, term()}.
load_tarball_for_push(Path) ->
    load_tarball_for_push(Path, #{}).

%% @doc Read a tarball written by `save_tarball/3' (single or multi-platform) for a push.
%%
%% Every blob is extracted into a fresh temporary directory and verified against its digest;
%% layers carry the extracted `path' and a `get_data' fun. The directory lives until `cleanup'
%% is called, else while the calling process lives and then while any process still holds
%% the result; a caller killed mid-load leaves nothing behind. `tag' is the tag saved in the tarball, `<<"latest">>' when it has
%% none, as in ocibuild 0.10. `memory_threshold' (a positive integer) is accepted for
%% compatibility with 0.10; blobs are always extracted to disk, and the JSON read into memory
%% is bounded whatever the tarball claims, so memory use stays flat.
%%
%% Errors, as in 0.10: `{tarball_not_found, Path}', `{not_a_file, Path, Type}',
%% `{path_traversal, Name}', `{absolute_path, Name}', `{symlink_not_allowed, Name}',
%% `{invalid_oci_layout, no_manifests}', `{unsupported_index_version, V}',
%% `{invalid_index_schema, missing_required_fields}'; and ours: `{digest_mismatch, _}',
%% `{invalid_layout, Why}', `{invalid_json, What, Why}', `{blob_missing, Digest}',
%% `{load_limit_exceeded, #{what, limit}}' for a tarball past a fixed bound (4 MiB per JSON
%% document, 1024 manifests, 8192 layers, 65536 tar members).
-spec load_tarball_for_push(file:filename_all(), #{memory_threshold => pos_integer()}) ->
    {ok, loaded()} | {error, term()}.
load_tarball_for_push(Path, Opts) when is_map(Opts) ->
    Checks = [{memory_threshold, fun(T) -> is_integer(T) andalso T > 0 end}],
    case {ocibuild_input:check_options(Checks, Opts), ocibuild_input:host_path(Path)} of
        {{error, _} = Error, _} -> Error;
        {ok, error} -> {error, {invalid_option, path, Path}};
        {ok, {ok, PathBin}} -> load(PathBin)
    end;
load_tarball_for_push(_Path, Opts) ->
    {error, {invalid_option, options, Opts}}.

load(PathBin) ->
    case ocibuild_input:host_path(temp_parent()) of
        {ok, Parent} ->
            case ocibuild_nif:tarball_load_temp(PathBin, Parent) of
                {ok, #{images := Images, tag := Tag, handle := Handle} = Loaded} ->
                    Cleanup = fun() -> cleanup(Handle) end,
                    {ok, (maps:without([handle, extract_dir], Loaded))#{
                        images := [with_layer_data(I, Handle) || I <- Images],
                        tag := saved_tag(Tag),
                        cleanup => Cleanup
                    }};
                {error, _} = Error ->
                    Error
            end;
        error ->
            {error, {invalid_option, tmpdir, temp_parent()}}
    end.

saved_tag(undefined) -> <<"latest">>;
saved_tag(Tag) -> Tag.

%% @doc The `name:tag' a loaded tarball can be pushed under without being told one, or
%% `undefined'. An OCI layout's ref name may be a bare tag: an untagged save is named `latest'
%% (as in 0.10), and other tools write bare tags too. A bare tag names no repository, so it is
%% not a push target: pushing `latest' as `latest:latest' would land in the wrong repository.
-spec push_reference(loaded() | map()) -> binary() | undefined.
push_reference(#{tag := Tag}) when is_binary(Tag) ->
    case binary:match(Tag, [<<":">>, <<"/">>, <<"@">>]) of
        nomatch -> undefined;
        _ -> Tag
    end;
push_reference(_Loaded) ->
    undefined.

%% The extraction directory is owned by `Handle' (a NIF resource, held while the caller lives):
%% every fun handed out keeps it too, so another process given the layers still has their
%% files after the caller exits.
with_layer_data(#{layers := Layers} = Image, Handle) ->
    Image#{layers := [loaded_layer(L, Handle) || L <- Layers]}.

loaded_layer(#{blob := Path} = Layer, Handle) ->
    (maps:remove(blob, Layer))#{path => Path, get_data => fun() -> read_layer(Path, Handle) end}.

read_layer(Path, _KeepsTheDirectory) ->
    file:read_file(Path).

%% Idempotent, and `ok' even if the directory could not be removed: 0.10's contract.
cleanup(Handle) ->
    _ = ocibuild_nif:tarball_cleanup(Handle),
    ok.

temp_parent() ->
    case os:getenv("TMPDIR") of
        Env when Env =:= false; Env =:= "" -> "/tmp";
        Env -> filename:absname(Env)
    end.

save_options(Opts) ->
    Checks = [
        {tag, fun(T) -> ocibuild_input:text(T) =/= error end},
        {format, fun(F) -> F =:= docker orelse F =:= oci end}
    ],
    case ocibuild_input:check_options(Checks, Opts) of
        ok ->
            case save_tag(Opts) of
                {ok, Tag} -> {ok, #{tag => Tag, format => maps:get(format, Opts, docker)}};
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% A save skips writing an output that is still exactly the file the same plan wrote last
%% time (its identity recorded in the blob store), unless `OCIBUILD_LAYER_CACHE' turns the
%% cache off. A value the layer builder would refuse only means no record: the save writes.
save_records(NifOpts) ->
    case ocibuild_blob_store:layer_cache() of
        {ok, Mode} -> NifOpts#{layer_cache => Mode};
        {error, _} -> NifOpts
    end.

%% The one judge of a save's tag (`ocibuild:save/3' and both tasks come through here): an
%% image reference `[registry/]repository[:tag]' by the core's parser, so no tarball is ever
%% named `bad tag!!'.
save_tag(#{tag := Tag}) ->
    case ocibuild_input:parse_tag(Tag) of
        {ok, _} -> ocibuild_input:text(Tag);
        {error, _} = Error -> Error
    end;
save_tag(_) ->
    {ok, undefined}.

%% Shared by export and save: one image or a non-empty list of images, a host path for the
%% output, the `created' time and what the sink needs to fetch base layers.
with_target(ImageOrImages, Target, TargetName, Write) ->
    case {images(ImageOrImages), ocibuild_input:host_path(Target)} of
        {error, _} ->
            {error, {invalid_option, images, ImageOrImages}};
        {_, error} ->
            {error, {invalid_option, TargetName, Target}};
        {{ok, Images}, {ok, TargetBin}} ->
            %% Base layers pulled by `ocibuild:from' are fetched (or found in the cache) by the
            %% sink itself, when their bytes are first needed.
            case ocibuild_reproducible:created() of
                {ok, Created} ->
                    Sink = (ocibuild_registry:sink_options())#{created => Created},
                    Write(ocibuild_registry:nif_images(Images), TargetBin, Sink);
                {error, _} = Error ->
                    Error
            end
    end.

images(Image) when is_map(Image) ->
    {ok, [Image]};
images([_ | _] = Images) ->
    case ocibuild_input:is_proper_list(Images) andalso lists:all(fun erlang:is_map/1, Images) of
        true -> {ok, Images};
        false -> error
    end;
images(_) ->
    error.
