#!/usr/bin/env escript
%% The push benchmark's Erlang side (see push_bench.sh):
%%   prepare Layout     build the image, export it for skopeo, print its blob bytes
%%   push Reg RepoTag   push it, print "Milliseconds BlobBytesSent"
%% The image is rebuilt from the same seeds each time: with SOURCE_DATE_EPOCH set it is the
%% same image, byte for byte.
-mode(compile).

main(["prepare", Layout]) ->
    setup(),
    Image = image(),
    ok = ocibuild:export(Image, Layout),
    io:format("~b~n", [lists:sum([S || #{size := S} <- maps:get(layers, Image)])]);
main(["push", Reg, RepoTag]) ->
    setup(),
    Image = image(),
    T0 = erlang:monotonic_time(millisecond),
    {ok, #{uploaded_bytes := Sent}} =
        ocibuild_registry:push([Image], list_to_binary(Reg), list_to_binary(RepoTag), #{}, #{}),
    io:format("~b ~b~n", [erlang:monotonic_time(millisecond) - T0, Sent]).

setup() ->
    code:add_pathz(os:getenv("OCIBUILD_EBIN")).

%% 4 layers of 25 MiB of incompressible bytes: what is pushed is what is measured.
image() ->
    {ok, I0} = ocibuild:scratch(),
    lists:foldl(
        fun(N, I) ->
            rand:seed(exsss, {N, N, N}),
            Path = <<"/data/part", (integer_to_binary(N))/binary>>,
            ocibuild:add_layer(I, [{Path, rand:bytes(25 * 1024 * 1024), 8#644}], #{compression => zstd})
        end,
        I0, [1, 2, 3, 4]).
