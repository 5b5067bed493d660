defmodule OcibuildApiFuzzTest do
  @moduledoc """
  No public Elixir function raises, exits or hangs on a bad argument (the Erlang side has
  test/ocibuild_api_fuzz_tests.erl).

  Every public function of `Ocibuild`, `Ocibuild.Layer`, `Ocibuild.Layout`,
  `Ocibuild.Registry` and `Ocibuild.MixRelease` is listed in `@specs` with a kind per argument
  and a contract. Each is called, in its own process and bounded in time, with seeded junk as
  an Elixir caller might pass it (`nil`, keyword lists where maps go, structs, charlists,
  improper lists, NUL bytes, invalid UTF-8, pids, funs of the wrong arity, 300 KB binaries),
  both all junk and valid but for one argument. A call fails the test if it raises, exits,
  hangs, returns what its contract does not allow, or succeeds with an argument no valid one
  resembles. `Ocibuild.MixRelease.build_image/1` is a release step documented to raise
  `Mix.Error`: that, and only that, is its refusal.

  Nothing leaves the machine: registries are a loopback listener answering 404, bases are
  `tar://` files, and junk where a registry or a base goes is never text that could name a
  host. Outputs go to a temp directory, which is also the current directory during the run.
  """
  use ExUnit.Case, async: false

  @seed {20_261_127, 1505, 13}
  @call_timeout_ms 10_000
  @all_junk_calls 20
  @one_junk_calls 40

  @modules [Ocibuild, Ocibuild.Layer, Ocibuild.Layout, Ocibuild.Registry, Ocibuild.MixRelease]

  # {module, function} => {argument kinds (for the highest arity; lower arities take a
  # prefix), contract}
  @specs %{
    {Ocibuild, :scratch} => {[], :ok_tuple},
    {Ocibuild, :from} => {[:base_ref, :auth, :from_opts], :ok_tuple},
    {Ocibuild, :push} => {[:image, :registry, :repo_tag, :auth, :push_opts], :ok_tuple},
    {Ocibuild, :push_multi} =>
      {[:platform_images, :registry, :repo_tag, :auth, :push_opts], :ok_tuple},
    {Ocibuild, :add_layer} => {[:image, :files, :layer_opts], :image},
    {Ocibuild, :copy} => {[:image, :copy_files, :text], :image},
    {Ocibuild, :entrypoint} => {[:image, :text_list], :image},
    {Ocibuild, :cmd} => {[:image, :text_list], :image},
    {Ocibuild, :env} => {[:image, :env_map], :image},
    {Ocibuild, :workdir} => {[:image, :text], :image},
    {Ocibuild, :expose} => {[:image, :port], :image},
    {Ocibuild, :label} => {[:image, :text, :text], :image},
    {Ocibuild, :user} => {[:image, :text], :image},
    {Ocibuild, :annotation} => {[:image, :text, :text], :image},
    {Ocibuild, :export} => {[:images, :out_dir], :ok_atom},
    {Ocibuild, :save} => {[:images, :out_file, :save_opts], :ok_atom},
    {Ocibuild, :parse_platform} => {[:text_platform], :ok_tuple},
    {Ocibuild, :parse_platforms} => {[:text_platforms], :ok_tuple},
    {Ocibuild, :verify} => {[:registry_ref, :auth, :verify_opts], :ok_tuple},
    {Ocibuild.Layer, :create} => {[:files, :layer_opts], :ok_tuple},
    {Ocibuild.Layout, :export_directory} => {[:images, :out_dir], :ok_atom},
    {Ocibuild.Layout, :save_tarball} => {[:images, :out_file, :save_opts], :ok_atom},
    {Ocibuild.Layout, :load_tarball_for_push} => {[:tarball, :load_opts], :loaded},
    {Ocibuild.Registry, :push} =>
      {[:image_list, :registry, :repo_tag, :auth, :push_opts], :ok_tuple},
    {Ocibuild.Registry, :push_loaded} =>
      {[:loaded, :registry, :repo_tag_or_undefined, :auth, :push_opts], :ok_tuple},
    {Ocibuild.Registry, :check_push} => {[:registry, :repo_tag, :auth], :ok_atom},
    {Ocibuild.MixRelease, :build_image} => {[:mix_release], :release}
  }

  # Keys that name a registry or a base are left out of junk maps: their text names a host.
  @option_keys [
    :compression,
    :layer_type,
    :mtime,
    :tag,
    :format,
    :platform,
    :platforms,
    :progress,
    :tags,
    :chunk_size,
    :max_concurrency,
    :index,
    :sboms,
    :sign,
    :memory_threshold,
    :username,
    :password,
    :token,
    :workdir,
    :env,
    :labels,
    :annotations
  ]

  setup_all do
    old_cwd = File.cwd!()

    root =
      Path.join(System.tmp_dir!(), "ocibuild-api-fuzz-ex-#{System.unique_integer([:positive])}")

    saved =
      for name <- ~w(TMPDIR DOCKER_CONFIG REGISTRY_AUTH_FILE), do: {name, System.get_env(name)}

    File.mkdir_p!(Path.join(root, "cwd"))
    File.mkdir_p!(Path.join(root, "tmp"))
    System.put_env("TMPDIR", Path.join(root, "tmp"))
    System.put_env("DOCKER_CONFIG", Path.join(root, "docker"))
    System.put_env("REGISTRY_AUTH_FILE", Path.join(root, "auth.json"))
    File.cd!(Path.join(root, "cwd"))
    {registry, listener} = start_registry()

    base = Path.join(root, "base.tar.gz")
    {:ok, scratch} = Ocibuild.scratch()

    :ok =
      scratch
      |> Ocibuild.add_layer([{"/b", "base", 0o644}])
      |> Ocibuild.save(base, %{tag: "fuzz/base:1"})

    {:ok, loaded} = Ocibuild.Layout.load_tarball_for_push(base)
    # Valid images: one of ours with a layer and an entrypoint, one on the saved base.
    layered =
      image() |> Ocibuild.add_layer([{"/app/x", "x", 0o755}]) |> Ocibuild.entrypoint(["/app/x"])

    {:ok, on_base} = Ocibuild.from("tar://" <> base)

    on_exit(fn ->
      loaded.cleanup.()
      Process.exit(listener, :kill)
      File.cd!(old_cwd)

      for {name, value} <- saved,
          do: if(value, do: System.put_env(name, value), else: System.delete_env(name))

      File.rm_rf!(root)
    end)

    %{
      ctx: %{
        root: root,
        base: base,
        registry: registry,
        loaded: loaded,
        images: [layered, on_base]
      }
    }
  end

  test "every public function has a spec" do
    exported =
      for mod <- @modules, {fun, arity} <- mod.__info__(:functions), do: {mod, fun, arity}

    missing =
      for {mod, fun, arity} <- exported,
          not match?({kinds, _} when length(kinds) >= arity, Map.get(@specs, {mod, fun})),
          do: {mod, fun, arity}

    assert missing == []
    assert Map.keys(@specs) -- Enum.map(exported, fn {m, f, _} -> {m, f} end) == []
  end

  test "no public function raises, exits or hangs on a bad argument", %{ctx: ctx} do
    :rand.seed(:exsss, @seed)
    pool = junk_pool()

    calls =
      for mod <- @modules,
          {fun, arity} <- Enum.sort(mod.__info__(:functions)),
          call <- plan(mod, fun, arity, pool, ctx),
          do: call

    failures = for call <- calls, failure = check_call(call, ctx), failure != :ok, do: failure
    IO.puts("\nelixir api fuzz: #{length(calls)} calls, #{length(failures)} failures")
    Enum.each(failures, &IO.puts("  #{inspect(&1, limit: 20, printable_limit: 200)}"))
    assert failures == []

    # Every loaded tarball's directory went with its cleanup or its process (the fixture's
    # own is removed here, first).
    ctx.loaded.cleanup.()
    tmp = Path.join(ctx.root, "tmp")
    assert wait_until(fn -> File.ls!(tmp) == [] end, 10_000)
  end

  ## Planning: which positions get junk

  defp plan(mod, fun, arity, pool, ctx) do
    {kinds, contract} = Map.fetch!(@specs, {mod, fun})
    kinds = Enum.take(kinds, arity)
    positions = Enum.to_list(0..(arity - 1)//1)

    all_junk =
      if arity == 0,
        do: [],
        else:
          for(
            _ <- 1..@all_junk_calls,
            do: {mod, fun, contract, args(kinds, positions, pool, ctx)}
          )

    one_junk =
      for bad <- positions, _ <- 1..@one_junk_calls do
        {mod, fun, contract, args(kinds, [bad], pool, ctx)}
      end

    if arity == 0, do: [{mod, fun, contract, []}], else: all_junk ++ one_junk
  end

  defp args(kinds, junk_positions, pool, ctx) do
    kinds
    |> Enum.with_index()
    |> Enum.map(fn {kind, i} ->
      if i in junk_positions, do: {:junk, kind, junk(kind, pool, ctx)}, else: {:valid, kind}
    end)
  end

  ## Running one call

  defp check_call({mod, fun, contract, arg_specs}, ctx) do
    args =
      Enum.map(arg_specs, fn
        {:junk, _, value} -> value
        {:valid, kind} -> valid(kind, ctx)
      end)

    certainly_bad = for {:junk, kind, v} <- arg_specs, not could_be_valid?(kind, v), do: v
    parent = self()

    {pid, ref} =
      spawn_monitor(fn ->
        result =
          try do
            {:returned, apply(mod, fun, args)}
          rescue
            e -> {:raised, e.__struct__, Exception.message(e) |> String.slice(0, 200)}
          catch
            kind, reason -> {:raised, kind, reason}
          end

        send(parent, {self(), result})
        release(result)
      end)

    receive do
      {^pid, result} ->
        receive do
          {:DOWN, ^ref, :process, ^pid, _} -> :ok
        end

        judge(mod, fun, contract, args, certainly_bad, result)

      {:DOWN, ^ref, :process, ^pid, why} ->
        {:exited, mod, fun, short(args), why}
    after
      @call_timeout_ms ->
        Process.exit(pid, :kill)
        {:hung, mod, fun, short(args)}
    end
  end

  defp release({:returned, {:ok, %{cleanup: cleanup}}}) when is_function(cleanup, 0),
    do: cleanup.()

  defp release(_), do: :ok

  # The documented refusal of a release step is a Mix.Error.
  defp judge(_mod, :build_image, :release, _args, _bad, {:raised, Mix.Error, _}), do: :ok

  defp judge(mod, fun, _contract, args, _bad, {:raised, kind, reason}),
    do: {:raised, mod, fun, short(args), kind, reason}

  defp judge(mod, fun, contract, args, certainly_bad, {:returned, result}) do
    case {contract(contract, result), certainly_bad} do
      {:bad, _} -> {:bad_result, mod, fun, short(args), short(result)}
      {:success, [_ | _]} -> {:accepted_bad_argument, mod, fun, short(args), short(result)}
      _ -> :ok
    end
  end

  defp short(term), do: inspect(term, limit: 8, printable_limit: 80)

  ## Contracts

  defp contract(:ok_tuple, {:ok, _}), do: :success
  defp contract(:ok_atom, :ok), do: :success
  defp contract(:image, image) when is_map(image), do: :success
  defp contract(:loaded, {:ok, %{cleanup: c}}) when is_function(c, 0), do: :success
  defp contract(:release, %Mix.Release{}), do: :success
  defp contract(_, {:error, _}), do: :refused
  defp contract(_, _), do: :bad

  ## Kinds: a valid value, and whether a value could be valid

  defp valid(:image, ctx), do: pick(ctx.images)
  defp valid(:images, ctx), do: pick(ctx.images)
  defp valid(:image_list, ctx), do: [pick(ctx.images)]

  defp valid(:platform_images, ctx),
    do:
      for(
        arch <- ["amd64", "arm64"],
        do: %{pick(ctx.images) | platform: %{os: "linux", architecture: arch}}
      )

  defp valid(:base_ref, ctx), do: "tar://" <> ctx.base
  defp valid(:registry, ctx), do: ctx.registry
  defp valid(:registry_ref, ctx), do: ctx.registry <> "/fuzz/x:1"
  defp valid(:verify_opts, _ctx), do: %{key: public_key_fixture()}
  defp valid(:repo_tag, _ctx), do: "fuzz/app:1"
  defp valid(:repo_tag_or_undefined, _ctx), do: "fuzz/app:1"
  defp valid(:auth, _ctx), do: %{username: "u", password: "p"}
  defp valid(:from_opts, _ctx), do: %{}
  defp valid(:push_opts, _ctx), do: %{chunk_size: 1024}
  defp valid(:layer_opts, _ctx), do: %{compression: :gzip}
  defp valid(:files, _ctx), do: [{"/app/a.txt", "hi\n", 0o644}]
  defp valid(:copy_files, _ctx), do: [{"a.txt", "hi\n"}]
  defp valid(:text, _ctx), do: "x"
  defp valid(:text_list, _ctx), do: ["/bin/sh"]
  defp valid(:text_platform, _ctx), do: "linux/amd64"
  defp valid(:text_platforms, _ctx), do: "linux/amd64,linux/arm64"
  defp valid(:env_map, _ctx), do: %{"A" => "1"}
  defp valid(:port, _ctx), do: 8080
  defp valid(:out_dir, ctx), do: Path.join(ctx.root, "out-#{System.unique_integer([:positive])}")

  defp valid(:out_file, ctx),
    do: Path.join(ctx.root, "out-#{System.unique_integer([:positive])}.tar.gz")

  defp valid(:save_opts, _ctx), do: %{tag: "fuzz:1"}
  defp valid(:tarball, ctx), do: ctx.base
  defp valid(:load_opts, _ctx), do: %{}
  defp valid(:loaded, ctx), do: ctx.loaded

  defp could_be_valid?(kind, v) when kind in [:image, :images],
    do: is_map(v) or is_list(v) or match?({:error, _}, v)

  defp could_be_valid?(kind, v) when kind in [:image_list, :platform_images],
    do: is_list(v) or match?({:error, _}, v)

  defp could_be_valid?(kind, v)
       when kind in [:text, :repo_tag, :registry, :text_platform, :text_platforms],
       do: text?(v)

  defp could_be_valid?(:base_ref, v), do: text?(v) or is_tuple(v)
  defp could_be_valid?(:repo_tag_or_undefined, v), do: text?(v) or v == :undefined
  defp could_be_valid?(kind, v) when kind in [:out_dir, :out_file, :tarball], do: name_all?(v)
  defp could_be_valid?(kind, v) when kind in [:files, :copy_files, :text_list], do: is_list(v)
  defp could_be_valid?(:port, v), do: (is_integer(v) and v in 1..65_535) or text?(v)
  defp could_be_valid?(:mix_release, v), do: is_struct(v, Mix.Release)
  defp could_be_valid?(_map_kind, v), do: is_map(v)

  defp text?(v) when is_binary(v), do: true
  defp text?(v) when is_list(v), do: match?({:ok, _}, :ocibuild_input.text(v))
  defp text?(_), do: false

  # `file:name_all()`: a string, an atom, a binary or a deep list of characters and atoms.
  defp name_all?(v) when is_atom(v) or is_binary(v), do: true
  defp name_all?(v), do: deep_name?(v)

  defp deep_name?([]), do: true
  defp deep_name?([h | t]) when is_atom(h) or (is_integer(h) and h >= 0), do: deep_name?(t)
  defp deep_name?([h | t]) when is_list(h), do: deep_name?(h) and deep_name?(t)
  defp deep_name?(_), do: false

  defp network_kind?(kind), do: kind in [:base_ref, :registry, :registry_ref]

  # A P-256 public key (the core's signing fixtures), for `Ocibuild.verify/3`.
  defp public_key_fixture do
    Path.join([
      __DIR__,
      "..",
      "native",
      "ocibuild_core",
      "tests",
      "fixtures",
      "signing",
      "pkcs8.pub"
    ])
    |> Path.expand()
  end

  ## Junk

  defp junk_pool do
    dead = spawn(fn -> :ok end)

    [
      nil,
      :foo,
      true,
      :undefined,
      0,
      -1,
      Bitwise.bsl(1, 70),
      -Bitwise.bsl(1, 70),
      65_536,
      1.5,
      -0.0,
      [],
      [:a | :b],
      ["x" | "y"],
      [{"/a", "x", 0o644} | :tail],
      ~c"abc",
      [tag: "x:1"],
      [compression: :gzip],
      [[[[[[:x]]]]]],
      {{{{}}}},
      [self()],
      [-1],
      "a\0b",
      <<0>>,
      "/app/\0x",
      <<255, 254, 0>>,
      String.duplicate("a", 300_000),
      %{},
      %{1 => 2},
      %{"k" => self()},
      %{username: 1},
      %{token: [:a | :b]},
      %{"tag" => "x:1"},
      %URI{host: "example.invalid"},
      MapSet.new([1]),
      %{__struct__: :not_a_module},
      self(),
      dead,
      make_ref(),
      fn -> :ok end,
      fn _, _, _ -> :ok end,
      &is_atom/1,
      {},
      {:a, :b, :c},
      {:file, 42},
      {:file, "a\0b"},
      {:ok, 1},
      {:error, :fuzz}
    ]
  end

  defp junk(kind, pool, ctx) do
    candidates = if network_kind?(kind), do: Enum.filter(pool, &network_junk?/1), else: pool

    value =
      case :rand.uniform(6) do
        1 -> Map.new(1..:rand.uniform(3), fn _ -> {pick(@option_keys), pick(pool)} end)
        2 -> [pick(candidates), pick(candidates)]
        3 when kind != :mix_release -> spoil(valid(kind, ctx), pool)
        _ -> pick(candidates)
      end

    if network_kind?(kind) and not network_junk?(value), do: "a\0b", else: value
  end

  # Junk that can never name a host: not text, or text with a NUL byte.
  defp network_junk?(v), do: not text?(v) or (is_binary(v) and String.contains?(v, <<0>>))

  # A valid value with one part spoiled somewhere inside: a key dropped or given junk, a list
  # item spoiled or added, an improper tail, a NUL or a non-UTF-8 byte appended.
  defp spoil(map, pool) when is_map(map) and map_size(map) > 0 do
    key = pick(Map.keys(map))

    case :rand.uniform(3) do
      1 -> Map.delete(map, key)
      _ -> Map.put(map, key, spoil_or_junk(Map.fetch!(map, key), pool))
    end
  end

  defp spoil([_ | _] = list, pool) do
    case :rand.uniform(3) do
      1 -> List.update_at(list, :rand.uniform(length(list)) - 1, &spoil_or_junk(&1, pool))
      2 -> list ++ [pick(pool)]
      3 -> Enum.drop(list, -1) ++ [List.last(list) | pick(pool)]
    end
  end

  defp spoil(tuple, pool) when is_tuple(tuple) and tuple_size(tuple) > 0 do
    i = :rand.uniform(tuple_size(tuple)) - 1
    put_elem(tuple, i, spoil_or_junk(elem(tuple, i), pool))
  end

  defp spoil(bin, _pool) when is_binary(bin), do: bin <> pick([<<0>>, <<255>>])
  defp spoil(_other, pool), do: pick(pool)

  defp spoil_or_junk(value, pool),
    do: if(:rand.uniform(2) == 1, do: spoil(value, pool), else: pick(pool))

  defp pick(list), do: Enum.at(list, :rand.uniform(length(list)) - 1)

  ## Fixtures

  defp image do
    {:ok, image} = Ocibuild.scratch()
    Ocibuild.env(image, %{"A" => "1"})
  end

  # A loopback registry that answers every request with 404 and closes.
  defp start_registry do
    parent = self()

    pid =
      spawn(fn ->
        {:ok, listen} =
          :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, active: false, reuseaddr: true])

        {:ok, port} = :inet.port(listen)
        send(parent, {:registry_port, self(), port})
        accept_loop(listen)
      end)

    receive do
      {:registry_port, ^pid, port} -> {"127.0.0.1:#{port}", pid}
    after
      5_000 -> flunk("the loopback registry did not start")
    end
  end

  defp accept_loop(listen) do
    {:ok, socket} = :gen_tcp.accept(listen)
    handler = spawn(fn -> answer_404(socket) end)
    :ok = :gen_tcp.controlling_process(socket, handler)
    send(handler, :go)
    accept_loop(listen)
  end

  defp answer_404(socket) do
    receive do
      :go -> :ok
    end

    _ = read_head(socket, "")

    _ =
      :gen_tcp.send(
        socket,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
      )

    :gen_tcp.close(socket)
  end

  defp read_head(socket, acc) do
    if String.contains?(acc, "\r\n\r\n") or byte_size(acc) > 65_536 do
      acc
    else
      case :gen_tcp.recv(socket, 0, 5_000) do
        {:ok, more} -> read_head(socket, acc <> more)
        _ -> acc
      end
    end
  end

  defp wait_until(condition, timeout) when timeout <= 0, do: condition.()

  defp wait_until(condition, timeout) do
    if condition.() do
      true
    else
      Process.sleep(100)
      wait_until(condition, timeout - 100)
    end
  end
end
