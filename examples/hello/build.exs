# Builds the hello example image with the Elixir API and saves it as a tarball:
#
#   mix run examples/hello/build.exs      (from the repository root; scripts/example.sh runs it)
#
# A scratch image holding a static busybox (Debian's busybox-static) and the files under
# app/, so `podman run` or `docker run` of the saved image prints the message.
app_dir = Path.join(__DIR__, "app")
out = Path.expand("_build/example/hello.tar.gz")
tag = "hello:0.1.0"

# {:file, path} streams each file from disk; copy/3 keeps the host file's mode (0755, 0644).
busybox = [{"/bin/busybox", {:file, "/bin/busybox"}, 0o755}]
files = for name <- ["hello.sh", "message.txt"], do: {name, {:file, Path.join(app_dir, name)}}

{:ok, image} = Ocibuild.scratch()

image =
  image
  |> Ocibuild.add_layer(busybox, %{layer_type: :busybox})
  |> Ocibuild.copy(files, "/app")
  |> Ocibuild.entrypoint(["/app/hello.sh"])
  |> Ocibuild.env(%{"GREETING" => "hi"})
  |> Ocibuild.workdir("/app")
  |> Ocibuild.label("org.opencontainers.image.title", "hello")
  |> Ocibuild.annotation("org.opencontainers.image.version", "0.1.0")

File.mkdir_p!(Path.dirname(out))
:ok = Ocibuild.save(image, out, %{tag: tag})

# Read the tarball back to report what was written.
{:ok, %{images: [saved], cleanup: cleanup}} = Ocibuild.Layout.load_tarball_for_push(out)
cleanup.()

IO.puts("""
wrote #{Path.relative_to_cwd(out)} (#{File.stat!(out).size} bytes)
  tag:      #{tag}
  manifest: #{saved.manifest_digest}
  layers:   #{Enum.map_join(saved.layers, ", ", &"#{&1.digest} (#{&1.size} bytes)")}
run it with: podman load -i #{Path.relative_to_cwd(out)} && podman run --rm #{tag}
""")
