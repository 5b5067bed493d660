//! Sinks and sources by medium: an OCI image layout as a directory, and as a (gzipped) tarball
//! that podman, skopeo and docker load; plus reading a saved tarball back for a later push.

pub mod directory;
pub mod load;
pub mod tarball;

pub use directory::export_directory;
pub use load::{load_tarball, LoadedImage, LoadedTarball};
pub use tarball::{save_tarball, SaveFormat, SaveOptions};
