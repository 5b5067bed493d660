%% @doc Releases as images: the pipeline behind `mix ocibuild', `rebar3 ocibuild' and
%% `Ocibuild.MixRelease.build_image/1', shared by every build tool through the
%% `ocibuild_adapter' behaviour.
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
              fun() -> run_checked(Adapter, State, Opts) end).

run_checked(Adapter, State, Opts) ->
    try
        Loaded = check(ocibuild_release_config:from_adapter(Adapter:get_config(State))),
        Config = maps:merge(Loaded, cmd_override(Opts)),
        case maps:get(tarball, Config, undefined) of
            undefined ->
                build_and_publish(Adapter, State, Config, Opts);
            Tarball ->
                PushOpts = #{
                    registry => maps:get(push, Config),
                    tags => maps:get(tags, Config, []),
                    chunk_size => maps:get(chunk_size, Config, 5 * 1024 * 1024),
                    sign => sign_key(Config)
                },
                push_tarball(Adapter, State, Tarball, PushOpts)
        end
    catch
        throw:{ocibuild_release, Reason} -> {error, Reason};
        error:Reason:Stack -> builder_error(Reason, Stack)
    after
        stop_progress_coordinator()
    end.

%% `Opts' `cmd' (`run/3''s override), as text; `nil' and `undefined' leave the config's.
cmd_override(#{cmd := Cmd}) when Cmd =/= undefined, Cmd =/= nil ->
    case ocibuild_input:text(Cmd) of
        {ok, Bin} when Bin =/= <<>> -> #{cmd => Bin};
        _ -> throw({ocibuild_release, {invalid_option, cmd, Cmd}})
    end;
cmd_override(_Opts) ->
    #{}.

%% The image builders (`ocibuild:env/2', `expose/2', `label/3', ...) raise their tagged
%% reasons on input they refuse, e.g. an environment variable named `A=B'; from `run/3' and
%% `build_image/3' those are the caller's errors, so they are returned. Anything else is a
%% bug and raises on.
-define(BUILDER_REASONS, [invalid_option, invalid_path, duplicate_path, invalid_mode, file_read,
                          invalid_platform, invalid_uid, ocibuild_release]).

builder_error(Reason, Stack) when is_tuple(Reason), tuple_size(Reason) >= 2 ->
    case lists:member(element(1, Reason), ?BUILDER_REASONS) of
        true when element(1, Reason) =:= ocibuild_release -> {error, element(2, Reason)};
        true -> {error, Reason};
        false -> erlang:raise(error, Reason, Stack)
    end;
builder_error(Reason, Stack) ->
    erlang:raise(error, Reason, Stack).

build_and_publish(Adapter, State, Config0, RunOpts) ->
    #{workdir := Workdir, platforms := Platforms} = Config0,
    %% The user's annotations and the signing key are checked before any work.
    Config = Config0#{annotations := check(validate_annotations(maps:get(annotations, Config0)))},
    SignKey = sign_key(Config),
    check_output_paths(Config),
    {Name, Path} = check(find_release(Adapter, State, Config, RunOpts)),
    Version = release_version(Adapter, State, Config, Path),
    Tags = release_tags(Config, Name, Version),
    multi_platform_check(Adapter, Path, Platforms),
    HasErts = has_bundled_erts(Path),
    {Files, Warnings} = check(ocibuild_release_files:collect(Path, Workdir)),
    [Adapter:error("~ts", [format_warning(W)]) || W <- Warnings],
    %% The base first: a wrong reference or missing credentials fail before any layer work.
    Bases = check(base_images(Adapter, Config)),
    Deps = dependencies(Adapter, State),
    Layers = release_layers(Adapter, Files, Deps, #{
        app_name => app_name(Config, Name),
        workdir => Workdir,
        has_erts => HasErts,
        compression => maps:get(compression, Config)
    }),
    Cmd = start_command(Config, Path, Name),
    Created = check(ocibuild_reproducible:created()),
    Configured = [configure(add_layers(B, Layers), Config, Name, Cmd) || B <- Bases],
    Auto = auto_annotations(hd(Configured), Path, Config, Version, Created),
    %% The SBOM names the repository the source annotation names, at the same revision.
    Context = #{name => Name, version => Version, release_path => Path,
                dependencies => Deps, created => Created,
                source => maps:get(<<"org.opencontainers.image.source">>, Auto, undefined),
                revision => maps:get(<<"org.opencontainers.image.revision">>, Auto, undefined)},
    {Images, Sboms} = lists:unzip([with_sbom(Adapter, add_auto_annotations(I, Auto), Context, Config)
                                   || I <- Configured]),
    write_sbom(Adapter, Config, Sboms),
    publish(Adapter, State, Config, Images, Tags, #{sboms => Sboms, sign => SignKey}).

%% The automatic annotations (source, revision, version, created). The base's name and
%% digest are not among them: the native core writes those for each platform image from the
%% base it was built on, with the digest the registry served.
auto_annotations(Image, Path, Config, Version, Created) ->
    Auto = build_auto_annotations(Image, Path, #{
        vcs_annotations => maps:get(vcs_annotations, Config, true),
        version => Version,
        created => Created
    }),
    maps:without([<<"org.opencontainers.image.base.name">>,
                  <<"org.opencontainers.image.base.digest">>], Auto).

%% Automatic < project file < command line: the last two are already merged in `Config'.
add_auto_annotations(#{annotations := Current} = Image, Auto) ->
    maps:fold(fun(K, V, Acc) -> ocibuild:annotation(Acc, K, V) end, Image,
              maps:without(maps:keys(Current), Auto)).

%% Every image carries its SBOM at /sbom.spdx.json, in a last layer of its own (so a new
%% SBOM never invalidates the release's layers).
with_sbom(Adapter, Image, Context, Config) ->
    Sbom = check(ocibuild_sbom:build(ocibuild_sbom:input(Context#{image => Image}))),
    Layer = check(ocibuild_sbom:layer(Sbom, maps:get(compression, Config))),
    #{digest := Digest, size := Size} = Layer,
    Adapter:info("  sbom layer ~ts (~ts)", [Digest, format_bytes(Size)]),
    {add_layers(Image, [Layer]), Sbom}.

%% `--sbom PATH': the SBOM of the (first) platform image, also as a file.
write_sbom(_Adapter, #{sbom := undefined}, _Sboms) ->
    ok;
write_sbom(Adapter, #{sbom := Path}, [Sbom | _]) ->
    case ocibuild_sbom:write(Sbom, Path) of
        ok -> Adapter:info("SBOM written to ~ts", [Path]);
        {error, Why} -> throw({ocibuild_release, {sbom_write, Path, Why}})
    end.

%% A FIFO or device given as `--sbom' or `-o' would block the write or swallow the image:
%% refused before any layer is built. (The default output path is checked by the save.)
check_output_paths(Config) ->
    check_writable(sbom_write, maps:get(sbom, Config, undefined)),
    check_writable(output_write, maps:get(output, Config, undefined)).

check_writable(Reason, Path) when is_binary(Path) ->
    case ocibuild_host_file:check_writable(Path) of
        ok -> ok;
        {error, Why} -> throw({ocibuild_release, {Reason, Path, Why}})
    end;
check_writable(_Reason, _NoPath) ->
    ok.

%% The signing key, loaded and checked up front; only a push signs (a saved tarball carries
%% no signature, so a key in the environment does not get in the way of local builds).
sign_key(Config) ->
    case {maps:get(sign_key, Config, undefined), maps:get(push, Config, undefined)} of
        {undefined, _} -> undefined;
        {_, undefined} -> undefined;
        {Path, _Registry} -> check(ocibuild_signing:load(Path))
    end.

check({ok, Value}) -> Value;
check({ok, A, B}) -> {A, B};
check({error, Reason}) -> throw({ocibuild_release, Reason}).

%% 0.10 handed `run/3''s options to `find_release/2'; they still are, with `release'.
find_release(Adapter, State, Config, RunOpts) ->
    Release = first_set([maps:get(release, Config, undefined), maps:get(release, RunOpts, undefined)]),
    case Adapter:find_release(State, RunOpts#{release => Release}) of
        {ok, Name, Path} ->
            {ok, bin(Name), Path};
        {error, _} = Error ->
            Error;
        Other ->
            {error, {bad_adapter_reply, Adapter, find_release, Other}}
    end.

first_set(Values) ->
    case [V || V <- Values, not is_nil_or_undefined(V)] of
        [First | _] -> First;
        [] -> undefined
    end.

%% The adapter's version, else the config's `app_version' (a 0.10 adapter's map), else the
%% one `releases/start_erl.data' records (`ERTS_VSN REL_VSN').
release_version(Adapter, State, Config, Path) ->
    FromAdapter = first_set([ocibuild_adapter:get_app_version(Adapter, State),
                             maps:get(app_version, Config, undefined)]),
    case is_nil_or_undefined(FromAdapter) of
        false ->
            bin(FromAdapter);
        true ->
            case ocibuild_release_files:start_erl_data(Path) of
                [_Erts, Vsn] -> Vsn;
                _ -> <<"latest">>
            end
    end.

release_tags(#{tags := [], tag_required := true}, _Name, _Version) ->
    throw({ocibuild_release, missing_tag});
release_tags(#{tags := Tags}, Name, Version) ->
    get_tags([], Tags, Name, Version).

multi_platform_check(Adapter, Path, Platforms) ->
    case validate_multiplatform(Path, Platforms) of
        ok when length(Platforms) > 1 ->
            warn_native_code(Adapter, Path, Platforms);
        ok ->
            foreign_platform_check(Path, Platforms);
        {error, _} = Error ->
            check(Error)
    end.

%% One platform that is not this machine's: a bundled ERTS (built here) could not run there.
foreign_platform_check(Path, [#{os := OS, architecture := Arch} = Wanted]) ->
    Host = ocibuild_local_base:host_platform(),
    case {OS, Arch} =:= {maps:get(os, Host), maps:get(architecture, Host)} orelse
         not has_bundled_erts(Path) of
        true ->
            ok;
        false ->
            Text = fun ocibuild_local_base:platform_text/1,
            throw({ocibuild_release, {bundled_erts, iolist_to_binary([
                "the release bundles ERTS built for ", Text(Host), ", which cannot run on ",
                Text(Wanted), "; build the release with include_erts: false (Mix) or "
                "{include_erts, false} (relx) and use a base image that provides Erlang"
            ])}})
    end;
foreign_platform_check(_Path, _Platforms) ->
    ok.

warn_native_code(Adapter, Path, Platforms) ->
    case check_for_native_code(Path) of
        {ok, []} ->
            ok;
        {warning, Found} ->
            Names = lists:join(", ", [P || #{path := P} <- Found]),
            Adapter:error(
                "warning: native code built for this machine goes into every platform (~ts); "
                "it will not load on ~ts unless built for each",
                [Names, lists:join(", ", [ocibuild_local_base:platform_text(P) || P <- Platforms])]
            )
    end.

dependencies(Adapter, State) ->
    case erlang:function_exported(Adapter, get_dependencies, 1) of
        false ->
            undefined;
        true ->
            case Adapter:get_dependencies(State) of
                {ok, Deps} when is_list(Deps) -> Deps;
                undefined -> undefined;
                nil -> undefined;
                {error, Reason} -> throw({ocibuild_release, {lock_file, Reason}})
            end
    end.

app_name(#{app_name := AppName}, _Release) when is_binary(AppName) -> AppName;
app_name(_Config, Release) -> Release.

%% Layers are built once and shared by every platform image.
release_layers(Adapter, Files, Deps, Opts) ->
    Groups = layer_groups(Files, Deps, Opts),
    [
        begin
            Adapter:info("Building ~s layer (~b files)", [Type, length(Group)]),
            Layer = create_layer(Type, Group, Opts),
            #{digest := Digest, size := Size} = Layer,
            Adapter:info("  ~s layer ~ts (~ts)", [Type, Digest, format_bytes(Size)]),
            Layer
        end
     || {Type, Group} <- Groups
    ].

create_layer(Type, Files, Opts) ->
    check(ocibuild_layer:create(Files, #{
        layer_type => Type, compression => maps:get(compression, Opts, auto)
    })).

%% With a lock file: ERTS (and OTP libraries, when ERTS is bundled), dependencies, the
%% application; empty groups are left out. Without one: a single layer.
layer_groups([], _Deps, _Opts) ->
    throw({ocibuild_release, empty_release});
layer_groups(Files, undefined, _Opts) ->
    [{release, Files}];
layer_groups(Files, Deps, #{app_name := App, workdir := Workdir, has_erts := HasErts}) ->
    {Erts, DepFiles, AppFiles} = partition_files_by_layer(Files, Deps, App, Workdir, HasErts),
    [{Type, G} || {Type, G} <- [{erts, Erts}, {deps, DepFiles}, {app, AppFiles}], G =/= []].

add_layers(#{layers := Existing} = Image, Layers) ->
    Image#{layers := Existing ++ Layers}.

base_images(Adapter, #{base_image := <<"scratch">>, platforms := Platforms}) ->
    Adapter:info("Base image: scratch", []),
    {ok, Image} = ocibuild:scratch(),
    case Platforms of
        [] -> {ok, [Image]};
        _ -> {ok, [Image#{platform := P} || P <- Platforms]}
    end;
base_images(Adapter, #{base_image := Base, platforms := Platforms}) ->
    Adapter:info("Base image: ~ts", [Base]),
    Opts =
        case Platforms of
            [] -> #{};
            [One] -> #{platform => One};
            _ -> #{platforms => Platforms}
        end,
    case ocibuild:from(Base, get_pull_auth(), Opts#{progress => progress(Adapter)}) of
        {ok, Images} when is_list(Images) -> {ok, Images};
        {ok, Image} -> {ok, [Image]};
        {error, Reason} -> {error, {base_image, Base, Reason}}
    end.

%% The release script's command that runs the release in the foreground: relx scripts have
%% `foreground', Mix scripts `start' (which does not daemonize).
start_command(#{cmd := Cmd}, _Path, _Name) when is_binary(Cmd) ->
    Cmd;
start_command(_Config, Path, Name) ->
    %% Release scripts are a few KiB; a FIFO or device here must not block the build.
    case ocibuild_host_file:read(filename:join([Path, "bin", Name]), 1 bsl 20) of
        {ok, Script} ->
            case binary:match(Script, <<"foreground">>) of
                nomatch -> <<"start">>;
                _ -> <<"foreground">>
            end;
        {error, _} ->
            <<"foreground">>
    end.

%% The release's start command as entrypoint (with no default arguments), then the rest.
configure(Image, #{workdir := Workdir} = Config, Name, Cmd) ->
    Started = ocibuild:entrypoint(Image, [<<Workdir/binary, "/bin/", Name/binary>>, Cmd]),
    configure_runtime(ocibuild:cmd(Started, []), Config).

%% Working directory, user, environment, ports, labels and annotations.
configure_runtime(Image, Config) ->
    #{workdir := Workdir, uid := Uid, env := Env, expose := Expose, labels := Labels} = Config,
    I1 = ocibuild:env(ocibuild:user(ocibuild:workdir(Image, Workdir), integer_to_binary(Uid)), Env),
    I2 = lists:foldl(fun(P, Acc) -> ocibuild:expose(Acc, P) end, I1, Expose),
    I3 = maps:fold(fun(K, V, Acc) -> ocibuild:label(Acc, K, V) end, I2, Labels),
    built(maps:fold(fun(K, V, Acc) -> ocibuild:annotation(Acc, K, V) end, I3, annotations(Config))).

%% The builders return `{error, Reason}' for a bad value (a NUL in an env value, ...) and hand
%% it down the chain, so one check at the end of it is enough.
built({error, Reason}) -> throw({ocibuild_release, Reason});
built(Image) -> Image.

annotations(#{annotations := Annotations, description := Description}) when
    is_binary(Description)
->
    maps:merge(#{<<"org.opencontainers.image.description">> => Description}, Annotations);
annotations(#{annotations := Annotations}) ->
    Annotations.

%% Without a push target the image is saved; with one it is pushed, and saved too when
%% `output' was given.
publish(Adapter, State, #{push := undefined} = Config, Images, [Tag | Others], _Attach) ->
    Output = output_path(Config, Tag),
    save(Adapter, Images, Output, Tag),
    %% A tarball records one name; the others would be a promise the file does not keep.
    [Adapter:error("warning: the tarball is tagged ~ts only; ~ts applies to --push",
                   [Tag, lists:join(", ", Others)]) || Others =/= []],
    Adapter:info("Tagged: ~ts", [Tag]),
    {ok, State};
publish(Adapter, State, #{push := Registry} = Config, Images, Tags, Attach) ->
    case maps:get(output, Config) of
        undefined -> ok;
        Output -> save(Adapter, Images, Output, hd(Tags))
    end,
    Auth = get_push_auth(),
    Multi = length(Images) > 1,
    Digests = [
        push_repo(Adapter, Images, Registry, RepoTags, Auth, Config#{attach => Attach}, Multi)
     || RepoTags <- group_by_repo(Tags)
    ],
    [Adapter:info("Digest: ~ts", [D]) || D <- lists:usort(Digests)],
    {ok, State}.

save(Adapter, Images, Output, Tag) ->
    Adapter:info("Saving image to ~ts", [Output]),
    ok = check_ok(save_image(Images, Output, #{tag => Tag})).

check_ok(ok) -> ok;
check_ok({error, Reason}) -> throw({ocibuild_release, Reason}).

output_path(#{output := Output}, _Tag) when is_binary(Output) ->
    Output;
output_path(_Config, Tag) ->
    {Repo, Version} = parse_tag(Tag),
    Name = lists:last(binary:split(Repo, <<"/">>, [global])),
    <<Name/binary, "-", Version/binary, ".tar.gz">>.

%% Tags for the same repository share one push: the first puts the manifest, the others
%% only point at it.
group_by_repo(Tags) ->
    Tagged = [{element(1, parse_tag(T)), T} || T <- Tags],
    [[T || {R, T} <- Tagged, R =:= Repo] || Repo <- first_seen([R || {R, _} <- Tagged])].

%% The distinct elements of a list, in the order they first appear.
first_seen(List) ->
    lists:reverse(lists:foldl(fun(X, Seen) ->
        case lists:member(X, Seen) of
            true -> Seen;
            false -> [X | Seen]
        end
    end, [], List)).

push_repo(Adapter, Images, Registry, RepoTags, Auth, Config, Multi) ->
    Attach = maps:with([sboms, sign], maps:get(attach, Config, #{})),
    Push = fun(First, Opts) ->
        ocibuild_registry:push(Images, Registry, First, Auth, maps:merge(Opts#{index => Multi}, Attach))
    end,
    check(push_tags(Adapter, Registry, RepoTags, maps:get(chunk_size, Config), Push)).

%% Push under the first of `RepoTags' (one repository) with the others as extra tags, then
%% report what went over the wire and the tags. `Push(FirstTag, Opts)' does the push.
push_tags(Adapter, Registry, [First | Rest] = RepoTags, ChunkSize, Push) ->
    Adapter:info("Pushing to ~ts/~ts", [Registry, First]),
    Opts = #{
        tags => [element(2, parse_tag(T)) || T <- Rest],
        chunk_size => ChunkSize,
        progress => progress(Adapter)
    },
    case Push(First, Opts) of
        {ok, #{digest := Digest} = Report} ->
            stop_progress_coordinator(),
            report_push(Adapter, Report),
            [Adapter:info("Tagged: ~ts/~ts", [Registry, T]) || T <- RepoTags],
            report_attached(Adapter, Registry, First, maps:get(attached, Report, #{})),
            {ok, Digest};
        {error, _} = Error ->
            Error
    end.

%% What the push attached: each SBOM referrer and where the registry lists it, the signature.
report_attached(Adapter, Registry, RepoTag, Attached) ->
    {Repo, _} = parse_tag(RepoTag),
    [Adapter:info("SBOM attached to ~ts/~ts@~ts, ~ts", [Registry, Repo, Subject, referrers_where(Api, Subject)])
     || #{subject := Subject, api := Api} <- maps:get(referrers, Attached, [])],
    case maps:get(signature_tag, Attached, undefined) of
        undefined -> ok;
        SigTag -> Adapter:info("Signed: ~ts/~ts:~ts", [Registry, Repo, SigTag])
    end.

referrers_where(true, _Subject) ->
    "listed by the registry's referrers API";
referrers_where(false, <<"sha256:", Hex/binary>>) ->
    ["listed in the referrers tag sha256-", Hex].

%% Progress through the adapter: plain lines (CI) go to its console; a terminal gets the
%% live display.
progress(Adapter) ->
    ocibuild_progress:callback(fun(Line) -> Adapter:console("~ts~n", [Line]) end).

report_push(Adapter, #{uploaded := Up, uploaded_bytes := Bytes, existing := Existing,
                       mounted := Mounted}) ->
    Adapter:info("Uploaded ~ts in ~b blob(s); ~b already present, ~b mounted",
                 [format_bytes(Bytes), Up, Existing, Mounted]).

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
        fun() -> build_image_checked(BaseImage, Files, Opts) end
    ).

build_image_checked(BaseImage, Files, Opts) ->
    try
        Cli = maps:with([cmd, uid], Opts),
        Project = maps:with([workdir, env, expose, labels, annotations, compression, description],
                            Opts),
        Config = check(resolve_config(Cli, Project#{base_image => BaseImage})),
        [Base | _] = check(build_base(BaseImage, Opts)),
        Release = first_set([maps:get(release_name, Opts, undefined)]),
        Name = bin(first_set([Release, maps:get(app_name, Opts, undefined), <<"app">>])),
        Image = add_layers(Base, image_layers(Files, Name, Config, Opts)),
        Configured =
            case Release of
                undefined -> configure_runtime(Image, Config);
                _ -> configure(Image, Config, Name, first_set([maps:get(cmd, Config), <<"foreground">>]))
            end,
        {ok, with_build_sbom(Configured, Name, Config, Opts)}
    catch
        throw:{ocibuild_release, Reason} -> {error, Reason};
        error:Reason:Stack -> builder_error(Reason, Stack)
    end.

%% The release's layers for `build_image/3': split by the lock file when it is given.
image_layers(Files, Name, #{workdir := Workdir} = Config, Opts) ->
    ReleasePath = maps:get(release_path, Opts, undefined),
    Deps =
        case maps:get(dependencies, Opts, undefined) of
            [_ | _] = Given -> Given;
            _ -> undefined
        end,
    LayerOpts = #{
        app_name => bin(first_set([maps:get(app_name, Opts, undefined), Name])),
        workdir => Workdir,
        has_erts => not is_nil_or_undefined(ReleasePath) andalso has_bundled_erts(ReleasePath)
    },
    [create_layer(Type, Group, Config) || {Type, Group} <- layer_groups(Files, Deps, LayerOpts)].

with_build_sbom(Image, Name, Config, Opts) ->
    Path = maps:get(release_path, Opts, undefined),
    Context = #{
        name => Name,
        version => bin(first_set([maps:get(app_version, Opts, undefined), <<>>])),
        release_path => first_set([Path]),
        dependencies => maps:get(dependencies, Opts, undefined),
        created => check(ocibuild_reproducible:created()),
        image => Image
    },
    Sbom = check(ocibuild_sbom:build(ocibuild_sbom:input(Context))),
    add_layers(Image, [check(ocibuild_sbom:layer(Sbom, maps:get(compression, Config)))]).

build_base(<<"scratch">>, _Opts) ->
    {ok, Image} = ocibuild:scratch(),
    {ok, [Image]};
build_base(BaseImage, Opts) ->
    Progress = maps:with([progress], Opts),
    case ocibuild:from(BaseImage, maps:get(auth, Opts, get_pull_auth()), Progress) of
        {ok, Image} -> {ok, [Image]};
        {error, _} = Error -> Error
    end.

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
        fun() -> release_layers_checked(Image, Files, ReleasePath, Deps, Opts) end
    ).

release_layers_checked(Image, Files, ReleasePath, Deps, Opts) ->
    AppName = bin(maps:get(app_name, Opts, maps:get(release_name, Opts, <<>>))),
    HasErts = not is_nil_or_undefined(ReleasePath) andalso has_bundled_erts(ReleasePath),
    LayerOpts = #{
        app_name => AppName,
        workdir => bin(maps:get(workdir, Opts, <<"/app">>)),
        has_erts => HasErts
    },
    DepInfo =
        case Deps of
            [_ | _] -> Deps;
            _ -> undefined
        end,
    try
        Layers = [
            create_layer(Type, Group, Opts)
         || {Type, Group} <- layer_groups(Files, DepInfo, LayerOpts)
        ],
        add_layers(Image, Layers)
    catch
        throw:{ocibuild_release, Reason} -> {error, Reason}
    end.

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
                    [io:format(standard_error, "~ts~n", [format_warning(W)]) || W <- Warnings],
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
    with_args(
        [{files, files, Files}, {dependencies, dep_list, Deps}, {app_name, text, AppName},
         {workdir, text, Workdir}, {has_erts, boolean, HasErts}],
        fun() ->
            ocibuild_release_files:partition(Files, Deps, bin(AppName), bin(Workdir), HasErts)
        end
    ).

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
    valid_arg(path, ReleasePath) andalso ocibuild_release_files:has_bundled_erts(host_path(ReleasePath)).

%% @doc More than one platform needs ERTS from the base image: a bundled ERTS runs only on
%% the machine type it was built for.
-spec validate_multiplatform(file:filename_all(), [ocibuild:platform()]) ->
    ok | {error, {bundled_erts, binary()} | {invalid_option, atom(), term()}}.
validate_multiplatform(ReleasePath, Platforms) ->
    with_args([{release_path, path, ReleasePath}, {platforms, list, Platforms}],
              fun() -> multiplatform_checked(ReleasePath, Platforms) end).

multiplatform_checked(ReleasePath, Platforms) when length(Platforms) > 1 ->
    case has_bundled_erts(ReleasePath) of
        true ->
            {error, {bundled_erts, <<
                "multi-platform builds need ERTS from the base image, but the release bundles "
                "its own (erts-* is built for this machine only); build the release with "
                "include_erts: false (Mix) or {include_erts, false} (relx) and use a base "
                "image that provides Erlang"
            >>}};
        false ->
            ok
    end;
multiplatform_checked(_ReleasePath, _Platforms) ->
    ok.

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
    auth_from_env("OCIBUILD_PUSH_").

%% @doc Pull credentials, as `get_push_auth/0' from `OCIBUILD_PULL_*'.
-spec get_pull_auth() -> map().
get_pull_auth() ->
    auth_from_env("OCIBUILD_PULL_").

auth_from_env(Prefix) ->
    Get = fun(Name) -> ocibuild_release_config:env_var(Prefix ++ Name) end,
    case {Get("TOKEN"), Get("USERNAME"), Get("PASSWORD")} of
        {Token, _, _} when Token =/= undefined -> #{token => Token};
        {_, User, Pass} when User =/= undefined, Pass =/= undefined ->
            #{username => User, password => Pass};
        _ -> #{}
    end.

%% @doc Push an image (or a list of platform images, as an index) and return the digest.
%% Options: `tags' (more tags), `chunk_size', `progress' (default: the terminal display).
-spec push_image(ocibuild:image() | [ocibuild:image()], binary(), binary(), map(), map()) ->
    {ok, binary()} | {error, term()}.
push_image({error, _} = Error, _Registry, _RepoTag, _Auth, _Opts) ->
    Error;
push_image(Image, Registry, RepoTag, Auth, Opts) ->
    with_args([{images, images, Image}, {options, map, Opts}],
              fun() -> push_image_checked(Image, Registry, RepoTag, Auth, Opts) end).

push_image_checked(Image, Registry, RepoTag, Auth, Opts) ->
    Images =
        case Image of
            L when is_list(L) -> L;
            I -> [I]
        end,
    PushOpts0 = maps:merge(#{progress => make_progress_callback()}, Opts),
    PushOpts = PushOpts0#{index => maps:get(index, Opts, length(Images) > 1)},
    try ocibuild_registry:push(Images, Registry, RepoTag, Auth, PushOpts) of
        {ok, #{digest := Digest}} -> {ok, Digest};
        {error, _} = Error -> Error
    after
        stop_progress_coordinator()
    end.

%% @doc Push a tarball saved earlier (by `mix ocibuild', `rebar3 ocibuild' or
%% `ocibuild:save/3') without rebuilding. Options: `registry' (required, `REGISTRY[/NS]'),
%% `tags' (default: the tag saved in the tarball), `chunk_size'.
-spec push_tarball(module(), term(), file:filename_all(), map()) -> {ok, term()} | {error, term()}.
push_tarball(Adapter, State, TarballPath, Opts) ->
    with_args(
        [{adapter, adapter, Adapter}, {tarball, path, TarballPath}, {options, map, Opts}] ++
            option_args([{registry, text}, {tags, text_list}, {chunk_size, pos_integer}], Opts),
        fun() -> push_tarball_checked(Adapter, State, TarballPath, Opts) end
    ).

push_tarball_checked(Adapter, State, TarballPath, Opts) ->
    Registry = maps:get(registry, Opts, undefined),
    case {Registry, filelib:is_regular(TarballPath)} of
        {undefined, _} ->
            {error, {tarball_without_push, bin(TarballPath)}};
        {_, false} ->
            {error, {tarball_not_found, bin(TarballPath)}};
        {_, true} ->
            Adapter:info("Loading ~ts", [TarballPath]),
            case ocibuild_layout:load_tarball_for_push(TarballPath) of
                {ok, #{cleanup := Cleanup} = Loaded} ->
                    try
                        push_loaded(Adapter, State, Loaded, Registry, Opts)
                    after
                        Cleanup(),
                        stop_progress_coordinator()
                    end;
                {error, _} = Error ->
                    Error
            end
    end.

push_loaded(Adapter, State, Loaded, Registry, Opts) ->
    Tags =
        case lists:append([expand_semicolon_tags(T) || T <- maps:get(tags, Opts, [])]) of
            [] ->
                case ocibuild_layout:push_reference(Loaded) of
                    undefined -> [];
                    Saved -> [strip_registry(Saved)]
                end;
            Given ->
                Given
        end,
    case Tags of
        [] ->
            {error, {invalid_option, tag, <<"the tarball names no repository (no name:tag); give one with --tag">>}};
        _ ->
            Results = [push_loaded_repo(Adapter, Loaded, Registry, G, Opts) || G <- group_by_repo(Tags)],
            case [E || {error, _} = E <- Results] of
                [] ->
                    [Adapter:info("Digest: ~ts", [D]) || D <- lists:usort([D || {ok, D} <- Results])],
                    {ok, State};
                [Error | _] ->
                    Error
            end
    end.

push_loaded_repo(Adapter, Loaded, Registry, RepoTags, Opts) ->
    Auth = get_push_auth(),
    %% `sign' is `undefined' without a key; ocibuild_registry:push_loaded/5 takes that as none.
    Attach = maps:with([sign], Opts),
    Push = fun(First, PushOpts) ->
        ocibuild_registry:push_loaded(Loaded, Registry, First, Auth, maps:merge(PushOpts, Attach))
    end,
    push_tags(Adapter, Registry, RepoTags, maps:get(chunk_size, Opts, 5 * 1024 * 1024), Push).

%% A tarball saved as `localhost:5000/app:1' is pushed as `app:1' under the target registry.
strip_registry(Tag) ->
    case binary:split(Tag, <<"/">>) of
        [First, Rest] ->
            case binary:match(First, [<<".">>, <<":">>]) =/= nomatch orelse First =:= <<"localhost">> of
                true -> Rest;
                false -> Tag
            end;
        [_] ->
            Tag
    end.

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
is_nil_or_undefined(nil) -> true;
is_nil_or_undefined(undefined) -> true;
is_nil_or_undefined(_) -> false.

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

%%% Argument checks

%% The public functions check their arguments' shapes before any work, so a bad one is
%% `{error, {invalid_option, Name, Value}}' (the first bad one), never an exception from deep
%% inside a helper. `Checks' are `{Name, Kind, Value}'.
with_args([], Run) ->
    Run();
with_args([{Name, Kind, Value} | Rest], Run) ->
    case valid_arg(Kind, Value) of
        true -> with_args(Rest, Run);
        false -> {error, {invalid_option, Name, Value}}
    end.

%% Checks for the options present in `Opts' (absent ones take their defaults).
option_args(Kinds, Opts) when is_map(Opts) ->
    [{Name, Kind, Value} || {Name, Kind} <- Kinds, {ok, Value} <- [maps:find(Name, Opts)],
                            not is_nil_or_undefined(Value)];
option_args(_Kinds, _NotAMap) ->
    [].

valid_arg(text, V) -> ocibuild_input:text(V) =/= error;
%% `file:filename_all()': a binary or a string, in the file name encoding (`filelib' needs a
%% string for some).
valid_arg(path, V) when is_binary(V) -> is_host_text(ocibuild_input:host_path(V));
valid_arg(path, V) when is_list(V) -> valid_arg(text, V) andalso is_host_text(ocibuild_input:host_path(V));
valid_arg(path, _V) -> false;
valid_arg(optional_path, V) -> is_nil_or_undefined(V) orelse valid_arg(path, V);
valid_arg(scalar, V) -> is_scalar(V);
valid_arg(map, V) -> is_map(V);
valid_arg(image, V) -> is_map(V) andalso ocibuild_input:is_proper_list(maps:get(layers, V, undefined));
valid_arg(images, V) -> is_map(V) orelse valid_arg(list, V);
valid_arg(boolean, V) -> is_boolean(V);
valid_arg(list, V) -> ocibuild_input:is_proper_list(V);
valid_arg(text_list, V) -> valid_arg(list, V) andalso lists:all(fun(T) -> valid_arg(text, T) end, V);
valid_arg(files, V) -> element(1, ocibuild_input:files(V)) =:= ok;
valid_arg(deps, V) -> is_nil_or_undefined(V) orelse (valid_arg(list, V) andalso lists:all(fun is_dep/1, V));
%% The SBOM reads each dependency's name, version and source from its map.
valid_arg(sbom_deps, V) ->
    valid_arg(list, V) andalso lists:all(fun(D) -> is_map(D) andalso is_dep(D) end, V);
valid_arg(dep_list, V) -> valid_arg(list, V) andalso lists:all(fun is_dep/1, V);
valid_arg(set, V) -> sets:is_set(V);
valid_arg(non_neg_integer, V) -> is_integer(V) andalso V >= 0;
valid_arg(pos_integer, V) -> is_integer(V) andalso V > 0;
valid_arg(total, V) -> V =:= unknown orelse valid_arg(non_neg_integer, V);
valid_arg(adapter, V) -> is_adapter(V).

is_host_text({ok, Bin}) -> is_list(unicode:characters_to_list(Bin, file:native_name_encoding()));
is_host_text(error) -> false.

%% What `bin/1' turns into a binary.
is_scalar(V) when is_binary(V); is_atom(V); is_number(V) -> true;
is_scalar(V) when is_list(V) ->
    ocibuild_input:text(V) =/= error orelse
        (try iolist_size(V) of
             _ -> true
         catch
             error:badarg -> false
         end);
is_scalar(_) -> false.

%% A lock-file dependency: a map with a name, or a bare name.
is_dep(#{name := Name}) -> is_scalar(Name);
is_dep(Name) -> is_scalar(Name) andalso not is_map(Name).

%% A module with the callbacks `run/3' and `push_tarball/4' call.
is_adapter(Module) when is_atom(Module) ->
    _ = code:ensure_loaded(Module),
    lists:all(fun({F, A}) -> erlang:function_exported(Module, F, A) end,
              [{get_config, 1}, {find_release, 2}, {info, 2}, {console, 2}, {error, 2}]);
is_adapter(_) ->
    false.

host_path(Path) ->
    {ok, Bin} = ocibuild_input:host_path(Path),
    Bin.

%%% Messages

format_warning({symlink_outside_release, Path, Target}) ->
    io_lib:format("warning: skipping ~ts: symlink to ~ts, outside the release", [Path, Target]);
format_warning({broken_symlink, Path}) ->
    io_lib:format("warning: skipping ~ts: broken symlink", [Path]);
format_warning({symlink_loop, Path}) ->
    io_lib:format("warning: skipping ~ts: symlink loop", [Path]);
format_warning({special_file, Path, Type}) ->
    io_lib:format("warning: skipping ~ts: special file (~s), not a regular file or directory", [Path, Type]);
format_warning({unreadable_directory, Path, Posix}) ->
    io_lib:format("warning: skipping ~ts: ~ts", [Path, file:format_error(Posix)]);
format_warning(Other) ->
    io_lib:format("warning: ~0tp", [Other]).

%% @doc One line, for the user, for any reason `run/3' and the functions here return.
-spec format_error(term()) -> iolist().
format_error(Reason) ->
    %% Any term gets its line: a reason whose fields are not what its clause expects (a
    %% caller's own term that happens to use one of our tags) is shown as the term.
    try
        Line = format_reason(Reason),
        true = is_binary(unicode:characters_to_binary(Line)),
        Line
    catch
        error:_ -> io_lib:format("~0tp", [Reason])
    end.

format_reason(missing_tag) ->
    "no image tag: give one with --tag NAME:VERSION (or `tag' in the ocibuild config)";
format_reason({sbom_write, Path, Why}) ->
    io_lib:format("cannot write the SBOM to ~ts: ~ts", [Path, ocibuild_host_file:format_error(Why)]);
format_reason({output_write, Path, Why}) ->
    io_lib:format("cannot write the image to ~ts: ~ts", [Path, ocibuild_host_file:format_error(Why)]);
format_reason({sign_key, Path, {file_read, Why}}) ->
    io_lib:format("cannot read the signing key ~ts: ~ts", [Path, ocibuild_host_file:format_error(Why)]);
format_reason({sign_key, Path, {sign_key_password, missing}}) ->
    io_lib:format("signing key ~ts is encrypted: set COSIGN_PASSWORD to its password", [Path]);
format_reason({sign_key, Path, {sign_key_password, wrong}}) ->
    io_lib:format("signing key ~ts: COSIGN_PASSWORD is not its password", [Path]);
format_reason({sign_key, Path, {sign_key_error, Why}}) ->
    io_lib:format("signing key ~ts: ~ts", [Path, text_or_term(Why)]);
format_reason({sign_key, Path, Reason}) ->
    io_lib:format("signing key ~ts: ~ts", [Path, format_error(Reason)]);
format_reason({invalid_annotation, null_byte, Key}) ->
    io_lib:format("annotation ~ts: keys and values may not contain NUL bytes", [show_key(Key)]);
format_reason({invalid_annotation, path_traversal, Key}) ->
    io_lib:format("annotation ~ts: keys and values may not contain a .. path component", [show_key(Key)]);
format_reason({invalid_annotation, empty_key, _}) ->
    "annotation with an empty key";
format_reason({invalid_created_timestamp, {negative_timestamp, Value}}) ->
    io_lib:format("annotation org.opencontainers.image.created: ~ts is before 1970; give unix "
                  "seconds or an ISO 8601 date-time", [show(Value)]);
format_reason({invalid_created_timestamp, {_, Value}}) ->
    io_lib:format("annotation org.opencontainers.image.created: ~ts is neither a unix timestamp "
                  "nor an ISO 8601 date-time", [show(Value)]);
format_reason({protected_annotation, Key}) ->
    io_lib:format("annotation ~ts is computed by ocibuild and cannot be set "
                  "(use --no-vcs-annotations to leave out source and revision)", [Key]);
format_reason(empty_release) ->
    "the release directory holds no files";
format_reason({bundled_erts, Message}) ->
    Message;
format_reason({unknown_config_key, Key}) ->
    io_lib:format("unknown ocibuild config key ~ts", [show(Key)]);
format_reason({invalid_kv_format, Arg}) ->
    io_lib:format("expected KEY=VALUE, got ~ts", [show(Arg)]);
format_reason({invalid_option, compression, Value}) ->
    io_lib:format("invalid compression ~ts: use gzip, zstd or auto", [show(Value)]);
format_reason({invalid_option, chunk_size, Value}) ->
    io_lib:format("invalid chunk size ~ts: give a number of megabytes from 1 to 4096", [show(Value)]);
format_reason({invalid_uid, Value, _Why}) ->
    io_lib:format("invalid uid ~ts: give an integer from 0 to 4294967295", [show(Value)]);
format_reason({invalid_option, workdir, Value}) ->
    io_lib:format("invalid workdir ~ts: give an absolute path without . or ..", [show(Value)]);
format_reason({invalid_option, Name, Value}) ->
    io_lib:format("invalid ~s: ~ts", [Name, show(Value)]);
format_reason({invalid_value, Field, Key, Why}) ->
    io_lib:format("invalid ~s ~ts: ~s", [Field, ocibuild_input:quote(Key),
                                          case Why of
                                              nul_byte -> "NUL bytes are not allowed";
                                              equals_in_name -> "a name cannot contain =";
                                              empty_name -> "a name cannot be empty";
                                              _ -> atom_to_list(Why)
                                          end]);
format_reason({special_file, Path, Kind}) ->
    io_lib:format("cannot read ~ts: a ~ts, not a regular file", [Path, string:replace(atom_to_list(Kind), "_", " ")]);
format_reason({invalid_tag, Tag, Rule}) ->
    io_lib:format("invalid image tag ~ts: ~ts", [ocibuild_input:quote(Tag), Rule]);
format_reason({invalid_platform, P}) ->
    io_lib:format("invalid platform ~ts: use OS/ARCH[/VARIANT], e.g. linux/amd64,linux/arm64", [show(P)]);
format_reason({tarball_without_push, Path}) ->
    io_lib:format("~ts: pushing a saved tarball needs --push REGISTRY[/NAMESPACE]", [Path]);
format_reason({tarball_not_found, Path}) ->
    io_lib:format("tarball ~ts not found", [Path]);
format_reason({release_not_found, Path, _Posix}) ->
    io_lib:format("release directory ~ts not found: build the release first", [Path]);
format_reason({release_not_directory, Path}) ->
    io_lib:format("~ts is not a release directory", [Path]);
format_reason({lock_file, Reason}) ->
    io_lib:format("cannot read the lock file: ~0tp", [Reason]);
format_reason({base_image, Base, {unauthorized, #{registry := Registry, status := Status}}}) ->
    io_lib:format("base image ~ts: ~ts refused access (HTTP ~b): set OCIBUILD_PULL_TOKEN or "
                  "OCIBUILD_PULL_USERNAME/OCIBUILD_PULL_PASSWORD, or log in with docker/podman",
                  [Base, Registry, Status]);
format_reason({base_image, Base, Reason}) ->
    io_lib:format("base image ~ts: ~ts", [Base, format_error(Reason)]);
format_reason({no_matching_platform, #{wanted := Wanted, available := Available}}) ->
    io_lib:format("no image for platform ~ts (available: ~ts)", [Wanted, lists:join(", ", Available)]);
format_reason({unauthorized, #{registry := Registry, status := Status} = Info}) ->
    io_lib:format("~ts refused the credentials (HTTP ~b, scope ~ts): set OCIBUILD_PUSH_TOKEN or "
                  "OCIBUILD_PUSH_USERNAME/OCIBUILD_PUSH_PASSWORD, or log in with docker/podman",
                  [Registry, Status, maps:get(scope, Info, <<"?">>)]);
format_reason({registry_error, #{registry := Registry, action := Action} = Info}) ->
    io_lib:format("~ts: ~ts failed (HTTP ~0tp ~ts ~ts)",
                  [Registry, Action, maps:get(status, Info, undefined),
                   text_or_empty(maps:get(code, Info, undefined)),
                   text_or_empty(maps:get(message, Info, undefined))]);
format_reason({http_error, Registry, Why}) ->
    io_lib:format("cannot reach ~ts: ~ts", [Registry, text_or_term(Why)]);
format_reason({timeout, #{registry := Registry, action := Action, phase := headers} = Info}) ->
    io_lib:format("~ts did not answer ~ts within ~0tp ms (OCIBUILD_REGISTRY_TIMEOUT)",
                  [Registry, Action, maps:get(limit_ms, Info, undefined)]);
format_reason({timeout, #{registry := Registry, action := Action, phase := body} = Info}) ->
    io_lib:format("~ts: ~ts moved less than ~0tp bytes/s over ~0tp ms (OCIBUILD_MIN_TRANSFER_RATE)",
                  [Registry, Action, maps:get(min_rate, Info, undefined),
                   maps:get(window_ms, Info, undefined)]);
format_reason({https_downgrade, #{registry := Registry, to := To}}) ->
    io_lib:format("~ts sent us from HTTPS to plain HTTP (~ts): refused", [Registry, To]);
format_reason({auth_error, Registry, Why}) ->
    io_lib:format("authentication with ~ts failed: ~ts", [Registry, text_or_term(Why)]);
format_reason({credentials_error, Source, Why}) ->
    io_lib:format("reading credentials from ~ts failed: ~ts", [Source, text_or_term(Why)]);
format_reason({invalid_reference, Ref}) ->
    io_lib:format("invalid image reference ~ts", [show(Ref)]);
format_reason({digest_mismatch, Info}) ->
    io_lib:format("digest mismatch: ~0tp", [Info]);
format_reason({file_read, Path, Posix}) ->
    io_lib:format("cannot read ~ts: ~ts", [Path, file:format_error(Posix)]);
format_reason({io_error, Context, Message}) ->
    io_lib:format("~ts: ~ts", [Context, Message]);
format_reason({bad_adapter_reply, Adapter, Callback, Reply}) ->
    io_lib:format("~s:~s/2 returned ~0tp", [Adapter, Callback, Reply]);
format_reason(Reason) when is_binary(Reason) ->
    Reason;
format_reason(Reason) ->
    io_lib:format("~0tp", [Reason]).

%% An annotation key with any NUL shown as \0, so the line stays one printable line.
show_key(Key) when is_binary(Key) -> binary:replace(Key, <<0>>, <<"\\0">>, [global]);
show_key(Key) -> show(Key).

%% A value the user gave, as they would type it: text as text, anything else as a term.
show(V) when is_atom(V) -> atom_to_list(V);
show(V) -> text_or_term(V).

text_or_empty(undefined) -> "";
text_or_empty(V) -> text_or_term(V).

text_or_term(V) when is_binary(V) -> V;
text_or_term(V) ->
    case io_lib:printable_unicode_list(V) of
        true -> V;
        false -> io_lib:format("~0tp", [V])
    end.
