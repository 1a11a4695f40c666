//! Any string through the reference grammar: no panic, and what parses prints back as typed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocidl::reference::{Defaults, Reference};

fuzz_target!(|input: &str| {
    for ghcr in [false, true] {
        if let Ok(r) = Reference::parse(input, Defaults { ghcr, ..Defaults::default() }) {
            assert_eq!(r.to_string(), input);
            let _ = r.repository().registry().base_url();
            let _ = r.repository().path();
            assert!(!r.repository().last_segment().is_empty());
        }
    }
});
