//! The Kubernetes API, through kube-rs:
//!
//! - `config.rs`: where the API is and who we are there (kubeconfig, in-cluster);
//! - `client.rs`: the calls a Mount may make: TokenRequest (a service-account token for a
//!   pod the driver sent none for), Secret get and create (the key of object versions);
//! - `pods.rs`: the one list and watch of this node's pods;
//! - this file: [`KubeError`], what can go wrong.

mod client;
mod config;
mod pods;

pub use client::KubeClient;
pub use config::KubeConfig;
pub use pods::{NodePods, PodState};

/// A failure talking to the Kubernetes API. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig or in-cluster configuration cannot be used.
    #[error("Kubernetes configuration {source_name}: {detail}")]
    Config { source_name: String, detail: String },
    /// No answer from the Kubernetes API.
    #[error("cannot reach the Kubernetes API at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    /// The Kubernetes API answered with an error status; its message is kept.
    #[error("the Kubernetes API refused to {action}: {message}{hint}")]
    Status {
        action: String,
        status: u16,
        reason: String,
        message: String,
        hint: String,
    },
    /// The Kubernetes API answered, but not with what the call needs.
    #[error("the Kubernetes API's answer to {action} is not usable: {detail}")]
    BadAnswer { action: String, detail: String },
}

impl KubeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            KubeError::Unreachable { .. } => true,
            KubeError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
