//! Why a Mount failed, and the one place where that becomes a gRPC status.
//!
//! The driver shows the status message verbatim in the pod's events, and retries only
//! `UNAVAILABLE`; so messages say what is wrong and what to change, never carry a token or a
//! secret value, and `UNAVAILABLE` is used exactly for a Vault that is unreachable, sealed or
//! failing with 5xx after our own retries.

use crate::stages::plan::PlanError;
use crate::stages::render::RenderError;
use crate::stages::template::TemplateError;
use crate::text::{MAX_MESSAGE, cap, quote};
use crate::vault::VaultError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error(
        "no service-account token for audience {} was passed by the driver {reason}: list the audience under tokenRequests in the CSIDriver object, or set audience in the SecretProviderClass to one that is listed",
        quote(.audience)
    )]
    NoToken { audience: String, reason: String },
    #[error("{0}")]
    Policy(#[from] crate::stages::policy::Refused),
    #[error("cannot get a service-account token for the pod: {0}")]
    TokenRequest(crate::kube::KubeError),
    #[error("{0}")]
    Connection(VaultError),
    #[error("{source}{}", login_hint(.source, .role, .mount))]
    Login {
        role: String,
        mount: String,
        #[source]
        source: VaultError,
    },
    #[error("{}: {source}{}", names(.objects), read_hint(.source))]
    Read {
        objects: Vec<String>,
        #[source]
        source: VaultError,
    },
    #[error("object {}: {source}", quote(.object))]
    Render {
        object: String,
        #[source]
        source: RenderError,
    },
    #[error("object {}: {source}", quote(.object))]
    Template {
        object: String,
        #[source]
        source: TemplateError,
    },
    #[error(
        "the mount did not finish before the caller's deadline ({0}); Vault may be slow or overloaded"
    )]
    Deadline(String),
    #[error(
        "the volume's files come to {size} bytes, more than the {limit} the driver accepts: split the class, or raise the driver's --max-call-recv-msg-size and this provider's -max-response-size together"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "the provider is working on as many large Mount requests as its memory budget allows; the driver will call again"
    )]
    Busy,
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

fn vault_code(e: &VaultError) -> Code {
    match e {
        e if e.is_transient() => Code::Unavailable,
        VaultError::Status {
            status: 401 | 403, ..
        } => Code::PermissionDenied,
        VaultError::Status { status: 404, .. } => Code::NotFound,
        VaultError::Status { status: 400, .. } => Code::InvalidArgument,
        VaultError::Deadline { .. } => Code::DeadlineExceeded,
        _ => Code::FailedPrecondition,
    }
}

impl MountError {
    pub fn code(&self) -> Code {
        match self {
            MountError::Plan(PlanError::TokenMismatch { .. }) => Code::PermissionDenied,
            MountError::Plan(_) => Code::InvalidArgument,
            MountError::Policy(_) => Code::PermissionDenied,
            MountError::NoToken { .. } => Code::FailedPrecondition,
            MountError::TokenRequest(e) if e.is_transient() => Code::Unavailable,
            MountError::TokenRequest(e) => match e.status() {
                Some(401 | 403) => Code::PermissionDenied,
                Some(404) => Code::NotFound,
                _ => Code::FailedPrecondition,
            },
            MountError::Connection(e) => vault_code(e),
            MountError::Login { source, .. } => match vault_code(source) {
                Code::InvalidArgument => Code::PermissionDenied,
                c => c,
            },
            MountError::Read { source, .. } => vault_code(source),
            MountError::Render { source, .. } => match source {
                RenderError::KeyMissing { .. }
                | RenderError::NoData { .. }
                | RenderError::PointerMissing { .. }
                | RenderError::IndexOutOfRange { .. }
                | RenderError::NoKeys { .. } => Code::NotFound,
                RenderError::UnsafeKey { .. } => Code::InvalidArgument,
                RenderError::TooManyKeys { .. } => Code::ResourceExhausted,
                RenderError::NotAMap { .. } | RenderError::Decode { .. } => {
                    Code::FailedPrecondition
                }
            },
            MountError::Template { source, .. } => match source {
                TemplateError::TooLong(_)
                | TemplateError::Syntax { .. }
                | TemplateError::Unknown { .. } => Code::InvalidArgument,
                TemplateError::Undefined { .. } => Code::NotFound,
                TemplateError::Limit { .. } => Code::ResourceExhausted,
                TemplateError::Render { .. } => Code::FailedPrecondition,
            },
            MountError::Deadline(_) => Code::DeadlineExceeded,
            MountError::TooLarge { .. } => Code::ResourceExhausted,
            MountError::Busy => Code::Unavailable,
            MountError::Internal(_) => Code::Internal,
        }
    }

    /// The status the driver shows in the pod's events: the code and a message of at most
    /// [`MAX_MESSAGE`] bytes (the driver's gRPC metadata is far smaller than what a tenant
    /// can send, and a message the client drops tells the user nothing).
    pub fn to_status(&self) -> Status {
        Status::new(
            self.code(),
            cap(&format!("vault-csi-provider: {self}"), MAX_MESSAGE),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_retry_only_what_can_recover() {
        let unreachable = VaultError::Unreachable {
            address: "http://v".into(),
            detail: "refused".into(),
            hint: "",
        };
        assert_eq!(
            MountError::Connection(unreachable).code(),
            Code::Unavailable
        );
        let denied = VaultError::Status {
            what: "x".into(),
            status: 403,
            message: "permission denied".into(),
        };
        let e = MountError::Read {
            objects: vec!["a".into()],
            source: denied,
        };
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.to_status().message().contains("permission denied"));
        let bad_role = VaultError::Status {
            what: "login".into(),
            status: 400,
            message: "invalid role name".into(),
        };
        let e = MountError::Login {
            role: "r".into(),
            mount: "kubernetes".into(),
            source: bad_role,
        };
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e.to_string().contains("invalid role name"));
        let five = VaultError::Status {
            what: "x".into(),
            status: 502,
            message: "bad gateway".into(),
        };
        assert_eq!(
            MountError::Read {
                objects: vec![],
                source: five
            }
            .code(),
            Code::Unavailable
        );
        assert_eq!(
            MountError::Plan(PlanError::MissingRole).code(),
            Code::InvalidArgument
        );
    }
}
