//! Secrets Store CSI driver provider for HashiCorp Vault and OpenBao.
//!
//! Where a Mount goes, and which module owns each step (each folder's `mod.rs` says more):
//!
//! ```text
//! cli/        the command line: the server, `mount` (what would my pod get?), `check`
//!             (classes validated offline), `version`, `help` (help.rs)
//! proto.rs    the provider API's messages, generated from proto/service.proto
//! server/     Unix sockets, HTTP/2, shutdown; the health listener (health.rs);
//!             old drivers' :authority fixed on the wire (authority/);
//!             gRPC Version and Mount (service.rs); every outcome to a status (status.rs)
//! provider/   the Mount pipeline, in order (mod.rs):
//!   1 plan      request → typed, validated plan; the operator's limits   (stages/plan, policy)
//!   2 identity  service-account token → the identity's Vault token       (token.rs, identity.rs)
//!   3 fetch     every distinct read once, in parallel; leases reused      (fetch.rs, reuse.rs)
//!   4 respond   files rendered, templates, versions: the whole volume     (respond.rs)
//!             beside it: the version key (keys.rs), leases renewed and revoked with their
//!             pods (lifecycle/), why a Mount failed (error.rs)
//! stages/     the pure stages: plan/, policy, answer, render, template/, version/ (go/:
//!             the Go provider's versions), flavour, gojson; manifest (classes for `check`)
//! vault/      Vault over HTTP: clients and clusters, failover, retries, answers
//! kube/       the Kubernetes API: configuration, TokenRequest and Secrets, this node's pods
//! settings/   flags and environment, read once into typed settings
//! metrics/    Prometheus metrics; logs.rs, tls.rs: logging, TLS to Vault
//! text.rs, address.rs, goflag.rs, secret.rs: leaves every layer shares
//! ```
//!
//! Imports only go down this list: the stages import nothing of gRPC, Tokio, HTTP or
//! metrics, and nothing imports the server or the command line but `main.rs`.
#![forbid(unsafe_code)]

mod address;
mod cli;
mod goflag;
mod kube;
mod logs;
mod metrics;
mod provider;
mod secret;
mod server;
mod settings;
mod stages;
mod text;
mod tls;
mod vault;

pub mod proto;

// What the binary and the tests use, and nothing more.
pub use cli::class::driver_request;
pub use cli::client::connect;
pub use cli::main;
pub use server::authority::FrameRewriter;
pub use stages::version::go::{Flavour, GoSecret, GoValue, go_secrets};
pub use stages::version::{go_object_version, own_object_version};
pub use text::rfc3339;
pub use tls::install_crypto_provider;
