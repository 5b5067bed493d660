%% @doc The native library: loads `priv/ocibuild_nif.so' when this module is loaded.
%%
%% Internal: call `ocibuild', `ocibuild_layer' and `ocibuild_layout' instead. Every function
%% here is replaced by the Rust implementation in `native/ocibuild_nif'; the Erlang bodies only
%% run if the library failed to load. File and CPU work runs on dirty schedulers.
-module(ocibuild_nif).

-export([layer_create/2, image_export/3, image_save/3, tarball_load/3, platform_parse/1,
         platform_host/0]).
-export([reference_parse/1, reference_tags/1, reference_tags_expand/1, options_defaults/0]).
-export([registry_pull/3, registry_push/3]).
-export([sbom_build/1, sbom_layer/2, sbom_document/1, sign_key_load/2, vcs_url_normalize/1]).
-export([reproducible_epoch/1]).
-export([job_cancel/1, job_count/0]).
-export([tarball_load_temp/2, tarball_cleanup/1]).
-export([registry_check_push/2]).
-export([blob_store_gc/2]).
-export([verify_image/3, verify_tarball/2]).

-on_load(init/0).

-define(LIBNAME, "ocibuild_nif").

%% A library that is missing or built for another machine is reported in one line naming the
%% ways to install the right one; the module still loads, so every call then fails with
%% `{nif_not_loaded, Line}' instead of `undef' and an on_load crash report.
init() ->
    Path = filename:join(priv_dir(), ?LIBNAME),
    case erlang:load_nif(Path, 0) of
        ok ->
            ok;
        {error, {reload, _}} ->
            ok;
        {error, {_Reason, Text}} ->
            Line = load_failure(Path ++ ".so", Text),
            persistent_term:put({?MODULE, load_failure}, Line),
            io:format(standard_error, "~ts~n", [Line]),
            ok
    end.

load_failure(File, Text) ->
    lists:flatten(
        io_lib:format(
            "ocibuild: cannot load the NIF ~ts (~ts); reinstall it for this machine (~s, NIF ~s) "
            "and recompile ocibuild with one of: OCIBUILD_BUILD_NIF=1 (build from source with cargo), "
            "OCIBUILD_NIF_PATH=/path/to/ocibuild_nif.so, OCIBUILD_NIF_URL=<base URL of the precompiled NIFs>",
            [File, why_not_loaded(File, Text), erlang:system_info(system_architecture), erlang:system_info(nif_version)]
        )
    ).

%% glibc's dlopen says "No such file or directory" for a library built for another machine,
%% so the header says which machine it was built for.
why_not_loaded(File, Text) ->
    case library_header(File) of
        {error, enoent} ->
            "missing";
        {ok, Header} ->
            Host = host_kind(erlang:system_info(system_architecture)),
            case library_kind(Header) of
                Kind when Kind =/= unknown, Kind =/= Host ->
                    "wrong architecture: built for " ++ Kind ++ ", this machine is " ++ Host;
                _ ->
                    lists:flatten(string:replace(Text, "\n", " ", all))
            end;
        {error, Reason} ->
            file:format_error(Reason)
    end.

library_header(File) ->
    case file:open(File, [read, binary, raw]) of
        {ok, Fd} ->
            try file:read(Fd, 20) of
                {ok, Header} -> {ok, Header};
                eof -> {ok, <<>>};
                Error -> Error
            after
                file:close(Fd)
            end;
        Error ->
            Error
    end.

%% e_machine is at byte 18 of a little-endian ELF header.
library_kind(<<127, "ELF", _Class, 1, _:12/binary, Machine:16/little>>) ->
    "linux/" ++ elf_machine(Machine);
library_kind(<<16#cf, 16#fa, 16#ed, 16#fe, CpuType:32/little, _/binary>>) ->
    "macos/" ++ macho_cpu(CpuType);
library_kind(_) ->
    unknown.

elf_machine(62) -> "x86_64";
elf_machine(183) -> "aarch64";
elf_machine(3) -> "x86";
elf_machine(40) -> "arm";
elf_machine(N) -> "machine " ++ integer_to_list(N).

macho_cpu(16#01000007) -> "x86_64";
macho_cpu(16#0100000c) -> "aarch64";
macho_cpu(N) -> "cpu " ++ integer_to_list(N).

host_kind(Arch) ->
    Os =
        case string:find(Arch, "darwin") of
            nomatch -> "linux";
            _ -> "macos"
        end,
    Cpu =
        case hd(string:split(Arch, "-")) of
            "amd64" -> "x86_64";
            "arm64" -> "aarch64";
            C -> C
        end,
    Os ++ "/" ++ Cpu.

%% The Erlang bodies below run only when the library did not load.
not_loaded() ->
    erlang:nif_error({nif_not_loaded, persistent_term:get({?MODULE, load_failure}, "ocibuild: the NIF is not loaded")}).

%% code:priv_dir/1 finds the app under rebar3, mix and releases; from a source checkout used
%% with `erl -pa ebin' the app directory is not named ocibuild, so look next to ebin/.
priv_dir() ->
    case code:priv_dir(ocibuild) of
        {error, bad_name} ->
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

layer_create(_Files, _Opts) -> not_loaded().

image_export(_Images, _Dir, _Opts) -> not_loaded().

image_save(_Images, _Path, _Opts) -> not_loaded().

tarball_load(_Path, _StoreDir, _Platforms) -> not_loaded().

platform_parse(_Spec) -> not_loaded().

platform_host() -> not_loaded().

reference_parse(_Text) -> not_loaded().

reference_tags(_Texts) -> not_loaded().

reference_tags_expand(_Texts) -> not_loaded().

options_defaults() -> not_loaded().

registry_pull(_Ref, _Auth, _Opts) -> not_loaded().

registry_push(_Images, _Target, _Opts) -> not_loaded().

sbom_build(_Input) -> not_loaded().

sbom_layer(_Sbom, _Opts) -> not_loaded().

sbom_document(_Sbom) -> not_loaded().

sign_key_load(_Pem, _Password) -> not_loaded().

vcs_url_normalize(_Url) -> not_loaded().

reproducible_epoch(_Raw) -> not_loaded().

job_cancel(_Handle) -> not_loaded().

job_count() -> not_loaded().

tarball_load_temp(_Path, _ParentDir) -> not_loaded().

tarball_cleanup(_Handle) -> not_loaded().

registry_check_push(_Target, _Opts) -> not_loaded().
blob_store_gc(_Root, _Opts) -> not_loaded().

verify_image(_Ref, _Auth, _Opts) -> not_loaded().

verify_tarball(_Path, _Opts) -> not_loaded().
