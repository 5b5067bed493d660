defmodule Ocibuild.Registry do
  @moduledoc """
  Registry work below `Ocibuild.from/3` and `Ocibuild.push/5` (see `:ocibuild_registry`):
  pushes that return a report, and pushing a tarball saved earlier.

  Network work runs on a runtime inside the native library, never on a BEAM scheduler; the
  calling process waits and calls its `:progress` fun. If the caller dies, its job is
  cancelled.
  """

  @typedoc "`%{digest: _, uploaded_bytes: _, uploaded: _, existing: _, mounted: _}`"
  @type push_report :: :ocibuild_registry.push_report()

  @doc """
  Push images to `registry` as `repo_tag` (several images, or one with `index: true`, as an
  index); returns a report: the manifest (or index) digest, the blob bytes sent, and how many
  blobs were uploaded, already present or mounted. Options as `Ocibuild.push/5`.
  """
  @spec push([Ocibuild.image()], Ocibuild.text(), Ocibuild.text(), Ocibuild.auth(), map()) ::
          {:ok, push_report()} | {:error, term()}
  defdelegate push(images, registry, repo_tag, auth \\ %{}, opts \\ %{}), to: :ocibuild_registry

  @doc """
  Push a tarball read back with `Ocibuild.Layout.load_tarball_for_push/2`, its bytes exactly
  as saved. `repo_tag` `:undefined` uses the tag saved in the tarball.
  """
  @spec push_loaded(map(), Ocibuild.text(), Ocibuild.text() | :undefined, Ocibuild.auth(), map()) ::
          {:ok, push_report()} | {:error, term()}
  defdelegate push_loaded(loaded, registry, repo_tag, auth \\ %{}, opts \\ %{}),
    to: :ocibuild_registry

  @doc """
  Before building anything to push: does `registry` answer, and do the credentials let us push
  to `repo_tag`'s repository? `:ok`, or the error `push/5` would have returned (e.g.
  `{:http_error, registry, why}`, `{:unauthorized, %{registry: _, scope: _, status: _}}`).
  """
  @spec check_push(Ocibuild.text(), Ocibuild.text(), Ocibuild.auth()) :: :ok | {:error, term()}
  defdelegate check_push(registry, repo_tag, auth \\ %{}), to: :ocibuild_registry
end
