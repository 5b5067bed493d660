defmodule Ocibuild.MixRelease do
  @moduledoc """
  Builds the image as a step of `mix release`, right after the release is assembled.

      # mix.exs
      def project do
        [
          app: :myapp,
          version: "1.0.0",
          deps: [{:ocibuild, path: "../ocibuild", runtime: false}],
          releases: [
            myapp: [
              include_erts: true,
              steps: [:assemble, &Ocibuild.MixRelease.build_image/1],
              # optional: overrides the project's `ocibuild:` for this release
              ocibuild: [tag: "myapp:1.0.0"]
            ]
          ],
          ocibuild: [base_image: "debian:stable-slim"]
        ]
      end

  `MIX_ENV=prod mix release` then writes `myapp-1.0.0.tar.gz` (or pushes, with `push:` in
  the configuration). The image is the one `mix ocibuild` would build from the same release;
  the configuration keys are listed in `Mix.Tasks.Ocibuild`.
  """

  @doc """
  A release step: images `release.path` with the project's `ocibuild:` configuration, merged
  with the release's own `ocibuild:` option, and returns the release unchanged. Raises
  `Mix.Error` (one line; `mix release` exits with status 1) when the image cannot be built.
  """
  @spec build_image(Mix.Release.t()) :: Mix.Release.t()
  def build_image(%Mix.Release{} = release) do
    Mix.Tasks.Ocibuild.build(%{}, Keyword.get(release.options, :ocibuild, []), release)
    release
  end

  # A step given something else (a misconfigured `steps:` list) fails as the step does.
  def build_image(other) do
    Mix.raise(
      "Ocibuild.MixRelease.build_image/1 is a release step: it takes the %Mix.Release{} " <>
        "mix release passes, got #{inspect(other, limit: 5, printable_limit: 80)}"
    )
  end
end
