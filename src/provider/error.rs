//! Why a Mount failed, in words a pod's events can show: what is wrong and what to change,
//! never a token or a secret value. Which gRPC code each failure is, is decided at the edge
//! (`server/status.rs`).

use crate::stages::plan::PlanError;
use crate::stages::render::RenderError;
use crate::stages::template::TemplateError;
use crate::text::quote;
use crate::vault::VaultError;

/// Why a Mount failed: one variant per stage and cause, each message what is wrong and
/// what to change.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The request itself: a class parameter, an object, or a driver field is wrong.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// No service-account token for the audience, and none could be requested.
    #[error(
        "no service-account token for audience {} was passed by the driver {reason}: list the audience under tokenRequests in the CSIDriver object, or set audience in the SecretProviderClass to one that is listed",
        quote(.audience)
    )]
    NoToken { audience: String, reason: String },
    /// The operator's limits refuse something the class asks for.
    #[error("{0}")]
    Policy(#[from] crate::stages::policy::Refused),
    /// The Kubernetes API refused or failed the TokenRequest for the pod.
    #[error("cannot get a service-account token for the pod: {0}")]
    TokenRequest(#[source] crate::kube::KubeError),
    /// The connection to Vault could not be set up (address, TLS files).
    #[error("{0}")]
    Connection(#[source] VaultError),
    /// Vault refused or failed the login with the pod's token.
    #[error("{source}{}", login_hint(.source, .role, .mount))]
    Login {
        role: String,
        mount: String,
        #[source]
        source: VaultError,
    },
    /// Vault refused or failed a read of one or more objects.
    #[error("{}: {source}{}", names(.objects), read_hint(.source))]
    Read {
        objects: Vec<String>,
        #[source]
        source: VaultError,
    },
    /// An object's file could not be made from Vault's answer.
    #[error("object {}: {source}", quote(.object))]
    Render {
        object: String,
        #[source]
        source: RenderError,
    },
    /// A template object's file could not be rendered.
    #[error("object {}: {source}", quote(.object))]
    Template {
        object: String,
        #[source]
        source: TemplateError,
    },
    /// The caller's deadline passed before the Mount finished.
    #[error(
        "the mount did not finish before the caller's deadline ({0}); Vault may be slow or overloaded"
    )]
    Deadline(String),
    /// The files are more than the driver accepts in one answer.
    #[error(
        "the volume's files come to {size} bytes, more than the {limit} the driver accepts: split the class, or raise the driver's --max-call-recv-msg-size and this provider's -max-response-size together"
    )]
    TooLarge { size: usize, limit: usize },
    /// Large requests are using the whole memory budget for them: the driver calls again.
    #[error(
        "the provider is working on as many large Mount requests as its memory budget allows; the driver will call again"
    )]
    Busy,
    /// Something that cannot happen did; the message says what.
    #[error("internal error: {0}; please report it")]
    Internal(String),
}

fn names(objects: &[String]) -> String {
    let mut quoted: Vec<String> = objects.iter().take(5).map(|o| quote(o)).collect();
    if objects.len() > 5 {
        quoted.push(format!("and {} more", objects.len() - 5));
    }
    let noun = if objects.len() == 1 {
        "object"
    } else {
        "objects"
    };
    format!("{noun} {}", quoted.join(", "))
}

fn login_hint(e: &VaultError, role: &str, mount: &str) -> String {
    match e {
        VaultError::Status {
            status: 400 | 403, ..
        } => format!(
            " (check that role {} exists on auth mount {} and binds this pod's service account, namespace and token audience)",
            quote(role),
            quote(mount)
        ),
        VaultError::Status { status: 404, .. } => format!(
            " (is an auth method enabled at {}? set vaultAuthMountPath or -vault-mount)",
            quote(mount)
        ),
        _ => String::new(),
    }
}

fn read_hint(e: &VaultError) -> &'static str {
    match e {
        VaultError::Status { status: 403, .. } => {
            " (the role's Vault policies must allow this path and method)"
        }
        VaultError::Status { status: 404, .. } => {
            " (check secretPath, and that the secret exists; KV v2 paths have data/ after the mount, e.g. secret/data/app)"
        }
        _ => "",
    }
}
