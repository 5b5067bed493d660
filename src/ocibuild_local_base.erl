%% @doc Base images from a tarball on disk (`tar://PATH'), so an image can be built with no
%% registry and no network: an image saved by `ocibuild:save/3', or any OCI layout tarball
%% (skopeo's `oci-archive:', gzip-compressed or not).
%%
%% Every blob is verified and stored in the blob cache, so the base stays usable after the
%% tarball is gone, and a push uploads its layers from the cache like any base layer. The
%% tarball is read with the bounds and error terms of `ocibuild_layout:load_tarball_for_push/1'
%% (`{tarball_not_found, Path}', `{path_traversal, Name}', `{load_limit_exceeded, _}', ...),
%% and the load stops if the calling process exits.
%%
%% ```
%% {ok, Image} = ocibuild:from(<<"tar://_build/base.tar.gz">>).
%% '''
-module(ocibuild_local_base).

-export([is_local/1, load/2, host_platform/0, platform_text/1]).

-define(SCHEME, "tar://").

%% @doc True for a `tar://' reference.
-spec is_local(term()) -> boolean().
is_local(Ref) ->
    case ocibuild_input:text(Ref) of
        {ok, <<?SCHEME, _/binary>>} -> true;
        _ -> false
    end.

%% @doc One base per wanted platform, shaped like `ocibuild_registry:pull/3' results.
%% `Platforms' empty means: the tarball's only image, or the one for the host.
-spec load(binary() | string(), [ocibuild:platform()]) ->
    {ok, [#{base := map(), platform := ocibuild:platform() | undefined}]} | {error, term()}.
load(Ref, Platforms) ->
    case {ocibuild_input:text(Ref), is_platform_list(Platforms)} of
        {_, false} ->
            {error, {invalid_option, platforms, Platforms}};
        {{ok, <<?SCHEME, Path/binary>> = RefBin}, true} when Path =/= <<>> ->
            %% The core chooses the image per platform, with the matcher a registry pull uses.
            case ocibuild_nif:tarball_load(Path, ocibuild_blob_store:root(), Platforms) of
                {ok, #{images := Images}} -> {ok, [as_base(RefBin, I) || I <- Images]};
                {error, _} = Error -> Error
            end;
        _ ->
            {error, {invalid_reference, Ref}}
    end.

is_platform_list(Platforms) ->
    ocibuild_input:is_proper_list(Platforms) andalso
        lists:all(fun(P) -> is_map(P) andalso platform_text(P) =/= <<"unknown">> end, Platforms).

%% Sinks take the manifest and config bytes from `handle'; the map's copy is for reading.
as_base(Ref, #{manifest := Manifest, manifest_digest := Digest, config := Config,
               layers := Layers, platform := Platform, handle := Handle}) ->
    #{
        base => #{
            reference => Ref,
            manifest => Manifest,
            manifest_digest => Digest,
            config => Config,
            layers => Layers,
            handle => Handle
        },
        platform => Platform
    }.

%% @doc `<<"linux/arm64/v8">>'; `<<"unknown">>' for an image that does not say (or for
%% anything that is not a platform map).
-spec platform_text(ocibuild:platform() | undefined | term()) -> binary().
platform_text(#{os := OS, architecture := Arch} = P) when is_binary(OS), is_binary(Arch) ->
    case maps:find(variant, P) of
        {ok, V} when is_binary(V) -> <<OS/binary, "/", Arch/binary, "/", V/binary>>;
        {ok, _NotText} -> <<"unknown">>;
        error -> <<OS/binary, "/", Arch/binary>>
    end;
platform_text(_) ->
    <<"unknown">>.

%% @doc This machine's platform in OCI's names (`x86_64' is `amd64'): the core's table.
-spec host_platform() -> ocibuild:platform().
host_platform() ->
    ocibuild_nif:platform_host().
