//! A SecretProviderClass file as the driver turns it into a MountRequest: its
//! `spec.parameters`, the pod's fields (from the token's claims, or given), the token for
//! the class's audience, and `secrets` as the node server sends it. Used by the `mount`
//! subcommand.

use crate::proto::MountRequest;
use crate::stages::flavour::Flavour;
use crate::stages::plan::{TOKENS_KEY, token_claims};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct ClassFile {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ClassMeta,
    spec: ClassSpec,
}

#[derive(Deserialize, Default)]
struct ClassMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct ClassSpec {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    parameters: BTreeMap<String, serde_yaml_ng::Value>,
}

/// The provider a SecretProviderClass file's class is for (see [`driver_request`]).
pub fn class_flavour(class_yaml: &str) -> Flavour {
    serde_yaml_ng::from_str::<ClassFile>(class_yaml)
        .map(|c| Flavour::of_provider(&c.spec.provider))
        .unwrap_or_default()
}

/// The MountRequest the driver would send for this class, pod and token.
pub fn driver_request(
    class_yaml: &str,
    token: &str,
    overrides: &BTreeMap<&str, String>,
) -> Result<MountRequest, String> {
    let class: ClassFile = serde_yaml_ng::from_str(class_yaml)
        .map_err(|e| format!("the class file is not a SecretProviderClass: {e}"))?;
    if !class.kind.is_empty() && class.kind != "SecretProviderClass" {
        return Err(format!(
            "the class file holds a {}, not a SecretProviderClass",
            class.kind
        ));
    }
    if !class.spec.provider.is_empty()
        && !["vault", "openbao"].contains(&class.spec.provider.as_str())
    {
        return Err(format!(
            "spec.provider is {:?}: the driver would send this class to that provider, not to vault or openbao",
            class.spec.provider
        ));
    }
    let mut attributes = serde_json::Map::new();
    for (key, value) in class.spec.parameters {
        match value {
            serde_yaml_ng::Value::String(s) => {
                attributes.insert(key, serde_json::Value::String(s));
            }
            _ => {
                return Err(format!(
                    "spec.parameters.{key} is not a string: Kubernetes only accepts strings there, quote it"
                ));
            }
        }
    }
    let claims = token_claims(token);
    let pick = |flag: &str, claim: Option<String>, fallback: &str| {
        overrides
            .get(flag)
            .cloned()
            .or(claim)
            .unwrap_or_else(|| fallback.to_string())
    };
    let namespace = overrides
        .get("namespace")
        .cloned()
        .or(claims.namespace.clone())
        .or(class.metadata.namespace.clone())
        .unwrap_or_else(|| "default".into());
    let pod_name = pick(
        "pod-name",
        claims.pod_name.clone(),
        "vault-csi-provider-mount",
    );
    let pod_uid = pick(
        "pod-uid",
        claims.pod_uid.clone(),
        "00000000-0000-0000-0000-000000000000",
    );
    let service_account = pick("service-account", claims.service_account.clone(), "default");
    let audience = attributes
        .get("audience")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
        .unwrap_or(Flavour::of_provider(&class.spec.provider).default_audience())
        .to_string();
    let expiration = claims
        .expiration
        .map(crate::text::rfc3339)
        .unwrap_or_default();
    let tokens =
        serde_json::json!({ audience: { "token": token, "expirationTimestamp": expiration } });
    let mut put = |k: &str, v: String| {
        attributes.insert(k.to_string(), serde_json::Value::String(v));
    };
    put("secretProviderClass", class.metadata.name);
    put("csi.storage.k8s.io/pod.name", pod_name);
    put("csi.storage.k8s.io/pod.namespace", namespace);
    put("csi.storage.k8s.io/pod.uid", pod_uid.clone());
    put("csi.storage.k8s.io/serviceAccount.name", service_account);
    put("csi.storage.k8s.io/ephemeral", "false".into());
    put(TOKENS_KEY, tokens.to_string());
    Ok(MountRequest {
        attributes: serde_json::Value::Object(attributes).to_string(),
        // What the driver's node server sends for a volume without nodePublishSecretRef.
        secrets: "null".into(),
        target_path: format!(
            "/var/lib/kubelet/pods/{pod_uid}/volumes/kubernetes.io~csi/secrets-store/mount"
        ),
        permission: "420".into(),
        current_object_version: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_driver_request() {
        let class = r#"
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: app, namespace: team}
spec:
  provider: vault
  parameters:
    roleName: app
    objects: |
      - objectName: a
        secretPath: secret/data/a
"#;
        let req = driver_request(class, "a.b.c", &BTreeMap::new()).unwrap();
        let attrs: serde_json::Value = serde_json::from_str(&req.attributes).unwrap();
        assert_eq!(attrs["roleName"], "app");
        assert_eq!(attrs["secretProviderClass"], "app");
        assert_eq!(attrs["csi.storage.k8s.io/pod.namespace"], "team");
        let tokens: serde_json::Value =
            serde_json::from_str(attrs[TOKENS_KEY].as_str().unwrap()).unwrap();
        assert_eq!(tokens["vault"]["token"], "a.b.c");
        let bad = class.replace("roleName: app", "roleName: 5");
        assert!(
            driver_request(&bad, "t", &BTreeMap::new())
                .unwrap_err()
                .contains("roleName")
        );
        let other = class.replace("provider: vault", "provider: azure");
        assert!(driver_request(&other, "t", &BTreeMap::new()).is_err());
        // An OpenBao class without an audience uses the openbao audience, as on openbao.sock.
        let bao = class.replace("provider: vault", "provider: openbao");
        assert_eq!(class_flavour(&bao).default_audience(), "openbao");
        assert_eq!(class_flavour(class).default_audience(), "vault");
        let req = driver_request(&bao, "a.b.c", &BTreeMap::new()).unwrap();
        let attrs: serde_json::Value = serde_json::from_str(&req.attributes).unwrap();
        let tokens: serde_json::Value =
            serde_json::from_str(attrs[TOKENS_KEY].as_str().unwrap()).unwrap();
        assert_eq!(tokens["openbao"]["token"], "a.b.c");
    }
}
