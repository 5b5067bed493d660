%% @doc The user-facing text of `mix ocibuild', `rebar3 ocibuild' and `ocibuild_release': one
%% line for every error reason either tool returns (`format_error/1') and for every warning
%% met while collecting a release's files (`format_warning/1').
%%
%% ```
%% "invalid image tag \"bad tag!!\": ..." = lists:flatten(ocibuild_release_messages:format_error(R)).
%% '''
-module(ocibuild_release_messages).

-export([format_error/1, format_warning/1]).

%% @doc One line for a warning `ocibuild_release_files:collect/2' returns.
-spec format_warning(term()) -> iolist().
format_warning({symlink_outside_release, Path, Target}) ->
    io_lib:format("warning: skipping ~ts: symlink to ~ts, outside the release", [Path, Target]);
format_warning({broken_symlink, Path}) ->
    io_lib:format("warning: skipping ~ts: broken symlink", [Path]);
format_warning({symlink_loop, Path}) ->
    io_lib:format("warning: skipping ~ts: symlink loop", [Path]);
format_warning({special_file, Path, Type}) ->
    io_lib:format("warning: skipping ~ts: special file (~s), not a regular file or directory", [Path, Type]);
format_warning({unreadable_directory, Path, Posix}) ->
    io_lib:format("warning: skipping ~ts: ~ts", [Path, file:format_error(Posix)]);
format_warning(Other) ->
    io_lib:format("warning: ~0tp", [Other]).

%% @doc One line, for the user, for any reason `run/3' and the functions here return.
-spec format_error(term()) -> iolist().
format_error(Reason) ->
    %% Any term gets its line: a reason whose fields are not what its clause expects (a
    %% caller's own term that happens to use one of our tags) is shown as the term.
    try
        Line = format_reason(Reason),
        true = is_binary(unicode:characters_to_binary(Line)),
        Line
    catch
        error:_ -> io_lib:format("~0tp", [Reason])
    end.

format_reason(missing_tag) ->
    "no image tag: give one with --tag NAME:VERSION (or `tag' in the ocibuild config)";
format_reason({provenance_write, Path, Why}) ->
    io_lib:format("cannot write the provenance statement to ~ts: ~ts", [Path, ocibuild_host_file:format_error(Why)]);
format_reason({sbom_write, Path, Why}) ->
    io_lib:format("cannot write the SBOM to ~ts: ~ts", [Path, ocibuild_host_file:format_error(Why)]);
format_reason({output_write, Path, Why}) ->
    io_lib:format("cannot write the image to ~ts: ~ts", [Path, ocibuild_host_file:format_error(Why)]);
format_reason({sign_key, Path, {file_read, Why}}) ->
    io_lib:format("cannot read the signing key ~ts: ~ts", [Path, ocibuild_host_file:format_error(Why)]);
format_reason({sign_key, Path, {sign_key_password, missing}}) ->
    io_lib:format("signing key ~ts is encrypted: set COSIGN_PASSWORD to its password", [Path]);
format_reason({sign_key, Path, {sign_key_password, wrong}}) ->
    io_lib:format("signing key ~ts: COSIGN_PASSWORD is not its password", [Path]);
format_reason({sign_key, Path, {sign_key_error, Why}}) ->
    io_lib:format("signing key ~ts: ~ts", [Path, text_or_term(Why)]);
format_reason({sign_key, Path, Reason}) ->
    io_lib:format("signing key ~ts: ~ts", [Path, format_error(Reason)]);
format_reason({invalid_annotation, null_byte, Key}) ->
    io_lib:format("annotation ~ts: keys and values may not contain NUL bytes", [show_key(Key)]);
format_reason({invalid_annotation, path_traversal, Key}) ->
    io_lib:format("annotation ~ts: keys and values may not contain a .. path component", [show_key(Key)]);
format_reason({invalid_annotation, empty_key, _}) ->
    "annotation with an empty key";
format_reason({invalid_created_timestamp, {negative_timestamp, Value}}) ->
    io_lib:format("annotation org.opencontainers.image.created: ~ts is before 1970; give unix "
                  "seconds or an ISO 8601 date-time", [show(Value)]);
format_reason({invalid_created_timestamp, {_, Value}}) ->
    io_lib:format("annotation org.opencontainers.image.created: ~ts is neither a unix timestamp "
                  "nor an ISO 8601 date-time", [show(Value)]);
format_reason({protected_annotation, Key}) ->
    io_lib:format("annotation ~ts is computed by ocibuild and cannot be set "
                  "(use --no-vcs-annotations to leave out source and revision)", [Key]);
format_reason(empty_release) ->
    "the release directory holds no files";
format_reason({bundled_erts, Message}) ->
    Message;
format_reason({unknown_config_key, Key}) ->
    io_lib:format("unknown ocibuild config key ~ts", [show(Key)]);
format_reason({invalid_kv_format, Arg}) ->
    io_lib:format("expected KEY=VALUE, got ~ts", [show(Arg)]);
format_reason({invalid_option, compression, Value}) ->
    io_lib:format("invalid compression ~ts: use gzip, zstd or auto", [show(Value)]);
format_reason({invalid_option, chunk_size, Value}) ->
    io_lib:format("invalid chunk size ~ts: give a number of megabytes from 1 to 4096", [show(Value)]);
format_reason({invalid_uid, Value, _Why}) ->
    io_lib:format("invalid uid ~ts: give an integer from 0 to 4294967295", [show(Value)]);
format_reason({invalid_option, workdir, Value}) ->
    io_lib:format("invalid workdir ~ts: give an absolute path without . or ..", [show(Value)]);
format_reason({invalid_option, 'OCIBUILD_LAYER_CACHE', Value}) ->
    io_lib:format("invalid OCIBUILD_LAYER_CACHE ~ts: use on, content or off", [show(Value)]);
format_reason({invalid_option, 'OCIBUILD_CACHE_MAX_AGE', Value}) ->
    io_lib:format("invalid OCIBUILD_CACHE_MAX_AGE ~ts: give days, or a number ending in s, m, h "
                  "or d", [show(Value)]);
format_reason({invalid_option, 'OCIBUILD_CACHE_MAX_SIZE', Value}) ->
    io_lib:format("invalid OCIBUILD_CACHE_MAX_SIZE ~ts: give bytes, or a number ending in K, M, "
                  "G or T", [show(Value)]);
format_reason({invalid_option, key, missing}) ->
    "verifying needs --key PATH: the public key (PEM PUBLIC KEY, e.g. cosign.pub)";
format_reason({invalid_option, Name, Value}) ->
    io_lib:format("invalid ~s: ~ts", [Name, show(Value)]);
format_reason({invalid_value, Field, Key, Why}) ->
    io_lib:format("invalid ~s ~ts: ~s", [Field, ocibuild_input:quote(Key),
                                          case Why of
                                              nul_byte -> "NUL bytes are not allowed";
                                              equals_in_name -> "a name cannot contain =";
                                              empty_name -> "a name cannot be empty";
                                              _ -> atom_to_list(Why)
                                          end]);
format_reason({special_file, Path, Kind}) ->
    io_lib:format("cannot read ~ts: a ~ts, not a regular file", [Path, string:replace(atom_to_list(Kind), "_", " ")]);
format_reason({invalid_tag, Tag, Rule}) ->
    io_lib:format("invalid image tag ~ts: ~ts", [ocibuild_input:quote(Tag), Rule]);
format_reason({invalid_platform, P}) ->
    io_lib:format("invalid platform ~ts: use OS/ARCH[/VARIANT], e.g. linux/amd64,linux/arm64", [show(P)]);
format_reason({tarball_without_push, Path}) ->
    io_lib:format("~ts: pushing a saved tarball needs --push REGISTRY[/NAMESPACE]", [Path]);
format_reason({tarball_not_found, Path}) ->
    io_lib:format("tarball ~ts not found", [Path]);
format_reason({release_not_found, Path, _Posix}) ->
    io_lib:format("release directory ~ts not found: build the release first", [Path]);
format_reason({release_not_directory, Path}) ->
    io_lib:format("~ts is not a release directory", [Path]);
format_reason({unexpected_arguments, Args}) ->
    io_lib:format("unexpected arguments: ~ts (one tarball path may follow --push)",
                  [lists:join(" ", Args)]);
format_reason({unknown_option, Flag, Tool}) ->
    io_lib:format("unknown option ~ts (`~ts help ocibuild` lists the options)", [Flag, Tool]);
format_reason({option_needs_value, Flag}) ->
    io_lib:format("option ~ts needs a value", [Flag]);
format_reason({invalid_option_value, Flag, Value}) ->
    io_lib:format("invalid value ~ts for option ~ts", [ocibuild_input:quote(Value), Flag]);
format_reason({ambiguous_release, []}) ->
    "no release to image: define one (`releases:` in mix.exs, or "
    "{relx, [{release, {Name, Vsn}, [Apps]}]} in rebar.config)";
format_reason({ambiguous_release, Names}) ->
    io_lib:format("several releases are defined (~ts): choose one with --release NAME",
                  [lists:join(", ", Names)]);
format_reason({unknown_release, Name, []}) ->
    io_lib:format("release ~ts is not defined: the project defines no release", [Name]);
format_reason({unknown_release, Name, Known}) ->
    io_lib:format("release ~ts is not defined (releases: ~ts)", [Name, lists:join(", ", Known)]);
format_reason({release_not_built, Name, Dir}) ->
    io_lib:format("release ~ts was not found in ~ts: build it first (`mix release` or "
                  "`rebar3 release`, with the same MIX_ENV or profile)", [Name, Dir]);
format_reason({lock_file, {Path, Why}}) when is_binary(Path); is_list(Path) ->
    io_lib:format("cannot read ~ts: ~ts", [Path, lock_error(Why)]);
format_reason({lock_file, Reason}) ->
    io_lib:format("cannot read the lock file: ~0tp", [Reason]);
format_reason({base_image, Base, {unauthorized, #{registry := Registry, status := Status}}}) ->
    io_lib:format("base image ~ts: ~ts refused access (HTTP ~b): set OCIBUILD_PULL_TOKEN or "
                  "OCIBUILD_PULL_USERNAME/OCIBUILD_PULL_PASSWORD, or log in with docker/podman",
                  [Base, Registry, Status]);
format_reason({base_image, Base, Reason}) ->
    io_lib:format("base image ~ts: ~ts", [Base, format_error(Reason)]);
format_reason({no_matching_platform, #{wanted := Wanted, available := Available}}) ->
    io_lib:format("no image for platform ~ts (available: ~ts)", [Wanted, lists:join(", ", Available)]);
format_reason({unauthorized, #{registry := Registry, status := Status} = Info}) ->
    io_lib:format("~ts refused the credentials (HTTP ~b, scope ~ts): set OCIBUILD_PUSH_TOKEN or "
                  "OCIBUILD_PUSH_USERNAME/OCIBUILD_PUSH_PASSWORD, or log in with docker/podman",
                  [Registry, Status, maps:get(scope, Info, <<"?">>)]);
format_reason({registry_error, #{registry := Registry, action := Action} = Info}) ->
    io_lib:format("~ts: ~ts failed (HTTP ~0tp ~ts ~ts)",
                  [Registry, Action, maps:get(status, Info, undefined),
                   text_or_empty(maps:get(code, Info, undefined)),
                   text_or_empty(maps:get(message, Info, undefined))]);
format_reason({http_error, Registry, Why}) ->
    io_lib:format("cannot reach ~ts: ~ts", [Registry, text_or_term(Why)]);
format_reason({timeout, #{registry := Registry, action := Action, phase := headers} = Info}) ->
    io_lib:format("~ts did not answer ~ts within ~0tp ms (OCIBUILD_REGISTRY_TIMEOUT)",
                  [Registry, Action, maps:get(limit_ms, Info, undefined)]);
format_reason({timeout, #{registry := Registry, action := Action, phase := body} = Info}) ->
    io_lib:format("~ts: ~ts moved less than ~0tp bytes/s over ~0tp ms (OCIBUILD_MIN_TRANSFER_RATE)",
                  [Registry, Action, maps:get(min_rate, Info, undefined),
                   maps:get(window_ms, Info, undefined)]);
format_reason({https_downgrade, #{registry := Registry, to := To}}) ->
    io_lib:format("~ts sent us from HTTPS to plain HTTP (~ts): refused", [Registry, To]);
format_reason({auth_error, Registry, Why}) ->
    io_lib:format("authentication with ~ts failed: ~ts", [Registry, text_or_term(Why)]);
format_reason({credentials_error, Source, Why}) ->
    io_lib:format("reading credentials from ~ts failed: ~ts", [Source, text_or_term(Why)]);
format_reason({invalid_reference, Ref}) ->
    io_lib:format("invalid image reference ~ts", [show(Ref)]);
format_reason({digest_mismatch, Info}) ->
    io_lib:format("digest mismatch: ~0tp", [Info]);
format_reason({file_read, Path, Posix}) ->
    io_lib:format("cannot read ~ts: ~ts", [Path, file:format_error(Posix)]);
format_reason({io_error, Context, Message}) ->
    io_lib:format("~ts: ~ts", [Context, Message]);
format_reason({bad_adapter_reply, Adapter, Callback, Reply}) ->
    io_lib:format("~s:~s/2 returned ~0tp", [Adapter, Callback, Reply]);
format_reason({verification_failed, Checks}) ->
    verification_failed(Checks);
format_reason({key_read, Path, Why}) ->
    io_lib:format("cannot read the public key ~ts: ~ts", [Path, ocibuild_host_file:format_error(Why)]);
format_reason({public_key_error, Why}) ->
    io_lib:format("public key: ~ts", [Why]);
format_reason(Reason) when is_binary(Reason) ->
    Reason;
format_reason(Reason) ->
    io_lib:format("~0tp", [Reason]).

%% A lock file's error: a parse error as `file:consult/1' gives it, a sentence (Mix's), or
%% a file error.
lock_error({Line, Mod, Term}) when is_integer(Line) -> ["line ", integer_to_list(Line), ": ",
                                                         Mod:format_error(Term)];
lock_error(unknown_format) -> "not a lock file";
lock_error(Why) when is_binary(Why) -> Why;
lock_error(Other) -> ocibuild_host_file:format_error(Other).

%% An annotation key with any NUL shown as \0, so the line stays one printable line.
show_key(Key) when is_binary(Key) -> binary:replace(Key, <<0>>, <<"\\0">>, [global]);
show_key(Key) -> show(Key).

%% A value the user gave, as they would type it: text as text, anything else as a term.
show(V) when is_atom(V) -> atom_to_list(V);
show(V) -> text_or_term(V).

text_or_empty(undefined) -> "";
text_or_empty(V) -> text_or_term(V).

text_or_term(V) when is_binary(V) -> V;
text_or_term(V) ->
    case io_lib:printable_unicode_list(V) of
        true -> V;
        false -> io_lib:format("~0tp", [V])
    end.

%% `ocibuild_verify': the first failed check's line (every line was printed before), or
%% that nothing could be checked.
verification_failed(Checks) ->
    case [C || #{outcome := fail} = C <- Checks] of
        [] ->
            "verification failed: nothing to check (every check was skipped)";
        [#{line := Line} | More] ->
            Rest = case length(More) of
                       0 -> "";
                       N -> io_lib:format(" (and ~b more failed check(s))", [N])
                   end,
            Check = case string:prefix(Line, "FAIL ") of
                        nomatch -> Line;
                        AfterWord -> AfterWord
                    end,
            ["verification failed: ", Check, Rest]
    end.
