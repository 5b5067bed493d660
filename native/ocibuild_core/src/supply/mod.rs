//! Supply-chain artifacts attached to an image: the SPDX SBOM, cosign-compatible signatures
//! and the OCI 1.1 referrers that tie them to the image they describe.

pub mod cosign;
pub mod referrers;
pub mod sbom;
pub mod signing;
