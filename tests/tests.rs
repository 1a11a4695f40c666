//! ocidl's integration tests: the built binary against a real registry (distribution 2.8.2,
//! started per test) and a scripted fake server, all on 127.0.0.1.
//!
//! One test crate with modules, so the harness in `support` is compiled once.

mod support;

mod auth;
mod credentials;
mod display;
mod faults;
mod harness;
mod index;
mod install;
mod interrupt;
mod network;
mod output;
mod proxies;
mod pull;
mod redirect;
mod reference;
mod select;
mod tls;
mod token;
