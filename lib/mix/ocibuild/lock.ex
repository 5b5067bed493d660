defmodule Ocibuild.Mix.Lock do
  @moduledoc """
  Reads a `mix.lock` for the release's layers and SBOM: which dependencies the project has,
  at which versions, from where.

      {:ok, [%{name: "jason", version: "1.4.1", source: "hex"}]} = Ocibuild.Mix.Lock.read("mix.lock")
  """

  @doc """
  The dependencies in a mix.lock: name (the app's name, the lock's key), version (a git
  dependency's revision) and source (`"hex"`, the git URL, or the SCM's name); a Hex
  package also gives `sha256`, the lock's outer checksum, when it has one. An error is
  `{path, why}` with `why` a sentence, the shape rebar3's lock reader gives, so that
  `ocibuild_release` reports `{:lock_file, {path, why}}` with one line for both tools.
  """
  @spec read(Path.t()) :: {:ok, [map()]} | {:error, {Path.t(), String.t()}}
  def read(path) do
    with {:ok, contents} <- read_file(path),
         {:ok, quoted} <- parse_lock(contents, path),
         {:ok, lock} <- eval_lock(quoted, path) do
      {:ok, for({name, entry} <- Enum.sort(lock), dep = lock_entry(name, entry), do: dep)}
    else
      {:error, why} -> {:error, {path, why}}
    end
  end

  # A lock file is well under a MiB; a FIFO or device in its place must not block the build.
  @max_lock_bytes 16 * 1024 * 1024

  defp read_file(path) do
    case :ocibuild_host_file.read(path, @max_lock_bytes) do
      {:ok, contents} -> {:ok, contents}
      {:error, why} -> {:error, IO.chardata_to_string(:ocibuild_host_file.format_error(why))}
    end
  end

  defp parse_lock(contents, path) do
    # Mix writes keys as `"name": {...}` and reads them without the quotes warning.
    case Code.string_to_quoted(contents, file: path, warn_on_unnecessary_quotes: false) do
      {:ok, quoted} ->
        {:ok, quoted}

      {:error, {location, message, token}} ->
        line = if is_list(location), do: location[:line], else: location
        {:error, "line #{line}: #{parse_message(message)}#{token}"}
    end
  end

  defp parse_message({prefix, suffix}), do: "#{prefix}#{suffix}"
  defp parse_message(message), do: to_string(message)

  # A lock file is Elixir terms; Mix itself reads it with Code.eval_quoted.
  defp eval_lock(quoted, path) do
    case Code.eval_quoted(quoted, [], file: path) do
      {%{} = lock, _binding} -> {:ok, lock}
      {other, _binding} -> {:error, "expected a map of dependencies, got: #{inspect(other)}"}
    end
  rescue
    exception -> {:error, Exception.message(exception)}
  end

  defp lock_entry(name, entry) when is_tuple(entry) do
    case Tuple.to_list(entry) do
      [:hex, _package, version | rest] when is_binary(version) ->
        with_sha256(%{name: to_string(name), version: version, source: "hex"}, rest)

      [:git, url, rev | _] when is_binary(url) and is_binary(rev) ->
        %{name: to_string(name), version: rev, source: url}

      [scm, _, version | _] when is_atom(scm) and is_binary(version) ->
        %{name: to_string(name), version: version, source: Atom.to_string(scm)}

      _ ->
        nil
    end
  end

  defp lock_entry(_name, _entry), do: nil

  # `{:hex, pkg, version, inner, managers, deps, repo, outer}`: the outer checksum is the
  # sha256 of the tarball hex.pm serves, what the provenance states (`ocibuild_provenance`).
  defp with_sha256(dep, [_inner, _managers, _deps, _repo, outer | _]) when is_binary(outer) do
    if outer =~ ~r/\A[0-9a-fA-F]{64}\z/,
      do: Map.put(dep, :sha256, String.downcase(outer)),
      else: dep
  end

  defp with_sha256(dep, _rest), do: dep
end
