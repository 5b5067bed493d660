%% @doc Progress of pulls, pushes and layer builds on the terminal.
%%
%% On a terminal, one live line per blob: a coordinator process owns the screen, keeps a line
%% for every blob in flight (uploads run in parallel) and redraws them in place. A layer being
%% built (`ocibuild_layer:create/2''s `progress', phase `build') gets a line too, keyed by its
%% layer type: bytes of its files read, of the total. Elsewhere (CI logs, pipes) it prints one
%% plain line when a blob is done and nothing for builds (the release pipeline prints its own
%% two lines per layer), so logs stay short and readable.
%%
%% ```
%% Progress = ocibuild_progress:callback(),
%% {ok, _} = ocibuild_registry:push(Images, Registry, RepoTag, Auth, #{progress => Progress}),
%% ocibuild_progress:stop().
%% '''
-module(ocibuild_progress).

-export([
    callback/0,
    callback/1,
    start/0,
    stop/0,
    clear_line/0,
    is_tty/0,
    format_bytes/1,
    format_progress/2
]).

-define(COORDINATOR, ocibuild_progress_coordinator).
-define(BAR_WIDTH, 24).
%% Redraw at most this often: a fast upload reports thousands of chunks.
-define(REDRAW_MS, 100).

%% @doc A fun for the `progress' option of pulls and pushes.
-spec callback() -> ocibuild_registry:progress_fun().
callback() ->
    callback(fun(Line) -> io:format("~ts~n", [Line]) end).

%% @doc As `callback/0', with the plain lines (not on a terminal) handed to `Print', e.g. a
%% build tool's own output function.
-spec callback(fun((iodata()) -> term())) -> ocibuild_registry:progress_fun().
callback(Print) ->
    case is_tty() of
        true ->
            _ = start(),
            fun(Info) ->
                case whereis(?COORDINATOR) of
                    undefined -> ok;
                    Pid -> Pid ! {progress, Info}
                end,
                ok
            end;
        false ->
            fun(Info) ->
                case plain_line(Info) of
                    none -> ok;
                    Line -> Print(Line)
                end
            end
    end.

%% Not a terminal: one line when a blob is finished, found or mounted; nothing per chunk,
%% nothing for a layer build.
plain_line(#{phase := build}) ->
    none;
plain_line(#{phase := manifest_put, digest := Digest}) when Digest =/= undefined ->
    io_lib:format("  manifest ~ts", [short(Digest)]);
plain_line(#{phase := Phase, digest := Digest} = Info) when Digest =/= undefined ->
    case done(Info) of
        true -> line(Phase, Digest, Info);
        false -> none
    end;
plain_line(_) ->
    none.

done(#{phase := Phase}) when Phase =:= exists; Phase =:= mounted -> true;
done(#{total_bytes := Total} = Info) when is_integer(Total) -> transferred(Info) >= Total;
done(_) -> false.

transferred(#{phase := upload} = Info) -> maps:get(bytes_sent, Info, 0);
transferred(Info) -> maps:get(bytes_received, Info, 0).

line(Phase, Digest, Info) ->
    Total = maps:get(total_bytes, Info, undefined),
    Label =
        case Phase of
            upload -> "pushed ";
            exists -> "exists ";
            mounted -> "mounted";
            layer -> "pulled ";
            config -> "config ";
            manifest -> "manifest";
            _ -> atom_to_list(Phase)
        end,
    Size =
        case Total of
            undefined -> "";
            _ -> [" ", format_bytes(Total)]
        end,
    io_lib:format("  ~s ~ts~s", [Label, short(Digest), Size]).

short(<<"sha256:", Hex:12/binary, _/binary>>) -> Hex;
short(Other) -> Other.

%% @doc Start the screen coordinator (a registered process); `undefined' when not on a
%% terminal. Starting twice returns the running one.
-spec start() -> pid() | undefined.
start() ->
    case is_tty() of
        false ->
            undefined;
        true ->
            case whereis(?COORDINATOR) of
                undefined ->
                    %% The first report is drawn at once. (Monotonic time can be negative:
                    %% `last => 0' would hold every redraw back until `stop/0'.)
                    Never = erlang:monotonic_time(millisecond) - ?REDRAW_MS,
                    Pid = spawn(fun() -> coordinator(#{order => [], lines => #{}, drawn => 0,
                                                       last => Never}) end),
                    try register(?COORDINATOR, Pid) of
                        true -> Pid
                    catch
                        error:badarg ->
                            exit(Pid, kill),
                            whereis(?COORDINATOR)
                    end;
                Pid ->
                    Pid
            end
    end.

%% @doc Draw the final state, then stop the coordinator.
-spec stop() -> ok.
stop() ->
    case whereis(?COORDINATOR) of
        undefined ->
            ok;
        Pid ->
            Ref = monitor(process, Pid),
            Pid ! {stop, self()},
            receive
                {'DOWN', Ref, process, Pid, _} -> ok
            after 2000 ->
                exit(Pid, kill),
                ok
            end
    end.

%% @doc Erase the current line (a terminal only; plain output has nothing to erase).
-spec clear_line() -> ok.
clear_line() ->
    case is_tty() of
        true -> io:put_chars("\r\e[2K");
        false -> ok
    end.

coordinator(State) ->
    receive
        {progress, #{phase := build, layer := Layer} = Info} ->
            coordinator(maybe_redraw(track({build, Layer}, Info, State)));
        {progress, #{digest := Digest} = Info} when Digest =/= undefined ->
            coordinator(maybe_redraw(track(Digest, Info, State)));
        {progress, _} ->
            coordinator(State);
        {stop, _From} ->
            _ = redraw(State),
            ok
    end.

track(Digest, Info, #{order := Order, lines := Lines} = State) ->
    case maps:is_key(Digest, Lines) of
        true -> State#{lines := Lines#{Digest := Info}};
        false -> State#{order := Order ++ [Digest], lines := Lines#{Digest => Info}}
    end.

maybe_redraw(#{last := Last} = State) ->
    Now = erlang:monotonic_time(millisecond),
    case Now - Last >= ?REDRAW_MS of
        true -> (redraw(State))#{last := Now};
        false -> State
    end.

%% Move up over the lines drawn last time and draw every line again.
redraw(#{order := Order, lines := Lines, drawn := Drawn} = State) ->
    Up =
        case Drawn of
            0 -> "";
            N -> io_lib:format("\e[~bA", [N])
        end,
    Text = [["\r\e[2K", live_line(maps:get(D, Lines)), "\n"] || D <- Order],
    io:put_chars([Up, Text]),
    State#{drawn := length(Order)}.

live_line(#{phase := build, layer := Layer, bytes_read := Read, total_bytes := Total}) ->
    Bar =
        case Total of
            0 -> "no content";
            _ -> format_progress(Read, Total)
        end,
    io_lib:format("  ~-8s ~-12ts ~ts", ["build", layer_name(Layer), Bar]);
live_line(#{phase := Phase, digest := Digest} = Info) ->
    Total = maps:get(total_bytes, Info, undefined),
    Bar =
        case Phase of
            exists -> "already present";
            mounted -> "mounted";
            _ -> format_progress(transferred(Info), unknown_if_undefined(Total))
        end,
    io_lib:format("  ~-8s ~ts ~ts", [atom_to_list(Phase), short(Digest), Bar]).

layer_name(undefined) -> "layer";
layer_name(Layer) when is_atom(Layer) -> atom_to_list(Layer);
layer_name(Layer) -> io_lib:format("~tp", [Layer]).

unknown_if_undefined(undefined) -> unknown;
unknown_if_undefined(N) -> N.

%% @doc True when standard output is a terminal. The BEAM started by Mix or rebar3 has no
%% shell (`io:columns/0' says `enotsup' even on a terminal), so on Linux this looks at what
%% file descriptor 1 is; elsewhere it falls back to `io:columns/0'.
-spec is_tty() -> boolean().
is_tty() ->
    case os:getenv("TERM") of
        "dumb" ->
            false;
        _ ->
            case file:read_link("/proc/self/fd/1") of
                {ok, "/dev/pts/" ++ _} -> true;
                {ok, "/dev/tty" ++ _} -> true;
                {ok, _} -> false;
                {error, _} -> element(1, io:columns()) =:= ok
            end
    end.

%% @doc `1536' -> `"1.50 KB"'; powers of 1024, two decimals from KB up (as 0.10).
-spec format_bytes(non_neg_integer()) -> iolist().
format_bytes(N) when N < 1024 -> io_lib:format("~b B", [N]);
format_bytes(N) -> scaled(N / 1024, ["KB", "MB", "GB", "TB"]).

scaled(V, [Unit]) -> io_lib:format("~.2f ~s", [V, Unit]);
scaled(V, [Unit | _]) when V < 1024 -> io_lib:format("~.2f ~s", [V, Unit]);
scaled(V, [_ | Units]) -> scaled(V / 1024, Units).

%% @doc `[=====>        ]  42% 1.2 MB/2.9 MB'; with an unknown total, the bytes so far.
-spec format_progress(non_neg_integer(), non_neg_integer() | unknown) -> iolist().
format_progress(Done, unknown) ->
    format_bytes(Done);
format_progress(Done, 0) ->
    format_progress(Done, max(Done, 1));
format_progress(Done0, Total) ->
    Done = min(Done0, Total),
    Filled = Done * ?BAR_WIDTH div Total,
    Arrow =
        case Filled < ?BAR_WIDTH of
            true -> ">";
            false -> ""
        end,
    Bar = [lists:duplicate(Filled, $=), Arrow, lists:duplicate(?BAR_WIDTH - Filled - length(Arrow), $\s)],
    io_lib:format("[~s] ~3b% ~s/~s", [Bar, Done * 100 div Total, format_bytes(Done), format_bytes(Total)]).
