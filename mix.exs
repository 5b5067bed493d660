defmodule Mix.Tasks.Compile.OcibuildNif.Manifest do
  @moduledoc false
  # Whether priv/.ocibuild_nif.manifest still holds: native/install_nif.escript records there
  # the facts an install depended on (source files' and the library's size, mtime, ctime and
  # inode, directory listings, the VM, the variables that change the build) and documents the
  # format; this checks them one by one, as the script's holds/2 does, without starting a VM
  # for the script (about 0.25 s) or cargo (about 0.1 s) on every `mix` run. Every `mix
  # ocibuild` pays for this check, so it costs one stat per file, one listing per directory
  # and no file reads beyond the manifest; only a {:library, path, sha} fact (the script's
  # fallback when it could not trust the library's times) reads and hashes a file.
  # Which facts to record is decided there alone.

  def holds?(root) do
    case read(root) do
      [{:ocibuild_nif_manifest, 2} | facts] -> Enum.all?(facts, &holds?(root, &1))
      _ -> false
    end
  end

  # The facts (term_to_binary/1 of a list), or :none for a missing or damaged file.
  def read(root) do
    case File.read(path(root)) do
      {:ok, bytes} ->
        try do
          :erlang.binary_to_term(bytes, [:safe])
        rescue
          ArgumentError -> :none
        end

      {:error, _} ->
        :none
    end
  end

  def path(root), do: Path.join([root, "priv", ".ocibuild_nif.manifest"])

  defp holds?(_root, {:system, arch, nif}) do
    arch == to_string(:erlang.system_info(:system_architecture)) and
      nif == to_string(:erlang.system_info(:nif_version))
  end

  defp holds?(_root, {:env, names, prefixes, sha}) when is_list(names) and is_list(prefixes) do
    lines =
      for {name, value} <- System.get_env(),
          name in names or Enum.any?(prefixes, &String.starts_with?(name, &1)),
          do: name <> "=" <> value

    sha == sha256_hex(Enum.join(Enum.sort(lines), "\n"))
  end

  defp holds?(root, {:dir, path, names}) when is_binary(path) do
    case File.ls(full_path(root, path)) do
      {:ok, entries} -> Enum.sort(entries) == names
      {:error, _} -> false
    end
  end

  defp holds?(root, {:file, path, size, mtime, ctime, inode}) when is_binary(path) do
    # Raw: no round trip through the file server for each of the ~150 files. The tuple is
    # kernel's #file_info{} (size, type, access, atime, mtime, ctime, mode, links,
    # major_device, minor_device, inode, uid, gid): File.Stat would go through the server.
    match?(
      {:ok, {:file_info, ^size, :regular, _, _, ^mtime, ^ctime, _, _, _, _, ^inode, _, _}},
      :file.read_file_info(full_path(root, path), [:raw, time: :posix])
    )
  end

  defp holds?(root, {:absent, path}) when is_binary(path) do
    :file.read_link_info(full_path(root, path), [:raw]) == {:error, :enoent}
  end

  defp holds?(root, {:library, path, sha}) when is_binary(path) do
    case File.read(full_path(root, path)) do
      {:ok, bytes} -> sha == sha256_hex(bytes)
      {:error, _} -> false
    end
  end

  # Anything else, a fact of another format or a damaged one, does not hold: install again.
  defp holds?(_root, _unknown), do: false

  # Paths are recorded relative to the checkout, or absolute: joined as the script's
  # filename:join/2 does, without Path.expand/2's rewriting, which cost more than the stats.
  defp full_path(_root, "/" <> _ = path), do: path
  defp full_path(root, path), do: root <> "/" <> path

  defp sha256_hex(bytes), do: Base.encode16(:crypto.hash(:sha256, bytes), case: :lower)
end

defmodule Mix.Tasks.Compile.OcibuildNif do
  @moduledoc false
  # Installs the NIF in priv/ before the Erlang and Elixir sources compile: precompiled and
  # checksum-verified, or built from source (native/install_nif.escript says which and why;
  # rebar3 runs the same script). Defined here, not in lib/, so it exists before anything is
  # compiled, including when ocibuild is a `path:` or git dependency of another project.
  # Nothing runs while the install's manifest holds (no escript, no cargo), so a task such as
  # `mix ocibuild` in a project depending on ocibuild starts as fast as Mix itself;
  # `--force` (mix compile --force) drops the manifest and installs again.
  use Mix.Task.Compiler

  alias Mix.Tasks.Compile.OcibuildNif.Manifest

  @impl Mix.Task.Compiler
  def run(args) do
    if "--force" in args, do: File.rm(Manifest.path(__DIR__))

    if Manifest.holds?(__DIR__), do: {:noop, []}, else: install()
  end

  # `mix clean`: the next compile checks the install again (cargo decides what to rebuild).
  @impl Mix.Task.Compiler
  def clean, do: File.rm(Manifest.path(__DIR__))

  defp install do
    script = Path.join([__DIR__, "native", "install_nif.escript"])

    escript =
      System.find_executable("escript") || Mix.raise("ocibuild: escript not found on PATH")

    case System.cmd(escript, [script], stderr_to_stdout: true, into: IO.stream(:stdio, :line)) do
      {_, 0} ->
        # Mix links priv/ into _build only if it existed when the build structure was first
        # made; on a clean checkout the script has just created it.
        Mix.Project.build_structure()
        {:ok, []}

      {_, status} ->
        Mix.raise("ocibuild: the NIF was not installed (#{script} exited with status #{status})")
    end
  end
end

defmodule Ocibuild.MixProject do
  use Mix.Project

  # src/ocibuild.app.src holds the version and the package's file list, for rebar3 and Mix alike.
  {:ok, [{:application, :ocibuild, app_src}]} =
    :file.consult(Path.join([__DIR__, "src", "ocibuild.app.src"]))

  @app_src app_src
  @source_url "https://github.com/ocibuild/ocibuild"

  def project do
    [
      app: :ocibuild,
      version: to_string(@app_src[:vsn]),
      elixir: "~> 1.14",
      description: "Build OCI container images from the BEAM, without Docker",
      compilers: [:ocibuild_nif] ++ Mix.compilers(),
      erlc_paths: ["src"],
      erlc_options: [:debug_info, :warnings_as_errors],
      elixirc_paths: ["lib"],
      elixirc_options: [warnings_as_errors: true],
      test_paths: ["test"],
      deps: [],
      package: package(),
      docs: docs(),
      source_url: @source_url
    ]
  end

  def application do
    [extra_applications: []]
  end

  defp package do
    [
      licenses: Enum.map(@app_src[:licenses], &to_string/1),
      links: Map.new(@app_src[:links], fn {name, url} -> {to_string(name), to_string(url)} end),
      files: Enum.map(@app_src[:files], &to_string/1)
    ]
  end

  defp docs do
    [
      main: "readme",
      source_url: @source_url,
      source_ref: "v#{@app_src[:vsn]}",
      extras: ["README.md", "CHANGELOG.md", "LICENSE"]
    ]
  end
end
