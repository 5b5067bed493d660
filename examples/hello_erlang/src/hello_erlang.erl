%% @doc The example app imaged by `rebar3 ocibuild': it greets and stops.
-module(hello_erlang).

-export([greeting/0]).

%% @doc The line the release prints when it starts.
-spec greeting() -> string().
greeting() ->
    "Hello from hello_erlang on ERTS " ++ erlang:system_info(version) ++ "!".
