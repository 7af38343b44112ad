//! What the driver sends besides the class: kubelet's attributes (the pod), the
//! service-account tokens (in `secrets` or the attributes) and their claims, `secrets` and
//! `permission`, read as every driver release sends them. Pure.

use super::PlanError;
use crate::secret::SecretString;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// Attribute key under which kubelet passes service-account tokens.
pub const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";

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

/// The request's `attributes`: class parameters, volume attributes and kubelet's keys.
/// Parsed once, first, so that the Mount's log line can name the pod whatever fails later.
#[derive(Debug, Clone, Default)]
pub struct Attributes(pub(super) HashMap<String, String>);

impl Attributes {
    /// Parses the driver's JSON object of strings.
    pub fn parse(text: &str) -> Result<Attributes, PlanError> {
        parse_string_map("attributes", text).map(Attributes)
    }

    /// Attributes from a class's parameters alone, as `check` plans a class without a pod.
    pub fn from_parameters(parameters: HashMap<String, String>) -> Attributes {
        Attributes(parameters)
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

/// Parses a JSON object of strings as the driver sends it. The JSON literal `null` and an
/// empty field are an empty map: the node server `json.Marshal`s a nil Go map as `null`,
/// which is what every Mount of a volume without `nodePublishSecretRef` carries in
/// `secrets`.
pub(super) fn parse_string_map(
    field: &'static str,
    text: &str,
) -> Result<HashMap<String, String>, PlanError> {
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
pub(super) fn parse_object(
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
pub(super) fn tokens_in_secrets(text: &str) -> Result<Option<String>, PlanError> {
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
pub(super) fn check_token_claims(token: &SecretString, pod: &PodInfo) -> Result<(), PlanError> {
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

pub(super) fn parse_permission(text: &str) -> Result<u32, PlanError> {
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

#[derive(Deserialize)]
struct RawToken {
    #[serde(default)]
    token: String,
}

pub(super) fn find_token(
    text: &str,
    audience: &str,
) -> Result<Option<ServiceAccountToken>, PlanError> {
    let tokens: Option<HashMap<String, RawToken>> =
        serde_json::from_str(text).map_err(|_| PlanError::Malformed {
            field: "serviceAccount.tokens",
            reason: "not a JSON object of {\"token\", \"expirationTimestamp\"} by audience".into(),
        })?;
    Ok(tokens.unwrap_or_default().into_iter().find_map(|(aud, t)| {
        (aud == audience && !t.token.is_empty()).then(|| ServiceAccountToken {
            service_account_uid: token_claims(&t.token).service_account_uid,
            token: SecretString::new(t.token),
        })
    }))
}
