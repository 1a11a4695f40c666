//! Talking to registries and mirrors: which sources a repository has (`mirrors`, read from
//! `registries_conf`), the protocol (`registry`), where each secret may go (`policy`, with
//! `auth` and `credentials` finding them), and HTTP itself (`transport`, `body`, `proxy`,
//! `retry`), which bounds every wait; `pipeline` sends a package's blob requests on one
//! connection and `http1` reads their answers.

pub mod auth;
pub mod body;
pub mod credentials;
pub mod http1;
pub mod mirrors;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod registries_conf;
pub mod registry;
pub mod retry;
pub mod transport;
