%% @doc Publishing a release's images: save them as a tarball, push them (one push per
%% repository, the other tags of that repository pointing at the same manifest, with the
%% SBOM referrers and the signature the push attaches), or push a tarball saved earlier; and
%% the lines the tools print about it (`Tagged: ...', `Digest: ...', what was uploaded).
%%
%% ```
%% {ok, State} = ocibuild_release_publish:push_tarball(Adapter, State, "app-1.tar.gz",
%%                                                     #{registry => <<"ghcr.io/org">>}).
%% '''
-module(ocibuild_release_publish).

-export([publish/6, push_image/5, push_tarball/4, push_auth/0, pull_auth/0,
         progress/1]).

%% @doc Without a push target the image is saved; with one it is pushed, and saved too when
%% `output' was given. Throws `{ocibuild_release, Reason}' (`ocibuild_release_pipeline'
%% returns it).
-spec publish(module(), term(), map(), [ocibuild:image()], [binary()], map()) -> {ok, term()}.
publish(Adapter, State, #{push := undefined} = Config, Images, [Tag | Others], _Attach) ->
    Output = output_path(Config, Tag),
    save(Adapter, Images, Output, Tag),
    %% A tarball records one name; the others would be a promise the file does not keep.
    [Adapter:error("warning: the tarball is tagged ~ts only; ~ts applies to --push",
                   [Tag, lists:join(", ", Others)]) || Others =/= []],
    Adapter:info("Tagged: ~ts", [Tag]),
    {ok, State};
publish(Adapter, State, #{push := Registry} = Config, Images, Tags, Attach) ->
    case maps:get(output, Config) of
        undefined -> ok;
        Output -> save(Adapter, Images, Output, hd(Tags))
    end,
    Auth = push_auth(),
    %% One image or an index is the core's decision (several platforms make an index).
    %% `--provenance PATH' is the first repository's statement.
    [FirstGroup | OtherGroups] = tag_groups(Tags),
    Digests = [
        push_repo(Adapter, Images, Registry, RepoTags, Auth, C#{attach => Attach})
     || {RepoTags, C} <- [{FirstGroup, Config} |
                          [{G, Config#{provenance => undefined}} || G <- OtherGroups]]
    ],
    [Adapter:info("Digest: ~ts", [D]) || D <- lists:usort(Digests)],
    {ok, State}.

save(Adapter, Images, Output, Tag) ->
    Adapter:info("Saving image to ~ts", [Output]),
    ok = check_ok(ocibuild:save(Images, Output, #{tag => Tag})).

check_ok(ok) -> ok;
check_ok({error, Reason}) -> throw({ocibuild_release, Reason}).

output_path(#{output := Output}, _Tag) when is_binary(Output) ->
    Output;
output_path(_Config, Tag) ->
    [#{name := Repo, versions := [Version]}] = tag_groups([Tag]),
    Name = lists:last(binary:split(Repo, <<"/">>, [global])),
    <<Name/binary, "-", Version/binary, ".tar.gz">>.

%% Tags for the same repository share one push: the first puts the manifest, the others
%% only point at it. The core expands `;'-lists, checks each tag and groups them by the
%% repository as written (`#{name, tags, versions}'), in the order given.
tag_groups(Tags) ->
    #{groups := Groups} = check(ocibuild_nif:reference_tags(Tags)),
    Groups.

push_repo(Adapter, Images, Registry, Group, Auth, Config) ->
    Attach = maps:with([sboms, sign, provenance], maps:get(attach, Config, #{})),
    Push = fun(First, Opts) ->
        Pushed = ocibuild_registry:push(Images, Registry, First, Auth, maps:merge(Opts, Attach)),
        write_provenance(Adapter, maps:get(provenance, Config, undefined), Pushed),
        Pushed
    end,
    check(push_tags(Adapter, Registry, Group, maps:get(chunk_size, Config), Push)).

%% Push under the first tag of `Group' (one repository) with the others as extra tags, then
%% report what went over the wire and the tags. `Push(FirstTag, Opts)' does the push.
push_tags(Adapter, Registry, #{name := Repo, tags := [First | _] = RepoTags,
                               versions := [_ | Versions]}, ChunkSize, Push) ->
    Adapter:info("Pushing to ~ts/~ts", [Registry, First]),
    Opts = #{
        tags => Versions,
        chunk_size => ChunkSize,
        progress => progress(Adapter)
    },
    case Push(First, Opts) of
        {ok, #{digest := Digest} = Report} ->
            ocibuild_progress:stop(),
            report_push(Adapter, Report),
            [Adapter:info("Tagged: ~ts/~ts", [Registry, T]) || T <- RepoTags],
            report_attached(Adapter, Registry, Repo, maps:get(attached, Report, #{})),
            {ok, Digest};
        {error, _} = Error ->
            Error
    end.

%% What the push attached: each SBOM referrer and where the registry lists it, the signature.
report_attached(Adapter, Registry, Repo, Attached) ->
    [Adapter:info("SBOM attached to ~ts/~ts@~ts, ~ts", [Registry, Repo, Subject, referrers_where(Api, Subject)])
     || #{subject := Subject, api := Api} <- maps:get(referrers, Attached, [])],
    [Adapter:info("Provenance attached to ~ts/~ts@~ts, ~ts and in tag ~ts",
                  [Registry, Repo, Subject, referrers_where(Api, Subject), AttTag])
     || #{subject := Subject, referrer := #{api := Api}, attestation_tag := AttTag}
            <- maps:get(provenance, Attached, [])],
    case maps:get(signature_tag, Attached, undefined) of
        undefined -> ok;
        SigTag -> Adapter:info("Signed: ~ts/~ts:~ts", [Registry, Repo, SigTag])
    end.

%% `--provenance PATH': the statement of the push's first (platform) image.
write_provenance(Adapter, Path, {ok, Report}) when is_binary(Path) ->
    case ocibuild_provenance:first_statement(Report) of
        {ok, Statement} ->
            case ocibuild_provenance:write(Statement, Path) of
                ok -> Adapter:info("Provenance written to ~ts", [Path]);
                {error, Why} -> throw({ocibuild_release, {provenance_write, Path, Why}})
            end;
        none ->
            ok
    end;
write_provenance(_Adapter, _Path, _Pushed) ->
    ok.

referrers_where(true, _Subject) ->
    "listed by the registry's referrers API";
referrers_where(false, <<"sha256:", Hex/binary>>) ->
    ["listed in the referrers tag sha256-", Hex].

%% @doc Progress through the adapter: plain lines (CI) go to its console; a terminal gets the
%% live display.
-spec progress(module()) -> ocibuild_registry:progress_fun().
progress(Adapter) ->
    ocibuild_progress:callback(fun(Line) -> Adapter:console("~ts~n", [Line]) end).

report_push(Adapter, #{uploaded := Up, uploaded_bytes := Bytes, existing := Existing,
                       mounted := Mounted}) ->
    Adapter:info("Uploaded ~ts in ~b blob(s); ~b already present, ~b mounted",
                 [ocibuild_progress:format_bytes(Bytes), Up, Existing, Mounted]).

%% @doc Push credentials from `OCIBUILD_PUSH_TOKEN' (first) or `OCIBUILD_PUSH_USERNAME' and
%% `OCIBUILD_PUSH_PASSWORD'; `#{}' (credential files, else anonymous) when none is set.
-spec push_auth() -> map().
push_auth() ->
    auth_from_env("OCIBUILD_PUSH_").

%% @doc Pull credentials, as `push_auth/0' from `OCIBUILD_PULL_*'.
-spec pull_auth() -> map().
pull_auth() ->
    auth_from_env("OCIBUILD_PULL_").

auth_from_env(Prefix) ->
    Get = fun(Name) -> ocibuild_release_config:env_var(Prefix ++ Name) end,
    case {Get("TOKEN"), Get("USERNAME"), Get("PASSWORD")} of
        {Token, _, _} when Token =/= undefined -> #{token => Token};
        {_, User, Pass} when User =/= undefined, Pass =/= undefined ->
            #{username => User, password => Pass};
        _ -> #{}
    end.
%% @doc `ocibuild_release:push_image/5' once its arguments are checked.
-spec push_image(ocibuild:image() | [ocibuild:image()], binary(), binary(), map(), map()) ->
    {ok, binary()} | {error, term()}.
push_image(Image, Registry, RepoTag, Auth, Opts) ->
    Images =
        case Image of
            L when is_list(L) -> L;
            I -> [I]
        end,
    %% Several images make an index in the core; `index' passes through only when asked for.
    PushOpts = maps:merge(#{progress => ocibuild_progress:callback()}, Opts),
    try ocibuild_registry:push(Images, Registry, RepoTag, Auth, PushOpts) of
        {ok, #{digest := Digest}} -> {ok, Digest};
        {error, _} = Error -> Error
    after
        ocibuild_progress:stop()
    end.
%% @doc `ocibuild_release:push_tarball/4' once its arguments are checked.
-spec push_tarball(module(), term(), file:filename_all(), map()) -> {ok, term()} | {error, term()}.
push_tarball(Adapter, State, TarballPath, Opts) ->
    Registry = maps:get(registry, Opts, undefined),
    case {Registry, filelib:is_regular(TarballPath)} of
        {undefined, _} ->
            {error, {tarball_without_push, ocibuild_release_config:to_binary(TarballPath)}};
        {_, false} ->
            {error, {tarball_not_found, ocibuild_release_config:to_binary(TarballPath)}};
        {_, true} ->
            Adapter:info("Loading ~ts", [TarballPath]),
            case ocibuild_layout:load_tarball_for_push(TarballPath) of
                {ok, #{cleanup := Cleanup} = Loaded} ->
                    try
                        push_loaded(Adapter, State, Loaded, Registry, Opts)
                    after
                        Cleanup(),
                        ocibuild_progress:stop()
                    end;
                {error, _} = Error ->
                    Error
            end
    end.

push_loaded(Adapter, State, Loaded, Registry, Opts) ->
    case push_loaded_groups(Loaded, maps:get(tags, Opts, [])) of
        {ok, []} ->
            {error, {invalid_option, tag, <<"the tarball names no repository (no name:tag); give one with --tag">>}};
        {ok, Groups} ->
            Results = [push_loaded_repo(Adapter, Loaded, Registry, G, Opts) || G <- Groups],
            case [E || {error, _} = E <- Results] of
                [] ->
                    [Adapter:info("Digest: ~ts", [D]) || D <- lists:usort([D || {ok, D} <- Results])],
                    {ok, State};
                [Error | _] ->
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% The tags given, else the one saved in the tarball (without its registry).
push_loaded_groups(Loaded, Given) ->
    case groups(Given) of
        {ok, []} ->
            case ocibuild_layout:push_reference(Loaded) of
                undefined -> {ok, []};
                Saved -> groups([strip_registry(Saved)])
            end;
        Other ->
            Other
    end.

groups(Tags) ->
    case ocibuild_nif:reference_tags(Tags) of
        {ok, #{groups := Groups}} -> {ok, Groups};
        {error, _} = Error -> Error
    end.

push_loaded_repo(Adapter, Loaded, Registry, Group, Opts) ->
    Auth = push_auth(),
    %% `sign' is `undefined' without a key; ocibuild_registry:push_loaded/5 takes that as none.
    Attach = maps:with([sign], Opts),
    Push = fun(First, PushOpts) ->
        ocibuild_registry:push_loaded(Loaded, Registry, First, Auth, maps:merge(PushOpts, Attach))
    end,
    push_tags(Adapter, Registry, Group, maps:get(chunk_size, Opts, ocibuild_adapter:default_chunk_size()), Push).

%% A tarball saved as `localhost:5000/app:1' is pushed as `app:1' under the target registry.
strip_registry(Tag) ->
    case binary:split(Tag, <<"/">>) of
        [First, Rest] ->
            case binary:match(First, [<<".">>, <<":">>]) =/= nomatch orelse First =:= <<"localhost">> of
                true -> Rest;
                false -> Tag
            end;
        [_] ->
            Tag
    end.
check({ok, Value}) -> Value;
check({error, Reason}) -> throw({ocibuild_release, Reason}).
