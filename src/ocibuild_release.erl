%% @doc Releases as images, the ocibuild 0.10 API: `run/3' behind `mix ocibuild',
%% `rebar3 ocibuild' and `Ocibuild.MixRelease.build_image/1' (shared by every build tool
%% through the `ocibuild_adapter' behaviour), and the 0.10 building blocks. This module is
%% the facade: it checks each call's arguments (`ocibuild_release_args') and hands the work to
%% `ocibuild_release_pipeline' (find, layer, configure), `ocibuild_release_publish' (save,
%% push, push a saved tarball) and `ocibuild_release_messages' (the lines the user reads).
%%
%% `run/3' finds the release, splits it into layers (ERTS and OTP libraries, dependencies
%% from the lock file, the application itself), puts them on the base image, and saves the
%% image as a tarball or pushes it. Release files are never read into the VM: the native core
%% streams each one from disk into its layer.
%%
%% The image: files under `workdir' (default `/app'), entrypoint
%% `[<workdir>/bin/<release>, Cmd]' with Cmd the release script's foreground command
%% (`foreground' for relx, `start' for Mix) unless `cmd' says otherwise, working directory
%% `workdir', user `uid' (default 65534, nobody). Symlinks are handled as
%% `ocibuild_release_files' describes.
%%
%% Errors are `{error, Reason}' with tagged reasons; `format_error/1' turns any of them into
%% the one line the tasks print.
-module(ocibuild_release).

-export([
    run/3,
    resolve_config/2,
    format_error/1,
    build_image/2,
    build_image/3,
    build_release_layers/5,
    collect_release_files/1,
    collect_release_files/2,
    partition_files_by_layer/5,
    classify_file_layer/5,
    check_for_native_code/1,
    has_bundled_erts/1,
    validate_multiplatform/2,
    get_tags/4,
    parse_tag/1,
    expand_semicolon_tags/1,
    get_push_auth/0,
    get_pull_auth/0,
    push_image/5,
    push_tarball/4,
    validate_annotations/1,
    build_auto_annotations/3,
    save_image/3,
    is_tarball_path/1,
    parse_kv_arg/1,
    normalize_kv_map/1,
    to_binary/1,
    to_container_path/1,
    to_container_path/2,
    make_relative_path/2,
    get_file_mode/1,
    format_bytes/1,
    format_progress/2,
    is_tty/0,
    is_nil_or_undefined/1,
    make_progress_callback/0,
    start_progress_coordinator/0,
    stop_progress_coordinator/0,
    clear_progress_line/0,
    stop_httpc/0
]).

-export_type([config/0]).

-type config() :: ocibuild_release_config:config().
-type file_entry() :: {binary(), binary() | {file, binary()}, non_neg_integer()}.
-import(ocibuild_release_args, [with_args/2, option_args/2, host_path/1]).

-type dep() :: #{name := binary(), version := binary(), source := binary()}.

%%% The pipeline

%% @doc Build the image of the release `Adapter' finds and save or push it, as
%% `Adapter:get_config(State)' says: a resolved config or an ocibuild 0.10 adapter's map
%% (see `ocibuild_release_config:from_adapter/1'). `Opts' may override `cmd' and is passed on
%% to `Adapter:find_release/2'. Returns `{ok, State}' or `{error, Reason}', never raises for
%% a bad configuration.
-spec run(module(), term(), map()) -> {ok, term()} | {error, term()}.
run(Adapter, State, Opts) ->
    with_args([{adapter, adapter, Adapter}, {options, map, Opts}],
              fun() -> ocibuild_release_pipeline:run(Adapter, State, Opts) end).

%%% Annotations

%% @doc Check the user's annotations: NUL bytes and `..' path components are refused, as are
%% the computed keys (`org.opencontainers.image.source', `.revision', `.base.name',
%% `.base.digest'); `org.opencontainers.image.created' given as a unix timestamp becomes
%% ISO 8601. See `ocibuild_annotations:validate/1'.
-spec validate_annotations(#{binary() => binary()}) -> {ok, #{binary() => binary()}} | {error, term()}.
validate_annotations(Annotations) ->
    with_args([{annotations, map, Annotations}], fun() -> ocibuild_annotations:validate(Annotations) end).

%% @doc The automatic annotations: source and revision (CI variables, else git; unless
%% `vcs_annotations' is false), `version', `created' (ISO 8601, `SOURCE_DATE_EPOCH' when
%% set) and the base image's name and digest. See `ocibuild_annotations:auto/3'.
-spec build_auto_annotations(ocibuild:image(), file:filename(), map()) -> map() | {error, term()}.
build_auto_annotations(Image, ReleasePath, Config) ->
    with_args([{image, image, Image}, {release_path, path, ReleasePath}, {config, map, Config}],
              fun() -> ocibuild_annotations:auto(Image, ReleasePath, Config) end).

%%% Configuration

%% @doc The command line and the project file as one config; see `ocibuild_release_config'.
-spec resolve_config(map(), map() | list()) -> {ok, config()} | {error, term()}.
resolve_config(Cli, Project) ->
    ocibuild_release_config:resolve(Cli, Project).

%%% Building blocks (the ocibuild 0.10 API)

%% @equiv build_image(BaseImage, Files, #{})
-spec build_image(binary(), [file_entry()]) -> {ok, ocibuild:image()} | {error, term()}.
build_image(BaseImage, Files) ->
    build_image(BaseImage, Files, #{}).

%% @doc An image of `BaseImage' (`<<"scratch">>', a registry reference or `tar://PATH') plus
%% the release's layers and, last, its SBOM layer (as 0.10). `Files' go into one layer, or with
%% `dependencies' (the lock file's) and `release_path' into ERTS, dependencies and app layers as
%% `build_release_layers/5' splits them. Options: `release_name' (sets the entrypoint
%% `<workdir>/bin/<release_name> <cmd>' and names the SBOM's app), `app_name', `app_version',
%% `workdir' (`/app'), `env', `expose', `labels', `annotations', `description', `cmd'
%% (`foreground'), `uid' (65534; `nil' and `undefined' mean the default), `auth' (for the
%% base), `progress', `compression'. A bad option is `{error, Reason}', never an exception.
-spec build_image(binary(), [file_entry()], map()) -> {ok, ocibuild:image()} | {error, term()}.
build_image(BaseImage, Files, Opts) ->
    with_args(
        [{base_image, text, BaseImage}, {files, files, Files}, {options, map, Opts}] ++
            option_args([{release_name, scalar}, {app_name, scalar}, {app_version, scalar},
                         {release_path, optional_path}, {dependencies, sbom_deps}], Opts),
        fun() -> ocibuild_release_pipeline:build_image(BaseImage, Files, Opts) end
    ).

%% @doc Add the release's layers to `Image': with `Deps' (from the lock file) an ERTS layer
%% (when `ReleasePath' bundles ERTS), a dependencies layer and an application layer; with no
%% dependency information, one layer. Options: `app_name' (or `release_name'), `workdir'
%% (`/app'), `compression'. Like the builders of `ocibuild', returns `{error, Reason}' if a
%% layer cannot be built or an argument is bad, and passes an `{error, _}' image on.
-spec build_release_layers(ocibuild:built(), [file_entry()], file:filename_all() | undefined,
                           [dep()] | undefined, map()) -> ocibuild:built().
build_release_layers({error, _} = Error, _Files, _ReleasePath, _Deps, _Opts) ->
    Error;
build_release_layers(Image, Files, ReleasePath, Deps, Opts) ->
    with_args(
        [{image, image, Image}, {files, files, Files}, {release_path, optional_path, ReleasePath},
         {dependencies, deps, Deps}, {options, map, Opts}] ++
            option_args([{app_name, scalar}, {release_name, scalar}, {workdir, text}], Opts),
        fun() -> ocibuild_release_pipeline:add_release_layers(Image, Files, ReleasePath, Deps, Opts) end
    ).

%% @equiv collect_release_files(ReleasePath, #{})
-spec collect_release_files(file:filename_all()) -> {ok, [file_entry()]} | {error, term()}.
collect_release_files(ReleasePath) ->
    collect_release_files(ReleasePath, #{}).

%% @doc Every file of the release as `{ContainerPath, {file, HostPath}, Mode}', under
%% `workdir' (default `/app'). Skipped links and special files are printed as warnings.
-spec collect_release_files(file:filename_all(), map()) -> {ok, [file_entry()]} | {error, term()}.
collect_release_files(ReleasePath, Opts) ->
    with_args([{release_path, path, ReleasePath}, {options, map, Opts}],
              fun() -> collect_checked(ReleasePath, Opts) end).

collect_checked(ReleasePath, Opts) ->
    case ocibuild_release_config:resolve(#{}, maps:with([workdir], Opts)) of
        {ok, #{workdir := Workdir}} ->
            case ocibuild_release_files:collect(ReleasePath, Workdir) of
                {ok, Files, Warnings} ->
                    [io:format(standard_error, "~ts~n", [ocibuild_release_messages:format_warning(W)])
                     || W <- Warnings],
                    {ok, Files};
                {error, _} = Error ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% @doc Split files into `{ErtsFiles, DepFiles, AppFiles}'; see `classify_file_layer/5'.
-spec partition_files_by_layer([file_entry()], [dep()], binary(), binary(), boolean()) ->
    {[file_entry()], [file_entry()], [file_entry()]} | {error, {invalid_option, atom(), term()}}.
partition_files_by_layer(Files, Deps, AppName, Workdir, HasErts) ->
    ocibuild_release_pipeline:partition(Files, Deps, AppName, Workdir, HasErts).

%% @doc `lib/<app>-*' -> app; `lib/<dep>-*' (in the lock file) -> dep; other `lib/*' (OTP) ->
%% erts when ERTS is bundled, else dep; `erts-*' -> erts; everything else (bin/, releases/) ->
%% app.
-spec classify_file_layer(binary(), sets:set(binary()), binary(), binary(), boolean()) ->
    erts | dep | app | {error, {invalid_option, atom(), term()}}.
classify_file_layer(Path, DepNames, AppName, Workdir, HasErts) ->
    with_args(
        [{path, text, Path}, {dependencies, set, DepNames}, {app_name, text, AppName},
         {workdir, text, Workdir}, {has_erts, boolean, HasErts}],
        fun() -> ocibuild_release_files:classify(bin(Path), DepNames, bin(AppName), bin(Workdir), HasErts) end
    ).

%% @doc Native shared libraries (NIFs, ports) under `lib/*/priv': `file' is the file name
%% (`<<"crypto.so">>'), `path' the path in the release (`<<"lib/crypto-5.1/priv/lib/crypto.so">>').
-spec check_for_native_code(file:filename_all()) ->
    {ok, []} | {warning, [#{app := binary(), file := binary(), extension := binary(),
                           path := binary()}]} | {error, {invalid_option, release_path, term()}}.
check_for_native_code(ReleasePath) ->
    with_args([{release_path, path, ReleasePath}],
              fun() -> ocibuild_release_files:native_code(host_path(ReleasePath)) end).

%% @doc True when the release holds its own ERTS (`erts-*' at its root); false for anything
%% that is not a path.
-spec has_bundled_erts(file:filename_all()) -> boolean().
has_bundled_erts(ReleasePath) ->
    ocibuild_release_platforms:has_bundled_erts(ReleasePath).

%% @doc More than one platform needs ERTS from the base image: a bundled ERTS runs only on
%% the machine type it was built for.
-spec validate_multiplatform(file:filename_all(), [ocibuild:platform()]) ->
    ok | {error, {bundled_erts, binary()} | {invalid_option, atom(), term()}}.
validate_multiplatform(ReleasePath, Platforms) ->
    with_args([{release_path, path, ReleasePath}, {platforms, list, Platforms}],
              fun() -> ocibuild_release_platforms:validate_multiplatform(ReleasePath, Platforms) end).

%% @doc Command-line tags, else the config's, else `<DefaultRepo>:<DefaultVersion>';
%% `;'-separated lists expand.
-spec get_tags([binary()], [binary()], binary(), binary()) ->
    [binary()] | {error, {invalid_option, atom(), term()}}.
get_tags(CliTags, ConfigTags, DefaultRepo, DefaultVersion) ->
    with_args(
        [{tags, text_list, CliTags}, {tags, text_list, ConfigTags}, {repository, scalar, DefaultRepo},
         {version, scalar, DefaultVersion}],
        fun() -> tags_checked(CliTags, ConfigTags, DefaultRepo, DefaultVersion) end
    ).

tags_checked(CliTags, ConfigTags, DefaultRepo, DefaultVersion) ->
    Expand = fun(Tags) -> lists:append([expand_semicolon_tags(T) || T <- Tags]) end,
    case {Expand(CliTags), Expand(ConfigTags)} of
        {[_ | _] = Tags, _} -> Tags;
        {[], [_ | _] = Tags} -> Tags;
        {[], []} -> [<<(bin(DefaultRepo))/binary, ":", (bin(DefaultVersion))/binary>>]
    end.

%% @doc `<<"ghcr.io/org/app:v1">>' -> `{<<"ghcr.io/org/app">>, <<"v1">>}'; no tag means
%% `latest'. A `:' before the last `/' is a registry port, not a tag.
-spec parse_tag(binary() | string()) -> {binary(), binary()} | {error, {invalid_option, tag, term()}}.
parse_tag(Tag0) ->
    with_args([{tag, text, Tag0}], fun() -> split_tag(bin(Tag0)) end).

%% 0.10 split any text, a valid reference or not; the tasks' tags are split, checked and
%% grouped by the core instead (`ocibuild_nif:reference_tags/1').
split_tag(Tag) ->
    {Name, _Digest} =
        case binary:split(Tag, <<"@">>) of
            [N, D] -> {N, D};
            [N] -> {N, undefined}
        end,
    LastSlash =
        case binary:matches(Name, <<"/">>) of
            [] -> -1;
            Matches -> element(1, lists:last(Matches))
        end,
    case binary:matches(Name, <<":">>) of
        [] ->
            {Name, <<"latest">>};
        Colons ->
            {Pos, _} = lists:last(Colons),
            case Pos > LastSlash of
                true -> {binary:part(Name, 0, Pos), binary:part(Name, Pos + 1, byte_size(Name) - Pos - 1)};
                false -> {Name, <<"latest">>}
            end
    end.

%% @doc `<<"a:1;a:latest">>' -> `[<<"a:1">>, <<"a:latest">>]'.
-spec expand_semicolon_tags(binary()) -> [binary()] | {error, {invalid_option, tags, term()}}.
expand_semicolon_tags(Tags) ->
    with_args([{tags, text, Tags}], fun() -> ocibuild_release_config:expand_semicolon_tags(Tags) end).

%% @doc Push credentials from `OCIBUILD_PUSH_TOKEN' (first) or `OCIBUILD_PUSH_USERNAME' and
%% `OCIBUILD_PUSH_PASSWORD'. Empty values count as unset; with none set, `#{}': the registry
%% is looked up in the docker/podman credential files, else anonymous.
-spec get_push_auth() -> map().
get_push_auth() ->
    ocibuild_release_publish:push_auth().

%% @doc Pull credentials, as `get_push_auth/0' from `OCIBUILD_PULL_*'.
-spec get_pull_auth() -> map().
get_pull_auth() ->
    ocibuild_release_publish:pull_auth().

%% @doc Push an image (or a list of platform images, as an index) and return the digest.
%% Options: `tags' (more tags), `chunk_size', `progress' (default: the terminal display).
-spec push_image(ocibuild:image() | [ocibuild:image()], binary(), binary(), map(), map()) ->
    {ok, binary()} | {error, term()}.
push_image({error, _} = Error, _Registry, _RepoTag, _Auth, _Opts) ->
    Error;
push_image(Image, Registry, RepoTag, Auth, Opts) ->
    with_args([{images, images, Image}, {options, map, Opts}],
              fun() -> ocibuild_release_publish:push_image(Image, Registry, RepoTag, Auth, Opts) end).

%% @doc Push a tarball saved earlier (by `mix ocibuild', `rebar3 ocibuild' or
%% `ocibuild:save/3') without rebuilding. Options: `registry' (required, `REGISTRY[/NS]'),
%% `tags' (default: the tag saved in the tarball), `chunk_size'.
-spec push_tarball(module(), term(), file:filename_all(), map()) -> {ok, term()} | {error, term()}.
push_tarball(Adapter, State, TarballPath, Opts) ->
    with_args(
        [{adapter, adapter, Adapter}, {tarball, path, TarballPath}, {options, map, Opts}] ++
            option_args([{registry, text}, {tags, text_list}, {chunk_size, pos_integer}], Opts),
        fun() -> ocibuild_release_publish:push_tarball(Adapter, State, TarballPath, Opts) end
    ).

%% @doc Save the image (or platform images) as a tarball for `podman load'. Options: `tag'.
-spec save_image(ocibuild:image() | [ocibuild:image()], file:filename_all(), map()) ->
    ok | {error, term()}.
save_image(Image, OutputPath, Opts) ->
    with_args([{options, map, Opts}],
              fun() -> ocibuild:save(Image, OutputPath, maps:with([tag, format], Opts)) end).

%% @doc True for `.tar.gz', `.tgz', `.tar.zst', `.tar.zstd' and `.tar' paths; false for
%% anything that is not text.
-spec is_tarball_path(string() | binary()) -> boolean().
is_tarball_path(Path) ->
    case ocibuild_input:text(Path) of
        {ok, Bin} ->
            Lower = string:lowercase(Bin),
            lists:any(
                fun(Ext) -> string:find(Lower, Ext, trailing) =:= Ext end,
                [<<".tar.gz">>, <<".tgz">>, <<".tar.zst">>, <<".tar.zstd">>, <<".tar">>]
            );
        error ->
            false
    end.

%% @doc `"key=value"' -> `{ok, {<<"key">>, <<"value">>}}'.
-spec parse_kv_arg(string()) -> {ok, {binary(), binary()}} | {error, term()}.
parse_kv_arg(Arg) ->
    ocibuild_release_config:parse_kv_arg(Arg).

%% @doc Binary keys and values; `#{}' for anything but a map.
-spec normalize_kv_map(term()) -> #{binary() => binary()}.
normalize_kv_map(Map) ->
    ocibuild_release_config:normalize_kv_map(Map).

%% @doc Atoms, strings, charlists, iolists and numbers as a binary; anything else is
%% `{error, {invalid_option, value, Value}}'.
-spec to_binary(term()) -> binary() | {error, {invalid_option, value, term()}}.
to_binary(Value) ->
    with_args([{value, scalar, Value}], fun() -> bin(Value) end).

bin(Value) ->
    ocibuild_release_config:to_binary(Value).

%% @doc The path in the image of a release-relative host path, under the default workdir:
%% `"bin/myapp"' -> `<<"/app/bin/myapp">>'.
-spec to_container_path(file:filename_all()) -> binary().
to_container_path(RelPath) ->
    to_container_path(RelPath, <<"/app">>).

%% @doc As `to_container_path/1', under `Workdir'.
-spec to_container_path(file:filename_all(), file:filename_all()) -> binary() | {error, term()}.
to_container_path(RelPath, Workdir) ->
    with_args([{path, path, RelPath}, {workdir, path, Workdir}],
              fun() -> ocibuild_release_files:container_path(host_path(RelPath), host_path(Workdir)) end).

%% @doc `FullPath' relative to `BasePath', a string for a string and a binary for a binary.
-spec make_relative_path(file:filename_all(), file:filename_all()) ->
    file:filename_all() | {error, term()}.
make_relative_path(BasePath, FullPath) ->
    with_args([{path, path, BasePath}, {path, path, FullPath}],
              fun() -> ocibuild_release_files:relative_path(host_path(BasePath), as_given(FullPath)) end).

%% A string stays a (flat) string and a binary a binary: 0.10 returned the type it was given.
as_given(Path) when is_binary(Path) -> Path;
as_given(Path) -> unicode:characters_to_list(host_path(Path), file:native_name_encoding()).

%% @doc A file's permission bits (8#644 when it cannot be read).
-spec get_file_mode(file:filename_all()) -> non_neg_integer() | {error, term()}.
get_file_mode(Path) ->
    with_args([{path, path, Path}], fun() -> ocibuild_release_files:file_mode(host_path(Path)) end).

%%% Terminal output

%% @doc `"1.50 MB"'.
-spec format_bytes(non_neg_integer()) -> iolist() | {error, term()}.
format_bytes(N) ->
    with_args([{bytes, non_neg_integer, N}], fun() -> ocibuild_progress:format_bytes(N) end).

%% @doc A progress bar with percentage and sizes.
-spec format_progress(non_neg_integer(), non_neg_integer() | unknown) -> iolist() | {error, term()}.
format_progress(Done, Total) ->
    with_args([{bytes, non_neg_integer, Done}, {total, total, Total}],
              fun() -> ocibuild_progress:format_progress(Done, Total) end).

%% @doc True when standard output is a terminal.
-spec is_tty() -> boolean().
is_tty() -> ocibuild_progress:is_tty().

%% @doc True for `nil' (Elixir) and `undefined' (Erlang).
-spec is_nil_or_undefined(term()) -> boolean().
is_nil_or_undefined(Value) -> ocibuild_release_args:is_nil_or_undefined(Value).

%% @doc A `progress' fun: live lines per blob on a terminal, one line per finished blob
%% otherwise.
-spec make_progress_callback() -> ocibuild_registry:progress_fun().
make_progress_callback() -> ocibuild_progress:callback().

%% @doc Start the terminal display (`undefined' when not on a terminal).
-spec start_progress_coordinator() -> pid() | undefined.
start_progress_coordinator() -> ocibuild_progress:start().

%% @doc Draw the final progress state and stop the display.
-spec stop_progress_coordinator() -> ok.
stop_progress_coordinator() -> ocibuild_progress:stop().

%% @doc Erase the live progress line.
-spec clear_progress_line() -> ok.
clear_progress_line() -> ocibuild_progress:clear_line().

%% @doc Kept for ocibuild 0.10 callers, who call it so the VM can exit after a push. Here
%% the network work runs in the native library, whose connections never keep the VM alive,
%% so there is nothing to stop.
-spec stop_httpc() -> ok.
stop_httpc() -> ok.

%%% Messages

%% @doc One line, for the user, for any reason `run/3' and the functions here return; see
%% `ocibuild_release_messages'.
-spec format_error(term()) -> iolist().
format_error(Reason) ->
    ocibuild_release_messages:format_error(Reason).
