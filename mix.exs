defmodule Mix.Tasks.Compile.OcibuildNif.Manifest do
  @moduledoc false
  # Whether priv/.ocibuild_nif.manifest still holds: native/install_nif.escript records there
  # the facts an install depended on (source files' size, mtime, ctime and inode, directory
  # listings, the library's sha256, the VM, the variables that change the build) and
  # documents the format; this checks them one by one, as the script's holds/2 does, without
  # starting a VM for the script (about 0.25 s) or cargo (about 0.1 s) on every `mix` run.
  # Which facts to record is decided there alone.

  def holds?(root) do
    case :file.consult(String.to_charlist(path(root))) do
      {:ok, [{:ocibuild_nif_manifest, 1} | facts]} -> Enum.all?(facts, &holds?(root, &1))
      _ -> false
    end
  end

  def path(root), do: Path.join([root, "priv", ".ocibuild_nif.manifest"])

  defp holds?(_root, {:system, arch, nif}) do
    arch == to_string(:erlang.system_info(:system_architecture)) and
      nif == to_string(:erlang.system_info(:nif_version))
  end

  defp holds?(_root, {:env, names, prefixes, sha}) do
    lines =
      for {name, value} <- System.get_env(),
          name in names or Enum.any?(prefixes, &String.starts_with?(name, &1)),
          do: name <> "=" <> value

    sha == sha256_hex(Enum.join(Enum.sort(lines), "\n"))
  end

  defp holds?(root, {:dir, path, names}) do
    case File.ls(full_path(root, path)) do
      {:ok, entries} -> Enum.sort(entries) == names
      {:error, _} -> false
    end
  end

  defp holds?(root, {:file, path, size, mtime, ctime, inode}) do
    match?(
      {:ok, %File.Stat{type: :regular, size: ^size, mtime: ^mtime, ctime: ^ctime, inode: ^inode}},
      File.stat(full_path(root, path), time: :posix)
    )
  end

  defp holds?(root, {:absent, path}) do
    File.lstat(full_path(root, path)) == {:error, :enoent}
  end

  defp holds?(root, {:library, path, sha}) do
    case File.read(full_path(root, path)) do
      {:ok, bytes} -> sha == sha256_hex(bytes)
      {:error, _} -> false
    end
  end

  defp holds?(_root, _unknown), do: false

  defp full_path(root, path), do: Path.expand(path, root)

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
