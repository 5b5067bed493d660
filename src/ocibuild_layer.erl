%% @doc OCI image layers: a list of files becomes a deterministic tar, compressed and hashed in
%% one streaming pass by the native core and stored in the blob store (see
%% `ocibuild_blob_store'). A layer is a small map pointing at its compressed bytes:
%%
%% ```
%% #{media_type => <<"application/vnd.oci.image.layer.v1.tar+zstd">>,
%%   digest     => <<"sha256:...">>,   % sha256 of the compressed bytes (manifest, transfer)
%%   diff_id    => <<"sha256:...">>,   % sha256 of the uncompressed tar (config rootfs)
%%   size       => 1234,               % compressed size in bytes
%%   blob       => <<"/abs/path/blobs/sha256/...">>,  % where the compressed bytes live
%%   layer_type => app}                % only when given in the options
%% '''
%%
%% Unlike ocibuild 0.10 there is no `data' key: read the bytes from `blob' if you need them.
%%
%% The tar is reproducible: parent directories are implied (mode 8#755), entries are sorted by
%% path, owners are 0, and every mtime is `SOURCE_DATE_EPOCH' if set, else 0.
%%
%% ```
%% {ok, Layer} = ocibuild_layer:create([{<<"/app/hello.txt">>, <<"hi\n">>, 8#644},
%%                                      {<<"/app/run">>, {file, "bin/run"}, 8#755}],
%%                                     #{compression => gzip}).
%% '''
-module(ocibuild_layer).

-export([create/1, create/2]).
%% For layers the native library builds from what it holds (`ocibuild_sbom:layer/2').
-export([nif_options/1]).

-export_type([layer/0, file_entry/0, content/0, compression/0, options/0]).

-type layer() :: #{
    media_type := binary(),
    digest := binary(),
    diff_id := binary(),
    size := non_neg_integer(),
    blob := binary(),
    layer_type => atom()
}.
%% A layer's compressed bytes are the file at `blob', named by its digest.

-type content() :: binary() | iolist() | {file, HostPath :: file:filename_all()}.
%% `{file, HostPath}' is streamed from disk while the tar is written.

-type file_entry() :: {Path :: binary() | string(), content(), Mode :: non_neg_integer()}.
%% Path is absolute inside the image (a leading `/' is optional); Mode is at most 8#7777.

-type compression() :: gzip | zstd | auto.
%% `auto' is zstd.

-type options() :: #{
    mtime => non_neg_integer(),
    layer_type => atom(),
    compression => compression(),
    progress => fun((ocibuild_layer_progress:info()) -> term()) | undefined
}.

%% @equiv create(Files, #{})
-spec create([file_entry()]) -> {ok, layer()} | {error, term()}.
create(Files) ->
    create(Files, #{}).

%% @doc Create a layer from `[{Path, Content, Mode}]'.
%%
%% Options: `mtime' (default `SOURCE_DATE_EPOCH', else 0), `layer_type' (an atom such as `app',
%% kept in the layer map and shown in the image history), `compression' (`gzip', `zstd' or
%% `auto'; default `auto'), `progress' (a fun called, in this process, with
%% `#{phase => build, layer => Type, bytes_read => N, total_bytes => T}' while the files are
%% read; see `ocibuild_layer_progress'). Unknown keys are ignored.
%%
%% A layer whose inputs are unchanged since it was last built is not built again: the same map
%% comes back from the layer cache (see the README, "Layer cache"; `OCIBUILD_LAYER_CACHE' is
%% `on', `content' or `off'). Each build also bounds the blob store now and then
%% (`ocibuild_blob_store:gc/1').
%%
%% A `{file, HostPath}' must be a regular file (symlinks are followed): a FIFO, socket or
%% device is refused before it is opened for reading, as it could block or never end. Paths
%% longer than Linux can hold (4095 bytes, 255 per component) are refused before any work.
%%
%% Errors: `{invalid_path, Path, empty | nul_byte | parent_component | path_too_long |
%% component_too_long}', `{duplicate_path, Path}', `{invalid_mode, Path, Mode}',
%% `{file_read, HostPath, Posix}', `{special_file, HostPath, fifo | socket | character_device |
%% block_device | unknown}', `{invalid_option, Name, Value}' (also `OCIBUILD_LAYER_CACHE'),
%% `{invalid_source_date_epoch, Value}', `{io_error, Context, Message}'.
-spec create([file_entry()], options()) -> {ok, layer()} | {error, term()}.
create(Files, Opts) when is_map(Opts) ->
    case nif_options(Opts) of
        {ok, NifOpts} ->
            case ocibuild_input:files(Files) of
                {ok, Entries} -> build(Entries, NifOpts, Opts);
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end;
create(_Files, Opts) ->
    {error, {invalid_option, options, Opts}}.

build(Entries, NifOpts, Opts) ->
    LayerType = maps:find(layer_type, Opts),
    Progress = maps:get(progress, Opts, undefined),
    case ocibuild_layer_progress:create(Entries, NifOpts, Progress, maps:get(layer_type, Opts, undefined)) of
        {ok, Layer} ->
            ok = ocibuild_blob_store:auto_gc(),
            {ok, with_layer_type(Layer, LayerType)};
        {error, _} = Error ->
            Error
    end.

with_layer_type(Layer, {ok, Type}) -> Layer#{layer_type => Type};
with_layer_type(Layer, error) -> Layer.

%% @private The options of `create/2' as the native library's layer builders take them,
%% checked and with the defaults filled in.
-spec nif_options(options()) -> {ok, map()} | {error, term()}.
nif_options(Opts) when not is_map(Opts) ->
    {error, {invalid_option, options, Opts}};
nif_options(Opts) ->
    case check_options(Opts) of
        ok ->
            case {mtime(Opts), ocibuild_blob_store:layer_cache()} of
                {{ok, Mtime}, {ok, Cache}} ->
                    {ok, #{
                        compression => maps:get(compression, Opts, auto),
                        mtime => Mtime,
                        store => ocibuild_blob_store:root(),
                        layer_cache => Cache
                    }};
                {{error, _} = Error, _} ->
                    Error;
                {_, {error, _} = Error} ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

check_options(Opts) ->
    Checks = [
        {compression, fun(C) -> lists:member(C, [gzip, zstd, auto]) end},
        {layer_type, fun erlang:is_atom/1},
        {progress, fun(P) -> P =:= undefined orelse is_function(P, 1) end},
        {mtime, fun(M) -> is_integer(M) andalso M >= 0 andalso M < 1 bsl 64 end}
    ],
    ocibuild_input:check_options(Checks, Opts).

mtime(#{mtime := Mtime}) -> {ok, Mtime};
mtime(_) -> ocibuild_reproducible:layer_mtime().
