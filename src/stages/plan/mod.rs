//! Parse stage: a `MountRequest` becomes a typed, validated [`MountPlan`], or a
//! [`PlanError`] that says what to change. Pure: no clock, no network, no environment.
//! Everything here is untrusted input (pod authors can override class parameters), and
//! every check happens here, before Vault is called.

mod connection;
mod error;
mod objects;
mod paths;
mod request;

pub use crate::stages::flavour::Flavour;
pub use connection::{ConnectionOverrides, MAX_NAME, MAX_PATH};
pub use error::PlanError;
pub use paths::{Pointer, validate_file_name};
pub use request::{Attributes, PodInfo, ServiceAccountToken, TOKENS_KEY, token_claims};

use connection::{Params, bounded, parse_connection, validate_auth_mount};
use request::{check_token_claims, find_token, parse_permission, tokens_in_secrets};

/// The spellings of the role parameter, in the order they win.
const ROLE_KEYS: [&str; 4] = [
    "baoRoleName",
    "openbaoRoleName",
    "vaultRoleName",
    "roleName",
];

/// Every class parameter a Mount reads: the role, `audience`, `objects` and the connection
/// parameters in each spelling (what `check` holds a class's keys against).
pub fn parameter_names() -> Vec<String> {
    let mut names: Vec<String> = ROLE_KEYS
        .iter()
        .chain(&["audience", "objects"])
        .map(|k| k.to_string())
        .collect();
    for prefix in connection::PREFIXES {
        names.extend(connection::SUFFIXES.iter().map(|s| format!("{prefix}{s}")));
    }
    names
}

/// Most objects one class may list.
pub const MAX_OBJECTS: usize = 500;
/// Longest service-account tokens field.
pub const MAX_TOKENS: usize = 64 * 1024;

/// HTTP methods an object may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Put,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
        }
    }
}

/// One request to Vault. Objects with the same method, path, query and body share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadSpec {
    pub method: Method,
    /// Normalised API path, always starting with `/v1/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// `secretArgs` as the JSON body, canonical (sorted keys).
    pub body: Option<String>,
}

impl ReadSpec {
    /// The path with its query string, for messages.
    pub fn display(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            let q: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{}?{}", self.path, q.join("&"))
        }
    }
}

/// How the selected value is decoded before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Base64,
    Hex,
}

/// What an object writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// One file: the whole answer as JSON (no `secretKey`).
    Whole,
    /// One file: a top-level key of the data (`secretKey`; KV v2 unwrapped).
    Key(String),
    /// One file: a nested value (`selector`).
    Pointer(Pointer),
    /// A directory: one file per key of the data, or of the map at the pointer (`allKeys`).
    AllKeys(Option<Pointer>),
    /// One file: a template rendered over this object's read and the other objects.
    Template(String),
}

/// One object of the class: a file, or a directory of files (`allKeys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpec {
    /// File path in the volume and ObjectVersion id (a directory for `allKeys`).
    pub name: String,
    /// Index into [`MountPlan::reads`]; `None` only for a template without `secretPath`.
    pub read: Option<usize>,
    pub kind: ObjectKind,
    pub encoding: Encoding,
    pub mode: u32,
    /// Canonical JSON of the object's settings.
    pub config: String,
    /// What its object version is computed from.
    pub version: VersionInput,
}

/// The first input of an object's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionInput {
    /// The Go provider's `json.Marshal(config.Secret)`: the same version as the Go provider
    /// (or the OpenBao fork) gives for the same key, object and content.
    Go(String),
    /// An object only this provider has (template, allKeys, selector), or one the Go
    /// provider would not mount: versions of our own, in a domain of their own.
    Own(String),
}

/// A validated Mount.
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub pod: PodInfo,
    pub role: String,
    /// `None`: the `-vault-mount` setting.
    pub auth_mount: Option<String>,
    pub connection: ConnectionOverrides,
    /// The audience of the token to use: the class's, or the socket's default.
    pub audience: String,
    /// The audience the class set itself; only this one goes into a TokenRequest.
    pub explicit_audience: Option<String>,
    /// The driver's token for [`MountPlan::audience`], if it sent one.
    pub token: Option<ServiceAccountToken>,
    pub reads: Vec<ReadSpec>,
    pub objects: Vec<ObjectSpec>,
}

impl MountPlan {
    /// Whether any object is a template.
    pub fn has_templates(&self) -> bool {
        self.objects
            .iter()
            .any(|o| matches!(o.kind, ObjectKind::Template(_)))
    }
}

/// Inputs of the parse stage, as the driver sends them.
pub struct RawMount<'a> {
    pub attributes: &'a Attributes,
    pub secrets: &'a str,
    pub permission: &'a str,
    /// Which provider the class is served as: the audience of a class that sets none, and
    /// whose Go versions to match.
    pub flavour: Flavour,
}

/// Parses and validates a Mount. Nothing outside the request is consulted.
pub fn parse(raw: &RawMount<'_>) -> Result<MountPlan, PlanError> {
    // The class's own mistakes are named first; what only the driver controls (permission,
    // secrets, tokens) is checked after them.
    let permission = parse_permission(raw.permission);
    let default_mode = *permission.as_ref().unwrap_or(&0o644);
    let pod = raw.attributes.pod();
    let params = Params {
        map: &raw.attributes.0,
    };

    // The OpenBao fork's spellings first (bao > openbao > vault), then the plain key.
    let (role_key, role) = ROLE_KEYS
        .iter()
        .find_map(|k| params.get(k).map(|v| (*k, v)))
        .ok_or(PlanError::MissingRole)?;
    let role = bounded(role_key, role, MAX_NAME)?.to_string();

    let auth_mount = match (
        params.vault_key("AuthMountPath"),
        params.vault_key("KubernetesMountPath"),
    ) {
        (Some((a, _)), Some((b, _))) => {
            return Err(PlanError::ConflictingMountPath {
                first: a,
                second: b,
            });
        }
        (Some((key, v)), None) | (None, Some((key, v))) => {
            let mount = bounded(&key, v, MAX_NAME)?.trim_matches('/');
            if mount.is_empty() {
                None
            } else {
                validate_auth_mount(&key, mount)?;
                Some(mount.to_string())
            }
        }
        (None, None) => None,
    };

    let connection = parse_connection(&params)?;

    let explicit_audience = params
        .get("audience")
        .map(|a| bounded("audience", a, MAX_NAME).map(str::to_string))
        .transpose()?;
    let audience = explicit_audience
        .clone()
        .unwrap_or_else(|| raw.flavour.default_audience().to_string());

    let objects_text = params.get("objects").ok_or(PlanError::NoObjects)?;
    let (reads, objects) = objects::parse_objects(objects_text, default_mode, raw.flavour)?;

    // Then the driver's fields: the tokens in `secrets` first (Kubernetes 1.35+), then in
    // the attributes.
    permission?;
    let in_secrets = tokens_in_secrets(raw.secrets)?;
    let token = match in_secrets.as_ref().or_else(|| params.map.get(TOKENS_KEY)) {
        Some(text) if text.len() > MAX_TOKENS => {
            return Err(PlanError::Malformed {
                field: "serviceAccount.tokens",
                reason: format!(
                    "it is {} bytes, more than the {MAX_TOKENS} allowed",
                    text.len()
                ),
            });
        }
        Some(text) if !text.is_empty() => find_token(text, &audience)?,
        _ => None,
    };

    if let Some(t) = &token {
        check_token_claims(&t.token, &pod)?;
    }

    Ok(MountPlan {
        pod,
        role,
        auth_mount,
        connection,
        audience,
        explicit_audience,
        token,
        reads,
        objects,
    })
}

#[cfg(test)]
mod tests;
