defmodule Ocibuild.Mix.Cli do
  @moduledoc false
  # What `mix ocibuild` and `mix ocibuild.verify` share: starting the application (the NIF
  # loads with its modules, from its priv/ directory) and the one line a failure prints, the
  # same line `rebar3 ocibuild` prints for that reason.

  @doc false
  def start_ocibuild do
    case Application.ensure_all_started(:ocibuild) do
      {:ok, _} ->
        :ok

      {:error, reason} ->
        Mix.raise("could not start the ocibuild application: #{inspect(reason)}")
    end
  end

  @doc false
  @spec raise_error(term()) :: no_return()
  def raise_error(reason) do
    Mix.raise(IO.chardata_to_string(:ocibuild_release.format_error(reason)))
  end
end
