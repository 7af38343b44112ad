//! Why a Mount request cannot be planned, with what to change. Pure.

use super::MAX_OBJECTS;

/// A request that cannot be mounted, with what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// A field only the driver sets is not what the driver sends.
    #[error("the driver sent malformed {field}: {reason}")]
    Malformed { field: &'static str, reason: String },
    /// The class names no `roleName`.
    #[error(
        "missing parameter roleName: set it in the SecretProviderClass to the Vault role to log in with"
    )]
    MissingRole,
    /// Both spellings of the auth mount parameter are set.
    #[error("both {first} and {second} are set: they name the same auth mount, keep only one")]
    ConflictingMountPath { first: String, second: String },
    /// A class parameter is too long, has control characters, or is not valid.
    #[error("invalid parameter {key}: {reason}")]
    BadParameter { key: String, reason: String },
    /// The class lists no objects.
    #[error(
        "missing parameter objects: list at least one object (objectName, secretPath) in the SecretProviderClass"
    )]
    NoObjects,
    /// `objects` is not a YAML list of objects (or too large or too deep to read).
    #[error("parameter objects is not a valid YAML list of objects: {0}")]
    ObjectsSyntax(String),
    /// The class lists more objects than a Mount may have.
    #[error("too many objects ({0}): a class may list at most {MAX_OBJECTS}")]
    TooManyObjects(usize),
    /// The driver's token is another namespace's or service account's.
    #[error(
        "the driver's service-account token is for {token_says} but the driver names the pod {pod_says}: refusing to log in for another pod"
    )]
    TokenMismatch {
        token_says: String,
        pod_says: String,
    },
    /// One object, which has no name yet, is wrong.
    #[error("object {index}: {reason}")]
    BadObject { index: usize, reason: String },
    /// One object is wrong: a field, or its file name.
    #[error("object {}: {reason}", crate::text::quote(.name))]
    BadNamedObject { name: String, reason: String },
    /// Two objects have the same `objectName`.
    #[error(
        "objectName {} is used by more than one object: each object needs its own file name",
        crate::text::quote(.0)
    )]
    DuplicateName(String),
    /// One object's file would be the directory of another's.
    #[error(
        "objectName {} is a file but {} needs it to be a directory: rename one of them",
        crate::text::quote(.file),
        crate::text::quote(.nested)
    )]
    FileDirConflict { file: String, nested: String },
}

impl PlanError {
    /// The class parameter the error is about, when it is one (`objects` for every object's
    /// error); `None` for what only the driver sends.
    pub fn parameter(&self) -> Option<&str> {
        match self {
            PlanError::MissingRole => Some("roleName"),
            PlanError::ConflictingMountPath { first, .. } => Some(first),
            PlanError::BadParameter { key, .. } => Some(key),
            PlanError::NoObjects
            | PlanError::ObjectsSyntax(_)
            | PlanError::TooManyObjects(_)
            | PlanError::BadObject { .. }
            | PlanError::BadNamedObject { .. }
            | PlanError::DuplicateName(_)
            | PlanError::FileDirConflict { .. } => Some("objects"),
            PlanError::Malformed { .. } | PlanError::TokenMismatch { .. } => None,
        }
    }
}
