//! ocidl's modules, one concern each. Data flows one way:
//! `cli` (args) -> `reference` -> `registry` + `manifest` -> descriptors -> `store` (verified files),
//! driven by `pull`. `registry` speaks the protocol over `transport` (HTTP, bounds) and asks
//! `policy` where each secret may go; `text` escapes what a server sent before it is printed. Lower modules never use higher ones: `reference` knows no HTTP, `store`
//! takes any `Read`. The binary is `main.rs`; the library exists so `fuzz/` can reach the parsers.

#![deny(unsafe_code)]

pub mod cli;
pub mod content;
pub mod disk;
pub mod download;
pub mod error;
pub mod fetch;
pub mod glob;
pub mod net;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod report;
pub mod sys;
pub mod text;
