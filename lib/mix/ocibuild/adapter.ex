defmodule Ocibuild.Mix.Adapter do
  @moduledoc """
  Mix's side of `ocibuild_release:run/3` (the `:ocibuild_adapter` behaviour): the project's
  configuration, which release to image and where `mix release` put it, its version, the
  dependencies in `mix.lock`, and Mix's shell for output. `Mix.Tasks.Ocibuild` and
  `Ocibuild.MixRelease` run the pipeline with it.

      state = %{config: config, mix_config: Mix.Project.config(), release: nil}
      {:ok, _} = :ocibuild_release.run(Ocibuild.Mix.Adapter, state, %{})
  """

  @behaviour :ocibuild_adapter

  # What `ocibuild_release:run/3` hands back to the callbacks: the resolved config, the
  # project's Mix config, and the release when the image is built as a `mix release` step.
  @type state :: %{config: map(), mix_config: keyword(), release: Mix.Release.t() | nil}

  @doc """
  The project's `ocibuild:` config, with a release's own `ocibuild:` (`overrides`) on top,
  as the map `ocibuild_release:resolve_config/2` takes. Mix knows the app and the
  description, so they are the defaults of `app_name` and `description`.
  """
  @spec project_config(keyword(), keyword() | map()) :: map()
  def project_config(mix_config, overrides) do
    config =
      Map.merge(
        config_map(Keyword.get(mix_config, :ocibuild, []), "the :ocibuild key in mix.exs"),
        config_map(overrides, "the release's :ocibuild option in mix.exs")
      )

    config
    |> put_default(:app_name, mix_config[:app] && Atom.to_string(mix_config[:app]))
    |> put_default(:description, mix_config[:description])
  end

  defp config_map(nil, _where), do: %{}
  defp config_map(map, _where) when is_map(map), do: map

  defp config_map(list, where) when is_list(list) do
    if Keyword.keyword?(list) do
      Map.new(list)
    else
      Mix.raise("#{where} must be a keyword list, got: #{inspect(list)}")
    end
  end

  defp config_map(other, where) do
    Mix.raise("#{where} must be a keyword list, got: #{inspect(other)}")
  end

  defp put_default(config, _key, nil), do: config
  defp put_default(config, key, value), do: Map.put_new(config, key, value)

  @impl :ocibuild_adapter
  @spec get_config(state()) :: map()
  def get_config(%{config: config}), do: config

  @impl :ocibuild_adapter
  @spec find_release(state(), map()) :: {:ok, binary(), Path.t()} | {:error, term()}
  def find_release(%{release: %Mix.Release{name: name, path: path}}, _opts) do
    {:ok, Atom.to_string(name), path}
  end

  def find_release(%{config: config, mix_config: mix_config}, opts) do
    requested =
      case Map.get(opts, :release) do
        empty when empty in [nil, :undefined] -> Map.get(config, :release)
        name -> name
      end

    with {:ok, name} <- release_name(mix_config, requested) do
      path = release_path(mix_config, name)

      if File.dir?(Path.join(path, "bin")) do
        {:ok, name, path}
      else
        {:error, {:release_not_built, name, path}}
      end
    end
  end

  # The release `mix release` would build: the one asked for, `default_release:`, or the
  # only one defined (with no `releases:`, Mix defines one named after the app).
  defp release_name(mix_config, requested) do
    known = release_names(mix_config)

    cond do
      requested not in [nil, :undefined] ->
        name = to_string(requested)
        if name in known, do: {:ok, name}, else: {:error, {:unknown_release, name, known}}

      default = mix_config[:default_release] ->
        {:ok, to_string(default)}

      match?([_], known) ->
        {:ok, hd(known)}

      true ->
        {:error, {:ambiguous_release, known}}
    end
  end

  defp release_names(mix_config) do
    case {Keyword.get(mix_config, :releases, []), mix_config[:app]} do
      {[], app} when is_atom(app) and app != nil -> [Atom.to_string(app)]
      {releases, _app} -> Enum.map(releases, fn {name, _options} -> Atom.to_string(name) end)
    end
  end

  # Where `mix release` puts it: the release's `path:` option, else `<build>/rel/<name>`.
  defp release_path(mix_config, name) do
    case release_options(mix_config, name)[:path] do
      nil -> Path.join([Mix.Project.build_path(mix_config), "rel", name])
      path -> Path.expand(path)
    end
  end

  defp release_options(mix_config, name) do
    Enum.find_value(Keyword.get(mix_config, :releases, []), [], fn {release, options} ->
      if Atom.to_string(release) == name and is_list(options), do: options
    end)
  end

  @impl :ocibuild_adapter
  @spec get_app_version(state()) :: binary() | :undefined
  def get_app_version(%{release: %Mix.Release{version: version}}), do: to_string(version)

  def get_app_version(%{config: config, mix_config: mix_config}) do
    release_version =
      case release_name(mix_config, Map.get(config, :release)) do
        {:ok, name} -> release_options(mix_config, name)[:version]
        {:error, _} -> nil
      end

    case release_version || mix_config[:version] do
      nil -> :undefined
      version -> to_string(version)
    end
  end

  @impl :ocibuild_adapter
  @spec get_dependencies(state()) :: {:ok, [map()]} | {:error, term()} | :undefined
  def get_dependencies(%{mix_config: mix_config}) do
    lockfile = Path.expand(Keyword.get(mix_config, :lockfile, "mix.lock"))

    # A lock file that is there but is not a regular file (a FIFO, a directory) is an error,
    # as in rebar3, not a silent one-layer image.
    if File.exists?(lockfile), do: Ocibuild.Mix.Lock.read(lockfile), else: :undefined
  end

  @impl :ocibuild_adapter
  def info(format, args), do: Mix.shell().info(format(format, args))

  @impl :ocibuild_adapter
  def console(format, args), do: IO.write(format(format, args))

  @impl :ocibuild_adapter
  def error(format, args), do: Mix.shell().error(format(format, args))

  defp format(format, args), do: format |> :io_lib.format(args) |> IO.chardata_to_string()
end
