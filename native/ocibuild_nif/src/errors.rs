//! Core errors as tagged Erlang reasons, so callers can match on what went wrong:
//!
//! | core `Error`              | Erlang reason                                             |
//! |---------------------------|-----------------------------------------------------------|
//! | `InvalidPath`             | `{invalid_path, Path, empty \| nul_byte \| parent_component \| path_too_long \| component_too_long}` |
//! | `DuplicatePath`           | `{duplicate_path, Path}`                                  |
//! | `InvalidMode`             | `{invalid_mode, Path, Mode}`                              |
//! | `FileRead`                | `{file_read, HostPath, Posix}` (`enoent`, `eacces`, ...)  |
//! | `Io`                      | `{io_error, Context, Message}`                            |
//! | `DigestMismatch`          | `{digest_mismatch, #{expected => D, actual => D}}`        |
//! | `InvalidDigest`           | `{invalid_digest, D}`                                     |
//! | `InvalidPlatform`         | `{invalid_platform, P}`                                   |
//! | `InvalidJson`             | `{invalid_json, What, Why}`                               |
//! | `InvalidLayout`           | `{invalid_layout, Why}`                                   |
//! | `BlobMissing`             | `{blob_missing, Digest}`                                  |
//! | `InvalidOption`           | `{invalid_option, Name, Why}`                             |
//! | `Compression`             | `{compression_failed, Why}`                               |
//! | `InvalidReference`        | `{invalid_reference, Ref}`                                |
//! | `NoMatchingPlatform`      | `{no_matching_platform, #{wanted => P, available => [P]}}` |
//! | `Registry`                | `{registry_error, #{registry, action, status, code, message}}` |
//! | `Unauthorized`            | `{unauthorized, #{registry, scope, status}}`              |
//! | `Http`                    | `{http_error, Registry, Why}`                             |
//! | `Auth`                    | `{auth_error, Registry, Why}`                             |
//! | `Credentials`             | `{credentials_error, Source, Why}`                        |
//! | `UnsupportedMediaType`    | `{unsupported_media_type, MediaType}`                     |
//! | `SignKey`                 | `{sign_key_error, Why}`                                   |
//! | `SignKeyPassword`         | `{sign_key_password, missing \| wrong}`                   |
//! | `TarballNotFound`         | `{tarball_not_found, Path}`                               |
//! | `NotAFile`                | `{not_a_file, Path, directory \| device \| symlink \| other}` |
//! | `PathTraversal`           | `{path_traversal, Name}`                                  |
//! | `AbsolutePath`            | `{absolute_path, Name}`                                   |
//! | `SymlinkNotAllowed`       | `{symlink_not_allowed, Name}`                             |
//! | `NoManifests`             | `{invalid_oci_layout, no_manifests}`                      |
//! | `UnsupportedIndexVersion` | `{unsupported_index_version, V}` (V an integer, else its JSON text) |
//! | `InvalidIndexSchema`      | `{invalid_index_schema, missing_required_fields}`         |
//! | `LoadLimit`               | `{load_limit_exceeded, #{what => Text, limit => N}}`      |
//! | `SpecialFile`             | `{special_file, HostPath, fifo \| socket \| character_device \| block_device \| unknown}` |
//! | `InvalidValue`            | `{invalid_value, Field, Key, nul_byte \| equals_in_name \| empty_name}` |
//! | `Cancelled`               | `{cancelled, What}` (only a dead caller would see it)     |
//! | `Timeout`                 | `{timeout, #{registry, action, phase => headers, limit_ms}}` or `{timeout, #{registry, action, phase => body, min_rate, window_ms}}` |
//! | `Downgrade`               | `{https_downgrade, #{registry, to}}` (`to`: the refused `http://host:port`) |
//! | `InvalidSourceDateEpoch`  | `{invalid_source_date_epoch, Raw}`                        |
//! | `Envelope`                | `{invalid_envelope, Why}`                                 |
//! | `PublicKey`               | `{public_key_error, Why}`                                 |
//!
//! Strings and paths are binaries; `why`/`name` words that form a closed set are atoms.

use std::io;

use ocibuild_core::error::{SignKeyPassword, TimeoutPhase};
use ocibuild_core::Error;
use rustler::{Atom, Encoder, Env, Term};

use crate::atoms;
use crate::terms;

/// The `Reason` of `{error, Reason}` for a core error.
pub fn reason<'a>(env: Env<'a>, err: &Error) -> Term<'a> {
    let text = |s: &str| s.encode(env);
    match err {
        Error::InvalidPath { path, why } => {
            (atoms::invalid_path(), text(path), word(env, why)).encode(env)
        }
        Error::DuplicatePath(path) => (atoms::duplicate_path(), text(path)).encode(env),
        Error::InvalidMode { path, mode } => (atoms::invalid_mode(), text(path), *mode).encode(env),
        Error::FileRead { path, source } => (
            atoms::file_read(),
            terms::encode_path(env, path),
            word(env, posix(source)),
        )
            .encode(env),
        Error::Io { context, source } => {
            (atoms::io_error(), text(context), text(&source.to_string())).encode(env)
        }
        Error::DigestMismatch { expected, actual } => {
            let detail = terms::map(
                env,
                &[
                    (atoms::expected(), text(expected)),
                    (atoms::actual(), text(actual)),
                ],
            );
            (atoms::digest_mismatch(), detail).encode(env)
        }
        Error::InvalidDigest(d) => (atoms::invalid_digest(), text(d)).encode(env),
        Error::InvalidPlatform(p) => (atoms::invalid_platform(), text(p)).encode(env),
        Error::InvalidJson { what, why } => {
            (atoms::invalid_json(), text(what), text(why)).encode(env)
        }
        Error::InvalidLayout(why) => (atoms::invalid_layout(), text(why)).encode(env),
        Error::BlobMissing(d) => (atoms::blob_missing(), text(d)).encode(env),
        Error::InvalidOption { name, why } => {
            (atoms::invalid_option(), word(env, name), text(why)).encode(env)
        }
        Error::Compression(why) => (atoms::compression_failed(), text(why)).encode(env),
        Error::InvalidReference(r) => (atoms::invalid_reference(), text(r)).encode(env),
        Error::NoMatchingPlatform { wanted, available } => {
            let available: Vec<Term> = available.iter().map(|p| text(p)).collect();
            let detail = terms::map(
                env,
                &[
                    (atoms::wanted(), text(wanted)),
                    (atoms::available(), available.encode(env)),
                ],
            );
            (atoms::no_matching_platform(), detail).encode(env)
        }
        Error::Registry {
            registry,
            action,
            status,
            code,
            message,
        } => {
            let code = match code {
                Some(c) => text(c),
                None => atoms::undefined().encode(env),
            };
            let detail = terms::map(
                env,
                &[
                    (atoms::registry(), text(registry)),
                    (atoms::action(), text(action)),
                    (atoms::status(), status.encode(env)),
                    (atoms::code(), code),
                    (atoms::message(), text(message)),
                ],
            );
            (atoms::registry_error(), detail).encode(env)
        }
        Error::Unauthorized {
            registry,
            scope,
            status,
        } => {
            let detail = terms::map(
                env,
                &[
                    (atoms::registry(), text(registry)),
                    (atoms::scope(), text(scope)),
                    (atoms::status(), status.encode(env)),
                ],
            );
            (atoms::unauthorized(), detail).encode(env)
        }
        Error::Http { registry, why } => {
            (atoms::http_error(), text(registry), text(why)).encode(env)
        }
        Error::Auth { registry, why } => {
            (atoms::auth_error(), text(registry), text(why)).encode(env)
        }
        Error::Credentials { source_name, why } => {
            (atoms::credentials_error(), text(source_name), text(why)).encode(env)
        }
        Error::UnsupportedMediaType(m) => (atoms::unsupported_media_type(), text(m)).encode(env),
        Error::SignKey(why) => (atoms::sign_key_error(), text(why)).encode(env),
        Error::SignKeyPassword(why) => {
            let why = match why {
                SignKeyPassword::Missing => "missing",
                SignKeyPassword::Wrong => "wrong",
            };
            (atoms::sign_key_password(), word(env, why)).encode(env)
        }
        Error::TarballNotFound(path) => {
            (atoms::tarball_not_found(), terms::encode_path(env, path)).encode(env)
        }
        Error::NotAFile { path, kind } => (
            atoms::not_a_file(),
            terms::encode_path(env, path),
            word(env, kind),
        )
            .encode(env),
        Error::SpecialFile { path, kind } => (
            atoms::special_file(),
            terms::encode_path(env, path),
            word(env, kind),
        )
            .encode(env),
        Error::PathTraversal(name) => (atoms::path_traversal(), text(name)).encode(env),
        Error::AbsolutePath(name) => (atoms::absolute_path(), text(name)).encode(env),
        Error::SymlinkNotAllowed(name) => (atoms::symlink_not_allowed(), text(name)).encode(env),
        Error::NoManifests => (atoms::invalid_oci_layout(), atoms::no_manifests()).encode(env),
        Error::UnsupportedIndexVersion(v) => {
            let version = match v.as_i64() {
                Some(n) => n.encode(env),
                None => text(&v.to_string()),
            };
            (atoms::unsupported_index_version(), version).encode(env)
        }
        Error::InvalidIndexSchema => (
            atoms::invalid_index_schema(),
            atoms::missing_required_fields(),
        )
            .encode(env),
        Error::LoadLimit { what, limit } => {
            let detail = terms::map(
                env,
                &[
                    (atoms::what(), text(what)),
                    (atoms::limit(), limit.encode(env)),
                ],
            );
            (atoms::load_limit_exceeded(), detail).encode(env)
        }
        Error::InvalidValue { field, key, why } => (
            atoms::invalid_value(),
            word(env, field),
            text(key),
            word(env, why),
        )
            .encode(env),
        Error::Cancelled(what) => (atoms::cancelled(), text(what)).encode(env),
        Error::Timeout {
            registry,
            action,
            phase,
        } => {
            let mut detail = vec![
                (atoms::registry(), text(registry)),
                (atoms::action(), text(action)),
            ];
            let millis = |d: &std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            match phase {
                TimeoutPhase::Headers { limit } => {
                    detail.push((atoms::phase(), atoms::headers().encode(env)));
                    detail.push((atoms::limit_ms(), millis(limit).encode(env)));
                }
                TimeoutPhase::Body { min_rate, window } => {
                    detail.push((atoms::phase(), atoms::body().encode(env)));
                    detail.push((atoms::min_rate(), min_rate.encode(env)));
                    detail.push((atoms::window_ms(), millis(window).encode(env)));
                }
            }
            (atoms::timeout(), terms::map(env, &detail)).encode(env)
        }
        Error::Downgrade { registry, to } => {
            let detail = terms::map(
                env,
                &[(atoms::registry(), text(registry)), (atoms::to(), text(to))],
            );
            (atoms::https_downgrade(), detail).encode(env)
        }
        Error::InvalidSourceDateEpoch(raw) => {
            (atoms::invalid_source_date_epoch(), text(raw)).encode(env)
        }
        Error::Envelope(why) => (atoms::invalid_envelope(), text(why)).encode(env),
        Error::PublicKey(why) => (atoms::public_key_error(), text(why)).encode(env),
    }
}

/// A closed-set word (`empty`, `enoent`, an option name) as an atom. Atom creation only fails
/// for names over 255 bytes, which none of ours are; fall back to a binary rather than panic.
fn word<'a>(env: Env<'a>, s: &str) -> Term<'a> {
    match Atom::from_str(env, s) {
        Ok(atom) => atom.encode(env),
        Err(_) => s.encode(env),
    }
}

/// The POSIX error name Erlang's `file` module would report for this I/O error.
fn posix(err: &io::Error) -> &'static str {
    use io::ErrorKind::*;
    match err.kind() {
        NotFound => "enoent",
        PermissionDenied => "eacces",
        AlreadyExists => "eexist",
        NotADirectory => "enotdir",
        IsADirectory => "eisdir",
        DirectoryNotEmpty => "enotempty",
        ReadOnlyFilesystem => "erofs",
        StorageFull => "enospc",
        QuotaExceeded => "edquot",
        InvalidFilename => "enametoolong",
        CrossesDevices => "exdev",
        TooManyLinks => "emlink",
        FileTooLarge => "efbig",
        ResourceBusy => "ebusy",
        InvalidInput => "einval",
        Interrupted => "eintr",
        _ => "eio",
    }
}
