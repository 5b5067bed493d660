%% @doc Reads a `rebar.lock' for the release's layers and SBOM: which dependencies the
%% project has, at which versions, from where. Never opens the file in a way that could block
%% (a FIFO in its place is an error) or read more than a lock file could hold.
%%
%% ```
%% {ok, [#{name := <<"jsx">>, version := <<"3.1.0">>, source := <<"hex">>}]} =
%%     ocibuild_rebar_lock:read("rebar.lock").
%% '''
-module(ocibuild_rebar_lock).

-export([read/1]).

%% A lock file of thousands of dependencies is well under a MiB; the cap only stops a
%% device or a huge file being read into the VM.
-define(MAX_LOCK_BYTES, 16 bsl 20).

%% @doc The dependencies a `rebar.lock' lists: `undefined' when the file does not exist.
%% Reads both the versioned format (`{"1.2.0", Deps}.' followed by the package hashes) and
%% the old bare list. Packages give `source => <<"hex">>' and their version; git (and hg)
%% dependencies give their URL as the source and the locked ref as the version; a package
%% whose sha256 the lock records (`pkg_hash_ext') gives it as `sha256'. An error is
%% `{error, {Path, Why}}' (`ocibuild_release' reports it as `{lock_file, {Path, Why}}'), the
%% shape `Ocibuild.Mix.Lock' gives for a `mix.lock'.
-spec read(file:filename()) ->
    {ok, [#{name := binary(), version := binary(), source := binary()}]} | {error, term()}
    | undefined.
read(Path) ->
    case ocibuild_host_file:read(Path, ?MAX_LOCK_BYTES) of
        {ok, Bytes} ->
            case parse_terms(Bytes) of
                {ok, Terms} -> lock_deps(Path, Terms);
                {error, Why} -> {error, {Path, Why}}
            end;
        {error, enoent} ->
            undefined;
        {error, Why} ->
            {error, {Path, Why}}
    end.

lock_deps(Path, Terms) ->
    case lock_entries(Terms) of
        {ok, Entries} ->
            Hashes = package_hashes(Terms),
            {ok, [with_hash(D, Hashes) || E <- Entries, D <- lock_dep(E)]};
        error ->
            {error, {Path, unknown_format}}
    end.

%% The versioned format's `pkg_hash_ext': each package's sha256 (the hash of the tarball
%% hex.pm serves, Hex's outer checksum), kept for the provenance (`ocibuild_provenance').
package_hashes([{Vsn, _Deps}, Attrs | _]) when is_list(Vsn), is_list(Attrs) ->
    case lists:keyfind(pkg_hash_ext, 1, Attrs) of
        {pkg_hash_ext, List} when is_list(List) ->
            maps:from_list([{N, string:lowercase(H)} || {N, H} <- List, is_binary(N), is_sha256(H)]);
        _ ->
            #{}
    end;
package_hashes(_Terms) ->
    #{}.

with_hash(#{name := Name, source := <<"hex">>} = Dep, Hashes) when is_map_key(Name, Hashes) ->
    Dep#{sha256 => map_get(Name, Hashes)};
with_hash(Dep, _Hashes) ->
    Dep.

is_sha256(H) when is_binary(H), byte_size(H) =:= 64 ->
    lists:all(fun(C) -> lists:member(C, "0123456789abcdefABCDEF") end, binary_to_list(H));
is_sha256(_) ->
    false.

%% `file:consult/1' on bytes already read (it opens the path itself, and would block on a
%% FIFO). Errors are `{Line, Module, Term}' as `file:consult/1' gives them.
parse_terms(Bytes) ->
    Chars = case unicode:characters_to_list(Bytes) of
                L when is_list(L) -> L;
                _NotUtf8 -> binary_to_list(Bytes)
            end,
    parse_terms(Chars, 1, []).

%% The scanner sees a full stop only once followed by a blank or the end of the file.
last_term(Tokens, Acc) ->
    case erl_parse:parse_term(Tokens) of
        {ok, Term} -> {ok, lists:reverse([Term | Acc])};
        {error, _} = Error -> Error
    end.

parse_terms(Chars, Line, Acc) ->
    case erl_scan:tokens([], Chars, Line) of
        {done, {ok, Tokens, Next}, Rest} ->
            case erl_parse:parse_term(Tokens) of
                {ok, Term} -> parse_terms(Rest, Next, [Term | Acc]);
                {error, _} = Error -> Error
            end;
        {done, {eof, _}, _} ->
            {ok, lists:reverse(Acc)};
        {done, {error, Info, _}, _} ->
            {error, Info};
        {more, Continuation} ->
            %% Only blanks and comments are left, or a last term.
            case erl_scan:tokens(Continuation, eof, Line) of
                {done, {eof, _}, _} -> {ok, lists:reverse(Acc)};
                {done, {error, Info, _}, _} -> {error, Info};
                {done, {ok, Tokens, _End}, _} -> last_term(Tokens, Acc)
            end
    end.

lock_entries([]) -> {ok, []};
lock_entries([{Vsn, Deps} | _]) when is_list(Vsn), is_list(Deps) -> {ok, Deps};
lock_entries([Deps]) when is_list(Deps) -> {ok, Deps};
lock_entries(_) -> error.

lock_dep({Name, Source, _Level}) when is_binary(Name) ->
    [#{name => Name, version => V, source => S} || {V, S} <- lock_source(Name, Source)];
lock_dep(_) ->
    [].

lock_source(_Name, Pkg) when is_tuple(Pkg), tuple_size(Pkg) >= 3, element(1, Pkg) =:= pkg ->
    [{bin(element(3, Pkg)), <<"hex">>}];
lock_source(_Name, Scm) when is_tuple(Scm), tuple_size(Scm) >= 3,
                             (element(1, Scm) =:= git orelse element(1, Scm) =:= git_subdir
                              orelse element(1, Scm) =:= hg) ->
    [{ref(element(3, Scm)), bin(element(2, Scm))}];
lock_source(_Name, Other) when is_tuple(Other), tuple_size(Other) >= 2 ->
    [{<<>>, bin(element(1, Other))}];
lock_source(_Name, _) ->
    [].

ref({_Kind, Ref}) -> bin(Ref);
ref(Ref) -> bin(Ref).

bin(B) when is_binary(B) -> B;
bin(A) when is_atom(A) -> atom_to_binary(A);
bin(L) when is_list(L) ->
    case unicode:characters_to_binary(L) of
        B when is_binary(B) -> B;
        _ -> <<>>
    end;
bin(_) -> <<>>.
