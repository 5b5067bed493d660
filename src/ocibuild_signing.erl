%% @doc Signing keys for cosign-compatible image signatures.
%%
%% A key is an ECDSA P-256 private key in PEM: SEC1 (`EC PRIVATE KEY', from
%% `openssl ecparam -genkey'), PKCS#8 (`PRIVATE KEY', from `openssl genpkey') or cosign's
%% encrypted key (`ENCRYPTED SIGSTORE PRIVATE KEY', from `cosign generate-key-pair'), whose
%% password comes from `COSIGN_PASSWORD' as with cosign. The key is checked when loaded, so a
%% bad key or password fails before any layer is built or any byte is pushed.
%%
%% The key is opened once, by the native library, and stays there: `load/1,2' returns a handle
%% (a native resource) that the push signs with, so the PEM and the password cross into the
%% native library once and no secret comes back. Printing a key (in a crash report, a log
%% line or a config dump) shows its path and `#Ref<...>'.
-module(ocibuild_signing).

-export([load/1, load/2, path/1, is_key/1, handle/1]).

-export_type([key/0]).

%% A PEM key is a few hundred bytes; the cap only stops a device or huge file being read.
-define(MAX_KEY_BYTES, 1 bsl 20).

-opaque key() :: #{path := binary(), handle := reference()}.

%% @doc Load and check the key at `Path', with the password in `COSIGN_PASSWORD' (if set).
-spec load(file:filename_all()) -> {ok, key()} | {error, term()}.
load(Path) ->
    load(Path, os:getenv("COSIGN_PASSWORD")).

%% @doc Load and check the key at `Path' with `Password' (`false' or `undefined': none).
-spec load(file:filename_all(), string() | binary() | false | undefined) ->
    {ok, key()} | {error, term()}.
load(Path0, Password0) ->
    Path = unicode:characters_to_binary(Path0),
    Password = password(Password0),
    case ocibuild_host_file:read(Path, ?MAX_KEY_BYTES) of
        {ok, Pem} ->
            case ocibuild_nif:sign_key_load(Pem, Password) of
                {ok, Handle} -> {ok, #{path => Path, handle => Handle}};
                {error, Reason} -> {error, {sign_key, Path, Reason}}
            end;
        {error, Why} ->
            {error, {sign_key, Path, {file_read, Why}}}
    end.

%% @doc The file the key came from.
-spec path(key()) -> binary().
path(#{path := Path}) -> Path.

%% @doc Whether `Term' is a key `load/1,2' returned.
-spec is_key(term()) -> boolean().
is_key(#{path := Path, handle := Handle}) -> is_binary(Path) andalso is_reference(Handle);
is_key(_Term) -> false.

%% @doc The opened key, as the native library's push takes it.
-spec handle(key()) -> reference().
handle(#{handle := Handle}) -> Handle.

password(false) -> undefined;
password(undefined) -> undefined;
password(P) when is_list(P) -> unicode:characters_to_binary(P, unicode, file:native_name_encoding());
password(P) when is_binary(P) -> P.
