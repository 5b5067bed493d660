%% @doc The native library: loads `priv/ocibuild_nif.so' when this module is loaded.
%%
%% Internal: call `ocibuild', `ocibuild_layer' and `ocibuild_layout' instead. Every function
%% here is replaced by the Rust implementation in `native/ocibuild_nif'; the Erlang bodies only
%% run if the library failed to load. File and CPU work runs on dirty schedulers.
-module(ocibuild_nif).

-export([layer_create/2, image_export/3, image_save/3, tarball_load/2, platform_parse/1]).
-export([reference_parse/1]).
-export([registry_pull/3, registry_fetch/2, registry_push/3, registry_push_loaded/3]).
-export([sbom_spdx/1, sign_key_check/2]).
-export([job_cancel/1, job_count/0]).
-export([tarball_load_temp/2, tarball_cleanup/1]).

-on_load(init/0).

-define(LIBNAME, "ocibuild_nif").

init() ->
    erlang:load_nif(filename:join(priv_dir(), ?LIBNAME), 0).

%% code:priv_dir/1 finds the app under rebar3, mix and releases; from a source checkout used
%% with `erl -pa ebin' the app directory is not named ocibuild, so look next to ebin/.
priv_dir() ->
    case code:priv_dir(ocibuild) of
        {error, bad_name} ->
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

layer_create(_Files, _Opts) -> erlang:nif_error(nif_not_loaded).

image_export(_Images, _Dir, _Opts) -> erlang:nif_error(nif_not_loaded).

image_save(_Images, _Path, _Opts) -> erlang:nif_error(nif_not_loaded).

tarball_load(_Path, _ExtractDir) -> erlang:nif_error(nif_not_loaded).

platform_parse(_Spec) -> erlang:nif_error(nif_not_loaded).

reference_parse(_Text) -> erlang:nif_error(nif_not_loaded).

registry_pull(_Ref, _Auth, _Opts) -> erlang:nif_error(nif_not_loaded).

registry_fetch(_Images, _Opts) -> erlang:nif_error(nif_not_loaded).

registry_push(_Images, _Target, _Opts) -> erlang:nif_error(nif_not_loaded).

registry_push_loaded(_Loaded, _Target, _Opts) -> erlang:nif_error(nif_not_loaded).

sbom_spdx(_Input) -> erlang:nif_error(nif_not_loaded).

sign_key_check(_Pem, _Password) -> erlang:nif_error(nif_not_loaded).

job_cancel(_Handle) -> erlang:nif_error(nif_not_loaded).

job_count() -> erlang:nif_error(nif_not_loaded).

tarball_load_temp(_Path, _ParentDir) -> erlang:nif_error(nif_not_loaded).

tarball_cleanup(_Handle) -> erlang:nif_error(nif_not_loaded).
