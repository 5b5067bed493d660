%% @doc Where built layers live: a content-addressed store `Root/blobs/sha256/<hex>'.
%%
%% Root is `$OCIBUILD_CACHE_DIR' if set, else `_build/ocibuild_cache' under the current
%% directory. Layer maps point at files in this store (their `blob' key), so large layers never
%% sit in BEAM memory; remove the directory to reclaim space once images are saved or pushed.
-module(ocibuild_blob_store).

-export([root/0]).

-spec root() -> binary().
root() ->
    Dir =
        case os:getenv("OCIBUILD_CACHE_DIR") of
            Env when Env =:= false; Env =:= "" -> filename:join("_build", "ocibuild_cache");
            Env -> Env
        end,
    unicode:characters_to_binary(filename:absname(Dir), unicode, file:native_name_encoding()).
