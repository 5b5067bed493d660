# The Elixir API against a real registry (run by test/registry/run.sh through `mix run`):
# Ocibuild.push/5, Ocibuild.from/3 with :platforms, Ocibuild.push_multi/5,
# Ocibuild.Registry.push/5 and push_loaded/5. Prints `digest=...` lines; raises on failure.
[registry, work] = System.argv()

{:ok, scratch} = Ocibuild.scratch()

image =
  scratch
  |> Ocibuild.copy([{"hello.txt", "hello from Elixir\n"}], "/app")
  |> Ocibuild.entrypoint(["/bin/busybox", "cat", "/app/hello.txt"])

{:ok, digest} = Ocibuild.push(image, registry, "elixir/app:1", %{}, %{tags: ["latest"]})
IO.puts("digest=#{digest}")

{:ok, %{base: %{manifest_digest: ^digest}}} = Ocibuild.from("#{registry}/elixir/app:latest")

platforms = [%{os: "linux", architecture: "amd64"}, %{os: "linux", architecture: "arm64"}]
images = Enum.map(platforms, &Map.put(image, :platform, &1))
{:ok, index} = Ocibuild.push_multi(images, registry, "elixir/multi:1", %{})
IO.puts("index=#{index}")

{:ok, [_, _] = pulled} = Ocibuild.from("#{registry}/elixir/multi:1", %{}, %{platforms: platforms})

derived = Enum.map(pulled, &Ocibuild.copy(&1, [{"more.txt", "more\n"}], "/app"))

# The base layer is already in the repository: found by HEAD, not sent again.
{:ok, %{digest: _, mounted: 0, existing: existing}} =
  Ocibuild.Registry.push(derived, registry, "elixir/multi:2", %{}, %{index: true})

true = existing >= 1

tarball = Path.join(work, "elixir.tar.gz")
:ok = Ocibuild.save(image, tarball, %{tag: "elixir/saved:1"})
{:ok, loaded} = Ocibuild.Layout.load_tarball_for_push(tarball)
{:ok, %{digest: ^digest}} = Ocibuild.Registry.push_loaded(loaded, registry, :undefined)
loaded.cleanup.()

{:error, {:invalid_reference, _}} = Ocibuild.from("Not A Reference")
IO.puts("elixir registry case: ok")
