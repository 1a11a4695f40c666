//! Any WWW-Authenticate value, and any token answer: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocidl::net::auth::{parse_token, token_url, Challenge};

fuzz_target!(|input: &str| {
    if let Some(Challenge::Bearer {
        realm,
        service,
        scope,
    }) = Challenge::parse(input)
    {
        let _ = token_url(&realm, service.as_deref(), scope.as_deref().unwrap_or("s"));
    }
    let _ = parse_token(input.as_bytes());
});
