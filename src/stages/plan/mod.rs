//! Parse stage: a `MountRequest` becomes a typed, validated [`MountPlan`], or a
//! [`PlanError`] that says what to change. Pure: no clock, no network, no environment.
//! Everything here is untrusted input (pod authors can override class parameters), and
//! every check happens here, before Vault is called.

use crate::secret::SecretString;
pub use crate::stages::flavour::Flavour;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

mod objects;
pub use objects::{MAX_OBJECTS_TEXT, normalise_secret_path, validate_file_name};

/// Attribute key under which kubelet passes service-account tokens.
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";
/// Most objects one class may list.
pub const MAX_OBJECTS: usize = 500;

/// What kind of caller mounts, as kubelet describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub service_account: String,
}

/// A service-account token handed over by the driver.
#[derive(Debug, Clone)]
pub struct ServiceAccountToken {
    pub token: SecretString,
    pub expiration: Option<String>,
    /// The service account's uid as the token states it (unverified: it only ever splits
    /// identities further, since namespace and name come from kubelet).
    pub service_account_uid: Option<String>,
}

/// Pod identity claims of a Kubernetes service-account token (read, not verified).
#[derive(Default, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub service_account_uid: Option<String>,
    pub expiration: Option<i64>,
}

/// Reads the claims of a JWT without verifying it (Vault verifies it).
pub fn token_claims(jwt: &str) -> TokenClaims {
    let Some(payload) = jwt.split('.').nth(1) else {
        return TokenClaims::default();
    };
    let Ok(bytes) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))
    else {
        return TokenClaims::default();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return TokenClaims::default();
    };
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
    TokenClaims {
        namespace: s("/kubernetes.io/namespace"),
        service_account: s("/kubernetes.io/serviceaccount/name"),
        pod_name: s("/kubernetes.io/pod/name"),
        pod_uid: s("/kubernetes.io/pod/uid"),
        service_account_uid: s("/kubernetes.io/serviceaccount/uid"),
        expiration: v.get("exp").and_then(|e| e.as_i64()),
    }
}

/// Connection settings a class may override; `None` keeps the process setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionOverrides {
    pub address: Option<String>,
    pub namespace: Option<String>,
    pub skip_verify: Option<bool>,
    pub ca_cert: Option<PathBuf>,
    pub ca_directory: Option<PathBuf>,
    pub server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

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

/// An RFC 6901 JSON Pointer (`/db/primary/password`), parsed into its reference tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// As written in the class, for messages.
    pub text: String,
    /// The unescaped reference tokens (`~1` is `/`, `~0` is `~`).
    pub tokens: Vec<String>,
}

impl Pointer {
    /// Parses a pointer: empty, or `/` followed by tokens separated by `/`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.len() > 4096 {
            return Err("selector is longer than 4096 bytes".into());
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "selector {} is not a JSON Pointer: start it with /, e.g. /db/password",
                crate::text::quote(text)
            ));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                match (c, c == '~') {
                    (_, false) => token.push(c),
                    (_, true) => match chars.next() {
                        Some('0') => token.push('~'),
                        Some('1') => token.push('/'),
                        _ => {
                            return Err(format!(
                                "selector {} has a ~ that is not ~0 (for ~) or ~1 (for /)",
                                crate::text::quote(text)
                            ));
                        }
                    },
                }
            }
            tokens.push(token);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }
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
    pub class_name: String,
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

/// Longest name-like parameter (role, audience, namespace, auth mount, TLS server name).
pub const MAX_NAME: usize = 512;
/// Longest file path parameter.
pub const MAX_PATH: usize = 4096;
/// Longest `vaultAddress` (a list of up to ten nodes).
pub const MAX_ADDRESS: usize = 8192;
/// Longest service-account tokens field.
pub const MAX_TOKENS: usize = 64 * 1024;

/// `value` of parameter `key` if it is at most `max` bytes with no control characters.
fn bounded<'a>(key: &str, value: &'a str, max: usize) -> Result<&'a str, PlanError> {
    if value.len() > max {
        return Err(bad_param(
            key,
            format!("it is {} bytes, more than the {max} allowed", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(bad_param(
            key,
            format!("{} contains control characters", crate::text::quote(value)),
        ));
    }
    Ok(value)
}

fn bad_param(key: &str, reason: impl Into<String>) -> PlanError {
    PlanError::BadParameter {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// The class parameters and volume attributes, with the OpenBao spellings resolved.
struct Params<'a> {
    map: &'a HashMap<String, String>,
}

impl Params<'_> {
    /// Looks up a `vault*` key, preferring `bao*`, then `openbao*`, then `vault*`.
    /// Returns the key actually found, for messages.
    fn vault_key(&self, suffix: &str) -> Option<(String, &str)> {
        ["bao", "openbao", "vault"].iter().find_map(|prefix| {
            let key = format!("{prefix}{suffix}");
            self.map.get(&key).map(|v| (key, v.as_str()))
        })
    }

    fn vault(&self, suffix: &str) -> Option<(String, &str)> {
        self.vault_key(suffix).filter(|(_, v)| !v.is_empty())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.map
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Parses a JSON object of strings as the driver sends it. The JSON literal `null` and an
/// empty field are an empty map: the node server `json.Marshal`s a nil Go map as `null`,
/// which is what every Mount of a volume without `nodePublishSecretRef` carries in
/// `secrets`.
fn parse_string_map(field: &'static str, text: &str) -> Result<HashMap<String, String>, PlanError> {
    let obj = match parse_object(field, text)? {
        Some(obj) => obj,
        None => return Ok(HashMap::new()),
    };
    obj.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(PlanError::Malformed {
                field,
                reason: format!("value of key {} is not a string", crate::text::quote(&k)),
            }),
        })
        .collect()
}

/// A JSON object, or `None` for `null` or an empty field.
fn parse_object(
    field: &'static str,
    text: &str,
) -> Result<Option<serde_json::Map<String, Value>>, PlanError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| PlanError::Malformed {
        field,
        reason: format!("not JSON ({e})"),
    })?;
    match value {
        Value::Null => Ok(None),
        Value::Object(obj) => Ok(Some(obj)),
        _ => Err(PlanError::Malformed {
            field,
            reason: "not a JSON object (nor null)".into(),
        }),
    }
}

/// The service-account tokens the driver put in `secrets` (Kubernetes 1.35+ with
/// `serviceAccountTokenInSecrets`). Every other key of `secrets` (a `nodePublishSecretRef`'s
/// data) is the pod's business and is not read, so whatever it holds is accepted.
fn tokens_in_secrets(text: &str) -> Result<Option<String>, PlanError> {
    let Some(mut obj) = parse_object("secrets", text)? else {
        return Ok(None);
    };
    match obj.remove(TOKENS_KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(PlanError::Malformed {
            field: "secrets",
            reason: format!(
                "value of key {} is not a string",
                crate::text::quote(TOKENS_KEY)
            ),
        }),
    }
}

/// A driver token must be of the named pod's service account: its namespace and service
/// account must match kubelet's attributes (Vault verifies the token's signature; this
/// stops one account's token logging in for another's pod). The pod it is bound to may
/// differ: the secrets-store-sync-controller mounts under its own pod's name.
fn check_token_claims(token: &SecretString, pod: &PodInfo) -> Result<(), PlanError> {
    let c = token_claims(token.expose());
    let pairs = [
        (c.namespace.as_deref(), pod.namespace.as_str()),
        (c.service_account.as_deref(), pod.service_account.as_str()),
    ];
    let differs = pairs
        .iter()
        .any(|(claim, attr)| matches!(claim, Some(v) if !attr.is_empty() && v != attr));
    if differs {
        let q = crate::text::quote;
        return Err(PlanError::TokenMismatch {
            token_says: format!(
                "{}/{}",
                q(c.namespace.as_deref().unwrap_or("")),
                q(c.service_account.as_deref().unwrap_or(""))
            ),
            pod_says: format!(
                "{}/{} (service account {})",
                q(&pod.namespace),
                q(&pod.name),
                q(&pod.service_account)
            ),
        });
    }
    Ok(())
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

/// The request's `attributes`: class parameters, volume attributes and kubelet's keys.
/// Parsed once, first, so that the Mount's log line can name the pod whatever fails later.
#[derive(Debug, Clone, Default)]
pub struct Attributes(HashMap<String, String>);

impl Attributes {
    /// Parses the driver's JSON object of strings.
    pub fn parse(text: &str) -> Result<Attributes, PlanError> {
        parse_string_map("attributes", text).map(Attributes)
    }

    fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or_default()
    }

    /// The pod as kubelet describes it (fields empty when absent).
    pub fn pod(&self) -> PodInfo {
        PodInfo {
            namespace: self.get("csi.storage.k8s.io/pod.namespace").to_string(),
            name: self.get("csi.storage.k8s.io/pod.name").to_string(),
            uid: self.get("csi.storage.k8s.io/pod.uid").to_string(),
            service_account: self
                .get("csi.storage.k8s.io/serviceAccount.name")
                .to_string(),
        }
    }

    /// The SecretProviderClass name.
    pub fn class_name(&self) -> &str {
        self.get("secretProviderClass")
    }
}

/// Parses and validates a Mount. Nothing outside the request is consulted.
pub fn parse(raw: &RawMount<'_>) -> Result<MountPlan, PlanError> {
    // The class's own mistakes are named first; what only the driver controls (permission,
    // secrets, tokens) is checked after them.
    let permission = parse_permission(raw.permission);
    let default_mode = *permission.as_ref().unwrap_or(&0o644);
    let pod = raw.attributes.pod();
    let class_name = raw.attributes.class_name().to_string();
    let params = Params {
        map: &raw.attributes.0,
    };

    // The OpenBao fork's spellings first (bao > openbao > vault), then the plain key.
    let (role_key, role) = [
        "baoRoleName",
        "openbaoRoleName",
        "vaultRoleName",
        "roleName",
    ]
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
        class_name,
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

fn parse_permission(text: &str) -> Result<u32, PlanError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0o644);
    }
    text.parse::<u32>()
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| PlanError::Malformed {
            field: "permission",
            reason: format!(
                "{} is not a file mode from 0 to 511",
                crate::text::quote(text)
            ),
        })
}

fn validate_auth_mount(key: &str, mount: &str) -> Result<(), PlanError> {
    for segment in mount.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(bad_param(
                key,
                format!(
                    "{} is not a mount path: use a name such as kubernetes or jwt",
                    crate::text::quote(mount)
                ),
            ));
        }
        if segment
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "?#%\\".contains(c))
        {
            return Err(bad_param(
                key,
                format!(
                    "{} contains characters a mount path cannot have",
                    crate::text::quote(mount)
                ),
            ));
        }
    }
    Ok(())
}

fn parse_connection(params: &Params<'_>) -> Result<ConnectionOverrides, PlanError> {
    let path = |suffix: &str| -> Result<Option<PathBuf>, PlanError> {
        params
            .vault(suffix)
            .map(|(key, v)| bounded(&key, v, MAX_PATH).map(PathBuf::from))
            .transpose()
    };
    let name = |suffix: &str| -> Result<Option<String>, PlanError> {
        params
            .vault(suffix)
            .map(|(key, v)| bounded(&key, v, MAX_NAME).map(str::to_string))
            .transpose()
    };
    let skip_verify = match params.vault("SkipTLSVerify") {
        Some((key, v)) => Some(crate::goflag::parse_go_bool(v).ok_or_else(|| {
            bad_param(
                &key,
                format!(
                    "{} is not a boolean: use true or false",
                    crate::text::quote(v)
                ),
            )
        })?),
        None => None,
    };
    let client_cert = path("TLSClientCertPath")?;
    let client_key = path("TLSClientKeyPath")?;
    if client_cert.is_some() != client_key.is_some() {
        let (have, missing) = if client_cert.is_some() {
            ("vaultTLSClientCertPath", "vaultTLSClientKeyPath")
        } else {
            ("vaultTLSClientKeyPath", "vaultTLSClientCertPath")
        };
        return Err(bad_param(
            have,
            format!("a client certificate needs both: set {missing} too"),
        ));
    }
    let address = match params.vault("Address") {
        Some((key, v)) => {
            bounded(&key, v, MAX_ADDRESS)?;
            crate::address::validate(v).map_err(|reason| bad_param(&key, reason))?;
            Some(v.to_string())
        }
        None => None,
    };
    Ok(ConnectionOverrides {
        address,
        namespace: name("Namespace")?.map(|v| v.trim_matches('/').to_string()),
        skip_verify,
        ca_cert: path("CACertPath")?,
        ca_directory: path("CADirectory")?,
        server_name: name("TLSServerName")?,
        client_cert,
        client_key,
    })
}

#[derive(Deserialize)]
struct RawToken {
    #[serde(default)]
    token: String,
    #[serde(default, rename = "expirationTimestamp")]
    expiration: Option<String>,
}

fn find_token(text: &str, audience: &str) -> Result<Option<ServiceAccountToken>, PlanError> {
    let tokens: Option<HashMap<String, RawToken>> =
        serde_json::from_str(text).map_err(|_| PlanError::Malformed {
            field: "serviceAccount.tokens",
            reason: "not a JSON object of {\"token\", \"expirationTimestamp\"} by audience".into(),
        })?;
    Ok(tokens.unwrap_or_default().into_iter().find_map(|(aud, t)| {
        (aud == audience && !t.token.is_empty()).then(|| ServiceAccountToken {
            service_account_uid: token_claims(&t.token).service_account_uid,
            token: SecretString::new(t.token),
            expiration: t.expiration,
        })
    }))
}

#[cfg(test)]
mod tests;
