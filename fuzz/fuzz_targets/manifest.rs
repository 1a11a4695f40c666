//! Any manifest body, with or without a Content-Type: no panic; an index picks or refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocidl::content::manifest::{Manifest, Platform};

fuzz_target!(|data: &[u8]| {
    for content_type in [
        None,
        Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    ] {
        if let Ok(Manifest::Index { manifests }) = Manifest::parse(content_type, data) {
            let _ = Platform::host().select(&manifests);
            let _ = "linux/arm64/v8"
                .parse::<Platform>()
                .unwrap()
                .select(&manifests);
        }
    }
});
