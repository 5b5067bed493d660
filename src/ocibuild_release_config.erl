%% @doc One meaning for every flag and configuration key of `mix ocibuild' and
%% `rebar3 ocibuild': the command line and the project file (`ocibuild:' in mix.exs,
%% `{ocibuild, [...]}' in rebar.config) become one checked `config()' map.
%%
%% The command line wins over the project file, which wins over the defaults. Tags, labels and
%% annotations from the two are not added up: command-line tags replace the file's, and a
%% command-line label or annotation replaces the file's value for the same key.
%%
%% ```
%% {ok, Config} = ocibuild_release_config:resolve(#{tag => ["myapp:1;myapp:latest"]},
%%                                               #{base_image => "alpine:3.19"}).
%% '''
-module(ocibuild_release_config).

-export([resolve/2, defaults/0, from_adapter/1, expand_semicolon_tags/1, parse_kv_arg/1, normalize_kv_map/1,
         to_binary/1, env_var/1]).

-export_type([config/0]).

-type config() :: #{
    base_image := binary(),
    tags := [binary()],
    output := binary() | undefined,
    push := binary() | undefined,
    tarball := binary() | undefined,
    annotations := #{binary() => binary()},
    labels := #{binary() => binary()},
    platforms := [ocibuild:platform()],
    release := binary() | undefined,
    cmd := binary() | undefined,
    uid := non_neg_integer(),
    chunk_size := pos_integer(),
    sbom := binary() | undefined,
    provenance => binary() | undefined,
    vcs_annotations := boolean(),
    sign_key := binary() | undefined,
    compression := gzip | zstd | auto,
    workdir := binary(),
    env := #{binary() => binary()},
    expose := [1..65535 | binary()],
    app_name := binary() | undefined,
    description := binary() | undefined,
    tag_required := boolean(),
    app_version => binary(),
    gc_cache => boolean()
}.
%% `cmd' `undefined' means: the release script's own foreground command (`foreground' for
%% relx, `start' for Mix), chosen by `ocibuild_release:run/3' once it has found the release.

-define(DEFAULT_BASE, <<"debian:stable-slim">>).
-define(DEFAULT_WORKDIR, <<"/app">>).
-define(DEFAULT_UID, 65534).
-define(MIB, (1024 * 1024)).

%% Every key `resolve/2' sets: a map holding them all is a resolved config.
-define(RESOLVED_KEYS, [
    base_image, tags, output, push, tarball, annotations, labels, platforms, release, cmd, uid,
    chunk_size, sbom, vcs_annotations, sign_key, compression, workdir, env, expose, app_name,
    description, tag_required
]).

%% The keys of a 0.10 adapter's map that mean what the project file's keys mean.
-define(LOOSE_PROJECT_KEYS, [
    base_image, workdir, env, expose, labels, annotations, uid, vcs_annotations, sign_key,
    compression, platform, cmd, app_name, description, output, push
]).

-define(PROJECT_KEYS, [
    base_image, tag, workdir, env, expose, labels, annotations, uid, vcs_annotations, sign_key,
    compression, platform, cmd, app_name, description, output, push, chunk_size
]).

%% @doc What a key not given falls back to (`chunk_size' in MB), for the tools' help texts.
-spec defaults() -> #{base_image := binary(), workdir := binary(), uid := non_neg_integer(),
                      chunk_size := pos_integer(), compression := auto}.
defaults() ->
    #{base_image => ?DEFAULT_BASE, workdir => ?DEFAULT_WORKDIR, uid => ?DEFAULT_UID,
      chunk_size => core(chunk_size) div ?MIB, compression => auto}.

%% The native core's defaults and bounds (`ocibuild_core::options'): chunk sizes in bytes.
core(Key) ->
    maps:get(Key, ocibuild_nif:options_defaults()).

%% @doc Resolve the command line (`Cli') and the project file (`Project') into a config.
%% Keys and value forms are listed in `ocibuild_release'. Errors:
%% `{unknown_config_key, Key}', `{invalid_option, Name, Value}', `{invalid_uid, Value, Why}',
%% `{invalid_kv_format, Arg}',
%% `{invalid_platform, P}', `{tarball_without_push, Path}'.
-spec resolve(map(), map() | list()) -> {ok, config()} | {error, term()}.
resolve(Cli, Project) when is_list(Project) ->
    case is_proplist(Project) of
        true -> resolve(Cli, maps:from_list(lists:reverse(proplists:unfold(Project))));
        false -> {error, {invalid_option, ocibuild, Project}}
    end;
resolve(Cli, Project) when is_map(Cli), is_map(Project) ->
    try
        {ok, resolve_checked(Cli, Project)}
    catch
        throw:{config_error, Reason} -> {error, Reason}
    end;
resolve(Cli, Project) ->
    {error, {invalid_option, ocibuild, {Cli, Project}}}.

resolve_checked(Cli, Project) ->
    case [K || K <- maps:keys(Project), not lists:member(K, ?PROJECT_KEYS)] of
        [] -> ok;
        [Unknown | _] -> throw({config_error, {unknown_config_key, Unknown}})
    end,
    Push = optional_text(push, first([maps:get(push, Cli, undefined), get(push, Project)])),
    Tarball = optional_text(tarball, maps:get(tarball, Cli, undefined)),
    Tarball =/= undefined andalso Push =:= undefined andalso
        throw({config_error, {tarball_without_push, Tarball}}),
    #{
        base_image => text(base, first([maps:get(base, Cli, undefined),
                                        get(base_image, Project), ?DEFAULT_BASE])),
        tags => tags(maps:get(tag, Cli, []), get(tag, Project)),
        output => optional_text(output, first([maps:get(output, Cli, undefined),
                                               get(output, Project)])),
        push => Push,
        tarball => Tarball,
        annotations => kv(annotations, get(annotations, Project), maps:get(annotation, Cli, [])),
        labels => kv(labels, get(labels, Project), maps:get(label, Cli, [])),
        platforms => platforms(first([maps:get(platform, Cli, undefined),
                                      get(platform, Project)])),
        release => optional_text(release, maps:get(release, Cli, undefined)),
        cmd => optional_text(cmd, first([maps:get(cmd, Cli, undefined), get(cmd, Project)])),
        uid => uid(first([maps:get(uid, Cli, undefined), get(uid, Project), ?DEFAULT_UID])),
        chunk_size => chunk_size(first([maps:get(chunk_size, Cli, undefined),
                                        get(chunk_size, Project), core(chunk_size) div ?MIB])),
        sbom => optional_text(sbom, maps:get(sbom, Cli, undefined)),
        provenance => optional_text(provenance, maps:get(provenance, Cli, undefined)),
        vcs_annotations => vcs_annotations(Cli, Project),
        sign_key => optional_text(sign_key, first([maps:get(sign_key, Cli, undefined),
                                                   get(sign_key, Project),
                                                   env_var("OCIBUILD_SIGN_KEY")])),
        compression => compression(first([maps:get(compression, Cli, undefined),
                                          get(compression, Project), auto])),
        workdir => workdir(first([get(workdir, Project), ?DEFAULT_WORKDIR])),
        env => kv(env, get(env, Project), []),
        expose => expose(first([get(expose, Project), []])),
        app_name => optional_text(app_name, get(app_name, Project)),
        description => optional_text(description, get(description, Project)),
        gc_cache => maps:get(gc_cache, Cli, false) =:= true,
        tag_required => false
    }.

%% @doc What an adapter's `get_config/1' returned, as a checked config. A config made by
%% `resolve/2' (every key of `config()' present) is taken as it is. Anything else is read as
%% the map ocibuild 0.10's adapters return and goes through `resolve/2', so it meets the same
%% checks as the tasks' flags and project keys:
%% <ul>
%% <li>`nil', `undefined', `<<>>' and `""' mean "not set" for every key (0.10 adapters pass
%% optional CI inputs as empty strings), so an empty `platform' is no platform and an empty
%% `push' means save;</li>
%% <li>`base_image', `workdir', `env', `expose', `labels', `annotations', `uid', `cmd',
%% `description', `output', `push', `platform' (`<<"linux/amd64,linux/arm64">>'),
%% `vcs_annotations', `sign_key', `compression', `app_name' as in the project file;
%% `tags' (a list) or `tag'; `sbom', `provenance' and `release' as on the command line;</li>
%% <li>`chunk_size' in bytes (0.10's unit), 1 MB to 4096 MB;</li>
%% <li>`app_version', the release version for tags and the version annotation;</li>
%% <li>other keys (an adapter's own state) are ignored, as 0.10 did;</li>
%% <li>no tag is `missing_tag', as in 0.10.</li>
%% </ul>
-spec from_adapter(term()) -> {ok, config()} | {error, term()}.
from_adapter(Config) when is_map(Config) ->
    case lists:all(fun(Key) -> is_map_key(Key, Config) end, ?RESOLVED_KEYS) of
        true -> {ok, Config};
        false -> from_loose(maps:filter(fun(_Key, Value) -> not is_unset(Value) end, Config))
    end;
from_adapter(Other) ->
    {error, {invalid_option, config, Other}}.

from_loose(Loose) ->
    Project = maps:with(?LOOSE_PROJECT_KEYS, Loose),
    Tags = maps:get(tags, Loose, maps:get(tag, Loose, undefined)),
    Cli = maps:with([sbom, provenance, release], Loose),
    try
        Config = ok(resolve(Cli, with_tag(Project, Tags))),
        ChunkSize = ok(loose_chunk_size(maps:get(chunk_size, Loose, undefined))),
        Version = ok(loose_version(maps:get(app_version, Loose, undefined))),
        {ok, maps:merge(Config#{tag_required := true, chunk_size := ChunkSize}, Version)}
    catch
        throw:{config_error, Reason} -> {error, Reason}
    end.

ok({ok, Value}) -> Value;
ok({error, Reason}) -> throw({config_error, Reason}).

with_tag(Project, undefined) -> Project;
with_tag(Project, Tags) -> Project#{tag => Tags}.

is_unset(Value) -> Value =:= nil orelse Value =:= undefined orelse Value =:= <<>> orelse Value =:= "".

loose_chunk_size(undefined) ->
    {ok, core(chunk_size)};
loose_chunk_size(Bytes) when is_integer(Bytes) ->
    case Bytes >= core(min_chunk_size) andalso Bytes =< core(max_chunk_size) of
        true -> {ok, Bytes};
        false -> {error, {invalid_option, chunk_size, Bytes}}
    end;
loose_chunk_size(Other) ->
    {error, {invalid_option, chunk_size, Other}}.

loose_version(undefined) ->
    {ok, #{}};
loose_version(Version) ->
    case to_text(Version) of
        {ok, Bin} -> {ok, #{app_version => Bin}};
        error -> {error, {invalid_option, app_version, Version}}
    end.

%% Elixir's `nil' counts as "not set", like Erlang's `undefined'.
get(Key, Map) ->
    case maps:get(Key, Map, undefined) of
        nil -> undefined;
        V -> V
    end.

first([undefined | Rest]) -> first(Rest);
first([nil | Rest]) -> first(Rest);
first([V | _]) -> V;
first([]) -> undefined.

%% @doc An environment variable as text; unset and empty are both `undefined' (CI systems
%% such as GitHub Actions pass an optional input that was not given as an empty string).
-spec env_var(string()) -> binary() | undefined.
env_var(Name) ->
    case os:getenv(Name) of
        false -> undefined;
        "" -> undefined;
        V -> unicode:characters_to_binary(V)
    end.

is_proplist(List) ->
    ocibuild_input:is_proper_list(List) andalso lists:all(fun({K, _}) -> is_atom(K); (K) -> is_atom(K) end, List).

fail(Name, Value) ->
    throw({config_error, {invalid_option, Name, Value}}).

text(Name, Value) ->
    case to_text(Value) of
        {ok, <<>>} -> fail(Name, Value);
        {ok, Bin} -> Bin;
        error -> fail(Name, Value)
    end.

optional_text(_Name, undefined) -> undefined;
optional_text(Name, Value) -> text(Name, Value).

to_text(V) when is_atom(V), V =/= undefined, V =/= nil -> {ok, atom_to_binary(V)};
to_text(V) -> ocibuild_input:text(V).

%% -t may be given many times, each a `;'-list; the project's `tag' is one string or a list.
%% The core expands the lists and judges every tag (`ocibuild_nif:reference_tags/1'), so
%% `-t 'bad tag!!'' stops here, before any build.
tags(CliTags, ProjectTag) ->
    Raw =
        case CliTags of
            [_ | _] -> proper_list(tag, CliTags);
            [] -> project_tags(ProjectTag);
            _ -> fail(tag, CliTags)
        end,
    case ocibuild_nif:reference_tags([text(tag, T) || T <- Raw]) of
        {ok, #{tags := Tags}} -> Tags;
        {error, Reason} -> throw({config_error, Reason})
    end.

project_tags(undefined) ->
    [];
project_tags(Tag) when is_binary(Tag) ->
    [Tag];
project_tags([C | _] = Tag) when is_integer(C) ->
    [Tag];
project_tags(Tags) when is_list(Tags) ->
    proper_list(tag, Tags);
project_tags(Tag) ->
    fail(tag, Tag).

kv(Name, FromProject, FromCli) ->
    Base =
        case FromProject of
            undefined -> #{};
            M when is_map(M) -> normalize_kv_map(M);
            L when is_list(L) ->
                case ocibuild_input:is_proper_list(L) andalso is_pair_list(L) of
                    true -> normalize_kv_map(maps:from_list(L));
                    false -> fail(Name, L)
                end;
            Other -> fail(Name, Other)
        end,
    maps:size(Base) =:= map_size(input_map(FromProject)) orelse fail(Name, FromProject),
    lists:foldl(
        fun(Arg, Acc) ->
            case parse_kv_arg(Arg) of
                {ok, {K, V}} -> Acc#{K => V};
                {error, Reason} -> throw({config_error, Reason})
            end
        end,
        Base,
        proper_list(Name, FromCli)
    ).

%% A list the `lists' functions and comprehensions can walk, else the option's error.
proper_list(Name, List) ->
    case ocibuild_input:is_proper_list(List) of
        true -> List;
        false -> fail(Name, List)
    end.

input_map(undefined) -> #{};
input_map(M) when is_map(M) -> M;
input_map(L) -> maps:from_list(L).

is_pair_list(L) -> lists:all(fun(E) -> is_tuple(E) andalso tuple_size(E) =:= 2 end, L).

%% An empty platform is none (the host's), as in 0.10: CI passes an unset input as "".
platforms(undefined) ->
    [];
platforms(P) ->
    case to_text(P) of
        {ok, <<>>} -> [];
        _ -> parse_platforms(text(platform, P))
    end.

parse_platforms(Text) ->
    case ocibuild:parse_platforms(Text) of
        {ok, Ps} -> Ps;
        {error, Reason} -> throw({config_error, Reason})
    end.

%% A uid as an integer or its digits (`"1000"'); 0.10's error term for anything else.
uid(U) when is_integer(U), U >= 0, U < 1 bsl 32 -> U;
uid(U) ->
    case to_text(U) of
        {ok, Bin} ->
            try binary_to_integer(Bin) of
                N -> uid_int(N, U)
            catch
                error:badarg -> bad_uid(U)
            end;
        error ->
            bad_uid(U)
    end.

uid_int(N, _U) when N >= 0, N < 1 bsl 32 -> N;
uid_int(_N, U) -> bad_uid(U).

bad_uid(U) ->
    throw({config_error, {invalid_uid, U, <<"the uid must be an integer from 0 to 4294967295">>}}).

%% Whole megabytes within the core's bounds.
chunk_size(MB) when is_integer(MB) ->
    Bytes = MB * ?MIB,
    case Bytes >= core(min_chunk_size) andalso Bytes =< core(max_chunk_size) of
        true -> Bytes;
        false -> fail(chunk_size, MB)
    end;
chunk_size(MB) -> fail(chunk_size, MB).

vcs_annotations(Cli, Project) ->
    case maps:get(no_vcs_annotations, Cli, false) of
        true ->
            false;
        _ ->
            case first([get(vcs_annotations, Project), true]) of
                B when is_boolean(B) -> B;
                Other -> fail(vcs_annotations, Other)
            end
    end.

compression(C) ->
    case to_text(C) of
        {ok, <<"gzip">>} -> gzip;
        {ok, <<"zstd">>} -> zstd;
        {ok, <<"auto">>} -> auto;
        _ -> fail(compression, C)
    end.

%% An absolute container path without `..', `.' or empty components (`/srv/my app' is fine).
workdir(W) ->
    Bin = text(workdir, W),
    case binary:split(Bin, <<"/">>, [global]) of
        [<<>> | Parts] when Parts =/= [] ->
            Clean = [P || P <- Parts, P =/= <<>>],
            case lists:any(fun(P) -> P =:= <<"..">> orelse P =:= <<".">> end, Clean) of
                true -> fail(workdir, W);
                false when Clean =:= [] -> fail(workdir, W);
                false -> iolist_to_binary([[<<"/">>, P] || P <- Clean])
            end;
        _ ->
            fail(workdir, W)
    end.

expose(Ports) when is_list(Ports) ->
    [port(P) || P <- proper_list(expose, Ports)];
expose(Other) ->
    fail(expose, Other).

port(P) when is_integer(P), P >= 1, P =< 65535 -> P;
port(P) ->
    case to_text(P) of
        {ok, Bin} -> Bin;
        error -> fail(expose, P)
    end.

%% @doc `<<"a:1;a:latest">>' -> `[<<"a:1">>, <<"a:latest">>]': trimmed, empties dropped, by
%% the core's expansion (the one `-t' and `tag' get, there with each tag checked).
-spec expand_semicolon_tags(binary() | string()) -> [binary()].
expand_semicolon_tags(Tags) ->
    {ok, Expanded} = ocibuild_nif:reference_tags_expand([to_binary(Tags)]),
    Expanded.

%% @doc `"key=value"' -> `{ok, {<<"key">>, <<"value">>}}'; the value may hold `='.
-spec parse_kv_arg(string() | binary()) ->
    {ok, {binary(), binary()}} | {error, {invalid_kv_format, term()}}.
parse_kv_arg(Arg) ->
    case ocibuild_input:text(Arg) of
        {ok, Bin} ->
            case binary:split(Bin, <<"=">>) of
                [K, V] when K =/= <<>> -> {ok, {K, V}};
                _ -> {error, {invalid_kv_format, Arg}}
            end;
        error ->
            {error, {invalid_kv_format, Arg}}
    end.

%% @doc Keys and values as binaries (atoms, strings, charlists, numbers); not a map -> `#{}'.
%% Pairs that cannot be made text are dropped.
-spec normalize_kv_map(term()) -> #{binary() => binary()}.
normalize_kv_map(Map) when is_map(Map) ->
    maps:from_list([
        {K, V}
     || {K0, V0} <- maps:to_list(Map),
        {ok, K} <- [kv_text(K0)],
        {ok, V} <- [kv_text(V0)],
        K =/= <<>>
    ]);
normalize_kv_map(_) ->
    #{}.

kv_text(V) when is_integer(V) -> {ok, integer_to_binary(V)};
kv_text(V) -> to_text(V).

%% @doc Atoms, strings, charlists, iolists and numbers as a binary.
-spec to_binary(term()) -> binary().
to_binary(B) when is_binary(B) -> B;
to_binary(A) when is_atom(A) -> atom_to_binary(A);
to_binary(I) when is_integer(I) -> integer_to_binary(I);
to_binary(F) when is_float(F) -> float_to_binary(F, [short]);
to_binary(L) when is_list(L) ->
    case unicode:characters_to_binary(L) of
        B when is_binary(B) -> B;
        _ -> iolist_to_binary(L)
    end.
