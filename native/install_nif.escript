#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%% Installs priv/ocibuild_nif.so. Run by `mix compile' (the :ocibuild_nif compiler in mix.exs)
%% and `rebar3 compile' (rebar.config's pre_hook), also when ocibuild is a dependency or a
%% plugin: paths come from this script's location, never from the working directory.
%%
%%   escript native/install_nif.escript                   install (what the compilers run)
%%   escript native/install_nif.escript version           the package version (src/ocibuild.app.src)
%%   escript native/install_nif.escript artifact [TARGET] the artifact name (default: this machine's)
%%   escript native/install_nif.escript checksums         `<sha256>  <artifact>' for every target
%%                                                       released, fetched from the base URL
%%   escript native/install_nif.escript manifest          the install's manifest, as text
%%
%% The library comes from, in order:
%%   1. OCIBUILD_BUILD_NIF=1: built from source with cargo (native/build.sh);
%%   2. OCIBUILD_NIF_PATH=FILE: FILE (a .so, or the gzipped artifact), copied;
%%   3. the precompiled artifact ocibuild_nif-v<vsn>-nif-2.16-<target>.so.gz, downloaded from
%%      OCIBUILD_NIF_URL (default ?DEFAULT_BASE_URL), its sha256 checked against
%%      native/checksums.txt before anything is written (https verifies the server with the
%%      system's CA certificates and those of SSL_CERT_FILE; plain http only on loopback);
%%   4. no artifact for this target, or the download failed: built from source, after one line
%%      saying why; without cargo, one error line naming 1-3.
%% A version that native/checksums.txt does not list at all (a development checkout: the
%% checksums of a release are added when its artifacts exist) is built from source, silently,
%% as before precompiled NIFs existed. A checksum mismatch is an error, never a fallback.
%% Writes are atomic (a unique temporary name, then a rename); halts 1 after one line on error.
%%
%% An install records what it depended on in priv/.ocibuild_nif.manifest (see "the manifest"
%% below): while every recorded fact still holds, the next run does nothing at all, neither
%% cargo nor a download. mix.exs re-checks the same file without starting this script.
-mode(compile).

-include_lib("kernel/include/file.hrl").

%% Caps on files the user names: a NIF is tens of MiB, a CA bundle a few hundred KiB.
-define(MAX_LIBRARY_BYTES, 512 bsl 20).
-define(MAX_CERT_BYTES, 16 bsl 20).
%% A precompiled artifact is a few MiB gzipped.
-define(MAX_DOWNLOAD_BYTES, 64 bsl 20).
%% A regular file opens at once; only a path swapped for a FIFO after the check can block.
-define(READ_TIMEOUT_MS, 10000).
%% File times come from the kernel's coarse clock, which lags the clock os:system_time/1 reads
%% by up to a tick (1-10 ms): a file written just after a check can still be dated the second
%% before it. A second is trusted as over only this long after it ended.
-define(CLOCK_SLACK_MS, 100).
%% How long an install waits for the library's second to be over before it records the
%% library by its content instead (a clock that jumps, a file server dating it in the future).
-define(LIBRARY_SETTLE_MS, 3000).

-define(NIF_VERSION, "2.16").
-define(DEFAULT_BASE_URL, "https://github.com/ocibuild/ocibuild/releases/download/v~s").
-define(MAX_REDIRECTS, 5).
-define(CONNECT_TIMEOUT_MS, 15000).
-define(TIMEOUT_MS, 300000).
%% What .github/workflows/release.yml builds; a target added there is added here.
-define(TARGETS, [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-musl",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin"
]).

main(Args) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    try
        command(Args, Root),
        halt(0)
    catch
        throw:{install_failed, Message} ->
            io:format(standard_error, "ocibuild: ~ts~n", [Message]),
            halt(1);
        throw:{build_failed, Status} ->
            halt(Status)
    end.

command([], Root) ->
    install(Root);
command(["version"], Root) ->
    io:format("~s~n", [version(Root)]);
command(["artifact"], Root) ->
    case target() of
        {ok, Target} -> command(["artifact", Target], Root);
        {error, Arch} -> fail("no precompiled NIFs are built for this machine (~s)", [Arch])
    end;
command(["artifact", Target], Root) ->
    io:format("~s~n", [artifact_name(version(Root), Target)]);
command(["manifest"], Root) ->
    case read_manifest(Root) of
        Facts when is_list(Facts) -> [io:format("~0tp.~n", [Fact]) || Fact <- Facts], ok;
        _ -> fail("no manifest at ~ts (the next install writes one)", [manifest_path(Root)])
    end;
command(["checksums"], Root) ->
    Vsn = version(Root),
    [io:format("~s  ~s~n", [released_checksum(Vsn, Target), artifact_name(Vsn, Target)]) || Target <- ?TARGETS],
    ok;
command(Args, _Root) ->
    fail("unknown arguments ~0p: expected none, version, artifact [TARGET], checksums or manifest", [Args]).

%% For publishing: every target's artifact must be there; a missing one is an error.
released_checksum(Vsn, Target) ->
    Url = base_url(Vsn) ++ "/" ++ artifact_name(Vsn, Target),
    case fetch(Url, ?MAX_REDIRECTS) of
        {ok, Bytes} -> hex(crypto:hash(sha256, Bytes));
        {error, Why} -> fail("cannot fetch ~s (~ts)", [Url, Why])
    end.

install(Root) ->
    case manifest_holds(Root) of
        true ->
            ok;
        false ->
            % Taken before the install, so an edit made while cargo runs is seen next time.
            Inputs = input_facts(Root),
            remove_manifest(Root),
            install_library(Root),
            write_manifest(Root, Inputs)
    end.

install_library(Root) ->
    case {env_flag("OCIBUILD_BUILD_NIF"), env("OCIBUILD_NIF_PATH")} of
        {true, _} -> build_from_source(Root, explicit);
        {false, ""} -> install_precompiled(Root);
        {false, Path} -> install_local(Root, Path)
    end.

%% Option 3, with option 4 behind it.
install_precompiled(Root) ->
    Vsn = version(Root),
    case checksums(Root, Vsn) of
        [] ->
            build_from_source(Root, development);
        Sums ->
            case target() of
                {ok, Target} ->
                    Name = artifact_name(Vsn, Target),
                    case lists:keyfind(Name, 1, Sums) of
                        {Name, Sha} ->
                            install_artifact(Root, Vsn, Name, Sha);
                        false ->
                            build_from_source(Root, {fallback, fmt("no precompiled NIF for ~s in native/checksums.txt", [Target])})
                    end;
                {error, Arch} ->
                    build_from_source(Root, {fallback, fmt("no precompiled NIF for this machine (~s)", [Arch])})
            end
    end.

install_artifact(Root, Vsn, Name, Sha) ->
    case up_to_date(Root, Name, Sha) of
        true ->
            ok;
        false ->
            Url = base_url(Vsn) ++ "/" ++ Name,
            case fetch(Url, ?MAX_REDIRECTS) of
                {ok, Gz} ->
                    verify_checksum(Name, Url, Sha, Gz),
                    Library = gunzip(Name, Gz),
                    write_library(Root, Library),
                    write_marker(Root, Name, Sha, Library);
                {error, Why} ->
                    build_from_source(Root, {fallback, fmt("could not download ~s (~ts)", [Url, Why])})
            end
    end.

%% Option 2.
install_local(Root, Path) ->
    case read_regular(Path, ?MAX_LIBRARY_BYTES) of
        {ok, <<16#1f, 16#8b, _/binary>> = Gz} ->
            write_library(Root, gunzip(Path, Gz));
        {ok, Library} ->
            write_library(Root, Library);
        {error, Reason} ->
            fail("OCIBUILD_NIF_PATH=~ts cannot be read (~ts)", [Path, read_error(Reason)])
    end,
    remove_marker(Root).

%% Options 1 and 4: native/build.sh, which leaves an up-to-date library alone.
build_from_source(Root, Why) ->
    case {os:find_executable("cargo"), Why} of
        {false, explicit} ->
            fail(
                "OCIBUILD_BUILD_NIF=1 asks for a build from source, but cargo is not on PATH: "
                "install Rust (https://rustup.rs), or unset it and use OCIBUILD_NIF_PATH=/path/to/ocibuild_nif.so "
                "or OCIBUILD_NIF_URL=<base URL of the precompiled NIFs>",
                []
            );
        {false, _} ->
            fail(
                "cannot install the NIF: ~ts, and cargo is not on PATH to build it from source. "
                "Use one of: OCIBUILD_BUILD_NIF=1 with Rust installed (https://rustup.rs); "
                "OCIBUILD_NIF_PATH=/path/to/ocibuild_nif.so; "
                "OCIBUILD_NIF_URL=<base URL serving ~s>",
                [why_no_artifact(Root, Why), expected_artifact(Root)]
            );
        {_, {fallback, Reason}} ->
            io:format(standard_error, "ocibuild: ~ts: building the NIF from source with cargo~n", [Reason]);
        {_, _} ->
            ok
    end,
    remove_marker(Root),
    run_build_script(Root).

why_no_artifact(_Root, {fallback, Reason}) -> Reason;
why_no_artifact(Root, development) ->
    fmt("native/checksums.txt lists no precompiled NIF for ocibuild ~s", [version(Root)]).

expected_artifact(Root) ->
    case target() of
        {ok, Target} -> artifact_name(version(Root), Target);
        {error, _} -> artifact_name(version(Root), "<target>")
    end.

run_build_script(Root) ->
    Sh = os:find_executable("sh"),
    Port = open_port({spawn_executable, Sh}, [
        {args, [filename:join([Root, "native", "build.sh"])]},
        exit_status,
        stderr_to_stdout,
        binary,
        stream
    ]),
    relay(Port).

relay(Port) ->
    receive
        {Port, {data, Data}} ->
            io:put_chars(Data),
            relay(Port);
        {Port, {exit_status, 0}} ->
            ok;
        {Port, {exit_status, Status}} ->
            throw({build_failed, Status})
    end.

%% --- the artifact -----------------------------------------------------------------------

artifact_name(Vsn, Target) ->
    fmt("ocibuild_nif-v~s-nif-~s-~s.so.gz", [Vsn, ?NIF_VERSION, Target]).

version(Root) ->
    AppSrc = filename:join([Root, "src", "ocibuild.app.src"]),
    {ok, [{application, ocibuild, Props}]} = file:consult(AppSrc),
    proplists:get_value(vsn, Props).

base_url(Vsn) ->
    case env("OCIBUILD_NIF_URL") of
        "" -> fmt(?DEFAULT_BASE_URL, [Vsn]);
        Url -> string:trim(Url, trailing, "/")
    end.

%% native/checksums.txt: `sha256sum' lines, `<hex>  <artifact name>'; only this version's.
checksums(Root, Vsn) ->
    Prefix = fmt("ocibuild_nif-v~s-nif-", [Vsn]),
    case file:read_file(filename:join([Root, "native", "checksums.txt"])) of
        {ok, Text} ->
            [
                {Name, string:lowercase(Hex)}
             || Line <- string:split(binary_to_list(Text), "\n", all),
                [Hex, Name] <- [string:lexemes(Line, " \t*")],
                lists:prefix(Prefix, Name)
            ];
        {error, enoent} ->
            []
    end.

%% The Rust target triple of this VM, for the targets artifacts are built for.
target() ->
    Arch = erlang:system_info(system_architecture),
    case {cpu(Arch), os_abi(Arch)} of
        {{ok, Cpu}, {ok, OsAbi}} -> {ok, Cpu ++ "-" ++ OsAbi};
        _ -> {error, Arch}
    end.

cpu(Arch) ->
    case hd(string:split(Arch, "-")) of
        C when C =:= "x86_64"; C =:= "amd64" -> {ok, "x86_64"};
        C when C =:= "aarch64"; C =:= "arm64" -> {ok, "aarch64"};
        _ -> error
    end.

os_abi(Arch) ->
    Linux = string:find(Arch, "linux") =/= nomatch,
    Darwin = string:find(Arch, "darwin") =/= nomatch,
    if
        Linux -> {ok, "unknown-linux-" ++ libc(Arch)};
        Darwin -> {ok, "apple-darwin"};
        true -> error
    end.

%% Alpine's Erlang names musl in its architecture; an ERTS built from source there may not, but
%% the system's ldd then says musl (glibc's says "GNU libc"). A musl package installed next to
%% glibc (Debian's `musl') does not change the system's ldd.
libc(Arch) ->
    case string:find(Arch, "musl") =/= nomatch orelse string:find(ldd_version(), "musl") =/= nomatch of
        true -> "musl";
        false -> "gnu"
    end.

ldd_version() ->
    case os:find_executable("ldd") of
        false -> "";
        Ldd -> os:cmd(Ldd ++ " --version 2>&1")
    end.

%% --- fetching ---------------------------------------------------------------------------

%% {ok, Bytes} or {error, Why} for what may be a missing artifact or no network (a fallback);
%% a URL that must not be used throws (a configuration mistake, never a silent fallback).
fetch("file://" ++ Path, _Redirects) ->
    case read_regular(uri_string:percent_decode(Path), ?MAX_LIBRARY_BYTES) of
        {ok, Bytes} -> {ok, Bytes};
        {error, Reason} -> {error, read_error(Reason)}
    end;
fetch(Url, Redirects) ->
    case uri_string:parse(Url) of
        #{scheme := "https"} -> http_get(Url, Redirects, ssl_options());
        #{scheme := "http", host := Host} ->
            case is_loopback(Host) of
                true -> http_get(Url, Redirects, []);
                false -> fail("refusing to download the NIF over plain http from ~s: use https (plain http is for loopback only)", [Url])
            end;
        _ ->
            fail("cannot download the NIF from ~ts: OCIBUILD_NIF_URL must be an https://, file:// or loopback http:// URL", [Url])
    end.

is_loopback(Host) ->
    lists:member(string:lowercase(Host), ["localhost", "127.0.0.1", "::1", "[::1]"]).

http_get(_Url, Redirects, _Ssl) when Redirects < 0 ->
    {error, "too many redirects"};
http_get(Url, Redirects, Ssl) ->
    {ok, _} = application:ensure_all_started(inets),
    {ok, _} = application:ensure_all_started(ssl),
    HttpOptions = [{timeout, ?TIMEOUT_MS}, {connect_timeout, ?CONNECT_TIMEOUT_MS}, {autoredirect, false}, {ssl, Ssl}],
    Request = {Url, [{"user-agent", "ocibuild-nif-installer"}]},
    Options = [{sync, false}, {stream, self}, {body_format, binary}],
    {ok, RequestId} = httpc:request(get, Request, HttpOptions, Options),
    case receive_body(RequestId, [], 0) of
        {ok, {{_, 200, _}, _Headers, Body}} ->
            {ok, Body};
        {ok, {{_, Status, _}, Headers, _}} when Status >= 301, Status =< 308 ->
            case lists:keyfind("location", 1, Headers) of
                {_, Location} -> fetch(uri_string:resolve(Location, Url), Redirects - 1);
                false -> {error, fmt("HTTP ~b without a Location", [Status])}
            end;
        {ok, {{_, Status, Phrase}, _, _}} ->
            {error, fmt("HTTP ~b ~ts", [Status, Phrase])};
        {error, Reason} when is_list(Reason) ->
            {error, Reason};
        {error, Reason} ->
            {error, fmt("~0p", [Reason])}
    end.

%% A 200 body arrives in pieces, counted against the cap so that a mirror sending without
%% end cannot exhaust memory before the checksum is even looked at; any other answer comes
%% whole (httpc streams only 200s), and is small or cut by httpc's timeout.
receive_body(RequestId, _Acc, Got) when Got > ?MAX_DOWNLOAD_BYTES ->
    httpc:cancel_request(RequestId),
    {error, fmt("the download is larger than ~b bytes", [?MAX_DOWNLOAD_BYTES])};
receive_body(RequestId, Acc, Got) ->
    receive
        {http, {RequestId, stream_start, _Headers}} ->
            receive_body(RequestId, Acc, Got);
        {http, {RequestId, stream, Piece}} ->
            receive_body(RequestId, [Piece | Acc], Got + byte_size(Piece));
        {http, {RequestId, stream_end, Headers}} ->
            {ok, {{"HTTP/1.1", 200, "OK"}, Headers, iolist_to_binary(lists:reverse(Acc))}};
        {http, {RequestId, {error, Reason}}} ->
            {error, Reason};
        {http, {RequestId, Response}} ->
            {ok, Response}
    after ?TIMEOUT_MS ->
        httpc:cancel_request(RequestId),
        {error, "timed out"}
    end.

%% TLS as a browser does it: the OS's CA certificates, plus those of SSL_CERT_FILE (a mirror
%% behind a private CA; the registry client reads the same variable), the host name checked.
ssl_options() ->
    CaCerts = system_cacerts() ++ extra_cacerts(env("SSL_CERT_FILE")),
    CaCerts =/= [] orelse fail("no CA certificates found on this machine to verify the NIF download over https", []),
    [
        {verify, verify_peer},
        {cacerts, CaCerts},
        % A refused certificate is reported in the one error line, not as an ssl log report.
        {log_level, none},
        {depth, 10},
        {customize_hostname_check, [{match_fun, public_key:pkix_verify_hostname_match_fun(https)}]}
    ].

%% As DER: OTP returns its own certificate records, which ssl refuses to mix with the DER
%% certificates of SSL_CERT_FILE.
system_cacerts() ->
    try public_key:cacerts_get() of
        Certs -> [der(Cert) || Cert <- Certs]
    catch
        _:_ -> []
    end.

der({cert, Der, _Otp}) -> Der;
der(Der) when is_binary(Der) -> Der.

extra_cacerts("") ->
    [];
extra_cacerts(File) ->
    case read_regular(File, ?MAX_CERT_BYTES) of
        {ok, Pem} ->
            case [Der || {'Certificate', Der, not_encrypted} <- public_key:pem_decode(Pem)] of
                [] -> fail("SSL_CERT_FILE=~ts holds no PEM certificate", [File]);
                Certs -> Certs
            end;
        {error, Reason} ->
            fail("SSL_CERT_FILE=~ts cannot be read (~ts)", [File, read_error(Reason)])
    end.

verify_checksum(Name, Url, Expected, Bytes) ->
    case hex(crypto:hash(sha256, Bytes)) of
        Expected ->
            ok;
        Actual ->
            fail(
                "checksum mismatch for ~s downloaded from ~s: expected sha256 ~s, got ~s; "
                "nothing was installed (a corrupted or tampered artifact; check OCIBUILD_NIF_URL)",
                [Name, Url, Expected, Actual]
            )
    end.

gunzip(Name, Gz) ->
    try
        zlib:gunzip(Gz)
    catch
        _:_ -> fail("~ts is not a valid gzip file; nothing was installed", [Name])
    end.

%% --- installing -------------------------------------------------------------------------

%% A unique temporary name next to the library, then a rename: a running VM never sees a
%% half-written file, and an interrupted install leaves the old library in place.
write_library(Root, Library) ->
    Dest = library_path(Root),
    case file:read_file(Dest) of
        {ok, Library} -> ok;
        _ -> write_atomically(Dest, Library, 8#755)
    end.

write_atomically(Dest, Bytes, Mode) ->
    ok = filelib:ensure_dir(Dest),
    Tmp = Dest ++ ".tmp-" ++ unique(),
    try
        ok = file:write_file(Tmp, Bytes, [exclusive, raw]),
        ok = file:change_mode(Tmp, Mode),
        ok = file:rename(Tmp, Dest)
    catch
        _:Reason ->
            _ = file:delete(Tmp),
            fail("cannot write ~ts (~0p)", [Dest, Reason])
    end.

unique() ->
    integer_to_list(erlang:unique_integer([positive])) ++ "-" ++ os:getpid() ++ "-" ++
        hex(crypto:strong_rand_bytes(4)).

library_path(Root) -> filename:join([Root, "priv", "ocibuild_nif.so"]).

%% Records which artifact is installed, so the next compile needs no network.
marker_path(Root) -> filename:join([Root, "priv", ".ocibuild_nif.installed"]).

write_marker(Root, Name, Sha, Library) ->
    write_atomically(marker_path(Root), marker(Name, Sha, Library), 8#644).

marker(Name, Sha, Library) ->
    list_to_binary(fmt("~s ~s ~s~n", [Name, Sha, hex(crypto:hash(sha256, Library))])).

remove_marker(Root) ->
    _ = file:delete(marker_path(Root)),
    ok.

up_to_date(Root, Name, Sha) ->
    case {file:read_file(marker_path(Root)), file:read_file(library_path(Root))} of
        {{ok, Marker}, {ok, Library}} -> Marker =:= marker(Name, Sha, Library);
        _ -> false
    end.

%% --- the manifest -----------------------------------------------------------------------

%% priv/.ocibuild_nif.manifest: a list of facts that held when the library was installed, in
%% the external term format (term_to_binary/1: every `mix' run reads it, and decoding takes
%% 0.1 ms where parsing the same facts as text took 2 ms; `escript native/install_nif.escript
%% manifest' prints them as text). The install reruns when any stops holding: a source file added, removed or
%% changed (size, mtime, ctime or inode: an editor that saves by rename changes the inode, and
%% ctime cannot be set back), the library changed or missing (the same identity facts: a
%% check costs one stat, not a hash of its 10 MB), another VM (architecture, NIF
%% version), or a variable that changes what is installed or how cargo builds it. This script
%% decides which facts to record; checking them needs no knowledge of why, so mix.exs
%% (Mix.Tasks.Compile.OcibuildNif.Manifest) checks the same file fact by fact without starting
%% a VM for this script. A new Rust toolchain alone does not rebuild: the library it built
%% still loads.
%%
%%   {ocibuild_nif_manifest, 2}.                          the format (the list's head)
%%   {system, Architecture, NifVersion}.                  erlang:system_info/1 of the VM
%%   {env, Names, Prefixes, Sha256}.                      of the sorted NAME=VALUE lines whose
%%                                                        name is in Names or has a Prefix
%%   {dir, Path, Names}.                                  every entry of the directory, sorted
%%   {file, Path, Size, Mtime, Ctime, Inode}.             a regular file (posix seconds)
%%   {absent, Path}.                                      nothing at Path
%%   {library, Path, Sha256}.                             priv/ocibuild_nif.so's content, only
%%                                                        when its identity cannot be trusted
%%
%% Paths are binaries, relative to the checkout unless absolute; hashes are lowercase hex.
%% Times are whole seconds (what Erlang and Elixir's stat gives), so a file is recorded by
%% identity only once the second of its last change is over (plus ?CLOCK_SLACK_MS): a later
%% change, even to the same size and inode, then dates it in a later second. Sources changed
%% in the current second write no manifest (the next run installs again); the library, which
%% an install has usually just written, is waited for (under a second, once per install),
%% and recorded by its sha256 if that wait fails.
manifest_path(Root) -> filename:join([Root, "priv", ".ocibuild_nif.manifest"]).

-define(MANIFEST_VERSION, {ocibuild_nif_manifest, 2}).
%% What decides how the library is installed (OCIBUILD_NIF_*) or what cargo builds. Not
%% CARGO_TARGET_DIR: it says where cargo keeps its work, not what it builds, and a new one
%% would cost a build from scratch for the same library.
-define(ENV_NAMES, [<<"OCIBUILD_BUILD_NIF">>, <<"RUSTFLAGS">>, <<"RUSTC">>, <<"CC">>, <<"CFLAGS">>, <<"AR">>]).
-define(ENV_PREFIXES, [<<"OCIBUILD_NIF_">>, <<"CARGO_ENCODED_">>, <<"CARGO_PROFILE_">>, <<"CARGO_BUILD_">>]).
%% Files outside native/ that cargo or this script read; those that may be absent are absent.
-define(ROOT_FILES, ["Cargo.toml", "Cargo.lock", "src/ocibuild.app.src"]).
-define(OPTIONAL_FILES, [".cargo/config.toml", ".cargo/config", "rust-toolchain", "rust-toolchain.toml"]).

manifest_holds(Root) ->
    case read_manifest(Root) of
        [?MANIFEST_VERSION | Facts] -> lists:all(fun(Fact) -> holds(Root, Fact) end, Facts);
        _ -> false
    end.

%% The manifest's terms, or `none' if it is missing or not a term this script could write.
read_manifest(Root) ->
    case file:read_file(manifest_path(Root)) of
        {ok, Bytes} ->
            try
                binary_to_term(Bytes, [safe])
            catch
                error:badarg -> none
            end;
        {error, _} ->
            none
    end.

holds(_Root, {system, Arch, Nif}) ->
    {Arch, Nif} =:= system();
holds(_Root, {env, Names, Prefixes, Sha}) ->
    Sha =:= env_hash(Names, Prefixes);
holds(Root, {dir, Path, Names}) ->
    dir_names(full_path(Root, Path)) =:= {ok, Names};
holds(Root, {file, Path, Size, _, _, _} = Fact) when Size >= 0 ->
    file_fact(Root, Path) =:= Fact;
holds(Root, {absent, Path}) ->
    file:read_link_info(full_path(Root, Path)) =:= {error, enoent};
holds(Root, {library, Path, Sha}) ->
    case file:read_file(full_path(Root, Path)) of
        {ok, Bytes} -> Sha =:= sha256_hex(Bytes);
        {error, _} -> false
    end;
holds(_Root, _Unknown) ->
    false.

%% The facts about the inputs, or `racy' when a file changed in this very second: its mtime
%% (seconds) could not show a second edit within that second, so no manifest is written then
%% and the next run installs again (a cargo no-op) and records it.
input_facts(Root) ->
    Now = settled_second(),
    Native = walk(Root, <<"native">>),
    Local =
        case env("OCIBUILD_NIF_PATH") of
            "" -> [];
            Path -> [file_or_absent(Root, unicode:characters_to_binary(filename:absname(Path)))]
        end,
    Files =
        [file_or_absent(Root, list_to_binary(F)) || F <- ?ROOT_FILES ++ ?OPTIONAL_FILES] ++ Native ++ Local,
    Racy = [F || {file, _, _, Mtime, Ctime, _} = F <- Files, max(Mtime, Ctime) >= Now],
    {Arch, Nif} = system(),
    case Racy of
        [] -> [{system, Arch, Nif}, {env, ?ENV_NAMES, ?ENV_PREFIXES, env_hash(?ENV_NAMES, ?ENV_PREFIXES)} | Files];
        _ -> racy
    end.

%% A {dir, ...} fact for Dir and every directory below it, a file fact for every other entry.
walk(Root, Dir) ->
    case dir_names(full_path(Root, Dir)) of
        {ok, Names} ->
            [{dir, Dir, Names} | lists:append([walk_entry(Root, <<Dir/binary, "/", N/binary>>) || N <- Names])];
        {error, _} ->
            [{absent, Dir}]
    end.

walk_entry(Root, Path) ->
    case file:read_link_info(full_path(Root, Path)) of
        {ok, #file_info{type = directory}} -> walk(Root, Path);
        _ -> [file_or_absent(Root, Path)]
    end.

write_manifest(_Root, racy) ->
    ok;
write_manifest(Root, Inputs) ->
    Library = library_fact(Root, erlang:monotonic_time(millisecond) + ?LIBRARY_SETTLE_MS),
    write_atomically(manifest_path(Root), term_to_binary([?MANIFEST_VERSION | Inputs] ++ [Library]), 8#644).

%% The installed library's identity, once the second it was written in is over; its content
%% hash if that takes longer than the bound (any doubt: the full check).
library_fact(Root, Deadline) ->
    Path = <<"priv/ocibuild_nif.so">>,
    Settled = settled_second(),
    case file_fact(Root, Path) of
        {file, _, Size, Mtime, Ctime, _} = Fact when Size >= 0, Mtime < Settled, Ctime < Settled ->
            Fact;
        {file, _, Size, Mtime, Ctime, _} when Size >= 0 ->
            % Dated beyond the next second (a clock set back, a file server ahead): waiting
            % would not help.
            Future = max(Mtime, Ctime) > Settled + 1,
            case not Future andalso erlang:monotonic_time(millisecond) < Deadline of
                true ->
                    timer:sleep(ms_to_next_settled_second()),
                    library_fact(Root, Deadline);
                false ->
                    {library, Path, sha256_hex(read_library(Root))}
            end;
        _ ->
            fail("the NIF was installed but ~ts is not a regular file", [library_path(Root)])
    end.

%% The last second every file change made before now is certainly dated in or before: a file
%% dated this second or later may still change without its times showing it.
settled_second() ->
    (os:system_time(millisecond) - ?CLOCK_SLACK_MS) div 1000.

ms_to_next_settled_second() ->
    1000 - (os:system_time(millisecond) - ?CLOCK_SLACK_MS) rem 1000 + 1.

read_library(Root) ->
    case file:read_file(library_path(Root)) of
        {ok, Bytes} -> Bytes;
        {error, Reason} -> fail("the NIF was installed but ~ts cannot be read (~ts)", [library_path(Root), read_error(Reason)])
    end.

remove_manifest(Root) ->
    _ = file:delete(manifest_path(Root)),
    ok.

file_or_absent(Root, Path) ->
    case file_fact(Root, Path) of
        {file, _, _, _, _, _} = Fact -> Fact;
        _ -> {absent, Path}
    end.

%% Anything but a regular file (a FIFO, a device, a link to a directory) is recorded with
%% size -1, which never holds (here or in mix.exs): the check never opens it, and the install
%% always reruns, as it did before the manifest.
file_fact(Root, Path) ->
    case file:read_file_info(full_path(Root, Path), [{time, posix}]) of
        {ok, #file_info{type = regular, size = Size, mtime = Mtime, ctime = Ctime, inode = Inode}} ->
            {file, Path, Size, Mtime, Ctime, Inode};
        {ok, _} ->
            {file, Path, -1, -1, -1, -1};
        {error, _} = Error ->
            Error
    end.

dir_names(Dir) ->
    case file:list_dir(Dir) of
        {ok, Names} -> {ok, lists:sort([unicode:characters_to_binary(N) || N <- Names])};
        {error, _} = Error -> Error
    end.

full_path(Root, Path) -> filename:join(Root, Path).

system() ->
    {list_to_binary(erlang:system_info(system_architecture)), list_to_binary(erlang:system_info(nif_version))}.

%% sha256 of the sorted `NAME=VALUE' lines, newline-joined: the values themselves (a URL may
%% hold a password) never reach the file.
env_hash(Names, Prefixes) ->
    Lines = lists:sort([
        Var
     || Var <- [unicode:characters_to_binary(V) || V <- os:getenv()],
        [Name | _] <- [binary:split(Var, <<"=">>)],
        lists:member(Name, Names) orelse lists:any(fun(P) -> string:prefix(Name, P) =/= nomatch end, Prefixes)
    ]),
    sha256_hex(lists:join(<<"\n">>, Lines)).

sha256_hex(Bytes) -> list_to_binary(hex(crypto:hash(sha256, Bytes))).

%% --- helpers ----------------------------------------------------------------------------

%% A file the user named (OCIBUILD_NIF_PATH, a file:// URL, SSL_CERT_FILE), read only if it
%% is a regular file within `Max' bytes: an Erlang open of a FIFO blocks until a writer
%% comes, and a device never ends. (src/ocibuild_host_file.erl is the library's version;
%% this script runs before the library is compiled.) The read runs in a helper process so
%% that a path swapped for a FIFO after the check costs a bounded wait, not a hang.
read_regular(Path, Max) ->
    case file:read_file_info(Path) of
        {ok, #file_info{type = regular, size = Size}} when Size > Max ->
            {error, {file_too_large, Max}};
        {ok, #file_info{type = regular}} ->
            Caller = self(),
            {Pid, Ref} = spawn_monitor(fun() -> Caller ! {self(), read_opened(Path, Max)} end),
            receive
                {Pid, Result} -> erlang:demonitor(Ref, [flush]), Result;
                {'DOWN', Ref, process, Pid, Why} -> {error, {crashed, Why}}
            after ?READ_TIMEOUT_MS ->
                exit(Pid, kill),
                {error, {read_timeout, ?READ_TIMEOUT_MS}}
            end;
        {ok, #file_info{type = Type}} ->
            {error, {not_regular_file, Type}};
        {error, _} = Error ->
            Error
    end.

read_opened(Path, Max) ->
    case file:open(Path, [read, raw, binary]) of
        {ok, Fd} ->
            try file:read_file_info(Fd) of
                {ok, #file_info{type = regular}} -> read_chunks(Fd, Max, [], 0);
                {ok, #file_info{type = Type}} -> {error, {not_regular_file, Type}};
                {error, _} = Error -> Error
            after
                file:close(Fd)
            end;
        {error, _} = Error ->
            Error
    end.

read_chunks(_Fd, Max, _Acc, Got) when Got > Max ->
    {error, {file_too_large, Max}};
read_chunks(Fd, Max, Acc, Got) ->
    case file:read(Fd, 1 bsl 20) of
        {ok, Bytes} -> read_chunks(Fd, Max, [Bytes | Acc], Got + byte_size(Bytes));
        eof -> {ok, iolist_to_binary(lists:reverse(Acc))};
        {error, _} = Error -> Error
    end.

read_error({not_regular_file, directory}) -> "a directory, not a regular file";
read_error({not_regular_file, device}) -> "a device, not a regular file";
read_error({not_regular_file, _}) -> "not a regular file: a FIFO, socket or other special file";
read_error({file_too_large, Max}) -> fmt("larger than ~b bytes", [Max]);
read_error({read_timeout, Ms}) -> fmt("not read within ~b ms: is it a FIFO?", [Ms]);
read_error(Posix) when is_atom(Posix) -> file:format_error(Posix);
read_error(Other) -> fmt("~0tp", [Other]).

env(Name) ->
    case os:getenv(Name) of
        false -> "";
        Value -> Value
    end.

env_flag(Name) ->
    lists:member(string:lowercase(env(Name)), ["1", "true", "yes"]).

hex(Bytes) ->
    lists:flatten([io_lib:format("~2.16.0b", [B]) || <<B>> <= Bytes]).

fmt(Format, Args) ->
    lists:flatten(io_lib:format(Format, Args)).

fail(Format, Args) ->
    throw({install_failed, fmt(Format, Args)}).
