#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%% The two halves of bench/save_bench.sh, each run in a fresh VM:
%%
%%   OCIBUILD_EBIN=... escript save_bench.escript prepare SRC_DIR IMAGE_FILE
%%       one gzip layer of every file in SRC_DIR (into $OCIBUILD_CACHE_DIR's blob store), the
%%       image written to IMAGE_FILE as an Erlang term
%%   OCIBUILD_EBIN=... escript save_bench.escript save IMAGE_FILE OUT
%%       ocibuild:save/3 of that image to OUT; prints the seconds the call took
-mode(compile).

main(Args) ->
    Ebin = os:getenv("OCIBUILD_EBIN"),
    true = is_list(Ebin) andalso code:add_patha(Ebin),
    try run(Args) of
        ok -> halt(0)
    catch
        Class:Reason:Stack ->
            io:format(standard_error, "save_bench ~p failed: ~p:~p~n~p~n", [Args, Class, Reason, Stack]),
            halt(1)
    end.

run(["prepare", Src, ImageFile]) ->
    {ok, Names} = file:list_dir(Src),
    Files = [{<<"/data/", (list_to_binary(N))/binary>>, {file, filename:join(Src, N)}, 8#644} || N <- lists:sort(Names)],
    {ok, I0} = ocibuild:scratch(),
    Image = ocibuild:add_layer(I0, Files, #{compression => gzip}),
    true = is_map(Image),
    ok = file:write_file(ImageFile, term_to_binary(Image));
run(["save", ImageFile, Out]) ->
    {ok, Bin} = file:read_file(ImageFile),
    Image = binary_to_term(Bin),
    T0 = erlang:monotonic_time(microsecond),
    ok = ocibuild:save(Image, Out, #{tag => <<"bench:1">>}),
    T1 = erlang:monotonic_time(microsecond),
    io:format("~.3f~n", [(T1 - T0) / 1.0e6]).
