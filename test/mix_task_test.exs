defmodule Mix.Tasks.OcibuildTest do
  use ExUnit.Case, async: false

  alias Mix.Tasks.Ocibuild, as: Task
  alias Ocibuild.Mix.Adapter

  # A private directory per test, outside the repository (ExUnit's :tmp_dir tag would write
  # under ./tmp).
  setup do
    tmp = Path.join(System.tmp_dir!(), "ocibuild-mix-test-#{System.unique_integer([:positive])}")
    File.mkdir_p!(tmp)
    on_exit(fn -> File.rm_rf!(tmp) end)
    %{tmp_dir: tmp}
  end

  # A call that could block on a FIFO: the test fails after a bound instead of hanging.
  defp within_bound(fun) do
    task = Elixir.Task.async(fun)

    case Elixir.Task.yield(task, 30_000) || Elixir.Task.shutdown(task, :brutal_kill) do
      {:ok, result} -> result
      nil -> flunk("blocked on a FIFO")
    end
  end

  defp state(mix_config, config \\ %{}) do
    %{config: config, mix_config: mix_config, release: nil}
  end

  describe "parse_args/1" do
    test "no arguments give an empty map" do
      assert Task.parse_args([]) == %{}
    end

    test "every option, long and short, into the contract's keys" do
      args = [
        "-t",
        "app:1;app:latest",
        "--tag",
        "app:edge",
        "-o",
        "out.tar.gz",
        "-p",
        "ghcr.io/org",
        "-a",
        "a=1",
        "--annotation",
        "b=2",
        "-l",
        "l=1",
        "--label",
        "m=2",
        "-P",
        "linux/amd64,linux/arm64",
        "--base",
        "tar:///tmp/base.tar.gz",
        "--release",
        "rel",
        "-c",
        "start_iex",
        "--uid",
        "0",
        "--chunk-size",
        "8",
        "--sbom",
        "sbom.json",
        "--no-vcs-annotations",
        "--sign-key",
        "key.pem",
        "--compression",
        "gzip"
      ]

      assert Task.parse_args(args) == %{
               tag: ["app:1;app:latest", "app:edge"],
               output: "out.tar.gz",
               push: "ghcr.io/org",
               annotation: ["a=1", "b=2"],
               label: ["l=1", "m=2"],
               platform: "linux/amd64,linux/arm64",
               base: "tar:///tmp/base.tar.gz",
               release: "rel",
               cmd: "start_iex",
               uid: 0,
               chunk_size: 8,
               sbom: "sbom.json",
               no_vcs_annotations: true,
               sign_key: "key.pem",
               compression: "gzip"
             }

      assert Task.parse_args(["--output=x.tar.gz", "--platform=linux/arm64"]) ==
               %{output: "x.tar.gz", platform: "linux/arm64"}
    end

    test "a positional argument is the tarball to push" do
      assert Task.parse_args(["--push", "localhost:5000", "app-1.tar.gz"]) ==
               %{push: "localhost:5000", tarball: "app-1.tar.gz"}

      # The term and the line rebar3 gives for the same mistake.
      line =
        IO.chardata_to_string(
          :ocibuild_rebar3.format_error({:unexpected_arguments, [~c"b.tar.gz", ~c"c.tar.gz"]})
        )

      assert line ==
               "unexpected arguments: b.tar.gz c.tar.gz (one tarball path may follow --push)"

      assert_raise Mix.Error, line, fn ->
        Task.parse_args(["-p", "r", "a.tar.gz", "b.tar.gz", "c.tar.gz"])
      end
    end

    test "unknown options, missing and bad values are one-line errors" do
      assert_raise Mix.Error,
                   "unknown option --frobnicate (`mix help ocibuild` lists the options)",
                   fn ->
                     Task.parse_args(["--frobnicate"])
                   end

      assert_raise Mix.Error, ~r/^unknown option -x /, fn -> Task.parse_args(["-x"]) end
      assert_raise Mix.Error, "option -o needs a value", fn -> Task.parse_args(["-o"]) end
      assert_raise Mix.Error, "option --push needs a value", fn -> Task.parse_args(["--push"]) end

      assert_raise Mix.Error, ~s(invalid value "abc" for option --uid), fn ->
        Task.parse_args(["--uid", "abc"])
      end

      assert_raise Mix.Error, ~s(invalid value "big" for option --chunk-size), fn ->
        Task.parse_args(["--chunk-size=big"])
      end
    end

    test "a FIFO as --sign-key, --sbom or -o is one line, before anything is written",
         %{tmp_dir: tmp} do
      fifo = Path.join(tmp, "fifo")
      {_, 0} = System.cmd("mkfifo", [fifo])

      File.cd!(tmp, fn ->
        for args <- [
              ["--sign-key", fifo, "--push", "localhost:1", "-t", "x:1"],
              ["--sbom", fifo, "-t", "x:1"],
              ["-o", fifo, "-t", "x:1"]
            ] do
          error = within_bound(fn -> catch_error(Task.run(args)) end)
          assert %Mix.Error{} = error, inspect(args)
          assert error.message =~ "not a regular file"
          refute error.message =~ "\n"
        end

        assert File.ls!(tmp) == ["fifo"]
      end)
    end

    test "a tag that is not an image reference is one line, before anything is written",
         %{tmp_dir: tmp} do
      File.cd!(tmp, fn ->
        for tag <- ["bad tag!!", "MyApp:1.0", "app:1;Bad:2", "app\0:1", "app:\n1"] do
          error = assert_raise Mix.Error, fn -> Task.run(["-t", tag]) end
          assert error.message =~ ~r/^invalid image tag ".*": /
          refute error.message =~ "\n"
        end

        error = assert_raise Mix.Error, fn -> Task.run(["-t", "bad tag!!"]) end

        assert error.message ==
                 ~s(invalid image tag "bad tag!!": each repository component must be ) <>
                   "lower-case letters and digits, joined by single '.', '_', '__' or runs of '-'"

        assert File.ls!(tmp) == []
      end)
    end

    test "the moduledoc (`mix help ocibuild`) documents every option" do
      {:docs_v1, _, :elixir, _, %{"en" => doc}, _, _} = Code.fetch_docs(Task)
      assert doc =~ "## Command line options"
      assert doc =~ "## Configuration"

      for {short, long} <-
            [t: :tag, o: :output, p: :push, a: :annotation, l: :label] ++
              [P: :platform, c: :cmd] do
        assert doc =~ "`-#{short}`, `--#{long}"
      end

      for flag <- ~w(base release uid chunk-size sbom no-vcs-annotations sign-key compression) do
        assert doc =~ "`--#{flag}", "--#{flag} is not documented"
      end

      for var <- ~w(OCIBUILD_PUSH_TOKEN OCIBUILD_PULL_USERNAME OCIBUILD_SIGN_KEY
                    OCIBUILD_CACHE_DIR SOURCE_DATE_EPOCH) do
        assert doc =~ var
      end

      # The defaults shown are the native core's, the ones a build really uses.
      %{chunk_size: chunk} = :ocibuild_nif.options_defaults()

      assert doc =~
               "`--chunk-size MB` - upload blobs larger than this many MB to the registry " <>
                 "in chunks. Default: #{div(chunk, 1024 * 1024)}."

      # The same table gives rebar3 its getopt specs.
      assert length(:ocibuild_options.getopt_specs()) == length(:ocibuild_options.options())
    end
  end

  describe "the same mistake in mix and rebar3" do
    test "gives the same error term and the same line" do
      relx = [{:release, {:ocibuild, ~c"1.0.0"}, [:ocibuild]}]
      rebar3 = :ocibuild_rebar3.relx_release(relx, "nope")
      assert rebar3 == {:error, {:unknown_release, "nope", ["ocibuild"]}}
      assert Adapter.find_release(state(Mix.Project.config()), %{release: "nope"}) == rebar3

      {:error, reason} = rebar3
      line = IO.chardata_to_string(:ocibuild_rebar3.format_error(reason))
      assert line == "release nope is not defined (releases: ocibuild)"
      assert_raise Mix.Error, line, fn -> Task.run(["--release", "nope"]) end

      two = [{:release, {:web, ~c"1"}, [:web]}, {:release, {:worker, ~c"1"}, [:worker]}]
      ambiguous = {:error, {:ambiguous_release, ["web", "worker"]}}
      assert :ocibuild_rebar3.relx_release(two, :undefined) == ambiguous
      assert Adapter.find_release(state(releases: [web: [], worker: []]), %{}) == ambiguous
      none = {:error, {:ambiguous_release, []}}
      assert :ocibuild_rebar3.relx_release([], :undefined) == none
      assert Adapter.find_release(state(releases: []), %{}) == none
    end

    test "a broken lock file is {path, why} from both readers, one line each", %{tmp_dir: tmp} do
      path = Path.join(tmp, "broken.lock")
      File.write!(path, "%{\"a\" => ")
      assert {:error, {^path, mix_why}} = Ocibuild.Mix.Lock.read(path)
      File.write!(path, "[{<<\"a\">>,")
      assert {:error, {^path, rebar_why}} = :ocibuild_rebar3.read_lock(path)

      for why <- [mix_why, rebar_why] do
        line = IO.chardata_to_string(:ocibuild_rebar3.format_error({:lock_file, {path, why}}))
        assert line =~ ~r/^cannot read #{Regex.escape(path)}: line 1: /
        refute line =~ "\n"
      end
    end
  end

  describe "project_config/2" do
    test "the ocibuild: keyword list becomes a map, with Mix's defaults" do
      mix_config = [
        app: :myapp,
        description: "My app",
        ocibuild: [base_image: "alpine:3.19", env: %{"A" => "1"}, expose: [4000]]
      ]

      assert Adapter.project_config(mix_config, []) == %{
               base_image: "alpine:3.19",
               env: %{"A" => "1"},
               expose: [4000],
               app_name: "myapp",
               description: "My app"
             }
    end

    test "a release's own config overrides the project's; the user's app_name wins" do
      mix_config = [app: :myapp, ocibuild: [tag: "a:1", workdir: "/srv", app_name: "core"]]

      assert Adapter.project_config(mix_config, tag: "b:2") ==
               %{tag: "b:2", workdir: "/srv", app_name: "core"}
    end

    test "no ocibuild: key, and an umbrella without :app" do
      assert Adapter.project_config([], []) == %{}
      assert Adapter.project_config([app: :x, ocibuild: nil], %{}) == %{app_name: "x"}
    end

    test "anything but a keyword list is an error" do
      assert_raise Mix.Error, ~r/^the :ocibuild key in mix.exs must be a keyword list/, fn ->
        Adapter.project_config([ocibuild: "alpine"], [])
      end
    end

    test "the result is what ocibuild_release:resolve_config/2 takes" do
      project = Adapter.project_config([app: :myapp, ocibuild: [workdir: "/srv/app"]], [])
      cli = Task.parse_args(["-t", "myapp:1;myapp:latest", "--uid", "1000", "-l", "k=v"])

      assert {:ok, config} = :ocibuild_release.resolve_config(cli, project)
      assert config.tags == ["myapp:1", "myapp:latest"]
      assert config.uid == 1000
      assert config.labels == %{"k" => "v"}
      assert config.workdir == "/srv/app"
      assert config.app_name == "myapp"

      assert {:error, {:unknown_config_key, :bogus}} =
               :ocibuild_release.resolve_config(%{}, %{bogus: 1})
    end
  end

  describe "find_release/2 and get_app_version/1" do
    setup %{tmp_dir: tmp} do
      %{mix_config: [app: :myapp, version: "1.2.3", build_path: tmp, build_per_environment: true]}
    end

    # build_path is per-env: Mix.Project.build_path/1 appends MIX_ENV to the configured path.
    defp make_release(mix_config, name) do
      dir = Path.join([Mix.Project.build_path(mix_config), "rel", name])
      File.mkdir_p!(Path.join(dir, "bin"))
      dir
    end

    test "without releases: the release is named after the app", %{mix_config: mix_config} do
      dir = make_release(mix_config, "myapp")

      assert Adapter.find_release(state(mix_config), %{release: :undefined}) ==
               {:ok, "myapp", dir}

      assert Adapter.get_app_version(state(mix_config)) == "1.2.3"
    end

    test "the only release, default_release:, or --release", %{mix_config: mix_config} do
      one = Keyword.put(mix_config, :releases, web: [version: "2.0.0"])
      web = make_release(one, "web")
      assert Adapter.find_release(state(one), %{release: :undefined}) == {:ok, "web", web}
      assert Adapter.get_app_version(state(one)) == "2.0.0"

      two = Keyword.put(mix_config, :releases, web: [], worker: [version: "3.0.0"])
      worker = make_release(two, "worker")

      assert Adapter.find_release(state(two), %{release: :undefined}) ==
               {:error, {:ambiguous_release, ["web", "worker"]}}

      assert Adapter.find_release(state(two), %{release: "worker"}) == {:ok, "worker", worker}
      # --release reaches find_release through the config too.
      assert Adapter.find_release(state(two, %{release: "worker"}), %{}) ==
               {:ok, "worker", worker}

      assert Adapter.get_app_version(state(two, %{release: "worker"})) == "3.0.0"
      assert Adapter.get_app_version(state(two)) == "1.2.3"

      assert Adapter.find_release(state(two), %{release: "nope"}) ==
               {:error, {:unknown_release, "nope", ["web", "worker"]}}

      assert Adapter.find_release(state(mix_config), %{release: "other"}) ==
               {:error, {:unknown_release, "other", ["myapp"]}}

      assert Adapter.find_release(state(releases: []), %{}) == {:error, {:ambiguous_release, []}}

      default = Keyword.put(two, :default_release, :worker)

      assert Adapter.find_release(state(default), %{release: :undefined}) ==
               {:ok, "worker", worker}
    end

    test "a release's path: option", %{mix_config: mix_config, tmp_dir: tmp} do
      dir = Path.join(tmp, "elsewhere")
      File.mkdir_p!(Path.join(dir, "bin"))
      config = Keyword.put(mix_config, :releases, myapp: [path: dir])
      assert Adapter.find_release(state(config), %{}) == {:ok, "myapp", dir}
    end

    test "a release not built yet is an error", %{mix_config: mix_config} do
      dir = Path.join([Mix.Project.build_path(mix_config), "rel", "myapp"])

      assert Adapter.find_release(state(mix_config), %{}) ==
               {:error, {:release_not_built, "myapp", dir}}
    end

    test "a release given to the step is used as is" do
      release = %Mix.Release{name: :web, version: "9.9.9", path: "/rel/web", options: []}
      state = %{config: %{}, mix_config: [], release: release}
      assert Adapter.find_release(state, %{release: :undefined}) == {:ok, "web", "/rel/web"}
      assert Adapter.get_app_version(state) == "9.9.9"
    end

    test "no version at all" do
      assert Adapter.get_app_version(state(releases: [], app: nil)) == :undefined
    end
  end

  describe "get_dependencies/1" do
    test "hex and git entries of a mix.lock", %{tmp_dir: tmp} do
      lockfile = Path.join(tmp, "mix.lock")

      File.write!(lockfile, ~S"""
      %{
        "jason": {:hex, :jason, "1.4.1", "af1504e35f629ddcdd6addb3513c3853991f694921b1b9368b0bd32beb9f1b63", [:mix], [{:decimal, "~> 1.0 or ~> 2.0", [hex: :decimal, repo: "hexpm", optional: true]}], "hexpm", "fbb01ecdfd565b56261302f7e1fcc27c4fb8f32d56eab74db621fc154604a7a1"},
        "my_fork": {:git, "https://example.invalid/my_fork.git", "0123456789abcdef0123456789abcdef01234567", [branch: "main"]},
        "plug_crypto": {:hex, :renamed_pkg, "2.0.0", "abc", [:mix], [], "hexpm", "def"},
      }
      """)

      assert Adapter.get_dependencies(state(lockfile: lockfile)) ==
               {:ok,
                [
                  %{
                    name: "jason",
                    version: "1.4.1",
                    source: "hex",
                    sha256: "fbb01ecdfd565b56261302f7e1fcc27c4fb8f32d56eab74db621fc154604a7a1"
                  },
                  %{
                    name: "my_fork",
                    version: "0123456789abcdef0123456789abcdef01234567",
                    source: "https://example.invalid/my_fork.git"
                  },
                  %{name: "plug_crypto", version: "2.0.0", source: "hex"}
                ]}
    end

    test "an empty lock file lists no dependencies", %{tmp_dir: tmp} do
      lockfile = Path.join(tmp, "mix.lock")
      File.write!(lockfile, "%{\n}\n")
      assert Adapter.get_dependencies(state(lockfile: lockfile)) == {:ok, []}
    end

    test "no lock file: undefined (one layer)", %{tmp_dir: tmp} do
      lockfile = Path.join(tmp, "mix.lock")
      assert Adapter.get_dependencies(state(lockfile: lockfile)) == :undefined
    end

    test "a FIFO as mix.lock is an error at once, not a hang", %{tmp_dir: tmp} do
      lockfile = Path.join(tmp, "mix.lock")
      {_, 0} = System.cmd("mkfifo", [lockfile])

      assert {:error, {^lockfile, why}} =
               within_bound(fn -> Adapter.get_dependencies(state(lockfile: lockfile)) end)

      assert why =~ "not a regular file"
    end

    test "a broken lock file is an error", %{tmp_dir: tmp} do
      lockfile = Path.join(tmp, "mix.lock")
      File.write!(lockfile, "%{\"a\" => ")

      assert {:error, {^lockfile, "line 1: missing terminator" <> _}} =
               Adapter.get_dependencies(state(lockfile: lockfile))

      File.write!(lockfile, "[:not, :a, :map]")

      assert Adapter.get_dependencies(state(lockfile: lockfile)) ==
               {:error, {lockfile, "expected a map of dependencies, got: [:not, :a, :map]"}}
    end
  end

  # The whole pipeline on a directory shaped like a release (no `mix release` here: that is
  # the end-to-end tests' job), on a scratch base.
  describe "Ocibuild.MixRelease.build_image/1" do
    setup %{tmp_dir: tmp} do
      Mix.shell(Mix.Shell.Process)
      on_exit(fn -> Mix.shell(Mix.Shell.IO) end)

      path = Path.join(tmp, "rel/myapp")
      File.mkdir_p!(Path.join(path, "bin"))
      File.mkdir_p!(Path.join(path, "lib/myapp-1.0.0/ebin"))
      File.write!(Path.join(path, "bin/myapp"), "#!/bin/sh\necho hi\n")
      File.chmod!(Path.join(path, "bin/myapp"), 0o755)
      File.write!(Path.join(path, "lib/myapp-1.0.0/ebin/myapp.app"), "{application, myapp, []}.")

      release = %Mix.Release{name: :myapp, version: "1.0.0", path: path, options: []}
      %{release: release}
    end

    test "saves the image and returns the release", %{release: release, tmp_dir: tmp} do
      out = Path.join(tmp, "out.tar.gz")
      release = %{release | options: [ocibuild: [base_image: "scratch", output: out]]}

      assert Ocibuild.MixRelease.build_image(release) == release
      assert_received {:mix_shell, :info, ["Tagged: myapp:1.0.0"]}

      # :zlib.gunzip reads every gzip member; erl_tar's :compressed stops after the first.
      {:ok, entries} = :erl_tar.extract({:binary, :zlib.gunzip(File.read!(out))}, [:memory])
      blobs = for {_name, data} <- entries, do: data
      assert Enum.any?(blobs, &(&1 =~ ~s("Entrypoint":["/app/bin/myapp","start"])))
      assert Enum.any?(blobs, &(&1 =~ ~s("User":"65534")))
    end

    test "errors are one-line Mix errors", %{release: release, tmp_dir: tmp} do
      bad_key = %{release | options: [ocibuild: [base_image: "scratch", bogus: 1]]}

      assert_raise Mix.Error, ~r/^unknown ocibuild config key.*bogus/, fn ->
        Ocibuild.MixRelease.build_image(bad_key)
      end

      empty = Path.join(tmp, "empty")
      File.mkdir_p!(empty)
      options = [ocibuild: [base_image: "scratch", output: Path.join(tmp, "x.tar.gz")]]

      assert_raise Mix.Error, ~r/holds no files/, fn ->
        Ocibuild.MixRelease.build_image(%{release | path: empty, options: options})
      end
    end
  end

  describe "output callbacks" do
    setup do
      Mix.shell(Mix.Shell.Process)
      on_exit(fn -> Mix.shell(Mix.Shell.IO) end)
    end

    test "info and error go through Mix.shell with Erlang formats" do
      :ok = Adapter.info(~c"Tagged: ~ts", ["myapp:1.0 ✓"])
      assert_received {:mix_shell, :info, ["Tagged: myapp:1.0 ✓"]}
      :ok = Adapter.error("warning: ~p files skipped", [2])
      assert_received {:mix_shell, :error, ["warning: 2 files skipped"]}
    end
  end
end
