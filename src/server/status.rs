//! The one place where a Mount's outcome becomes what the driver receives: a failure's
//! gRPC status (its code, and a message of at most 1 KiB), a volume's `MountResponse`.
//!
//! The driver shows the status message verbatim in the pod's events. Its gRPC client
//! re-sends a call at once only on `UNAVAILABLE` (kubelet retries every failed mount later,
//! with a growing delay); so `UNAVAILABLE` is used exactly for a Vault that is unreachable,
//! sealed or failing with 5xx after our own retries (and for a provider out of its memory
//! budget).

use crate::proto::{File, MountResponse, ObjectVersion};
use crate::provider::{MountError, Volume};
use crate::stages::plan::PlanError;
use crate::stages::render::RenderError;
use crate::stages::template::TemplateError;
use crate::text::{MAX_MESSAGE, cap};
use crate::vault::VaultError;
use tonic::{Code, Status};

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

/// The gRPC code of a failure.
pub fn code(e: &MountError) -> Code {
    match e {
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
            RenderError::NotAMap { .. } | RenderError::Decode { .. } => Code::FailedPrecondition,
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
/// [`MAX_MESSAGE`] bytes (the driver's gRPC metadata is far smaller than what a tenant can
/// send, and a message the client drops tells the user nothing).
pub fn status(e: &MountError) -> Status {
    Status::new(
        code(e),
        cap(&format!("vault-csi-provider: {e}"), MAX_MESSAGE),
    )
}

/// A volume as the driver receives it, or [`MountError::TooLarge`] when it is more than
/// `limit` bytes (the driver's `--max-call-recv-msg-size`).
pub fn response(volume: Volume, limit: usize) -> Result<MountResponse, MountError> {
    let response = MountResponse {
        object_version: volume
            .versions
            .into_iter()
            .map(|(id, version)| ObjectVersion { id, version })
            .collect(),
        error: None,
        files: volume
            .files
            .into_iter()
            .map(|f| File {
                path: f.path,
                mode: f.mode as i32,
                contents: f.contents.expose().to_vec(),
            })
            .collect(),
    };
    check_size(&response, limit)?;
    Ok(response)
}

/// Secrets synced from a volume (`secretObjects`) cannot exceed Kubernetes' 1 MiB.
const SECRET_SYNC_LIMIT: usize = 1024 * 1024;

/// Refuses an answer the driver would refuse, and warns about one Secret sync would.
fn check_size(response: &MountResponse, limit: usize) -> Result<(), MountError> {
    use prost::Message;
    let size = response.encoded_len();
    if size > limit {
        return Err(MountError::TooLarge { size, limit });
    }
    let content: usize = response.files.iter().map(|f| f.contents.len()).sum();
    if content > SECRET_SYNC_LIMIT {
        tracing::warn!(
            bytes = content,
            "the files total more than 1 MiB: mounting works, but syncing them into a Kubernetes Secret (secretObjects) will fail"
        );
    }
    Ok(())
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
            code(&MountError::Connection(unreachable)),
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
        assert_eq!(code(&e), Code::PermissionDenied);
        assert!(status(&e).message().contains("permission denied"));
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
        assert_eq!(code(&e), Code::PermissionDenied);
        assert!(e.to_string().contains("invalid role name"));
        let five = VaultError::Status {
            what: "x".into(),
            status: 502,
            message: "bad gateway".into(),
        };
        assert_eq!(
            code(&MountError::Read {
                objects: vec![],
                source: five
            }),
            Code::Unavailable
        );
        assert_eq!(
            code(&MountError::Plan(PlanError::MissingRole)),
            Code::InvalidArgument
        );
    }
}
