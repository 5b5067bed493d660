//! Supply-chain artifacts attached to an image: the SPDX SBOM, cosign-compatible signatures,
//! SLSA provenance (`provenance`, signed as DSSE, the `.att` image in `attestation`) and the
//! OCI 1.1 referrers that tie them to the image they describe; `vcs_url` cleans the
//! repository URLs both the SBOM and the source annotation publish.

pub mod attestation;
pub mod cosign;
pub mod dsse;
pub mod provenance;
pub mod referrers;
pub mod sbom;
pub mod signing;
pub mod vcs_url;
pub mod verify;
