//! Atoms used as map keys, tags and option values on the Erlang side.

rustler::atoms! {
    ok,
    error,
    undefined,
    none,
    file,

    // layer map
    media_type,
    digest,
    diff_id,
    size,
    blob,
    layer_type,

    // image map
    base,
    layers,
    config,
    annotations,
    platform,
    os,
    architecture,
    variant,
    reference,
    manifest,
    manifest_digest,
    config_digest,

    // config overrides
    entrypoint,
    cmd,
    env,
    workdir,
    exposed_ports,
    labels,
    user,

    // options
    compression,
    mtime,
    store,
    tag,
    format,
    created,
    docker,
    oci,

    // loaded tarball
    images,
    is_multi_platform,

    // error tags
    invalid_path,
    duplicate_path,
    invalid_mode,
    file_read,
    io_error,
    digest_mismatch,
    expected,
    actual,
    invalid_digest,
    invalid_platform,
    invalid_json,
    invalid_layout,
    blob_missing,
    invalid_option,
    compression_failed,
}
