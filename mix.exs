defmodule Mix.Tasks.Compile.OcibuildNif do
  @moduledoc false
  # Builds the Rust NIF into priv/ before the Erlang and Elixir sources compile. Defined here,
  # not in lib/, so it exists before anything is compiled, including when ocibuild is a `path:`
  # or git dependency of another project.
  use Mix.Task.Compiler

  @impl Mix.Task.Compiler
  def run(_args) do
    script = Path.join([__DIR__, "native", "build.sh"])

    case System.cmd("sh", [script], stderr_to_stdout: true, into: IO.stream(:stdio, :line)) do
      {_, 0} ->
        # Mix links priv/ into _build only if it existed when the build structure was first
        # made; on a clean checkout build.sh has just created it.
        Mix.Project.build_structure()
        {:ok, []}

      {_, status} ->
        Mix.raise("building the ocibuild NIF failed (#{script} exited with status #{status})")
    end
  end
end

defmodule Ocibuild.MixProject do
  use Mix.Project

  def project do
    [
      app: :ocibuild,
      version: "0.1.0",
      elixir: "~> 1.14",
      description: "Build OCI container images from the BEAM, without Docker",
      compilers: [:ocibuild_nif] ++ Mix.compilers(),
      erlc_paths: ["src"],
      erlc_options: [:debug_info, :warnings_as_errors],
      elixirc_paths: ["lib"],
      elixirc_options: [warnings_as_errors: true],
      test_paths: ["test"],
      deps: []
    ]
  end

  def application do
    [extra_applications: []]
  end
end
