defmodule Ocibuild.Layer do
  @moduledoc """
  Build a single layer (see `:ocibuild_layer`): a deterministic tar of the given files,
  compressed and stored in the blob store.

      {:ok, layer} = Ocibuild.Layer.create([{"/app/hello.txt", "hi\\n", 0o644}], %{compression: :gzip})
      layer.digest
      #=> "sha256:..."
  """

  @doc """
  Create a layer from `[{path, content, mode}]`. Options: `:mtime`, `:layer_type`,
  `:compression` (`:gzip`, `:zstd`, `:auto`), `:progress` (a fun called with
  `%{phase: :build, layer: layer_type, bytes_read: n, total_bytes: t}` while the files are read).
  """
  @spec create([Ocibuild.file_entry()], map()) :: {:ok, Ocibuild.layer()} | {:error, term()}
  defdelegate create(files, opts \\ %{}), to: :ocibuild_layer
end
