%% @doc Whether a release can run on the platforms asked for: a bundled ERTS runs only on the
%% machine type it was built on (refused for another platform, or for several), and native
%% code (NIFs, port programs) built here goes into every platform image (a warning).
%%
%% ```
%% ok = ocibuild_release_platforms:validate_multiplatform("_build/prod/rel/app", Platforms).
%% '''
-module(ocibuild_release_platforms).

-export([check/3, validate_multiplatform/2, has_bundled_erts/1]).

%% @doc Throws `{ocibuild_release, {bundled_erts, Why}}' when the release cannot run on
%% `Platforms'; warns through `Adapter' when several platforms would share native code built
%% here.
-spec check(module(), term(), [ocibuild:platform()]) -> ok.
check(Adapter, Path, Platforms) ->
    case validate_multiplatform(Path, Platforms) of
        ok when length(Platforms) > 1 ->
            warn_native_code(Adapter, Path, Platforms);
        ok ->
            foreign_platform_check(Path, Platforms);
        {error, Reason} ->
            throw({ocibuild_release, Reason})
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

%% @doc More than one platform needs ERTS from the base image: a bundled ERTS runs only on
%% the machine type it was built for.
-spec validate_multiplatform(term(), list()) -> ok | {error, {bundled_erts, binary()}}.
validate_multiplatform(ReleasePath, Platforms) when length(Platforms) > 1 ->
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
validate_multiplatform(_ReleasePath, _Platforms) ->
    ok.

%% @doc True when the release holds its own ERTS (`erts-*' at its root); false for anything
%% that is not a path.
-spec has_bundled_erts(term()) -> boolean().
has_bundled_erts(ReleasePath) ->
    ocibuild_release_args:valid_arg(path, ReleasePath) andalso
        ocibuild_release_files:has_bundled_erts(ocibuild_release_args:host_path(ReleasePath)).

check_for_native_code(ReleasePath) ->
    ocibuild_release_files:native_code(ocibuild_release_args:host_path(ReleasePath)).
