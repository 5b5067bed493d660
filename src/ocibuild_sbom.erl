%% @doc The SPDX 2.2 SBOM of a release image: what goes into it, read from the release and
%% the lock file, and the layer that carries it at `/sbom.spdx.json'.
%%
%% This module gathers the input: the app and its version, the lock file's dependencies, the
%% ERTS version the release records, the other applications it bundles (OTP's, Elixir's), the
%% base image and the platform. The native core (`supply::sbom') builds the document from it
%% once and keeps it: `build/1' returns a handle (a native resource) from which the layer,
%% the `--sbom' file and the referrer a push attaches (`sboms' of `ocibuild_registry:push/5')
%% are all made, so the document is not passed back and forth.
%%
%% ```
%% {ok, Sbom} = ocibuild_sbom:build(ocibuild_sbom:input(Facts)),
%% {ok, Layer} = ocibuild_sbom:layer(Sbom, auto),
%% ok = ocibuild_sbom:write(Sbom, "sbom.spdx.json").
%% '''
-module(ocibuild_sbom).

-export([input/1, build/1, layer/2, write/2, document/1, path/0, media_type/0]).

-export_type([sbom/0]).

-define(PATH, <<"/sbom.spdx.json">>).

%% A built SBOM: the document, held by the native library.
-opaque sbom() :: reference().

%% @doc Where every image carries its SBOM.
-spec path() -> binary().
path() -> ?PATH.

%% @doc The SBOM's media type (and the artifact type of its referrer).
-spec media_type() -> binary().
media_type() -> <<"application/spdx+json">>.

%% @doc The SBOM input for one image. `Opts': `name', `version' (binaries), `release_path'
%% (`undefined' when only files are known, as for `ocibuild_release:build_image/3'),
%% `dependencies' (the lock file's `#{name, version, source}' maps, or `undefined' without a
%% lock file), `image' (its `base' gives the base image entry; its `platform' the platform),
%% `created' (unix seconds), and `source' and `revision' (the image's
%% `org.opencontainers.image.source' and `.revision' annotations, when it has them: the app's
%% download location is then that repository at that commit, as in 0.10).
-spec input(map()) -> map().
input(#{name := Name, version := Version, release_path := Path, image := Image,
        created := Created} = Opts) ->
    Deps = case maps:get(dependencies, Opts, undefined) of
        L when is_list(L) -> L;
        _ -> []
    end,
    DepNames = [N || #{name := N} <- Deps],
    ErtsVsn = release_erts_version(Path),
    maps:merge(
        #{
            name => Name,
            version => Version,
            created => Created,
            tool => tool(),
            dependencies => [maps:with([name, version, source], D) || D <- Deps],
            %% The release's other applications: OTP's, Elixir's, an umbrella's siblings.
            otp_apps => [{A, V} || {A, V} <- release_apps(Path),
                                   not lists:member(A, [Name | DepNames])]
        },
        maps:from_list(
            [{erts_version, ErtsVsn} || ErtsVsn =/= undefined] ++
            [{otp_version, V} || V <- [otp_version(ErtsVsn)], V =/= undefined] ++
            [{base, B} || B <- [base(Image)], B =/= undefined] ++
            [{K, V} || K <- [source, revision], V <- [maps:get(K, Opts, undefined)], is_binary(V)] ++
            [{platform, ocibuild_local_base:platform_text(P)}
             || P <- [maps:get(platform, Image, undefined)], is_map(P)]
        )
    ).

%% @doc The SBOM for an input made by `input/1', built once by the native library.
-spec build(map()) -> {ok, sbom()} | {error, term()}.
build(Input) ->
    ocibuild_nif:sbom_build(Input).

%% @doc The SPDX JSON document for an input made by `input/1'.
-spec document(map()) -> {ok, binary()} | {error, term()}.
document(Input) ->
    case build(Input) of
        {ok, Sbom} -> ocibuild_nif:sbom_document(Sbom);
        {error, _} = Error -> Error
    end.

%% @doc The layer carrying the SBOM (from `build/1', or a document as a binary) at
%% `/sbom.spdx.json', readable by everyone, compressed as `Compression' (`gzip', `zstd' or
%% `auto').
-spec layer(sbom() | binary(), ocibuild_layer:compression()) -> {ok, map()} | {error, term()}.
layer(Document, Compression) when is_binary(Document) ->
    ocibuild_layer:create([{?PATH, Document, 8#644}],
                          #{layer_type => sbom, compression => Compression});
layer(Sbom, Compression) ->
    case ocibuild_layer:nif_options(#{compression => Compression}) of
        {ok, Opts} ->
            case ocibuild_nif:sbom_layer(Sbom, Opts) of
                {ok, Layer} -> {ok, Layer#{layer_type => sbom}};
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc Write the SBOM's document to `Path' (`--sbom PATH'), which must be missing or a
%% regular file; see `ocibuild_host_file:write/2' for the errors.
-spec write(sbom(), file:name_all()) -> ok | {error, term()}.
write(Sbom, Path) ->
    case ocibuild_nif:sbom_document(Sbom) of
        {ok, Document} -> ocibuild_host_file:write(Path, Document);
        {error, _} = Error -> Error
    end.

tool() ->
    case application:get_key(ocibuild, vsn) of
        {ok, Vsn} -> iolist_to_binary(["ocibuild-", Vsn]);
        undefined -> <<"ocibuild">>
    end.

%% The ERTS version the release was built for: `releases/start_erl.data' (`ERTS_VSN REL_VSN'),
%% else the bundled `erts-VSN' directory.
release_erts_version(undefined) ->
    undefined;
release_erts_version(Path) ->
    case ocibuild_release_files:start_erl_data(Path) of
        [Erts | _] -> Erts;
        [] -> bundled_erts_version(Path)
    end.

bundled_erts_version(Path) ->
    case filelib:wildcard("erts-*", to_list(Path)) of
        [Dir | _] -> list_to_binary(string:prefix(Dir, "erts-"));
        [] -> undefined
    end.

%% The OTP release (e.g. 25.3.2.8) is known only when the release runs the ERTS of the OTP
%% installation building it: a release does not record it.
otp_version(undefined) ->
    undefined;
otp_version(ErtsVsn) ->
    case list_to_binary(erlang:system_info(version)) of
        ErtsVsn ->
            File = filename:join([code:root_dir(), "releases", erlang:system_info(otp_release),
                                  "OTP_VERSION"]),
            case file:read_file(File) of
                {ok, V} -> string:trim(V);
                {error, _} -> list_to_binary(erlang:system_info(otp_release))
            end;
        _Other ->
            undefined
    end.

%% The `lib/NAME-VSN' directories of the release.
release_apps(undefined) ->
    [];
release_apps(Path) ->
    Dirs = filelib:wildcard("*-*", filename:join(to_list(Path), "lib")),
    lists:usort([split_app_dir(D) || D <- Dirs]).

split_app_dir(Dir) ->
    case string:split(Dir, "-", trailing) of
        [Name, Vsn] -> {list_to_binary(Name), list_to_binary(Vsn)};
        _ -> {list_to_binary(Dir), <<>>}
    end.

base(#{base := #{reference := Ref, manifest_digest := Digest}}) ->
    #{reference => Ref, digest => Digest};
base(_Image) ->
    undefined.

to_list(B) when is_binary(B) -> binary_to_list(B);
to_list(L) -> L.
