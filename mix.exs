defmodule Mix.Tasks.Compile.OcibuildNif do
  @moduledoc false
  # Installs the NIF in priv/ before the Erlang and Elixir sources compile: precompiled and
  # checksum-verified, or built from source (native/install_nif.escript says which and why;
  # rebar3 runs the same script). Defined here, not in lib/, so it exists before anything is
  # compiled, including when ocibuild is a `path:` or git dependency of another project.
  use Mix.Task.Compiler

  @impl Mix.Task.Compiler
  def run(_args) do
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
