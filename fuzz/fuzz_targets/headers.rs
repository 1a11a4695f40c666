//! Any Content-Range or Retry-After value: no panic, and a range that parses is ordered.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use ocidl::net::registry::parse_content_range;
use ocidl::net::retry::parse_retry_after;

fuzz_target!(|input: &str| {
    if let Some(range) = parse_content_range(input) {
        assert!(range.start <= range.end);
        assert!(range.total.is_none_or(|t| range.end < t));
    }
    let _ = parse_retry_after(input, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
});
