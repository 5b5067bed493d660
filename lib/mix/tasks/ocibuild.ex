defmodule Mix.Tasks.Ocibuild do
  use Mix.Task

  import Ocibuild.Mix.Cli, only: [start_ocibuild: 0, raise_error: 1]

  @shortdoc "Builds an OCI image from a Mix release"

  @moduledoc """
  Builds an OCI container image from a Mix release, without Docker, and writes it as a
  tarball or pushes it to a registry.

      $ MIX_ENV=prod mix release
      $ MIX_ENV=prod mix ocibuild -t myapp:1.0.0
      $ podman load -i myapp-1.0.0.tar.gz && podman run --rm myapp:1.0.0

      $ MIX_ENV=prod mix ocibuild -t myapp:1.0.0 --push ghcr.io/myorg
      $ MIX_ENV=prod mix ocibuild --push ghcr.io/myorg myapp-1.0.0.tar.gz

  The task images a release that is already built: run `mix release` first, in the same
  `MIX_ENV`. To build the image as a step of `mix release` instead, see
  `Ocibuild.MixRelease`.

  The release goes under the image's workdir (`/app` by default) and the entrypoint is
  `<workdir>/bin/<release> start`, run as user 65534 (`nobody`). With a `mix.lock` the
  release is split into three layers, so that a change to your own code uploads only the
  last one: ERTS and the OTP applications (when the release bundles ERTS), the dependencies
  listed in `mix.lock`, and your application with `bin/` and `releases/`. Without a
  `mix.lock` the release is one layer.

  The output ends with a `Tagged: ...` line per tag and, when pushing, `Digest: sha256:...`.

  ## Command line options

  #{:ocibuild_options.markdown_options()}
  ## Configuration

  The `:ocibuild` key of the project in `mix.exs` sets the defaults; the command line
  overrides them.

      def project do
        [
          app: :myapp,
          version: "1.0.0",
          releases: [myapp: [include_erts: true]],
          ocibuild: [
            base_image: "debian:stable-slim",
            env: %{"LANG" => "C.UTF-8"},
            expose: [4000]
          ]
        ]
      end

  #{:ocibuild_options.markdown_project_keys()}
  A release in `releases:` can carry its own `ocibuild: [...]`, which overrides these for
  that release when the image is built by `Ocibuild.MixRelease.build_image/1`.

  ## Environment variables

  #{:ocibuild_options.markdown_environment()}
  """

  # The switches, their aliases and the help above come from the option table rebar3's
  # provider reads too (`ocibuild_options`), so both tools take the same flags.
  @switches :ocibuild_options.mix_switches()
  @aliases :ocibuild_options.mix_aliases()

  @impl Mix.Task
  def run(args) do
    cli = parse_args(args)
    Mix.Task.run("loadpaths")
    build(cli, [], nil)
  end

  @doc false
  # Used by `Ocibuild.MixRelease` too: `overrides` is a release's own `ocibuild:` config.
  @spec build(map(), keyword() | map(), Mix.Release.t() | nil) :: :ok
  def build(cli, overrides, release) do
    start_ocibuild()
    mix_config = Mix.Project.config()
    project = Ocibuild.Mix.Adapter.project_config(mix_config, overrides)

    config =
      case :ocibuild_release.resolve_config(cli, project) do
        {:ok, config} -> Map.put(config, :tag_required, false)
        {:error, reason} -> raise_error(reason)
      end

    state = %{config: config, mix_config: mix_config, release: release}

    case :ocibuild_release.run(Ocibuild.Mix.Adapter, state, %{}) do
      {:ok, _state} -> :ok
      {:error, reason} -> raise_error(reason)
    end
  end

  @doc false
  # The command line as the map `ocibuild_release:resolve_config/2` takes: keys only for the
  # options given, repeatable options as lists in the order given. Mistakes are the error
  # terms `rebar3 ocibuild` gives for the same ones, with the same line.
  @spec parse_args([String.t()]) :: map()
  def parse_args(args) do
    {opts, positional, invalid} = OptionParser.parse(args, strict: @switches, aliases: @aliases)

    case invalid do
      [] -> :ok
      [option | _] -> raise_error(invalid_option(option))
    end

    cli =
      Enum.reduce(opts, %{}, fn
        {key, value}, acc when key in [:tag, :annotation, :label] ->
          Map.update(acc, key, [value], &(&1 ++ [value]))

        {:no_vcs_annotations, false}, acc ->
          acc

        {key, value}, acc ->
          Map.put(acc, key, value)
      end)

    case positional do
      [] -> cli
      [tarball] -> Map.put(cli, :tarball, tarball)
      [_tarball | unexpected] -> raise_error({:unexpected_arguments, unexpected})
    end
  end

  defp invalid_option({name, value}) do
    cond do
      not known_option?(name) -> {:unknown_option, name, "mix"}
      value == nil -> {:option_needs_value, name}
      true -> {:invalid_option_value, name, value}
    end
  end

  defp known_option?("--" <> long) do
    name = String.replace(long, "-", "_")
    Enum.any?(@switches, fn {switch, _} -> Atom.to_string(switch) == name end)
  end

  defp known_option?("-" <> short) do
    Enum.any?(@aliases, fn {alias, _} -> Atom.to_string(alias) == short end)
  end
end
