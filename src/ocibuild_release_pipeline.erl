%% @doc The release pipeline behind `ocibuild_release:run/3' (and so `mix ocibuild',
%% `rebar3 ocibuild' and `Ocibuild.MixRelease.build_image/1'): find the release, split it into
%% layers (ERTS and OTP libraries, dependencies from the lock file, the application itself),
%% put them on the base image, configure it, add the SBOM layer, and hand the images to
%% `ocibuild_release_publish' to save or push. It also holds the bodies of the 0.10 building
%% blocks `ocibuild_release:build_image/3' and `build_release_layers/5', which share these
%% steps.
%%
%% Release files are never read into the VM: the native core streams each one from disk into
%% its layer. Errors are thrown as `{ocibuild_release, Reason}' inside and returned as
%% `{error, Reason}' at the entry points.
%%
%% ```
%% {ok, State} = ocibuild_release_pipeline:run(ocibuild_rebar3, State, #{}).
%% '''
-module(ocibuild_release_pipeline).

-export([run/3, build_image/3, add_release_layers/5, partition/5]).

%% @doc `ocibuild_release:run/3' once its arguments are checked.
-spec run(module(), term(), map()) -> {ok, term()} | {error, term()}.
run(Adapter, State, Opts) ->
    try
        Loaded = check(ocibuild_release_config:from_adapter(Adapter:get_config(State))),
        Config = maps:merge(Loaded, cmd_override(Opts)),
        case maps:get(tarball, Config, undefined) of
            _ when map_get(gc_cache, Config) =:= true ->
                ocibuild_release_gc:run(Adapter, State);
            undefined ->
                build_and_publish(Adapter, State, Config, Opts);
            Tarball ->
                PushOpts = #{
                    registry => maps:get(push, Config),
                    tags => maps:get(tags, Config, []),
                    chunk_size => maps:get(chunk_size, Config),
                    sign => sign_key(Config)
                },
                ocibuild_release_publish:push_tarball(Adapter, State, Tarball, PushOpts)
        end
    catch
        throw:{ocibuild_release, Reason} -> {error, Reason};
        error:Reason:Stack -> builder_error(Reason, Stack)
    after
        ocibuild_progress:stop()
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
    StartedOn = erlang:system_time(second),
    #{workdir := Workdir, platforms := Platforms} = Config0,
    %% The user's annotations and the signing key are checked before any work.
    Config = Config0#{annotations := check(ocibuild_annotations:validate(maps:get(annotations, Config0)))},
    SignKey = sign_key(Config),
    check_output_paths(Config),
    {Name, Path} = check(find_release(Adapter, State, Config, RunOpts)),
    Version = release_version(Adapter, State, Config, Path),
    Tags = release_tags(Config, Name, Version),
    ocibuild_release_platforms:check(Adapter, Path, Platforms),
    HasErts = ocibuild_release_platforms:has_bundled_erts(Path),
    {Files, Warnings} = check(ocibuild_release_files:collect(Path, Workdir)),
    [Adapter:error("~ts", [ocibuild_release_messages:format_warning(W)]) || W <- Warnings],
    %% The base first: a wrong reference or missing credentials fail before any layer work.
    Bases = check(base_images(Adapter, Config)),
    check_push_access(Config, Tags),
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
    Provenance = provenance(Config, SignKey, Context#{images => Images, tags => Tags,
                                                      config => Config, started_on => StartedOn}),
    ocibuild_release_publish:publish(Adapter, State, Config, Images, Tags,
                                     #{sboms => Sboms, sign => SignKey, provenance => Provenance}).

%% A push with a signing key attaches signed provenance; `--provenance PATH' makes it for the
%% file even without a key. (Without a push there is none: `check_output_paths/1'.)
provenance(Config, SignKey, Context) ->
    Pushed = maps:get(push, Config, undefined) =/= undefined,
    Wanted = SignKey =/= undefined orelse is_binary(maps:get(provenance, Config, undefined)),
    case Pushed andalso Wanted of
        true -> check(ocibuild_provenance:input(Context));
        false -> undefined
    end.

%% A push fails here, before any layer is built, when its registry does not answer or does
%% not let these credentials push (each repository the tags name), with the error the push
%% itself would have returned.
check_push_access(#{push := undefined}, _Tags) ->
    ok;
check_push_access(#{push := Registry}, Tags) ->
    #{groups := Groups} = check(ocibuild_nif:reference_tags(Tags)),
    Auth = ocibuild_release_publish:push_auth(),
    [check_ok(ocibuild_registry:check_push(Registry, First, Auth))
     || #{tags := [First | _]} <- Groups],
    ok.

check_ok(ok) -> ok;
check_ok({error, Reason}) -> throw({ocibuild_release, Reason}).

%% The automatic annotations (source, revision, version, created). The base's name and
%% digest are not among them: the native core writes those for each platform image from the
%% base it was built on, with the digest the registry served.
auto_annotations(Image, Path, Config, Version, Created) ->
    Auto = ocibuild_annotations:auto(Image, Path, #{
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
    Adapter:info("  sbom layer ~ts (~ts)", [Digest, ocibuild_progress:format_bytes(Size)]),
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
    check_provenance_needs_push(Config),
    check_writable(provenance_write, maps:get(provenance, Config, undefined)),
    check_writable(sbom_write, maps:get(sbom, Config, undefined)),
    check_writable(output_write, maps:get(output, Config, undefined)).

check_writable(Reason, Path) when is_binary(Path) ->
    case ocibuild_host_file:check_writable(Path) of
        ok -> ok;
        {error, Why} -> throw({ocibuild_release, {Reason, Path, Why}})
    end;
check_writable(_Reason, _NoPath) ->
    ok.

%% The statement names the pushed manifests: a save alone has none to name.
check_provenance_needs_push(#{provenance := Path, push := undefined}) when is_binary(Path) ->
    throw({ocibuild_release, {invalid_option, provenance,
                              <<"--provenance needs --push: the statement names the pushed image">>}});
check_provenance_needs_push(_Config) ->
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
    case [V || V <- Values, not ocibuild_release_args:is_nil_or_undefined(V)] of
        [First | _] -> First;
        [] -> undefined
    end.

%% The adapter's version, else the config's `app_version' (a 0.10 adapter's map), else the
%% one `releases/start_erl.data' records (`ERTS_VSN REL_VSN').
release_version(Adapter, State, Config, Path) ->
    FromAdapter = first_set([ocibuild_adapter:get_app_version(Adapter, State),
                             maps:get(app_version, Config, undefined)]),
    case ocibuild_release_args:is_nil_or_undefined(FromAdapter) of
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
release_tags(#{tags := [_ | _] = Tags}, _Name, _Version) ->
    Tags;
release_tags(#{tags := []}, Name, Version) ->
    [<<Name/binary, ":", Version/binary>>].

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

%% Layers are built once and shared by every platform image. On a terminal each gets a live
%% line (bytes read of the total) while it is built; elsewhere the two lines as before. A
%% live display is ended before any other line is printed, or it would draw over it.
release_layers(Adapter, Files, Deps, Opts) ->
    Groups = layer_groups(Files, Deps, Opts),
    [
        begin
            ocibuild_progress:stop(),
            Adapter:info("Building ~s layer (~b files)", [Type, length(Group)]),
            Progress = ocibuild_release_publish:progress(Adapter),
            Layer = create_layer(Type, Group, Opts#{release_progress => Progress}),
            ocibuild_progress:stop(),
            #{digest := Digest, size := Size} = Layer,
            Adapter:info("  ~s layer ~ts (~ts)", [Type, Digest, ocibuild_progress:format_bytes(Size)]),
            Layer
        end
     || {Type, Group} <- Groups
    ].

create_layer(Type, Files, Opts) ->
    check(ocibuild_layer:create(Files, #{
        layer_type => Type, compression => maps:get(compression, Opts, auto),
        %% Set by `release_layers/4' only; the 0.10 entry points' maps are the caller's.
        progress => maps:get(release_progress, Opts, undefined)
    })).

%% With a lock file: ERTS (and OTP libraries, when ERTS is bundled), dependencies, the
%% application; empty groups are left out. Without one: a single layer.
layer_groups([], _Deps, _Opts) ->
    throw({ocibuild_release, empty_release});
layer_groups(Files, undefined, _Opts) ->
    [{release, Files}];
layer_groups(Files, Deps, #{app_name := App, workdir := Workdir, has_erts := HasErts}) ->
    {Erts, DepFiles, AppFiles} = partition(Files, Deps, App, Workdir, HasErts),
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
    case ocibuild:from(Base, ocibuild_release_publish:pull_auth(), Opts#{progress => ocibuild_release_publish:progress(Adapter)}) of
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
%% @doc `ocibuild_release:build_image/3' once its arguments are checked.
-spec build_image(binary(), list(), map()) -> {ok, ocibuild:image()} | {error, term()}.
build_image(BaseImage, Files, Opts) ->
    try
        Cli = maps:with([cmd, uid], Opts),
        Project = maps:with([workdir, env, expose, labels, annotations, compression, description],
                            Opts),
        Config = check(ocibuild_release_config:resolve(Cli, Project#{base_image => BaseImage})),
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
        has_erts => not ocibuild_release_args:is_nil_or_undefined(ReleasePath) andalso ocibuild_release_platforms:has_bundled_erts(ReleasePath)
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
    case ocibuild:from(BaseImage, maps:get(auth, Opts, ocibuild_release_publish:pull_auth()), Progress) of
        {ok, Image} -> {ok, [Image]};
        {error, _} = Error -> Error
    end.
%% @doc `ocibuild_release:build_release_layers/5' once its arguments are checked.
-spec add_release_layers(ocibuild:image(), list(), term(), list() | undefined, map()) ->
    ocibuild:built().
add_release_layers(Image, Files, ReleasePath, Deps, Opts) ->
    AppName = bin(maps:get(app_name, Opts, maps:get(release_name, Opts, <<>>))),
    HasErts = not ocibuild_release_args:is_nil_or_undefined(ReleasePath) andalso ocibuild_release_platforms:has_bundled_erts(ReleasePath),
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
%% @doc `ocibuild_release_files:partition/5' after checking its arguments' shapes.
-spec partition(term(), term(), term(), term(), term()) ->
    {list(), list(), list()} | {error, {invalid_option, atom(), term()}}.
partition(Files, Deps, AppName, Workdir, HasErts) ->
    ocibuild_release_args:with_args(
        [{files, files, Files}, {dependencies, dep_list, Deps}, {app_name, text, AppName},
         {workdir, text, Workdir}, {has_erts, boolean, HasErts}],
        fun() -> ocibuild_release_files:partition(Files, Deps, bin(AppName), bin(Workdir), HasErts) end
    ).

bin(Value) ->
    ocibuild_release_config:to_binary(Value).
