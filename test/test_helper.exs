# Each test run gets a private blob store and no SOURCE_DATE_EPOCH, so tests never write into
# the repository or depend on the caller's environment.
cache = Path.join(System.tmp_dir!(), "ocibuild-exunit-#{System.unique_integer([:positive])}")
System.put_env("OCIBUILD_CACHE_DIR", cache)
System.delete_env("SOURCE_DATE_EPOCH")
ExUnit.after_suite(fn _ -> File.rm_rf!(cache) end)
ExUnit.start()
