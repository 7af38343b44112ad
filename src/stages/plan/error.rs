//! Why a Mount request cannot be planned, with what to change. Pure.

use super::MAX_OBJECTS;

/// A request that cannot be mounted, with what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("the driver sent malformed {field}: {reason}")]
    Malformed { field: &'static str, reason: String },
    #[error(
        "missing parameter roleName: set it in the SecretProviderClass to the Vault role to log in with"
    )]
    MissingRole,
    #[error("both {first} and {second} are set: they name the same auth mount, keep only one")]
    ConflictingMountPath { first: String, second: String },
    #[error("invalid parameter {key}: {reason}")]
    BadParameter { key: String, reason: String },
    #[error(
        "missing parameter objects: list at least one object (objectName, secretPath) in the SecretProviderClass"
    )]
    NoObjects,
    #[error("parameter objects is not a valid YAML list of objects: {0}")]
    ObjectsSyntax(String),
    #[error("too many objects ({0}): a class may list at most {MAX_OBJECTS}")]
    TooManyObjects(usize),
    #[error(
        "the driver's service-account token is for {token_says} but the driver names the pod {pod_says}: refusing to log in for another pod"
    )]
    TokenMismatch {
        token_says: String,
        pod_says: String,
    },
    #[error("object {index}: {reason}")]
    BadObject { index: usize, reason: String },
    #[error("object {}: {reason}", crate::text::quote(.name))]
    BadNamedObject { name: String, reason: String },
    #[error(
        "objectName {} is used by more than one object: each object needs its own file name",
        crate::text::quote(.0)
    )]
    DuplicateName(String),
    #[error(
        "objectName {} is a file but {} needs it to be a directory: rename one of them",
        crate::text::quote(.file),
        crate::text::quote(.nested)
    )]
    FileDirConflict { file: String, nested: String },
}
