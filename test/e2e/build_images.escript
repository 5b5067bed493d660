#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%% Builds the images the end-to-end tests hand to skopeo, umoci and podman, through the public
%% Erlang API only (ocibuild, ocibuild_layer). Run by test/e2e/run.sh:
%%
%%   OCIBUILD_EBIN=_build/default/lib/ocibuild/ebin escript build_images.escript all SRC OUT
%%   OCIBUILD_EBIN=... escript build_images.escript repro SRC OUT
%%   OCIBUILD_EBIN=... escript build_images.escript readers SRC OUT
%%
%% SRC holds host files made by run.sh (streamed into layers as {file, Path}); OUT receives the
%% tarballs and layout directories. Any failure halts with status 1 and the reason.
-mode(compile).

main([Scenario, Src, Out]) ->
    Ebin = os:getenv("OCIBUILD_EBIN"),
    true = is_list(Ebin) andalso code:add_patha(Ebin),
    try
        build(Scenario, Src, Out),
        halt(0)
    catch
        Class:Reason:Stack ->
            io:format(standard_error, "build_images ~s failed: ~p:~p~n~p~n", [
                Scenario, Class, Reason, Stack
            ]),
            halt(1)
    end;
main(_) ->
    io:format(standard_error, "usage: build_images.escript all|repro|readers SRC OUT~n", []),
    halt(2).

build("all", Src, Out) ->
    App = app(Src),
    ok = ocibuild:save(App, Out ++ "/app-docker.tar.gz", #{tag => <<"e2e-app:1.0">>}),
    ok = ocibuild:save(App, Out ++ "/app-oci.tar.gz", #{tag => <<"e2e-app:1.0">>, format => oci}),
    ok = ocibuild:export(App, Out ++ "/app-layout"),

    ok = ocibuild:save(busybox(), Out ++ "/busybox.tar.gz", #{tag => <<"e2e-busybox:1.0">>}),

    Zstd = zstd(),
    ok = ocibuild:save(Zstd, Out ++ "/zstd.tar.gz", #{tag => <<"e2e-zstd:1.0">>}),
    ok = ocibuild:export(Zstd, Out ++ "/zstd-layout"),

    Multi = multi(),
    ok = ocibuild:save(Multi, Out ++ "/multi-docker.tar.gz", #{tag => <<"e2e-multi:1.0">>}),
    ok = ocibuild:save(Multi, Out ++ "/multi-oci.tar.gz", #{tag => <<"e2e-multi:1.0">>, format => oci}),
    ok = ocibuild:export(Multi, Out ++ "/multi-layout");
build("repro", Src, Out) ->
    ok = ocibuild:save(app(Src), Out ++ "/app.tar.gz", #{tag => <<"e2e-app:1.0">>});
%% The same images as a plain tar and as gzip with stored layers, for readers.sh.
build("readers", Src, Out) ->
    App = app(Src),
    Saves = [
        {App, "app", #{tag => <<"e2e-readers:1.0">>}},
        {App, "app-oci", #{tag => <<"e2e-readers:1.0">>, format => oci}},
        {busybox(), "busybox", #{tag => <<"e2e-readers-busybox:1.0">>}},
        {zstd(), "zstd", #{tag => <<"e2e-readers-zstd:1.0">>}}
    ],
    [ok = ocibuild:save(Image, Out ++ "/" ++ Name ++ Ext, Opts) || {Image, Name, Opts} <- Saves,
        Ext <- [".tar", ".tar.gz"]],
    ok = ocibuild:save(App, Out ++ "/app.tgz", #{tag => <<"e2e-readers:1.0">>}).

%% Every feature whose result umoci can show: file modes, a long path that still fits ustar's
%% prefix+name split, a file name only PAX can hold, and the whole runtime config.
app(Src) ->
    {ok, I0} = ocibuild:scratch(),
    Files = [
        {<<"/app/bin/run.sh">>, {file, Src ++ "/run.sh"}, 8#755},
        {<<"/app/etc/data.txt">>, {file, Src ++ "/data.txt"}, 8#644},
        {<<"/app/etc/secret">>, <<"s3cret\n">>, 8#600},
        {<<"/app/share/numbers.txt">>, {file, Src ++ "/numbers.txt"}, 8#644},
        {long_path(), <<"long path\n">>, 8#644},
        {pax_path(), <<"pax path\n">>, 8#644}
    ],
    I1 = ocibuild:add_layer(I0, Files, #{compression => gzip, layer_type => app}),
    I2 = ocibuild:entrypoint(I1, [<<"/app/bin/run.sh">>]),
    I3 = ocibuild:cmd(I2, [<<"--port">>, <<"9090">>]),
    I4 = ocibuild:env(I3, #{<<"LANG">> => <<"C.UTF-8">>, <<"PORT">> => <<"8080">>}),
    %% A later value replaces the earlier one in place: PORT stays second, set to 9090.
    I5 = ocibuild:env(I4, #{<<"PORT">> => <<"9090">>}),
    I6 = ocibuild:workdir(I5, <<"/app">>),
    I7 = ocibuild:user(I6, <<"1000:1000">>),
    I8 = ocibuild:expose(ocibuild:expose(I7, 8080), <<"53/udp">>),
    I9 = ocibuild:label(I8, <<"org.example.team">>, <<"core">>),
    ocibuild:annotation(I9, <<"org.opencontainers.image.version">>, <<"0.1.0">>).

long_path() ->
    <<"/srv/", (binary:copy(<<"d">>, 60))/binary, "/", (binary:copy(<<"e">>, 50))/binary,
        "/long-name.txt">>.

pax_path() ->
    <<"/srv/", (binary:copy(<<"f">>, 150))/binary, ".txt">>.

%% A scratch image that runs: a static busybox plus a file for it to print.
busybox() ->
    {ok, I0} = ocibuild:scratch(),
    Files = [
        {<<"/bin/busybox">>, {file, "/bin/busybox"}, 8#755},
        {<<"/etc/greeting">>, <<"hello from ocibuild\n">>, 8#644}
    ],
    I1 = ocibuild:add_layer(I0, Files, #{compression => gzip}),
    I2 = ocibuild:entrypoint(I1, [<<"/bin/busybox">>]),
    I3 = ocibuild:cmd(I2, [<<"cat">>, <<"/etc/greeting">>]),
    I4 = ocibuild:env(I3, #{<<"GREETING">> => <<"hi-from-env">>}),
    ocibuild:workdir(I4, <<"/etc">>).

%% copy/3 uses the default compression, auto = zstd; busybox keeps its host mode (0755).
zstd() ->
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:copy(
        I0, [{<<"hello.txt">>, <<"hello from zstd\n">>}, {<<"busybox">>, {file, "/bin/busybox"}}], <<"/opt">>
    ),
    ocibuild:entrypoint(I1, [<<"/opt/busybox">>, <<"cat">>, <<"/opt/hello.txt">>]).

multi() ->
    [
        begin
            {ok, I0} = ocibuild:scratch(),
            {ok, Platform} = ocibuild:parse_platform(Spec),
            Content = <<"built for ", Spec/binary, "\n">>,
            I1 = ocibuild:add_layer(I0, [{<<"/platform.txt">>, Content, 8#644}]),
            I1#{platform := Platform}
        end
     || Spec <- [<<"linux/amd64">>, <<"linux/arm64">>]
    ].
