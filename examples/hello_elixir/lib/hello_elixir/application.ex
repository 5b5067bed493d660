defmodule HelloElixir.Application do
  # Prints the greeting and stops the VM once it has booted: `podman run` of the image prints
  # one line and exits with status 0.
  @moduledoc false
  use Application

  @impl Application
  def start(_type, _args) do
    IO.puts(HelloElixir.greeting())
    children = [{Task, &HelloElixir.stop_when_booted/0}]
    Supervisor.start_link(children, strategy: :one_for_one, name: HelloElixir.Supervisor)
  end
end
