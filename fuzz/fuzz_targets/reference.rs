//! Any string through the reference grammar (every form users paste: `oci://`, API URLs,
//! `oci:PATH` layouts): no panic, and what parses prints back as typed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocidl::reference::{Defaults, Reference};

fuzz_target!(|input: &str| {
    for ghcr in [false, true] {
        if let Ok(r) = Reference::parse(
            input,
            Defaults {
                ghcr,
                ..Defaults::default()
            },
        ) {
            assert_eq!(r.to_string(), input);
            let _ = (r.name(), r.tag_defaulted());
            assert!(!r.file_name().is_empty());
            // A layout (`oci:PATH`) has no repository; a registry reference always does.
            if let Some(repository) = r.repository() {
                let _ = repository.registry().base_url();
                let _ = repository.path();
                assert!(!repository.last_segment().is_empty());
            }
        }
    }
});
