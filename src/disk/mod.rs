//! Where bytes land: which paths may be written (`paths`), how files are opened (`fresh`:
//! made fresh, or read without following a symlink), the temporary files a blob is written
//! into and staged in (`partial`), and OCI image layouts, the cache and `oci:` sources
//! (`layout`).

pub mod fresh;
pub mod layout;
pub mod partial;
pub mod paths;
