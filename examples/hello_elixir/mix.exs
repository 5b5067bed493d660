defmodule HelloElixir.MixProject do
  use Mix.Project

  def project do
    [
      app: :hello_elixir,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: deps(),
      releases: releases(),
      ocibuild: ocibuild()
    ]
  end

  def application do
    [mod: {HelloElixir.Application, []}, extra_applications: [:logger]]
  end

  # ocibuild is needed to build the image, not at run time: `runtime: false` keeps it out of
  # the release.
  defp deps do
    [{:ocibuild, path: "../..", runtime: false}]
  end

  # ERTS is bundled, so the base image needs only a shell and the C libraries ERTS links to.
  defp releases do
    [hello_elixir: [include_erts: true]]
  end

  # `mix ocibuild` reads these; its command line overrides them (`--base tar://...` for a
  # local base image).
  defp ocibuild do
    [
      # base_image: "debian:stable-slim",
      workdir: "/app",
      env: %{"LANG" => "C.UTF-8"},
      labels: %{"org.opencontainers.image.title" => "hello_elixir"}
    ]
  end
end
