defmodule Mix.Tasks.Ocibuild.Verify do
  use Mix.Task

  import Ocibuild.Mix.Cli, only: [start_ocibuild: 0, raise_error: 1]

  @shortdoc "Verifies the signature, attestations and SBOM attached to an image"

  @moduledoc """
  Checks what a signed push attached to an image against a public key, without cosign:

      $ mix ocibuild.verify ghcr.io/myorg/myapp:1.0.0 --key cosign.pub
      ok   signature sha256:… (.sig layer 1): verified with cosign.pub, signs ghcr.io/myorg/myapp
      ok   attestation sha256:… (.att layer 1): https://slsa.dev/provenance/v1, verified with cosign.pub
      ok   sbom sha256:… (referrer sha256:…): SPDX-2.2, names all 12 packages of the image's /sbom.spdx.json

  `IMAGE` is a registry reference (a tag or `@sha256:` digest) or a saved tarball
  (`tar://PATH`, or a path ending in `.tar`, `.tar.gz` or `.tgz`): a tarball holds the
  image only, so its signature and attestation checks are skipped and say so.

  One line per check, `ok`, `FAIL` or `skip`:

    * every layer of the cosign signature image (`sha256-<hex>.sig`) verifies with the key
      and its payload names the image digest; no signature is a failure;
    * every attestation (`sha256-<hex>.att` layers and in-toto referrers) of each platform
      manifest is a DSSE envelope signed by the key whose in-toto Statement's subject is that
      manifest; none is a skip;
    * every SBOM referrer parses as SPDX 2.2/2.3 JSON and names each package (name and
      version) of the SBOM the image carries at `/sbom.spdx.json`.

  The task exits with status 1 and one line saying why when a check fails, when nothing
  could be checked, or when the image cannot be read.

  ## Command line options

    * `--key PATH` (required) - the public key: PEM `PUBLIC KEY`, as `cosign.pub` or
      `openssl ec -pubout` write it.

  ## Environment variables

    * `OCIBUILD_PUSH_TOKEN`, or `OCIBUILD_PUSH_USERNAME` and `OCIBUILD_PUSH_PASSWORD` -
      credentials, as for a push; unset: `~/.docker/config.json` or podman's `auth.json`,
      else anonymous.
  """

  @switches [key: :string]

  @impl Mix.Task
  def run(args) do
    {opts, positional, invalid} = OptionParser.parse(args, strict: @switches)

    case invalid do
      [] -> :ok
      [{name, nil} | _] -> raise_error({:option_needs_value, name})
      [{name, _} | _] -> raise_error({:unknown_option, name, "mix"})
    end

    image =
      case positional do
        [image] -> image
        [] -> Mix.raise("usage: mix ocibuild.verify IMAGE --key cosign.pub")
        [_ | unexpected] -> raise_error({:unexpected_arguments, unexpected})
      end

    key = Keyword.get(opts, :key) || raise_error({:invalid_option, :key, :missing})
    Mix.Task.run("loadpaths")
    start_ocibuild()

    case :ocibuild_verify.cli(image, key, &IO.puts/1) do
      :ok -> :ok
      {:error, reason} -> raise_error(reason)
    end
  end
end
