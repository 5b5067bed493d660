defmodule Ocibuild do
  @moduledoc """
  Build OCI container images from Elixir, without Docker or any container runtime.

  A thin layer over the Erlang module `:ocibuild`: images are plain maps, every function
  returns a new image, and the config, manifest and digests are derived when the image is
  written with `export/2` or `save/3`.

      {:ok, image} = Ocibuild.scratch()

      image =
        image
        |> Ocibuild.copy([{"myapp", {:file, "_build/myapp"}}], "/app")
        |> Ocibuild.entrypoint(["/app/myapp", "start"])
        |> Ocibuild.env(%{"PORT" => "4000"})
        |> Ocibuild.expose(4000)

      :ok = Ocibuild.save(image, "myapp.tar.gz", %{tag: "myapp:1.0"})

  The image map is `%{base: :none, layers: [layer], config: config, annotations: %{},
  platform: :undefined | platform}` (see `t:image/0`); a layer is `%{media_type: _, digest: _,
  diff_id: _, size: _, blob: path}` with its compressed bytes in the on-disk blob store
  (`$OCIBUILD_CACHE_DIR`, else `_build/ocibuild_cache`). Set `:platform` on the map to build
  for another platform; a list of such images saves as one multi-platform index.

  Builder functions return the new image, or `{:error, reason}` for a bad argument, e.g.
  `{:invalid_path, "a/../b", :parent_component}`, `{:invalid_option, :expose, 0}` or
  `{:invalid_value, :env, "A=B", :equals_in_name}`. Given `{:error, reason}` in place of an
  image they return it unchanged, so a pipeline ends in its first error and `export`, `save`
  and `push` return it. `{:file, path}` content must be a regular file: FIFOs, sockets and
  devices give `{:special_file, path, kind}`.
  """

  @typedoc "An image value; see the module doc and `:ocibuild` for the shape."
  @type image :: :ocibuild.image()
  @typedoc "What a builder takes and returns: an image, or the first error of a pipeline."
  @type built :: :ocibuild.built()
  @typedoc "A layer map: media type, digest, diff_id, size and the blob's path."
  @type layer :: :ocibuild.layer()
  @typedoc "`%{os: \"linux\", architecture: \"arm64\"}`, with an optional `:variant`."
  @type platform :: :ocibuild.platform()
  @typedoc "`{path, content, mode}`; content is a binary, an iolist or `{:file, host_path}`."
  @type file_entry :: :ocibuild_layer.file_entry()
  @type text :: binary() | charlist()

  @typedoc """
  Registry credentials: `%{username: u, password: p}`, `%{token: t}` (a ready bearer token),
  or `%{}` to use `~/.docker/config.json` / podman's `auth.json`.
  """
  @type auth :: :ocibuild.auth()
  @typedoc "A reference string (`\"alpine:3.19\"`) or `{registry, repo, tag_or_digest}`."
  @type base_ref :: text() | :ocibuild.base_ref()

  @doc """
  Start from a base image in a registry, e.g. `"alpine:3.19"`, `"ghcr.io/org/app:v1"` or
  `{"localhost:5000", "base", "1"}`. Layers are fetched only when a sink needs them.

  Options: `:platform` (`"linux/arm64"` or a map; default: the host's), `:platforms` (a list:
  returns `{:ok, [image]}`), `:progress` (a 1-arity fun receiving
  `%{phase: _, bytes_received: _, total_bytes: _, digest: _}`).
  """
  @spec from(base_ref(), auth(), map()) :: {:ok, image()} | {:ok, [image()]} | {:error, term()}
  defdelegate from(ref, auth \\ %{}, opts \\ %{}), to: :ocibuild

  @doc """
  Push the image to `registry` (`"ghcr.io"`, `"localhost:5000"`, `"ghcr.io/org"`) as
  `repo_tag` (`"myapp:1.0"`); returns `{:ok, manifest_digest}`.

  Options: `:tags` (more tags), `:chunk_size` (default 5 MB), `:max_concurrency` (default 4),
  `:progress`.
  """
  @spec push(built(), text(), text(), auth(), map()) :: {:ok, binary()} | {:error, term()}
  defdelegate push(image, registry, repo_tag, auth \\ %{}, opts \\ %{}), to: :ocibuild

  @doc """
  Push platform images (each with `:platform` set) as one multi-platform image; returns
  `{:ok, index_digest}`. Options as `push/5`.
  """
  @spec push_multi([built()], text(), text(), auth(), map()) :: {:ok, binary()} | {:error, term()}
  defdelegate push_multi(images, registry, repo_tag, auth, opts \\ %{}), to: :ocibuild

  @doc "An empty image with no base."
  @spec scratch() :: {:ok, image()}
  defdelegate scratch(), to: :ocibuild

  @doc """
  Add a layer built from `[{path, content, mode}]`.

  Options: `:compression` (`:gzip`, `:zstd` or `:auto`, the default), `:layer_type` (an atom
  shown in the image history), `:mtime` (default `SOURCE_DATE_EPOCH`, else 0).
  """
  @spec add_layer(built(), [file_entry()], map()) :: built()
  defdelegate add_layer(image, files, opts \\ %{}), to: :ocibuild

  @doc """
  Add a layer placing each `{name, content}` (or `{name, content, mode}`) under `dest`.
  Data gets mode `0o644`; `{:file, host_path}` keeps the host file's permissions.
  """
  @spec copy(built(), [{text(), term()} | file_entry()], text()) :: built()
  defdelegate copy(image, files, dest), to: :ocibuild

  @doc "Set the entrypoint: the command run when the container starts."
  @spec entrypoint(built(), [text()]) :: built()
  defdelegate entrypoint(image, args), to: :ocibuild

  @doc "Set the default arguments to the entrypoint."
  @spec cmd(built(), [text()]) :: built()
  defdelegate cmd(image, args), to: :ocibuild

  @doc """
  Set environment variables. A name already set keeps its position and takes the new value;
  new names are appended in sorted order.
  """
  @spec env(built(), %{optional(text()) => text()}) :: built()
  defdelegate env(image, vars), to: :ocibuild

  @doc "Set the working directory."
  @spec workdir(built(), text()) :: built()
  defdelegate workdir(image, dir), to: :ocibuild

  @doc ~S'Expose a port: an integer (TCP) or `"port/proto"` (`tcp`, `udp` or `sctp`).'
  @spec expose(built(), 1..65535 | text()) :: built()
  defdelegate expose(image, port), to: :ocibuild

  @doc "Add a label to the image config."
  @spec label(built(), text(), text()) :: built()
  defdelegate label(image, key, value), to: :ocibuild

  @doc "Set the user the container runs as."
  @spec user(built(), text()) :: built()
  defdelegate user(image, user), to: :ocibuild

  @doc "Add an annotation to the image manifest."
  @spec annotation(built(), text(), text()) :: built()
  defdelegate annotation(image, key, value), to: :ocibuild

  @doc "Write the image (or a list of platform images) as an OCI layout directory."
  @spec export(built() | [built()], Path.t()) :: :ok | {:error, term()}
  defdelegate export(image, dir), to: :ocibuild

  @doc """
  Save the image (or a list of platform images) as a tarball for `podman load`,
  `docker load` or `skopeo`. Options: `:tag` (e.g. `"myapp:1.0"`: an image reference with a
  lower-case repository, else `{:error, {:invalid_tag, tag, rule}}`), `:format` (`:docker`,
  the default, or `:oci`). A path ending in `.tar` is a plain tar, any other gzip with the
  layers stored, not recompressed.
  """
  @spec save(built() | [built()], Path.t(), map()) :: :ok | {:error, term()}
  defdelegate save(image, path, opts \\ %{}), to: :ocibuild

  @doc ~S'Parse `"os/arch"` or `"os/arch/variant"` into a platform map.'
  @spec parse_platform(text()) :: {:ok, platform()} | {:error, {:invalid_platform, term()}}
  defdelegate parse_platform(spec), to: :ocibuild

  @doc ~S'Parse a comma-separated list such as `"linux/amd64,linux/arm64"`.'
  @spec parse_platforms(text()) :: {:ok, [platform()]} | {:error, {:invalid_platform, term()}}
  defdelegate parse_platforms(specs), to: :ocibuild

  @doc """
  Verify what a signed push attached to `ref` (a registry reference, or a saved tarball as
  `"tar://PATH"` or a `.tar`/`.tar.gz` path) with the public key at `opts.key` (PEM
  `PUBLIC KEY`, e.g. `cosign.pub`): the cosign signatures, the in-toto attestations and the
  SBOM referrer, one check each. Returns `{:ok, checks}` or
  `{:error, {:verification_failed, checks}}`; see `mix help ocibuild.verify`.
  """
  @spec verify(text(), map(), map()) :: {:ok, [map()]} | {:error, term()}
  defdelegate verify(ref, auth, opts), to: :ocibuild
end
