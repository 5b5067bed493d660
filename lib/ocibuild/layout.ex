defmodule Ocibuild.Layout do
  @moduledoc """
  OCI image layouts as directories and tarballs, and reading a saved tarball back for a push
  (see `:ocibuild_layout`).
  """

  @doc "Write the image (or a list of platform images) as an OCI layout directory."
  @spec export_directory(Ocibuild.image() | [Ocibuild.image()], Path.t()) ::
          :ok | {:error, term()}
  defdelegate export_directory(image, dir), to: :ocibuild_layout

  @doc "Save the image (or images) as a tarball. Options: `:tag`, `:format`."
  @spec save_tarball(Ocibuild.image() | [Ocibuild.image()], Path.t(), map()) ::
          :ok | {:error, term()}
  defdelegate save_tarball(image, path, opts \\ %{}), to: :ocibuild_layout

  @doc """
  Read a saved tarball: `{:ok, %{images: [...], tag: tag, is_multi_platform: bool, cleanup: fun}}`.
  Call `cleanup.()` to delete the extracted blobs.
  """
  @spec load_tarball_for_push(Path.t(), map()) :: {:ok, map()} | {:error, term()}
  defdelegate load_tarball_for_push(path, opts \\ %{}), to: :ocibuild_layout
end
