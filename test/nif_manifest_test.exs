defmodule Mix.Tasks.Compile.OcibuildNif.ManifestTest do
  # The :ocibuild_nif compiler (mix.exs) skips the install while priv/.ocibuild_nif.manifest
  # holds; native/install_nif.escript writes that file and checks it too. Here the two must
  # agree: after an install the manifest holds for Mix, each change the script would act on
  # makes it not hold, and installing again makes it hold again. The script runs on a copy of
  # the checkout's layout with a cargo shim on PATH ("builds" a fixed library).
  use ExUnit.Case, async: false

  alias Mix.Tasks.Compile.OcibuildNif.Manifest

  @root Path.expand("..", __DIR__)

  setup do
    dir =
      Path.join(System.tmp_dir!(), "ocibuild-nif-manifest-#{System.unique_integer([:positive])}")

    for file <- ["native/install_nif.escript", "native/build.sh", "src/ocibuild.app.src"] do
      File.mkdir_p!(Path.dirname(Path.join(dir, file)))
      File.cp!(Path.join(@root, file), Path.join(dir, file))
    end

    write!(Path.join(dir, "Cargo.toml"), "[workspace]\n")
    write!(Path.join(dir, "Cargo.lock"), "# lock\n")
    write!(Path.join(dir, "native/ocibuild_core/src/lib.rs"), "pub fn f() {}")

    write!(Path.join(dir, "bin/cargo"), """
    #!/bin/sh
    mkdir -p "$CARGO_TARGET_DIR/release"
    printf 'fake library' >"$CARGO_TARGET_DIR/release/libocibuild_nif.so"
    """)

    File.chmod!(Path.join(dir, "bin/cargo"), 0o755)
    on_exit(fn -> File.rm_rf!(dir) end)
    settle()
    install!(dir)
    %{dir: dir}
  end

  test "an install's manifest holds for Mix, until something changes", %{dir: dir} do
    assert Manifest.holds?(dir)
    assert File.read!(Path.join(dir, "priv/ocibuild_nif.so")) == "fake library"
    # The library is recorded by identity (one stat to check), not by a hash of its bytes.
    assert [{:ocibuild_nif_manifest, 2} | facts] = Manifest.read(dir)
    assert [{:file, "priv/ocibuild_nif.so", 12, _, _, _}] = library_facts(facts)

    edit!(Path.join(dir, "native/ocibuild_core/src/lib.rs"), "pub fn g() {}")
    refute Manifest.holds?(dir)
    install!(dir)
    assert Manifest.holds?(dir)

    edit!(Path.join(dir, "native/ocibuild_core/src/new.rs"), "pub fn h() {}")
    refute Manifest.holds?(dir)
    install!(dir)
    assert Manifest.holds?(dir)

    File.rm!(Path.join(dir, "native/ocibuild_core/src/new.rs"))
    refute Manifest.holds?(dir)
    settle()
    install!(dir)
    assert Manifest.holds?(dir)

    File.write!(Path.join(dir, "priv/ocibuild_nif.so"), "another library")
    refute Manifest.holds?(dir)
    install!(dir)
    assert Manifest.holds?(dir)

    # The library is checked by identity, not content: one of the same size, written in place
    # at once (the install's own second, if the clock allows), is still noticed.
    File.write!(Path.join(dir, "priv/ocibuild_nif.so"), "fake librarX")
    refute Manifest.holds?(dir)
    install!(dir)
    assert Manifest.holds?(dir)
    assert File.read!(Path.join(dir, "priv/ocibuild_nif.so")) == "fake library"

    File.rm!(Path.join(dir, "priv/ocibuild_nif.so"))
    refute Manifest.holds?(dir)
    install!(dir)
    assert Manifest.holds?(dir)
  end

  test "a variable that changes the build", %{dir: dir} do
    System.put_env("CARGO_PROFILE_RELEASE_LTO", "false")

    try do
      refute Manifest.holds?(dir)
      install!(dir)
      assert Manifest.holds?(dir)
    after
      System.delete_env("CARGO_PROFILE_RELEASE_LTO")
    end

    refute Manifest.holds?(dir)
  end

  test "a missing, foreign or damaged manifest does not hold", %{dir: dir} do
    manifest = Manifest.path(dir)
    File.write!(manifest, :erlang.term_to_binary([{:ocibuild_nif_manifest, 3}]))
    refute Manifest.holds?(dir)
    File.write!(manifest, "{ocibuild_nif_manifest, 2}.\n")
    refute Manifest.holds?(dir)
    File.write!(manifest, "{not a manifest")
    refute Manifest.holds?(dir)
    File.rm!(manifest)
    refute Manifest.holds?(dir)
  end

  defp library_facts(facts) do
    Enum.filter(facts, &(elem(&1, 0) in [:file, :library] and elem(&1, 1) =~ "ocibuild_nif.so"))
  end

  defp install!(dir) do
    env = [
      {"PATH", Path.join(dir, "bin") <> ":" <> System.get_env("PATH")},
      {"CARGO_TARGET_DIR", Path.join(dir, "target")}
    ]

    script = Path.join(dir, "native/install_nif.escript")
    {output, status} = System.cmd("escript", [script], env: env, stderr_to_stdout: true)
    assert status == 0, output
  end

  defp write!(path, content) do
    File.mkdir_p!(Path.dirname(path))
    File.write!(path, content)
  end

  # The script trusts no file changed in the current second (an mtime in seconds could hide a
  # second edit), nor in the 100 ms after it (file times lag the clock by up to a tick), so a
  # test waits for the clock to leave the second of its last write by that much.
  defp edit!(path, content) do
    write!(path, content)
    settle()
  end

  defp settle do
    now = System.os_time(:second)
    wait_until(fn -> div(System.os_time(:millisecond) - 100, 1000) > now end, 3_000)
  end

  defp wait_until(done, left) do
    cond do
      done.() -> :ok
      left <= 0 -> flunk("the clock did not advance")
      true -> sleep_then(fn -> wait_until(done, left - 20) end)
    end
  end

  defp sleep_then(next) do
    Process.sleep(20)
    next.()
  end
end
