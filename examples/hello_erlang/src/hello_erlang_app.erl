%% @doc Prints the greeting and stops the VM: `podman run' of the image prints one line and
%% exits with status 0 (like examples/hello_elixir).
-module(hello_erlang_app).

-behaviour(application).

-export([start/2, stop/1]).

start(_Type, _Args) ->
    io:format("~ts~n", [hello_erlang:greeting()]),
    %% Asynchronous: init stops the applications once this one has started.
    ok = init:stop(0),
    hello_erlang_sup:start_link().

stop(_State) ->
    ok.
