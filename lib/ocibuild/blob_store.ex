defmodule Ocibuild.BlobStore do
  @moduledoc """
  The blob store built layers live in, with the layer cache's records (see
  `:ocibuild_blob_store` and the README's "Layer cache").

      {:ok, %{removed: removed, freed_bytes: freed, kept: kept}} = Ocibuild.BlobStore.gc()
  """

  @doc "The store's root: `$OCIBUILD_CACHE_DIR`, else `_build/ocibuild_cache`."
  @spec root() :: binary()
  defdelegate root(), to: :ocibuild_blob_store

  @doc """
  Remove blobs and records unused for longer than `:max_age` seconds, then the least recently
  used beyond `:max_size` bytes (defaults: `OCIBUILD_CACHE_MAX_AGE`, `OCIBUILD_CACHE_MAX_SIZE`,
  else 30 days and 10 GiB); nothing younger than `:grace` seconds (an hour). `:root` defaults
  to `root/0`.
  """
  @spec gc(map()) :: {:ok, map()} | {:error, term()}
  defdelegate gc(opts \\ %{}), to: :ocibuild_blob_store
end
