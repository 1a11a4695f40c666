//! Where bytes land: which paths may be written (`paths`), the temporary files a download
//! goes through (`store`), and OCI image layouts, the cache and `oci:` sources (`layout`).

pub mod layout;
pub mod paths;
pub mod store;
