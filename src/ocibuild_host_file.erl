%% @doc Files the user names on the host (a signing key, a lock file, a release's own files, an
%% SBOM output path), read and written so that no path can hang or flood the build.
%%
%% An Erlang `open' of a FIFO blocks until a writer appears, forever if none does, and a
%% device can stream without end; so only regular files are read, within a size cap, and
%% only a missing or regular file is written (atomically: a unique temp file renamed over
%% it, so a reader never sees half a file and a killed build leaves only the temp name).
%%
%% ```
%% {ok, Pem} = ocibuild_host_file:read("key.pem", 1 bsl 20).
%% {error, {not_regular_file, other}} = ocibuild_host_file:read("/tmp/a-fifo", 1 bsl 20).
%% '''
%%
%% Internal to ocibuild.
-module(ocibuild_host_file).

-include_lib("kernel/include/file.hrl").

-export([read/2, write/2, check_writable/1, format_error/1]).

-export_type([error/0]).

-type error() ::
    file:posix()
    | {not_regular_file, directory | device | other | symlink | undefined}
    | {file_too_large, MaxBytes :: non_neg_integer()}
    | {file_replaced, binary()}
    | {read_timeout, Ms :: pos_integer()}
    | {helper_exit, term()}.

%% A regular file opens and reads at once; only a path swapped for a FIFO between the type
%% check and the open, or a kernel file whose read waits (`/proc/kmsg'), can block, and
%% then this bounds the caller's wait for the open and the read.
-define(READ_TIMEOUT_MS, 10000).
-define(PIECE_BYTES, 65536).

%% @doc The contents of the regular file at `Path' (symlinks followed), at most `MaxBytes'.
-spec read(file:name_all(), non_neg_integer()) -> {ok, binary()} | {error, error()}.
read(Path, MaxBytes) ->
    case file:read_file_info(Path, [raw]) of
        {ok, #file_info{type = regular, size = Size}} when Size > MaxBytes ->
            {error, {file_too_large, MaxBytes}};
        {ok, #file_info{type = regular} = Before} ->
            read_in_helper(Path, MaxBytes, Before);
        {ok, #file_info{type = Type}} ->
            {error, {not_regular_file, Type}};
        {error, _} = Error ->
            Error
    end.

%% A raw file belongs to the process that opened it, so the helper opens, checks and reads,
%% and the caller only waits for its answer, with a bound. Killing a helper stuck in the
%% open frees the caller; the kernel call itself ends when the FIFO gets a writer.
read_in_helper(Path, MaxBytes, Before) ->
    Caller = self(),
    Ref = make_ref(),
    {Pid, Monitor} = spawn_monitor(fun() -> Caller ! {Ref, open_and_read(Path, MaxBytes, Before)} end),
    receive
        {Ref, Result} ->
            erlang:demonitor(Monitor, [flush]),
            Result;
        {'DOWN', Monitor, process, Pid, Why} ->
            {error, {helper_exit, Why}}
    after ?READ_TIMEOUT_MS ->
        exit(Pid, kill),
        erlang:demonitor(Monitor, [flush]),
        receive {Ref, _} -> ok after 0 -> ok end,
        {error, {read_timeout, ?READ_TIMEOUT_MS}}
    end.

open_and_read(Path, MaxBytes, Before) ->
    case file:open(Path, [read, raw, binary]) of
        {ok, Fd} ->
            try
                read_opened(Fd, Path, MaxBytes, Before)
            after
                file:close(Fd)
            end;
        {error, _} = Error ->
            Error
    end.

%% The opened file must be the one checked: same device and inode, still regular.
read_opened(Fd, Path, MaxBytes, Before) ->
    case file:read_file_info(Fd, [raw]) of
        {ok, #file_info{type = regular} = Opened} when
            Opened#file_info.major_device =:= Before#file_info.major_device,
            Opened#file_info.inode =:= Before#file_info.inode ->
            read_capped(Fd, MaxBytes);
        {ok, _Changed} ->
            {error, {file_replaced, to_binary(Path)}};
        {error, _} = Error ->
            Error
    end.

%% In pieces, so the cap bounds what is read (a file may grow after the check) without
%% allocating the cap up front.
read_capped(Fd, MaxBytes) ->
    read_capped(Fd, MaxBytes, [], 0).

read_capped(_Fd, MaxBytes, _Acc, Got) when Got > MaxBytes ->
    {error, {file_too_large, MaxBytes}};
read_capped(Fd, MaxBytes, Acc, Got) ->
    case file:read(Fd, ?PIECE_BYTES) of
        {ok, Data} -> read_capped(Fd, MaxBytes, [Data | Acc], Got + byte_size(Data));
        eof -> {ok, iolist_to_binary(lists:reverse(Acc))};
        {error, _} = Error -> Error
    end.

%% @doc Write `Data' to `Path', which must be missing or a regular file (a FIFO or device
%% would block the write or swallow it): into a temp file unique to this call, next to
%% `Path', then renamed over it.
-spec write(file:name_all(), iodata()) -> ok | {error, error()}.
write(Path, Data) ->
    case check_writable(Path) of
        ok -> write_atomically(Path, Data);
        {error, _} = Error -> Error
    end.

%% @doc `ok' when `Path' is missing or a regular file: what `write/2' accepts. Lets a build
%% refuse a bad output path before any work, not after it.
-spec check_writable(file:name_all()) -> ok | {error, error()}.
check_writable(Path) ->
    case file:read_file_info(Path, [raw]) of
        {ok, #file_info{type = regular}} -> ok;
        {ok, #file_info{type = Type}} -> {error, {not_regular_file, Type}};
        {error, enoent} -> ok;
        {error, _} = Error -> Error
    end.

write_atomically(Path, Data) ->
    Temp = temp_name(Path),
    Guard = remove_if_caller_dies(Temp),
    try
        write_and_rename(Temp, Path, Data)
    after
        Guard ! written
    end.

%% A caller killed between the write and the rename would leave the temp file behind: a
%% process watching it removes the file then. (Only a VM that dies outright leaves it.)
remove_if_caller_dies(Temp) ->
    Caller = self(),
    spawn(fun() ->
        Ref = erlang:monitor(process, Caller),
        receive
            written -> ok;
            {'DOWN', Ref, process, Caller, _} -> file:delete(Temp, [raw])
        end
    end).

write_and_rename(Temp, Path, Data) ->
    case file:write_file(Temp, Data, [exclusive, raw]) of
        ok ->
            case file:rename(Temp, Path) of
                ok ->
                    ok;
                {error, _} = Error ->
                    _ = file:delete(Temp, [raw]),
                    Error
            end;
        {error, _} = Error ->
            _ = file:delete(Temp, [raw]),
            Error
    end.

temp_name(Path) ->
    Dir = filename:dirname(Path),
    Base = filename:basename(Path),
    %% Unique in this VM, and random against other VMs; `exclusive' refuses any clash.
    Unique = io_lib:format("~b-~.36b", [erlang:unique_integer([positive]), rand:uniform(1 bsl 48)]),
    filename:join(to_binary(Dir), iolist_to_binary([".", to_binary(Base), ".ocibuild-", Unique])).

%% @doc One line for a reason `read/2' or `write/2' returned.
-spec format_error(error() | term()) -> string().
format_error({not_regular_file, directory}) ->
    "is a directory, not a regular file";
format_error({not_regular_file, device}) ->
    "is a device, not a regular file";
format_error({not_regular_file, _Other}) ->
    "is not a regular file (a FIFO, socket or other special file)";
format_error({file_too_large, MaxBytes}) ->
    lists:flatten(io_lib:format("is larger than the limit of ~b bytes", [MaxBytes]));
format_error({file_replaced, _Path}) ->
    "was replaced while it was being opened";
format_error({read_timeout, Ms}) ->
    lists:flatten(io_lib:format("could not be read within ~b ms (a FIFO or a kernel file?)", [Ms]));
format_error(Posix) when is_atom(Posix) ->
    file:format_error(Posix);
format_error(Other) ->
    lists:flatten(io_lib:format("~0tp", [Other])).

to_binary(Path) when is_binary(Path) -> Path;
to_binary(Path) -> unicode:characters_to_binary(filename:flatten(Path), unicode, file:native_name_encoding()).
