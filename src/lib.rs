//! Secrets Store CSI driver provider for HashiCorp Vault and OpenBao.
//!
//! Where a Mount goes, and which module owns each step:
//!
//! ```text
//! server    Unix sockets, HTTP/2, shutdown            (server.rs, health.rs)
//!           old drivers' :authority fixed on the wire (authority/)
//! service   gRPC Version/Mount, deadline, status      (service.rs, error.rs)
//! provider  the pipeline below, in order              (provider.rs)
//!   plan      request → typed, validated plan; pure   (plan.rs)
//!   identity  service-account token → Vault token     (identity.rs, kube.rs → vault/)
//!             (single-flight login, renewal, reuse)
//!   fetch     distinct reads, in parallel, once each  (provider.rs → vault/, reuse.rs)
//!             (coalescing, per-pod lease reuse)
//!   render    secretKey, selector, allKeys, encodings,  (render.rs, response.rs)
//!             whole JSON; then templates; pure        (template.rs)
//!   version   HMAC object versions; pure              (version.rs, keys.rs)
//! ```
//!
//! Settings come from flags and environment once at start (`settings.rs`, `flags.rs`);
//! the `mount` subcommand (`cli/mount.rs`) runs the same pipeline for one class.
#![forbid(unsafe_code)]

pub mod address;
pub mod authority;
pub mod cli;
pub mod client;
pub mod error;
pub mod goflag;
pub mod health;
pub mod identity;
pub mod keys;
pub mod kube;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod provider;
pub mod reuse;
pub mod secret;
pub mod server;
pub mod service;
pub mod settings;
pub mod stages;
pub mod text;
pub mod tls;
pub mod vault;

/// Generated from `proto/service.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("v1alpha1");
}
