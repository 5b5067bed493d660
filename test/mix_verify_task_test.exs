defmodule Mix.Tasks.Ocibuild.VerifyTest do
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  alias Mix.Tasks.Ocibuild.Verify, as: Task

  @public_key Path.expand("../native/ocibuild_core/tests/fixtures/signing/pkcs8.pub", __DIR__)

  setup do
    tmp =
      Path.join(System.tmp_dir!(), "ocibuild-verify-test-#{System.unique_integer([:positive])}")

    File.mkdir_p!(tmp)
    on_exit(fn -> File.rm_rf!(tmp) end)
    %{tmp_dir: tmp}
  end

  # A saved image whose last layer carries an SBOM, as `mix ocibuild -o` writes one.
  defp saved_image(dir) do
    input =
      :ocibuild_sbom.input(%{
        name: "hello",
        version: "1.0.0",
        release_path: :undefined,
        image: %{base: :none},
        created: 0
      })

    {:ok, sbom} = :ocibuild_sbom.build(input)
    {:ok, layer} = :ocibuild_sbom.layer(sbom, :gzip)
    {:ok, image} = :ocibuild.scratch()
    image = :ocibuild.add_layer(image, [{"/app/a.txt", "a\n", 0o644}])
    image = %{image | layers: image.layers ++ [layer]}
    path = Path.join(dir, "hello.tar.gz")
    :ok = :ocibuild.save(image, path)
    path
  end

  test "a saved tarball: one line per check, the SBOM checked", %{tmp_dir: tmp} do
    path = saved_image(tmp)
    out = capture_io(fn -> assert Task.run([path, "--key", @public_key]) == :ok end)
    lines = String.split(out, "\n", trim: true)
    assert [sig, att, sbom] = lines
    assert sig =~ ~r/^skip signature sha256:[0-9a-f]{64}: a saved tarball holds no signatures/
    assert att =~ "skip attestation"
    assert sbom =~ ~r/^ok   sbom sha256:[0-9a-f]{64} \(\/sbom.spdx.json\): SPDX-2.2/
  end

  test "nothing to check is an error of one line", %{tmp_dir: tmp} do
    {:ok, image} = :ocibuild.scratch()
    image = :ocibuild.add_layer(image, [{"/app/a.txt", "a\n", 0o644}])
    path = Path.join(tmp, "plain.tar")
    :ok = :ocibuild.save(image, path)

    capture_io(fn ->
      assert_raise Mix.Error,
                   "verification failed: nothing to check (every check was skipped)",
                   fn ->
                     Task.run([path, "--key", @public_key])
                   end
    end)
  end

  test "usage errors name what is missing", %{tmp_dir: tmp} do
    assert_raise Mix.Error, ~r/usage: mix ocibuild.verify IMAGE --key/, fn -> Task.run([]) end
    assert_raise Mix.Error, ~r/--key PATH/, fn -> Task.run(["x.tar"]) end
    assert_raise Mix.Error, ~r/--bogus/, fn -> Task.run(["x.tar", "--bogus"]) end

    assert_raise Mix.Error, ~r/cannot read the public key/, fn ->
      Task.run([saved_image(tmp), "--key", Path.join(tmp, "none.pub")])
    end
  end
end
