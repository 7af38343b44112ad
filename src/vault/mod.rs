//! Vault I/O: logins and reads over HTTP, with failover and retries inside the caller's
//! deadline.
//!
//! - `pool.rs`: the HTTP clients (one connection pool per transport and TLS setting) and
//!   the cluster states, shared by every Mount;
//! - `cluster.rs`: the routing state of one cluster (address list): preferred node,
//!   cool-downs, the bound on requests in flight;
//! - `client.rs`: a [`VaultClient`], one cluster as seen by one Mount: login, renewal, read;
//! - `send.rs`: which node a request goes to, failover, retries and rate limits;
//! - `answers.rs`: bodies, statuses and Vault's error text.

mod answers;
mod client;
mod cluster;
mod pool;
mod send;

pub use answers::{Budget, MAX_LEASE_SECS};
pub use client::{VaultClient, VaultToken, plain_lease_id};
pub use pool::ClientPool;
pub use send::MAX_RATE_LIMIT_WAITS;

use crate::settings::{TlsSettings, VaultSettings};
use crate::stages::plan::ConnectionOverrides;
use std::time::Duration;

/// A failure talking to Vault. Messages keep Vault's own error text and never carry tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    /// No connection to Vault (refused, DNS, network), after the retries.
    #[error("cannot reach Vault at {address}: {detail}{hint}")]
    Unreachable {
        address: String,
        detail: String,
        hint: &'static str,
    },
    /// Vault did not answer within `VAULT_CLIENT_TIMEOUT`.
    #[error("Vault at {address} did not answer within {timeout:?} (VAULT_CLIENT_TIMEOUT)")]
    Timeout { address: String, timeout: Duration },
    /// Vault is sealed.
    #[error("Vault at {address} is sealed: unseal it, the mount will be retried")]
    Sealed { address: String },
    /// Vault kept answering 429 after the waits it asked for.
    #[error(
        "Vault at {address} is rate limiting requests (HTTP 429: {message}) and still was after waiting as long as it asked (at most {MAX_RATE_LIMIT_WAITS} times, 5 s each): the requests are over a rate-limit quota (sys/quotas/rate-limit); the mount will be retried, raise the quota if this lasts"
    )]
    RateLimited { address: String, message: String },
    /// Every node of a cluster failed; each one's reason is listed.
    #[error("no Vault node could serve {what}: {}", .nodes.join("; "))]
    Nodes { what: String, nodes: Vec<String> },
    /// Vault answered with an error status; its own text is kept.
    #[error("Vault answered {what} with HTTP {status}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    /// Vault answered, but not with what the request needs.
    #[error("Vault's answer to {what} is not usable: {detail}")]
    BadAnswer { what: String, detail: String },
    /// The Mount's deadline passed while waiting on Vault.
    #[error("the mount's deadline passed while {what}")]
    Deadline { what: String },
    /// The HTTP client for the connection could not be built.
    #[error("cannot set up the connection to Vault: {0}")]
    Setup(String),
    /// Large answers are using the whole memory budget for them.
    #[error(
        "the provider is reading as many large Vault answers as its memory budget allows; the mount will be retried"
    )]
    Busy,
    /// TLS with Vault failed (certificate, name, client certificate).
    #[error("TLS with Vault at {address} failed: {detail}{hint}")]
    Tls {
        address: String,
        detail: String,
        hint: &'static str,
    },
}

impl VaultError {
    /// Whether retrying later could succeed: Vault unreachable, sealed, rate limiting, or
    /// failing with 5xx (on every node).
    pub fn is_transient(&self) -> bool {
        match self {
            VaultError::Unreachable { .. }
            | VaultError::Timeout { .. }
            | VaultError::Sealed { .. }
            | VaultError::RateLimited { .. }
            | VaultError::Busy
            | VaultError::Nodes { .. } => true,
            VaultError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Connection settings of one Mount: process settings with the class's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    /// One address, or a comma-separated list of the nodes of one cluster.
    pub address: String,
    pub namespace: Option<String>,
    pub tls: TlsSettings,
    pub timeout: Duration,
    pub max_retries: u32,
}

impl Connection {
    /// Class parameters win over flags, which won over the environment in `Settings`.
    /// Skip-verify can only be turned on; the CA file wins over the CA directory.
    pub fn resolve(base: &VaultSettings, o: &ConnectionOverrides) -> Self {
        let mut tls = base.tls.clone();
        if o.ca_cert.is_some() || o.ca_directory.is_some() {
            tls.ca_cert = o.ca_cert.clone();
            tls.ca_directory = o.ca_directory.clone();
        }
        if let Some(name) = &o.server_name {
            tls.server_name = Some(name.clone());
        }
        if o.client_cert.is_some() {
            tls.client_cert = o.client_cert.clone();
            tls.client_key = o.client_key.clone();
        }
        tls.skip_verify = tls.skip_verify || o.skip_verify == Some(true);
        Connection {
            address: o.address.clone().unwrap_or_else(|| base.address.clone()),
            namespace: o
                .namespace
                .clone()
                .or_else(|| base.namespace.clone())
                .filter(|n| !n.is_empty()),
            tls,
            timeout: base.timeout,
            max_retries: base.max_retries,
        }
    }

    /// The node addresses of [`Connection::address`].
    pub fn nodes(&self) -> Vec<&str> {
        crate::address::split_nodes(&self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_overrides_win_and_skip_verify_only_turns_on() {
        let base = VaultSettings {
            address: "https://a".into(),
            auth_mount: "kubernetes".into(),
            namespace: Some("ns1".into()),
            tls: TlsSettings {
                skip_verify: true,
                ..Default::default()
            },
            timeout: Duration::from_secs(60),
            max_retries: 2,
        };
        let o = ConnectionOverrides {
            address: Some("https://b".into()),
            namespace: Some("ns2".into()),
            skip_verify: Some(false),
            ..Default::default()
        };
        let c = Connection::resolve(&base, &o);
        assert_eq!(c.address, "https://b");
        assert_eq!(c.namespace.as_deref(), Some("ns2"));
        assert!(c.tls.skip_verify);
    }
}
