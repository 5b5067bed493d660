defmodule Mix.Tasks.Ocibuild do
  use Mix.Task

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

    * `-t`, `--tag TAG` - the image's name and tag, e.g. `myapp:1.0.0`. Repeat the option
      or give a `;`-separated list (`"myapp:1.0.0;myapp:latest"`) for several tags.
      Replaces the `tag` of the configuration. Default: `<release>:<version>`.

    * `-o`, `--output PATH` - where to write the tarball. Default: `<name>-<tag>.tar.gz`
      in the current directory (`myapp-1.0.0.tar.gz` for `myapp:1.0.0`). With `--push`,
      the image is pushed and also saved there.

    * `-p`, `--push REGISTRY[/NAMESPACE]` - push the image to a registry instead of
      writing a tarball, e.g. `ghcr.io/myorg` or `localhost:5000`; each tag names a
      repository under it. Credentials come from the environment (see below).

    * `TARBALL` - with `--push`, a tarball saved by an earlier `mix ocibuild` (or any OCI
      image tarball) to push as it is, without building: build once, push later. `-t`
      replaces the tag saved in the tarball.

    * `-a`, `--annotation KEY=VALUE` - add a manifest annotation; repeatable. Replaces
      the value the configuration gives the same key.

    * `-l`, `--label KEY=VALUE` - add a label to the image config; repeatable. Replaces
      the value the configuration gives the same key.

    * `-P`, `--platform PLATFORMS` - build for `linux/arm64`, or for several platforms at
      once with a comma-separated list, e.g. `linux/amd64,linux/arm64` (one image index;
      the layers are built once and shared). Default: the host's platform. A
      multi-platform release cannot bundle ERTS: set `include_erts: false` and use a base
      image that provides Erlang. NIFs (`.so` files) give a warning, as they are built
      for one platform only.

    * `--base IMAGE` - the base image: a registry reference such as
      `debian:stable-slim` (the default) or `ghcr.io/org/base:1`, or a local OCI image
      tarball as `tar://path/to/base.tar.gz`, which needs no network.

    * `--release NAME` - the release to image when `releases:` in `mix.exs` defines
      more than one. Default: the only release, `default_release:`, or the app's name.

    * `-c`, `--cmd COMMAND` - the release command the entrypoint runs. Default: `start`.

    * `--uid UID` - the numeric user the container runs as. Default: 65534 (`nobody`);
      `0` runs as root.

    * `--chunk-size MB` - upload blobs to the registry in chunks of this many MB.
      Default: 5.

    * `--sbom PATH` - also write the image's SPDX 2.2 SBOM to `PATH`. Every image
      carries it at `/sbom.spdx.json` (its own last layer), and a push attaches it to
      the image as an OCI 1.1 referrer. A multi-platform build writes the first
      platform's.

    * `--no-vcs-annotations` - do not add the `org.opencontainers.image.source` and
      `.revision` annotations, read from CI variables (GitHub Actions, GitLab CI, Azure
      Pipelines) or else from git.

    * `--sign-key PATH` - sign the pushed image (cosign-compatible, stored at tag
      `sha256-<digest>.sig`) with this ECDSA P-256 private key: PEM from openssl, or a
      cosign key whose password is in `COSIGN_PASSWORD`. Default: `OCIBUILD_SIGN_KEY`.
      Saving a tarball ignores the key.

    * `--compression gzip|zstd|auto` - how layers are compressed. `auto`, the default,
      is zstd.

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

    * `:base_image` - as `--base`. Default: `"debian:stable-slim"`.
    * `:tag` - a tag or a list of tags, as `--tag`.
    * `:workdir` - where the release goes in the image, and the container's working
      directory. Default: `"/app"`.
    * `:env` - environment variables, a map or keyword list.
    * `:expose` - ports: integers (TCP) or strings such as `"53/udp"`.
    * `:labels`, `:annotations` - maps or keyword lists, as `--label` and `--annotation`.
    * `:uid` - as `--uid`.
    * `:vcs_annotations` - `false` as `--no-vcs-annotations`. Default: `true`.
    * `:sign_key` - as `--sign-key`.
    * `:compression` - as `--compression`.
    * `:platform` - as `--platform`.
    * `:cmd` - as `--cmd`.
    * `:output`, `:push`, `:chunk_size` - as `--output`, `--push`, `--chunk-size`.
    * `:description` - the image description annotation. Default: the project's
      `:description`.
    * `:app_name` - the application whose code goes into the app layer. Default: the
      project's `:app`.

  A release in `releases:` can carry its own `ocibuild: [...]`, which overrides these for
  that release when the image is built by `Ocibuild.MixRelease.build_image/1`.

  ## Environment variables

    * `OCIBUILD_PUSH_USERNAME` and `OCIBUILD_PUSH_PASSWORD`, or `OCIBUILD_PUSH_TOKEN` (a
      bearer token, which wins) - credentials for `--push`. Unset or empty: the
      credentials in `~/.docker/config.json` or podman's `auth.json`, else anonymous.
    * `OCIBUILD_PULL_USERNAME`, `OCIBUILD_PULL_PASSWORD`, `OCIBUILD_PULL_TOKEN` - the
      same for pulling the base image.
    * `OCIBUILD_SIGN_KEY` - the signing key's path when neither `--sign-key` nor
      `:sign_key` gives one.
    * `COSIGN_PASSWORD` - the password of an encrypted cosign signing key.
    * `OCIBUILD_GIT_TIMEOUT` - how long each git command may take, in milliseconds.
      Default: 5000.
    * `OCIBUILD_CACHE_DIR` - where built layers are kept. Default:
      `_build/ocibuild_cache`.
    * `SOURCE_DATE_EPOCH` - the timestamp (seconds since 1970) of every file and of the
      image, for reproducible images. Default: 0 for files.
  """

  @behaviour :ocibuild_adapter

  @switches [
    tag: :keep,
    output: :string,
    push: :string,
    annotation: :keep,
    label: :keep,
    platform: :string,
    base: :string,
    release: :string,
    cmd: :string,
    uid: :integer,
    chunk_size: :integer,
    sbom: :string,
    no_vcs_annotations: :boolean,
    sign_key: :string,
    compression: :string
  ]

  @aliases [t: :tag, o: :output, p: :push, a: :annotation, l: :label, P: :platform, c: :cmd]

  # What `ocibuild_release:run/3` hands back to the callbacks: the resolved config, the
  # project's Mix config, and the release when the image is built as a `mix release` step.
  @typep state :: %{config: map(), mix_config: keyword(), release: Mix.Release.t() | nil}

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
    project = project_config(mix_config, overrides)

    config =
      case :ocibuild_release.resolve_config(cli, project) do
        {:ok, config} -> Map.put(config, :tag_required, false)
        {:error, reason} -> raise_error(reason)
      end

    state = %{config: config, mix_config: mix_config, release: release}

    case :ocibuild_release.run(__MODULE__, state, %{}) do
      {:ok, _state} -> :ok
      {:error, reason} -> raise_error(reason)
    end
  end

  @doc false
  # The command line as the map `ocibuild_release:resolve_config/2` takes: keys only for the
  # options given, repeatable options as lists in the order given.
  @spec parse_args([String.t()]) :: map()
  def parse_args(args) do
    {opts, positional, invalid} = OptionParser.parse(args, strict: @switches, aliases: @aliases)

    case invalid do
      [] -> :ok
      [option | _] -> Mix.raise(invalid_option_message(option))
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
      [] ->
        cli

      [tarball] ->
        Map.put(cli, :tarball, tarball)

      [_, _ | _] ->
        Mix.raise(
          "mix ocibuild takes at most one TARBALL argument, got: #{Enum.join(positional, " ")}"
        )
    end
  end

  defp invalid_option_message({name, value}) do
    cond do
      not known_option?(name) ->
        "unknown option #{name} (`mix help ocibuild` lists the options)"

      value == nil ->
        "option #{name} needs a value"

      true ->
        "invalid value #{inspect(value)} for option #{name}"
    end
  end

  defp known_option?("--" <> long) do
    name = String.replace(long, "-", "_")
    Enum.any?(@switches, fn {switch, _} -> Atom.to_string(switch) == name end)
  end

  defp known_option?("-" <> short) do
    Enum.any?(@aliases, fn {alias, _} -> Atom.to_string(alias) == short end)
  end

  @doc false
  # The project's `ocibuild:` config, with a release's own `ocibuild:` (`overrides`) on top,
  # as the map `ocibuild_release:resolve_config/2` takes. Mix knows the app and the
  # description, so they are the defaults of `app_name` and `description`.
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
    if File.exists?(lockfile), do: read_lock(lockfile), else: :undefined
  end

  @doc false
  # The dependencies in a mix.lock: name (the app's name, the lock's key), version (a git
  # dependency's revision) and source (`"hex"`, the git URL, or the SCM's name). Errors are
  # `{:invalid_lock_file, path, why}` with `why` a sentence.
  @spec read_lock(Path.t()) :: {:ok, [map()]} | {:error, term()}
  def read_lock(path) do
    with {:ok, contents} <- read_file(path),
         {:ok, quoted} <- parse_lock(contents, path),
         {:ok, lock} <- eval_lock(quoted, path) do
      {:ok, for({name, entry} <- Enum.sort(lock), dep = lock_entry(name, entry), do: dep)}
    else
      {:error, why} -> {:error, {:invalid_lock_file, path, why}}
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
      [:hex, _package, version | _] when is_binary(version) ->
        %{name: to_string(name), version: version, source: "hex"}

      [:git, url, rev | _] when is_binary(url) and is_binary(rev) ->
        %{name: to_string(name), version: rev, source: url}

      [scm, _, version | _] when is_atom(scm) and is_binary(version) ->
        %{name: to_string(name), version: version, source: Atom.to_string(scm)}

      _ ->
        nil
    end
  end

  defp lock_entry(_name, _entry), do: nil

  @impl :ocibuild_adapter
  def info(format, args), do: Mix.shell().info(format(format, args))

  @impl :ocibuild_adapter
  def console(format, args), do: IO.write(format(format, args))

  @impl :ocibuild_adapter
  def error(format, args), do: Mix.shell().error(format(format, args))

  defp format(format, args), do: format |> :io_lib.format(args) |> IO.chardata_to_string()

  # The NIF loads with the ocibuild application's modules, from its priv/ directory.
  defp start_ocibuild do
    case Application.ensure_all_started(:ocibuild) do
      {:ok, _} ->
        :ok

      {:error, reason} ->
        Mix.raise("could not start the ocibuild application: #{inspect(reason)}")
    end
  end

  defp raise_error({:release_not_built, name, path}) do
    Mix.raise(
      "release #{name} not found in #{Path.relative_to_cwd(path)}: " <>
        "run `MIX_ENV=#{Mix.env()} mix release #{name}` first"
    )
  end

  defp raise_error({:unknown_release, name, known}) do
    Mix.raise("release #{name} is not defined in mix.exs (releases: #{Enum.join(known, ", ")})")
  end

  defp raise_error({:ambiguous_release, []}) do
    Mix.raise("no release to image: define one under `releases:` in mix.exs")
  end

  defp raise_error({:ambiguous_release, names}) do
    Mix.raise(
      "mix.exs defines several releases (#{Enum.join(names, ", ")}): " <>
        "choose one with --release NAME"
    )
  end

  # ocibuild_release:run/3 wraps get_dependencies/1's error.
  defp raise_error({:lock_file, {:invalid_lock_file, path, why}}) do
    Mix.raise("cannot read #{Path.relative_to_cwd(path)}: #{why}")
  end

  defp raise_error(reason) do
    Mix.raise(IO.chardata_to_string(:ocibuild_release.format_error(reason)))
  end
end
