%% @doc Building a layer while a `progress' fun learns how far the read of its files got.
%%
%% The native build runs on a dirty scheduler in the process that calls it, which cannot
%% receive anything until it returns. So with a progress fun the build runs in a helper
%% process, and the native core's producer thread sends this process
%% `{ocibuild_layer_progress, Helper, #{bytes_read, total_bytes}}' as it reads (at most every
%% 100 ms, plus the first and the last); this process calls the fun with
%% `#{phase => build, layer => Type, bytes_read => N, total_bytes => T}' (`Type' is the
%% `layer_type' option, else `undefined'), in its own process, as a push's progress fun is
%% called. `bytes_read' never goes down, and when the build succeeds the last call has
%% `bytes_read =:= total_bytes'. A fun that raises is ignored, as in a push.
%%
%% ```
%% Show = fun(#{bytes_read := N, total_bytes := T}) -> io:format("~b/~b~n", [N, T]) end,
%% {ok, Layer} = ocibuild_layer:create(Files, #{layer_type => app, progress => Show}).
%% '''
-module(ocibuild_layer_progress).

-export([create/4]).

-type info() :: #{
    phase := build,
    layer := atom(),
    bytes_read := non_neg_integer(),
    total_bytes := non_neg_integer()
}.
-export_type([info/0]).

%% @doc `ocibuild_nif:layer_create/2', reporting to `Progress' (`undefined': none).
-spec create(list(), map(), fun((info()) -> term()) | undefined, atom()) ->
    {ok, map()} | {error, term()}.
create(Entries, NifOpts, undefined, _Layer) ->
    ocibuild_nif:layer_create(Entries, NifOpts);
create(Entries, NifOpts, Progress, Layer) when is_function(Progress, 1) ->
    Caller = self(),
    %% The result leaves the helper as its exit reason: one message, after every report the
    %% build sent (the reports were sent before the native call returned).
    {Helper, Monitor} = spawn_monitor(fun() ->
        exit({layer_built, ocibuild_nif:layer_create(Entries, NifOpts#{progress => Caller})})
    end),
    await(Helper, Monitor, fun(Info) -> report(Progress, Info#{phase => build, layer => Layer}) end, none).

await(Helper, Monitor, Report, Last) ->
    receive
        {ocibuild_layer_progress, Helper, Info} ->
            await(Helper, Monitor, Report, reported(Report, Info, Last));
        {'DOWN', Monitor, process, Helper, Reason} ->
            %% Reports already sent but not yet taken are still delivered.
            _ = drain(Helper, Report, Last),
            case Reason of
                {layer_built, Result} -> Result;
                Other -> {error, {internal_error, Other}}
            end
    end.

drain(Helper, Report, Last) ->
    receive
        {ocibuild_layer_progress, Helper, Info} ->
            drain(Helper, Report, reported(Report, Info, Last))
    after 0 ->
        Last
    end.

%% The build's reports come from one thread, in order; nothing orders them against the
%% helper's exit, though. One that would take `bytes_read' back is dropped, so the fun never
%% sees it go down. (The same count again is the last report correcting the total.)
reported(Report, #{bytes_read := N} = Info, Last) ->
    case Last of
        #{bytes_read := L} when N < L -> Last;
        Info -> Last;
        _ ->
            Report(Info),
            Info
    end.

report(Fun, Info) ->
    try
        Fun(Info)
    catch
        _:_ -> ok
    end.
