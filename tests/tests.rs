//! ocidl's integration tests: the built binary against a real registry (distribution 2.8.2,
//! started per test) and a scripted fake server, all on 127.0.0.1.
//!
//! One test crate with modules, so the harness in `support` is compiled once.

mod support;

mod auth;
mod bounds;
mod credentials;
mod display;
mod faults;
mod harness;
mod hostile_text;
mod index;
mod inputs;
mod install;
mod interrupt;
mod layout;
mod mirrors;
mod network;
mod output;
mod pinned;
mod pipeline;
mod pipeline_attacks;
mod planted;
mod policy;
mod proxies;
mod pull;
mod redirect;
mod reference;
mod select;
mod sha512;
mod stdout;
mod titles;
mod tls;
mod token;
