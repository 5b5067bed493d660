defmodule OcibuildTest do
  use ExUnit.Case, async: false

  # A private directory per test, outside the repository (ExUnit's :tmp_dir tag would write
  # under ./tmp).
  setup do
    tmp = Path.join(System.tmp_dir!(), "ocibuild-test-#{System.unique_integer([:positive])}")
    File.mkdir_p!(tmp)
    on_exit(fn -> File.rm_rf!(tmp) end)
    %{tmp_dir: tmp}
  end

  defp sha256(bin), do: "sha256:" <> Base.encode16(:crypto.hash(:sha256, bin), case: :lower)

  defp app_image do
    {:ok, image} = Ocibuild.scratch()

    image
    |> Ocibuild.add_layer([{"/app/bin/app", "#!/bin/sh\n", 0o755}], %{compression: :gzip})
    |> Ocibuild.entrypoint(["/app/bin/app"])
    |> Ocibuild.cmd(["start"])
    |> Ocibuild.env(%{"PORT" => "4000"})
    |> Ocibuild.workdir("/app")
    |> Ocibuild.expose(4000)
    |> Ocibuild.label("org.opencontainers.image.title", "app")
    |> Ocibuild.user("nobody")
    |> Ocibuild.annotation("org.opencontainers.image.version", "1.0")
  end

  test "scratch is an empty image value" do
    assert {:ok,
            %{base: :none, layers: [], annotations: %{}, platform: :undefined, config: config}} =
             Ocibuild.scratch()

    assert config.env == []
    assert config.entrypoint == :undefined
  end

  test "builders set the config and env merges by name" do
    image = app_image()
    assert image.config.entrypoint == ["/app/bin/app"]
    assert image.config.cmd == ["start"]
    assert image.config.workdir == "/app"
    assert image.config.exposed_ports == ["4000/tcp"]
    assert image.config.labels == %{"org.opencontainers.image.title" => "app"}
    assert image.config.user == "nobody"
    assert image.annotations == %{"org.opencontainers.image.version" => "1.0"}

    merged = Ocibuild.env(image, %{"PORT" => "5000", "LANG" => "C.UTF-8"})
    assert merged.config.env == [{"PORT", "5000"}, {"LANG", "C.UTF-8"}]
  end

  test "layers point at their blob in the cache" do
    %{layers: [layer]} = app_image()

    assert %{
             media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
             digest: digest,
             diff_id: diff_id,
             size: size,
             blob: blob
           } = layer

    data = File.read!(blob)
    assert sha256(data) == digest
    assert byte_size(data) == size
    assert sha256(:zlib.gunzip(data)) == diff_id
    assert String.starts_with?(blob, System.fetch_env!("OCIBUILD_CACHE_DIR"))
  end

  test "copy, Ocibuild.Layer and content from files", %{tmp_dir: tmp} do
    host = Path.join(tmp, "hello.txt")
    File.write!(host, "hello")
    {:ok, image} = Ocibuild.scratch()

    image =
      Ocibuild.copy(image, [{"hello.txt", {:file, host}}, {"inline", ["io", ?l, "ist"]}], "/srv")

    assert [%{media_type: "application/vnd.oci.image.layer.v1.tar+zstd"}] = image.layers

    assert {:ok, %{diff_id: diff_id}} =
             Ocibuild.Layer.create(
               [{"/srv/hello.txt", {:file, host}, 0o644}, {"/srv/inline", "iolist", 0o644}],
               %{compression: :gzip}
             )

    assert [%{diff_id: ^diff_id}] = image.layers
  end

  test "bad files and values return tagged reasons" do
    {:ok, image} = Ocibuild.scratch()
    add = fun_add(image)

    assert add.([{"", "x", 0o644}]) == {:error, {:invalid_path, "", :empty}}
    assert add.([{"a\0b", "x", 0o644}]) == {:error, {:invalid_path, "a\0b", :nul_byte}}

    assert add.([{"/a/../b", "x", 0o644}]) ==
             {:error, {:invalid_path, "/a/../b", :parent_component}}

    assert add.([{"/a/b", "1", 0o644}, {"a//b", "2", 0o644}]) ==
             {:error, {:duplicate_path, "/a/b"}}

    assert add.([{"/x", "x", 0o10000}]) == {:error, {:invalid_mode, "/x", 0o10000}}

    assert {:error, {:file_read, "/nonexistent/ocibuild", :enoent}} =
             add.([{"/x", {:file, "/nonexistent/ocibuild"}, 0o644}])

    assert add.([{"/x", {:file, "/dev/zero"}, 0o644}]) ==
             {:error, {:special_file, "/dev/zero", :character_device}}

    long = String.duplicate("/a", 50_000)
    assert add.([{long, "x", 0o644}]) == {:error, {:invalid_path, long, :path_too_long}}

    assert Ocibuild.add_layer(image, [{"/x", "x", 0o644}], %{compression: :lz4}) ==
             {:error, {:invalid_option, :compression, :lz4}}

    assert Ocibuild.expose(image, 0) == {:error, {:invalid_option, :expose, 0}}

    assert Ocibuild.env(image, %{"A=B" => "1"}) ==
             {:error, {:invalid_value, :env, "A=B", :equals_in_name}}

    assert Ocibuild.label(image, "k", "v\0") ==
             {:error, {:invalid_value, :labels, "k", :nul_byte}}
  end

  test "a pipeline ends in its first error, which save returns", %{tmp_dir: tmp} do
    {:ok, image} = Ocibuild.scratch()
    out = Path.join(tmp, "never.tar.gz")

    result =
      image
      |> Ocibuild.entrypoint(["/app/run\0"])
      |> Ocibuild.env(%{"PORT" => "4000"})
      |> Ocibuild.expose(4000)

    assert result == {:error, {:invalid_value, :entrypoint, "/app/run\0", :nul_byte}}
    assert Ocibuild.save(result, out) == result
    assert Ocibuild.save(image, out, %{tag: "bad tag!!"}) |> elem(1) |> elem(0) == :invalid_tag
    refute File.exists?(out)
  end

  test "every function returns {:error, _} for a bad argument, never raises", %{tmp_dir: tmp} do
    {:ok, image} = Ocibuild.scratch()
    out = Path.join(tmp, "bad")

    calls = [
      from: fn -> Ocibuild.from(:alpine) end,
      from_tar_bad_auth: fn -> Ocibuild.from("tar://" <> out, :not_a_map) end,
      push: fn -> Ocibuild.push(image, 42, "a:1") end,
      push_bad_auth: fn -> Ocibuild.push(image, "localhost:1", "a:1", [:x]) end,
      push_multi: fn -> Ocibuild.push_multi([image | image], "localhost:1", "a:1", %{}) end,
      add_layer: fn -> Ocibuild.add_layer(image, [{"/a", "a", 0o644} | :tail]) end,
      add_layer_not_image: fn -> Ocibuild.add_layer(%{}, []) end,
      copy: fn -> Ocibuild.copy(image, [{"a", {:file, 42}}], "/app") end,
      entrypoint: fn -> Ocibuild.entrypoint(image, [:sh]) end,
      cmd: fn -> Ocibuild.cmd(image, "start") end,
      env: fn -> Ocibuild.env(image, [{"A", "1"}]) end,
      workdir: fn -> Ocibuild.workdir(image, :app) end,
      expose: fn -> Ocibuild.expose(image, -1) end,
      label: fn -> Ocibuild.label(image, :k, "v") end,
      user: fn -> Ocibuild.user(image, 0) end,
      annotation: fn -> Ocibuild.annotation(image, "", "v") end,
      export: fn -> Ocibuild.export(image, 42) end,
      save: fn -> Ocibuild.save(image, out, [:tag]) end,
      save_tag: fn -> Ocibuild.save(image, out, %{tag: "Upper/Case:1"}) end,
      parse_platform: fn -> Ocibuild.parse_platform(:linux) end,
      parse_platforms: fn -> Ocibuild.parse_platforms(nil) end,
      layer_create: fn -> Ocibuild.Layer.create([:a | :b]) end,
      layer_create_opts: fn -> Ocibuild.Layer.create([], %{mtime: -1}) end
    ]

    results =
      for {name, call} <- calls do
        try do
          {name, call.()}
        rescue
          e -> {name, {:raised, e}}
        end
      end

    assert for({name, result} <- results, not match?({:error, _}, result), do: {name, result}) ==
             []

    refute File.exists?(out)
  end

  defp fun_add(image), do: &Ocibuild.add_layer(image, &1)

  test "Ocibuild.BlobStore.gc collects a store and reuse keeps a layer", %{tmp_dir: tmp} do
    store = Path.join(tmp, "store")
    files = [{"/app/x", "x", 0o644}]

    layer =
      with_env("OCIBUILD_CACHE_DIR", store, fn ->
        {:ok, layer} = Ocibuild.Layer.create(files)
        # Built again from the cache: the same map.
        assert {:ok, ^layer} = Ocibuild.Layer.create(files)
        layer
      end)

    assert {:ok, %{removed: 0, kept: 2}} = Ocibuild.BlobStore.gc(%{root: store})

    assert {:ok, %{removed: 2, kept: 0, freed_bytes: freed}} =
             Ocibuild.BlobStore.gc(%{root: store, max_size: 0, grace: 0})

    assert freed > layer.size
    refute File.exists?(layer.blob)
    assert {:error, {:invalid_option, :options, :nope}} = Ocibuild.BlobStore.gc(:nope)
  end

  defp with_env(name, value, fun) do
    old = System.get_env(name)
    System.put_env(name, value)

    try do
      fun.()
    after
      if old, do: System.put_env(name, old), else: System.delete_env(name)
    end
  end

  test "bad SOURCE_DATE_EPOCH is reported" do
    System.put_env("SOURCE_DATE_EPOCH", "not-a-number")

    try do
      assert Ocibuild.Layer.create([{"/x", "x", 0o644}]) ==
               {:error, {:invalid_source_date_epoch, "not-a-number"}}
    after
      System.delete_env("SOURCE_DATE_EPOCH")
    end
  end

  test "platforms parse" do
    assert Ocibuild.parse_platform("linux/arm64/v8") ==
             {:ok, %{os: "linux", architecture: "arm64", variant: "v8"}}

    assert Ocibuild.parse_platforms("linux/amd64,linux/arm64") ==
             {:ok, [%{os: "linux", architecture: "amd64"}, %{os: "linux", architecture: "arm64"}]}

    assert Ocibuild.parse_platform("linux") == {:error, {:invalid_platform, "linux"}}
    assert Ocibuild.parse_platforms("linux/amd64,") == {:error, {:invalid_platform, ""}}
  end

  test "export writes an OCI layout", %{tmp_dir: tmp} do
    dir = Path.join(tmp, "layout")
    assert :ok = Ocibuild.export(app_image(), dir)
    assert File.read!(Path.join(dir, "oci-layout")) == ~s({"imageLayoutVersion":"1.0.0"})

    for blob <- File.ls!(Path.join(dir, "blobs/sha256")) do
      assert sha256(File.read!(Path.join([dir, "blobs/sha256", blob]))) == "sha256:" <> blob
    end
  end

  test "save and load a multi-platform tarball", %{tmp_dir: tmp} do
    path = Path.join(tmp, "multi.tar.gz")
    image = app_image()
    amd = %{image | platform: %{os: "linux", architecture: "amd64"}}
    arm = %{image | platform: %{os: "linux", architecture: "arm64"}}
    assert :ok = Ocibuild.save([amd, arm], path, %{tag: "app:1"})

    assert {:ok, %{images: [a, b], tag: "app:1", is_multi_platform: true, cleanup: cleanup}} =
             Ocibuild.Layout.load_tarball_for_push(path)

    assert a.platform == %{os: "linux", architecture: "amd64"}
    assert b.platform == %{os: "linux", architecture: "arm64"}
    assert [%{get_data: get_data, digest: digest}] = a.layers
    assert {:ok, data} = get_data.()
    assert sha256(data) == digest
    assert :ok = cleanup.()
  end

  test "two saves with SOURCE_DATE_EPOCH are identical", %{tmp_dir: tmp} do
    System.put_env("SOURCE_DATE_EPOCH", "1700000000")

    try do
      [a, b] = for name <- ["a.tar.gz", "b.tar.gz"], do: Path.join(tmp, name)
      assert :ok = Ocibuild.save(app_image(), a, %{tag: "r:1"})
      assert :ok = Ocibuild.save(app_image(), b, %{tag: "r:1"})
      assert File.read!(a) == File.read!(b)
    after
      System.delete_env("SOURCE_DATE_EPOCH")
    end
  end

  test "bad save arguments return errors and write nothing", %{tmp_dir: tmp} do
    image = app_image()
    not_a_dir = Path.join(tmp, "plain-file")
    File.write!(not_a_dir, "x")
    assert {:error, {:io_error, _, _}} = Ocibuild.save(image, Path.join(not_a_dir, "out.tar.gz"))

    out = Path.join(tmp, "out.tar.gz")

    assert Ocibuild.save(image, out, %{format: :tar}) ==
             {:error, {:invalid_option, :format, :tar}}

    assert {:error, {:invalid_platform, _}} =
             Ocibuild.save(%{image | platform: %{os: "linux", architecture: ""}}, out)

    assert Ocibuild.Layout.save_tarball([], out) == {:error, {:invalid_option, :images, []}}
    refute File.exists?(out)
  end
end
