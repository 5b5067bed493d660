%% @doc The one table of `mix ocibuild' and `rebar3 ocibuild''s command-line options, project
%% keys and environment variables. Both tools read it: the Mix task for its `OptionParser'
%% switches and `mix help ocibuild', the rebar3 provider for its getopt specs and
%% `rebar3 help ocibuild'. A flag is added, renamed or documented here, once.
%%
%% ```
%% [#{key := tag, short := $t, long := "tag", type := string, repeat := true} | _] =
%%     ocibuild_options:options().
%% '''
%%
%% Defaults shown in the help come from `ocibuild_release_config:defaults/0', the values the
%% configuration really falls back to.
-module(ocibuild_options).

-export([options/0, project_keys/0, environment/0, help/1, getopt_specs/0, mix_switches/0,
         mix_aliases/0, markdown_options/0, markdown_project_keys/0, markdown_environment/0,
         text_project_keys/0, text_environment/0]).

-export_type([option/0]).

-type option() :: #{
    key := atom(),
    short := char() | undefined,
    long := string() | undefined,
    type := string | integer | flag,
    repeat := boolean(),
    arg := string(),
    help := string(),
    default => atom()
}.
%% `key' is the key in the command-line map `ocibuild_release:resolve_config/2' takes; `long'
%% `undefined' is the positional TARBALL; `default' names an entry of
%% `ocibuild_release_config:defaults/0'.

%% @doc Every command-line option, in the order the help lists them.
-spec options() -> [option()].
options() ->
    [
        opt(tag, $t, "tag", string, true, "TAG",
            "the image's name and tag, e.g. myapp:1.0.0. Repeat the option or give a "
            ";-separated list (myapp:1.0.0;myapp:latest) for several tags. Replaces the "
            "configuration's tag. Mix's default is <release>:<version>; rebar3 requires one "
            "unless pushing a saved tarball"),
        opt(output, $o, "output", string, false, "PATH",
            "the tarball to write. Default: <name>-<tag>.tar.gz in the current directory; with "
            "--push the image is pushed and also saved there. A PATH ending in .tar is a plain "
            "tar; any other is gzip with the (already compressed) layers stored, not recompressed"),
        opt(push, $p, "push", string, false, "REGISTRY[/NAMESPACE]",
            "push the image to a registry instead of writing a tarball, e.g. ghcr.io/myorg or "
            "localhost:5000; each tag names a repository under it"),
        opt(tarball, undefined, undefined, string, false, "TARBALL",
            "with --push, a tarball saved earlier (or any OCI image tarball) to push as it is, "
            "without building; -t replaces the tag saved in it"),
        opt(annotation, $a, "annotation", string, true, "KEY=VALUE",
            "add a manifest annotation; repeatable; replaces the configuration's value for "
            "the same key"),
        opt(label, $l, "label", string, true, "KEY=VALUE",
            "add an image config label; repeatable; replaces the configuration's value for "
            "the same key"),
        opt(platform, $P, "platform", string, false, "PLATFORMS",
            "build for linux/arm64, or for several platforms with a comma-separated list such "
            "as linux/amd64,linux/arm64 (one image index, layers built once). Default: the "
            "host's. Several platforms need ERTS from the base image, not bundled in the "
            "release; NIF .so files give a warning"),
        (opt(base, undefined, "base", string, false, "IMAGE",
             "the base image: a registry reference such as debian:stable-slim, scratch, or a "
             "saved image tarball as tar://PATH (no network)"))#{default => base_image},
        opt(release, undefined, "release", string, false, "NAME",
            "the release to image when the project defines several"),
        opt(cmd, $c, "cmd", string, false, "COMMAND",
            "the release command the entrypoint runs. Default: start for Mix releases, "
            "foreground for relx"),
        (opt(uid, undefined, "uid", integer, false, "UID",
             "the numeric user the container runs as; 0 runs as root"))#{default => uid},
        (opt(chunk_size, undefined, "chunk-size", integer, false, "MB",
             "upload blobs larger than this many MB to the registry in chunks"))#{
            default => chunk_size},
        opt(sbom, undefined, "sbom", string, false, "PATH",
            "also write the image's SPDX 2.2 SBOM (carried at /sbom.spdx.json and attached to "
            "a push as an OCI 1.1 referrer) to PATH; a multi-platform build writes the first "
            "platform's"),
        opt(provenance, undefined, "provenance", string, false, "PATH",
            "also write the push's SLSA provenance statement (in-toto, attached signed with "
            "--sign-key as a referrer and at tag sha256-<digest>.att) to PATH; needs --push; "
            "a multi-platform build writes the first platform's"),
        opt(no_vcs_annotations, undefined, "no-vcs-annotations", flag, false, "",
            "do not add the org.opencontainers.image.source and .revision annotations (read "
            "from CI variables, else git)"),
        opt(sign_key, undefined, "sign-key", string, false, "PATH",
            "sign the pushed image, cosign-compatible (tag sha256-<digest>.sig), with this "
            "ECDSA P-256 key: PEM from openssl, or a cosign key whose password is in "
            "COSIGN_PASSWORD. Default: $OCIBUILD_SIGN_KEY. Saving a tarball does not sign"),
        (opt(compression, undefined, "compression", string, false, "gzip|zstd|auto",
             "layer compression; auto is zstd"))#{default => compression},
        opt(gc_cache, undefined, "gc-cache", flag, false, "",
            "collect the blob store and layer cache (OCIBUILD_CACHE_DIR): remove what is "
            "unused for longer than OCIBUILD_CACHE_MAX_AGE, then the least recently used "
            "beyond OCIBUILD_CACHE_MAX_SIZE; print what was freed and exit without building")
    ].

opt(Key, Short, Long, Type, Repeat, Arg, Help) ->
    #{key => Key, short => Short, long => Long, type => Type, repeat => Repeat, arg => Arg,
      help => Help}.

%% @doc The project file's keys (`ocibuild:' in mix.exs, `{ocibuild, [...]}' in
%% rebar.config) and what each means.
-spec project_keys() -> [{atom(), string()}].
project_keys() ->
    [
        {base_image, "the base image, as --base"},
        {tag, "a tag or a list of tags, as --tag"},
        {workdir, "where the release goes in the image, and the container's working directory"},
        {env, "environment variables, a map or a list of {Name, Value}"},
        {expose, "ports: integers (TCP) or strings such as \"53/udp\""},
        {labels, "image config labels, a map or a list of {Key, Value}, as --label"},
        {annotations, "manifest annotations, a map or a list of {Key, Value}, as --annotation"},
        {uid, "as --uid"},
        {vcs_annotations, "false, as --no-vcs-annotations (default true)"},
        {sign_key, "as --sign-key"},
        {compression, "as --compression"},
        {platform, "as --platform"},
        {cmd, "as --cmd"},
        {output, "as --output"},
        {push, "as --push"},
        {chunk_size, "as --chunk-size"},
        {description, "the image description annotation (Mix: the project's :description)"},
        {app_name, "the application whose code goes into the app layer (Mix: the project's "
                   ":app; rebar3: the release name)"}
    ].

%% @doc The environment variables either tool reads.
-spec environment() -> [{string(), string()}].
environment() ->
    [
        {"OCIBUILD_PUSH_TOKEN", "a bearer token for --push (wins over the two below)"},
        {"OCIBUILD_PUSH_USERNAME, OCIBUILD_PUSH_PASSWORD",
         "credentials for --push; unset or empty: ~/.docker/config.json or podman's auth.json, "
         "else anonymous"},
        {"OCIBUILD_PULL_TOKEN, OCIBUILD_PULL_USERNAME, OCIBUILD_PULL_PASSWORD",
         "the same for pulling the base image"},
        {"OCIBUILD_SIGN_KEY", "the signing key's path, as --sign-key"},
        {"COSIGN_PASSWORD", "the password of an encrypted cosign signing key"},
        {"OCIBUILD_GIT_TIMEOUT", "milliseconds each git command may take (default 5000)"},
        {"OCIBUILD_CACHE_DIR", "where built layers are kept (default _build/ocibuild_cache)"},
        {"OCIBUILD_LAYER_CACHE", "on (default: unchanged layers are reused), content (decide "
                                 "by file contents only, ignoring timestamps) or off"},
        {"OCIBUILD_CACHE_MAX_AGE", "cached blobs unused this long are removed: days, or a "
                                   "number ending in s, m, h or d (default 30)"},
        {"OCIBUILD_CACHE_MAX_SIZE", "the cache's size bound, least recently used first: bytes, "
                                    "or a number ending in K, M, G or T (default 10G)"},
        {"SOURCE_DATE_EPOCH", "the timestamp of every file and of the image, for reproducible "
                              "images (default 0 for files)"}
    ].

%% @doc An option's help, with its default when it has one.
-spec help(option()) -> string().
help(#{help := Help} = Option) ->
    case maps:find(maps:get(default, Option, none), defaults()) of
        {ok, Value} ->
            lists:flatten(io_lib:format("~ts. Default: ~ts.",
                                        [Help, ocibuild_release_config:to_binary(Value)]));
        error ->
            Help ++ "."
    end.

%% rebar3 builds its help when it loads the plugin, for every command: a NIF that does not
%% load (it says so in one line when loaded) must not stop those, so the help then leaves out
%% the defaults the native core holds.
defaults() ->
    try
        ocibuild_release_config:defaults()
    catch
        error:{nif_not_loaded, _} -> #{}
    end.

%% @doc The rebar3 provider's getopt specs. `--release''s key is relx's own `relname', so the
%% `release' step run before the provider builds that same release.
-spec getopt_specs() -> [{atom(), char() | undefined, string() | undefined, atom(), string()}].
getopt_specs() ->
    [{getopt_key(O), Short, Long, getopt_type(Type), help(O)}
     || #{short := Short, long := Long, type := Type} = O <- options()].

getopt_key(#{key := release}) -> relname;
getopt_key(#{key := Key}) -> Key.

getopt_type(flag) -> undefined;
getopt_type(Type) -> Type.

%% @doc `OptionParser''s `strict:' switches (the positional TARBALL is not one).
-spec mix_switches() -> [{atom(), atom()}].
mix_switches() ->
    [{Key, mix_type(O)} || #{key := Key, long := Long} = O <- options(), Long =/= undefined].

mix_type(#{repeat := true}) -> keep;
mix_type(#{type := flag}) -> boolean;
mix_type(#{type := Type}) -> Type.

%% @doc `OptionParser''s `aliases:'.
-spec mix_aliases() -> [{atom(), atom()}].
mix_aliases() ->
    [{list_to_atom([Short]), Key} || #{key := Key, short := Short} <- options(),
                                     Short =/= undefined].

%% @doc The options as a Markdown list, for `mix help ocibuild'.
-spec markdown_options() -> binary().
markdown_options() ->
    iolist_to_binary([["  * ", md_flags(O), " - ", help(O), "\n\n"] || O <- options()]).

md_flags(#{long := undefined, arg := Arg}) ->
    ["`", Arg, "`"];
md_flags(#{short := Short, long := Long, arg := Arg}) ->
    Value = case Arg of
                "" -> "";
                _ -> [" ", Arg]
            end,
    ShortPart = case Short of
                    undefined -> "";
                    _ -> ["`-", Short, "`, "]
                end,
    [ShortPart, "`--", Long, Value, "`"].

%% @doc The project keys as a Markdown list.
-spec markdown_project_keys() -> binary().
markdown_project_keys() ->
    iolist_to_binary([["  * `:", atom_to_list(K), "` - ", project_help(K, H), "\n"]
                      || {K, H} <- project_keys()]).

%% @doc The environment variables as a Markdown list.
-spec markdown_environment() -> binary().
markdown_environment() ->
    iolist_to_binary([["  * `", lists:join("`, `", string:split(V, ", ", all)), "` - ", H, "\n"]
                      || {V, H} <- environment()]).

%% @doc The project keys as plain text, for `rebar3 help ocibuild'.
-spec text_project_keys() -> string().
text_project_keys() ->
    lists:flatten([io_lib:format("  ~-17s ~ts~n", [K, project_help(K, H)])
                   || {K, H} <- project_keys()]).

%% @doc The environment variables as plain text.
-spec text_environment() -> string().
text_environment() ->
    lists:flatten([io_lib:format("  ~ts~n      ~ts~n", [V, H]) || {V, H} <- environment()]).

%% A key whose default the configuration knows shows it.
project_help(Key, Help) ->
    case maps:find(Key, defaults()) of
        {ok, Value} ->
            lists:flatten(io_lib:format("~ts (default ~ts)", [Help, ocibuild_release_config:to_binary(Value)]));
        error ->
            Help
    end.
