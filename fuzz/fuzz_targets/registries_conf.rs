//! Any text as a registries.conf: no panic; what is refused names its line; what is read
//! answers for any repository without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ocidl::net::mirrors::Mirrors;
use ocidl::reference::{Defaults, Reference};

fuzz_target!(|input: &str| {
    match Mirrors::from_text(input, Path::new("fuzz.conf")) {
        Ok(mirrors) => {
            for name in [
                "ghcr.io/pkgforge/x:1",
                "docker.io/library/a",
                "127.0.0.1:5000/a/b",
            ] {
                let r = Reference::parse(name, Defaults::default()).unwrap();
                for by_digest in [false, true] {
                    if let Ok(sources) = mirrors.sources(r.repository().unwrap(), by_digest) {
                        assert!(!sources.is_empty());
                        assert!(!sources.last().unwrap().mirror);
                    }
                }
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.conf: line "), "{e}"),
    }
});
