//! ocidl's modules, one concern each. Data flows one way:
//! `cli` (args) -> `reference` -> `registry` + `manifest` -> descriptors -> `store` (verified files),
//! driven by `pull`. `registry` speaks the protocol over `transport` (HTTP, bounds) and asks
//! `policy` where each secret may go; `text` escapes what a server sent before it is printed. Lower modules never use higher ones: `reference` knows no HTTP, `store`
//! takes any `Read`. The binary is `main.rs`; the library exists so `fuzz/` can reach the parsers.

#![deny(unsafe_code)]

pub mod auth;
pub mod body;
pub mod cli;
pub mod credentials;
pub mod digest;
pub mod download;
pub mod error;
pub mod fetch;
pub mod glob;
pub mod layout;
pub mod manifest;
pub mod mirrors;
pub mod paths;
pub mod policy;
pub mod progress;
pub mod proxy;
pub mod pull;
pub mod reference;
pub mod registries_conf;
pub mod registry;
pub mod report;
pub mod retry;
pub mod store;
pub mod sys;
pub mod text;
pub mod transport;
