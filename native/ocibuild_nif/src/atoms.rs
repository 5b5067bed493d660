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

    // registry jobs
    ocibuild_job,
    progress,
    done,
    internal_error,
    platforms,
    cache_dir,
    max_concurrency,
    chunk_size,
    index,
    registry,
    repository,
    repo_tag,
    tags,
    auth,
    source,
    username,
    password,
    token,
    uploaded_bytes,
    uploaded,
    existing,
    mounted,
    phase,
    bytes_received,
    bytes_sent,
    total_bytes,

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
    invalid_reference,
    no_matching_platform,
    wanted,
    available,
    registry_error,
    status,
    code,
    message,
    action,
    unauthorized,
    scope,
    http_error,
    auth_error,
    credentials_error,
    unsupported_media_type,
    sign_key_error,
    // supply chain
    sboms, sign, pem, attached, referrers, subject, api, signature_tag,
    name, version, tool, dependencies, otp_apps, erts_version, otp_version,
    sign_key_password,
    // tarball loading (0.10's error terms, and the bounds on untrusted tarballs)
    tarball_not_found, not_a_file, path_traversal, absolute_path, symlink_not_allowed,
    invalid_oci_layout, no_manifests, unsupported_index_version, invalid_index_schema,
    missing_required_fields, load_limit_exceeded, what, limit, handle, extract_dir,
    // input validation
    special_file, invalid_value,
    cancelled,
    // registry timeouts and refused downgrades
    timeout, headers, body, limit_ms, min_rate, window_ms, https_downgrade, to,
    // the SBOM's app location
    revision,
    // image tags refused by the reference grammar (reference_tags)
    invalid_tag,
    // a repository URL nobody else can fetch (vcs_url_normalize)
    not_public,
    // SOURCE_DATE_EPOCH (reproducible_epoch)
    invalid_source_date_epoch,
    invalid_envelope,
    public_key_error,
    // a loaded tarball layer's blob (0.10's key)
    path,
    // layer build progress (layer_create's `progress` pid)
    ocibuild_layer_progress, bytes_read,
    // SLSA provenance (push option `provenance`, report `attached.provenance`)
    provenance, base_image, tool_version, internal_parameters, started_on, source_date_epoch,
    sha256, ci, statement, referrer, attestation_tag,
    // the layer cache and the blob store's GC (layer_create options, blob_store_gc)
    layer_cache, max_age, max_size, grace, interval, removed, freed_bytes, kept, kept_bytes,
    not_due,
}
