//! ocibuild_core: everything ocibuild knows about OCI images, with no BEAM in sight.
//!
//! The model follows go-containerregistry: an [`image::Image`] is a value made of a base, layers,
//! config overrides, annotations and a platform; its config, manifest and digest are derived from
//! those parts when a sink (a layout directory, a tarball, a registry) needs them.
//!
//! ```no_run
//! use ocibuild_core::{blob_store::BlobStore, layer::{self, Content, FileEntry, LayerOptions}};
//! let store = BlobStore::open("/tmp/ocibuild-blobs")?;
//! let files = vec![FileEntry::new("/app/hello.txt", Content::Bytes(b"hi\n".to_vec()), 0o644)];
//! let built = layer::build_layer(&files, &LayerOptions::default(), &store)?;
//! println!("{} {}", built.digest, built.diff_id);
//! # Ok::<(), ocibuild_core::Error>(())
//! ```

pub mod blob_store;
pub mod credentials;
pub mod digest;
pub mod error;
pub mod image;
pub mod layer;
pub mod layout;
pub mod media_types;
pub mod options;
pub mod reference;
pub mod registry;
pub mod reproducible;
pub mod supply;
pub mod tag_list;

#[cfg(test)]
mod special_files_testing;

pub use error::{Error, Result};
