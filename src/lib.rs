//! ocidl's modules, by stage. What the user asked becomes settings, settings a reference, the
//! reference a manifest, the manifest descriptors, and each descriptor's bytes take one path:
//!
//! ```text
//! cli + settings -> reference -> pull -> net (manifest) -> content::manifest (descriptors)
//!                                     -> deliver: source -> Verifier -> sink -> disk (files)
//!
//!   sources: a registry or mirror (net), the --cache or an oci: layout (disk::layout)
//!   sinks:   a staged file beside its target (disk::partial), a cache entry, a stream
//! ```
//!
//! Who decides what: `settings` is the only reader of the environment; `net::policy` decides
//! where each secret may go and `net::transport` how long anything may wait; `disk::paths`
//! decides which paths may be written, before the first blob is asked for; `disk::fresh`
//! how a file is opened (made fresh, never through someone's symlink); `deliver` alone when
//! a byte may reach a sink and what a failed source means; `pull` when staged files are
//! renamed into place (a package whole, or not at all); `main` alone prints errors and
//! decides the exit status. Lower modules never use higher ones. The binary is `main.rs`;
//! the library exists so `fuzz/` can reach the parsers.

#![deny(unsafe_code)]

pub mod cli;
pub mod content;
pub mod deliver;
pub mod disk;
pub mod error;
pub mod glob;
pub mod net;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod report;
pub mod settings;
pub mod sys;
pub mod text;
