//! What content is: manifests and their descriptors (`manifest`), and digests with the
//! `Verifier` every byte passes through (`digest`).

pub mod digest;
pub mod manifest;
