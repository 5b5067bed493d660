%% @doc A release directory as image files, and how they split into layers.
%%
%% Files are not read: each becomes `{ContainerPath, {file, HostPath}, Mode}' and the native
%% core streams it while writing the layer, so memory does not grow with the release.
%%
%% Symlinks: a link whose target stays inside the release is followed and stored as the
%% target's content (a file) or contents (a directory), so the image never holds a link
%% that could point elsewhere at run time. A link pointing outside the release is skipped with
%% a warning naming it; so is a broken link, a link cycle and any special file (socket, FIFO,
%% device).
%%
%% ```
%% {ok, Files, Warnings} = ocibuild_release_files:collect("_build/prod/rel/myapp", <<"/app">>),
%% {Erts, Deps, App} = ocibuild_release_files:partition(Files, [<<"jason">>], <<"myapp">>,
%%                                                       <<"/app">>, true).
%% '''
-module(ocibuild_release_files).

-export([
    collect/2,
    classify/5,
    partition/5,
    native_code/1,
    has_bundled_erts/1,
    start_erl_data/1,
    file_mode/1,
    relative_path/2,
    container_path/2
]).

-export_type([file_entry/0, warning/0]).

-include_lib("kernel/include/file.hrl").

-type file_entry() :: {ContainerPath :: binary(), {file, HostPath :: binary()}, Mode :: 0..8#7777}.

-type warning() ::
    {symlink_outside_release, Path :: binary(), Target :: binary()}
    | {broken_symlink, Path :: binary()}
    | {symlink_loop, Path :: binary()}
    | {special_file, Path :: binary(), Type :: atom()}
    | {unreadable_directory, Dir :: binary(), file:posix()}.

%% Deep enough for any real release; stops a chain of links within the release.
-define(MAX_LINK_HOPS, 40).

%% @doc Every regular file under `ReleasePath', placed under `Workdir' in the image, sorted
%% by container path. Warnings list what was skipped and why.
-spec collect(file:filename_all(), binary()) ->
    {ok, [file_entry()], [warning()]} | {error, term()}.
collect(ReleasePath, Workdir) ->
    case ocibuild_input:host_path(ReleasePath) of
        {ok, Path0} ->
            Root = absolute(Path0),
            case file:read_file_info(Root) of
                {ok, #file_info{type = directory}} ->
                    RealRoot = real_path(Root),
                    {Files, Warnings} = walk(RealRoot, Root, RealRoot, <<>>, #{}, {[], []}),
                    Placed = [{join(Workdir, Rel), {file, Host}, Mode} || {Rel, Host, Mode} <- Files],
                    {ok, lists:keysort(1, Placed), lists:reverse(Warnings)};
                {ok, _} ->
                    {error, {release_not_directory, Root}};
                {error, Posix} ->
                    {error, {release_not_found, Root, Posix}}
            end;
        error ->
            {error, {invalid_option, release_path, ReleasePath}}
    end.

%% `Root' is the release's real path (every link on the way resolved); `Dir' a directory in
%% the release and `Real' its real path, which a plain subdirectory extends by its name and a
%% followed link replaces by the link's real target; `Rel' its path in the release as the user
%% sees it; `Seen' the real directories on the way down (the cycle guard).
walk(Root, Dir, Real, Rel, Seen, Acc) ->
    case file:list_dir_all(Dir) of
        {ok, Names} ->
            lists:foldl(
                fun(Name, A) -> entry(Root, Dir, Real, Rel, Name, Seen#{Real => true}, A) end,
                Acc,
                lists:sort([to_bin(N) || N <- Names])
            );
        {error, Posix} ->
            {Files, Warnings} = Acc,
            {Files, [{unreadable_directory, Dir, Posix} | Warnings]}
    end.

entry(Root, Dir, Real, Rel, Name, Seen, {Files, Warnings} = Acc) ->
    Host = filename:join(Dir, Name),
    ChildRel = join_rel(Rel, Name),
    case file:read_link_info(Host, [raw]) of
        {ok, #file_info{type = regular, mode = Mode}} ->
            {[{ChildRel, Host, Mode band 8#7777} | Files], Warnings};
        {ok, #file_info{type = directory}} ->
            walk(Root, Host, <<Real/binary, "/", Name/binary>>, ChildRel, Seen, Acc);
        {ok, #file_info{type = symlink}} ->
            follow(Root, Host, ChildRel, Seen, Acc);
        {ok, #file_info{type = Type}} ->
            {Files, [{special_file, ChildRel, Type} | Warnings]};
        {error, _} ->
            {Files, [{broken_symlink, ChildRel} | Warnings]}
    end.

follow(Root, Link, Rel, Seen, {Files, Warnings} = Acc) ->
    case resolve_link(Link, ?MAX_LINK_HOPS) of
        {ok, Target} ->
            case inside(Root, Target) of
                false ->
                    {Files, [{symlink_outside_release, Rel, Target} | Warnings]};
                true ->
                    case file:read_file_info(Target, [raw]) of
                        {ok, #file_info{type = regular, mode = Mode}} ->
                            {[{Rel, Target, Mode band 8#7777} | Files], Warnings};
                        {ok, #file_info{type = directory}} ->
                            %% `resolve_link' gives a real path: no link left in it.
                            case maps:is_key(Target, Seen) of
                                true -> {Files, [{symlink_loop, Rel} | Warnings]};
                                false -> walk(Root, Target, Target, Rel, Seen, Acc)
                            end;
                        {ok, #file_info{type = Type}} ->
                            {Files, [{special_file, Rel, Type} | Warnings]};
                        {error, _} ->
                            {Files, [{broken_symlink, Rel} | Warnings]}
                    end
            end;
        {error, loop} ->
            {Files, [{symlink_loop, Rel} | Warnings]};
        {error, broken} ->
            {Files, [{broken_symlink, Rel} | Warnings]}
    end.

%% The final target of a link, lexically normalised: no `.', `..' or links left in the last
%% component (earlier components are real directories or resolved by `real_path/1').
resolve_link(_Path, 0) ->
    {error, loop};
resolve_link(Path, Hops) ->
    case file:read_link_info(Path, [raw]) of
        {ok, #file_info{type = symlink}} ->
            case file:read_link_all(Path) of
                {ok, Target0} ->
                    Target = normalize(filename:join(real_path(filename:dirname(Path)),
                                                     to_bin(Target0))),
                    resolve_link(Target, Hops - 1);
                {error, _} ->
                    {error, broken}
            end;
        {ok, _} ->
            {ok, normalize(filename:join(real_path(filename:dirname(Path)),
                                         filename:basename(Path)))};
        {error, _} ->
            {error, broken}
    end.

%% A directory with every link on the way resolved (so `inside/2' compares real paths).
real_path(Dir) ->
    real_path(filename:split(absolute(Dir)), <<>>, ?MAX_LINK_HOPS).

real_path([], Acc, _Hops) ->
    Acc;
real_path([Top | Rest], <<>>, Hops) ->
    real_path(Rest, to_bin(Top), Hops);
real_path([Part | Rest], Acc, Hops) ->
    Next = normalize(filename:join(Acc, Part)),
    case file:read_link_all(Next) of
        {ok, Target} when Hops > 0 ->
            Resolved = normalize(filename:join(Acc, to_bin(Target))),
            real_path(filename:split(Resolved) ++ Rest, <<>>, Hops - 1);
        _ ->
            real_path(Rest, Next, Hops)
    end.

normalize(Path) ->
    Parts = lists:foldl(
        fun
            (<<".">>, Acc) -> Acc;
            (<<"..">>, [_Top]) -> [<<"/">>];
            (<<"..">>, [_ | Acc]) -> Acc;
            (P, Acc) -> [P | Acc]
        end,
        [],
        [to_bin(P) || P <- filename:split(to_bin(Path))]
    ),
    to_bin(filename:join(lists:reverse(Parts))).

%% Both real paths.
inside(RealRoot, Path) ->
    Prefix = <<RealRoot/binary, "/">>,
    Path =:= RealRoot orelse string:prefix(Path, Prefix) =/= nomatch.

absolute(Path) ->
    normalize(filename:absname(Path)).

to_bin(B) when is_binary(B) -> B;
to_bin(L) -> unicode:characters_to_binary(L, file:native_name_encoding()).

join_rel(<<>>, Name) -> Name;
join_rel(Rel, Name) -> <<Rel/binary, "/", Name/binary>>.

join(Workdir, Rel) ->
    <<(string:trim(Workdir, trailing, "/"))/binary, "/", Rel/binary>>.

%% @doc Which layer a container path belongs to (`ocibuild_release:classify_file_layer/5').
-spec classify(binary(), sets:set(binary()), binary(), binary(), boolean()) -> erts | dep | app.
classify(Path, DepNames, AppName, Workdir, HasErts) ->
    case relative_to_workdir(Path, Workdir) of
        [<<"lib">>, Dir | _] ->
            Name = app_name_of(Dir),
            if
                Name =:= AppName -> app;
                true ->
                    case sets:is_element(Name, DepNames) of
                        true -> dep;
                        false when HasErts -> erts;
                        false -> dep
                    end
            end;
        [<<"erts-", _/binary>> | _] ->
            erts;
        _ ->
            app
    end.

relative_to_workdir(Path, Workdir) ->
    Prefix = <<(string:trim(Workdir, trailing, "/"))/binary, "/">>,
    Rel =
        case string:prefix(Path, Prefix) of
            nomatch -> string:trim(Path, leading, "/");
            Rest -> Rest
        end,
    binary:split(Rel, <<"/">>, [global]).

%% `lib/cowboy-2.10.0' -> `cowboy'; names may hold `-' only before the version.
app_name_of(Dir) ->
    case string:split(Dir, <<"-">>, trailing) of
        [Name, _Vsn] -> Name;
        [Name] -> Name
    end.

%% @doc Split files into `{Erts, Deps, App}' (`ocibuild_release:partition_files_by_layer/5').
-spec partition([tuple()], [map() | binary()], binary(), binary(), boolean()) ->
    {[tuple()], [tuple()], [tuple()]}.
partition(Files, Deps, AppName, Workdir, HasErts) ->
    DepNames = sets:from_list([dep_name(D) || D <- Deps], [{version, 2}]),
    lists:foldr(
        fun({Path, _, _} = F, {E, D, A}) ->
            case classify(Path, DepNames, AppName, Workdir, HasErts) of
                erts -> {[F | E], D, A};
                dep -> {E, [F | D], A};
                app -> {E, D, [F | A]}
            end
        end,
        {[], [], []},
        Files
    ).

dep_name(#{name := Name}) -> ocibuild_release_config:to_binary(Name);
dep_name(Name) -> ocibuild_release_config:to_binary(Name).

%% @doc Native shared libraries under `lib/*/priv' (`.so', `.dll', `.dylib'): `file' is the
%% file's name (as 0.10 reported it), `path' where it is in the release.
-spec native_code(file:filename_all()) ->
    {ok, []} | {warning, [#{app := binary(), file := binary(), extension := binary(),
                           path := binary()}]}.
native_code(ReleasePath) ->
    Found = lists:sort(fun(A, B) -> maps:get(path, A) =< maps:get(path, B) end, [
        native_info(F)
     || F <- filelib:wildcard("lib/*/priv/**/*.{so,dll,dylib}", to_list(ReleasePath))
    ]),
    case Found of
        [] -> {ok, []};
        _ -> {warning, Found}
    end.

native_info(Rel) ->
    ["lib", AppDir | _] = filename:split(Rel),
    #{
        app => app_name_of(to_bin(AppDir)),
        file => to_bin(filename:basename(Rel)),
        path => to_bin(Rel),
        extension => to_bin(filename:extension(Rel))
    }.

to_list(P) when is_binary(P) -> unicode:characters_to_list(P, file:native_name_encoding());
to_list(P) -> P.

%% @doc True when the release root holds an `erts-*' directory.
-spec has_bundled_erts(file:filename_all()) -> boolean().
has_bundled_erts(ReleasePath) ->
    lists:any(fun filelib:is_dir/1, filelib:wildcard(filename:join(to_list(ReleasePath), "erts-*"))).

%% @doc The words of `releases/start_erl.data' (`ERTS_VSN REL_VSN', as relx and Mix write
%% it); `[]' when it is not a small regular file (a FIFO there must not block the build).
-spec start_erl_data(file:filename_all()) -> [binary()].
start_erl_data(ReleasePath) ->
    case ocibuild_host_file:read(filename:join([ReleasePath, "releases", "start_erl.data"]), 4096) of
        {ok, Data} -> string:lexemes(Data, " \n\r\t");
        {error, _} -> []
    end.

%% @doc The permission bits of a file (links followed); 8#644 if it cannot be read.
-spec file_mode(file:filename_all()) -> non_neg_integer().
file_mode(Path) ->
    case file:read_file_info(Path) of
        {ok, #file_info{mode = Mode}} -> Mode band 8#7777;
        {error, _} -> 8#644
    end.

%% @doc `FullPath' relative to `BasePath' (both made absolute first), as the type `FullPath'
%% was given in (a string for a string, a binary for a binary), as 0.10 returned it.
-spec relative_path(file:filename_all(), file:filename_all()) -> file:filename_all().
relative_path(BasePath, FullPath) ->
    Base = filename:split(absolute(to_bin(BasePath))),
    Full = filename:split(absolute(to_bin(FullPath))),
    Relative =
        case lists:prefix(Base, Full) of
            true ->
                case lists:nthtail(length(Base), Full) of
                    [] -> <<".">>;
                    Rest -> to_bin(filename:join(Rest))
                end;
            false ->
                to_bin(filename:join(Full))
        end,
    as_type_of(FullPath, Relative).

as_type_of(Given, Path) when is_binary(Given) -> Path;
as_type_of(_Given, Path) -> to_list(Path).

%% @doc A host path relative to the release as the path inside the image, under `Workdir':
%% `"bin/myapp"' is `<<"/app/bin/myapp">>' with the default workdir. Backslashes count as
%% separators; empty and `.' components are dropped.
-spec container_path(file:filename_all(), file:filename_all()) -> binary().
container_path(Path, Workdir) ->
    Parts = [P || P <- binary:split(to_bin(Path), [<<"/">>, <<"\\">>], [global]),
                  P =/= <<>>, P =/= <<".">>],
    Root = string:trim(to_bin(Workdir), trailing, "/"),
    iolist_to_binary([Root, [[<<"/">>, P] || P <- Parts]]).
