defmodule HelloElixir do
  @moduledoc "The example app imaged by `mix ocibuild`: it greets and stops."

  @doc "The line the release prints when it starts."
  @spec greeting() :: String.t()
  def greeting do
    "Hello from hello_elixir on ERTS #{:erlang.system_info(:version)}!"
  end

  @doc """
  Stops the VM with status 0 once the release has booted. Stopping while the boot is still
  under way works too, but makes `init` log a stray "init got unexpected" line.
  """
  @spec stop_when_booted() :: :ok
  def stop_when_booted do
    case :init.get_status() do
      {:started, _} ->
        System.stop(0)

      _booting ->
        Process.sleep(10)
        stop_when_booted()
    end
  end
end
