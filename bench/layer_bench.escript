#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%% Layer-building benchmark through the public Erlang API: one layer holding every regular
%% file under DIR (streamed as {file, Path}), built with gzip and with zstd. Run by
%% bench/layer_bench.sh, which compiles ocibuild and sets OCIBUILD_EBIN and OCIBUILD_CACHE_DIR.
%%
%%   escript layer_bench.escript DIR RUNS
%%
%% Prints one row per codec with the best of RUNS timed builds (after one untimed warm-up
%% build, so every run reads the files from the page cache).
-mode(compile).

-include_lib("kernel/include/file.hrl").

main([Dir, Runs]) ->
    true = code:add_patha(os:getenv("OCIBUILD_EBIN")),
    Files = regular_files(Dir),
    Bytes = lists:sum([Size || {_, Size} <- Files]),
    Entries = [{list_to_binary(Path), {file, Path}, 8#644} || {Path, _} <- Files],
    {ok, _} = ocibuild_layer:create(Entries, #{compression => zstd}),
    io:format("~-6s ~7s ~10s ~11s ~9s ~9s~n", [codec, files, 'input MB', 'output MB', seconds, 'MB/s']),
    lists:foreach(
        fun(Codec) ->
            Results = [timed(Entries, Codec) || _ <- lists:seq(1, list_to_integer(Runs))],
            {Micros, Size} = lists:min(Results),
            Seconds = Micros / 1.0e6,
            io:format("~-6s ~7b ~10.1f ~11.1f ~9.3f ~9.1f~n", [
                Codec, length(Files), mb(Bytes), mb(Size), Seconds, mb(Bytes) / Seconds
            ])
        end,
        [gzip, zstd]
    );
main(_) ->
    io:format(standard_error, "usage: layer_bench.escript DIR RUNS~n", []),
    halt(2).

timed(Entries, Codec) ->
    {Micros, {ok, #{size := Size}}} = timer:tc(ocibuild_layer, create, [Entries, #{compression => Codec}]),
    {Micros, Size}.

mb(Bytes) -> Bytes / (1024 * 1024).

%% Regular files only, without following symlinks (a release tree has a few).
regular_files(Dir) ->
    {ok, Names} = file:list_dir(Dir),
    lists:flatmap(
        fun(Name) ->
            Path = filename:join(Dir, Name),
            case file:read_link_info(Path) of
                {ok, #file_info{type = regular, size = Size}} -> [{Path, Size}];
                {ok, #file_info{type = directory}} -> regular_files(Path);
                _ -> []
            end
        end,
        lists:sort(Names)
    ).
