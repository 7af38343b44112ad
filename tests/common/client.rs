//! The driver's side: a pod as kubelet describes it, the MountRequest the driver builds for
//! it, a gRPC client on one long-lived connection, and readers of the answer.

use super::tokens;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use vault_csi_provider::proto::csi_driver_provider_client::CsiDriverProviderClient;
use vault_csi_provider::proto::{MountRequest, MountResponse};

/// A driver-like client on one long-lived connection.
#[derive(Clone)]
pub struct Client {
    inner: CsiDriverProviderClient<tonic::transport::Channel>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Client {
        let channel = vault_csi_provider::connect(socket)
            .await
            .expect("cannot connect to the provider socket");
        Client {
            inner: CsiDriverProviderClient::new(channel)
                .max_decoding_message_size(64 * 1024 * 1024),
        }
    }

    pub async fn mount(&self, req: MountRequest) -> Result<MountResponse, tonic::Status> {
        self.mount_within(req, Duration::from_secs(60)).await
    }

    /// A Mount with the caller's deadline `timeout` (the driver passes kubelet's).
    pub async fn mount_within(
        &self,
        req: MountRequest,
        timeout: Duration,
    ) -> Result<MountResponse, tonic::Status> {
        let mut r = tonic::Request::new(req);
        r.set_timeout(timeout);
        self.inner.clone().mount(r).await.map(|r| r.into_inner())
    }

    pub async fn version(
        &self,
    ) -> Result<vault_csi_provider::proto::VersionResponse, tonic::Status> {
        self.inner
            .clone()
            .version(vault_csi_provider::proto::VersionRequest {
                version: "v1alpha1".into(),
            })
            .await
            .map(|r| r.into_inner())
    }
}

/// A pod as kubelet describes it.
#[derive(Clone)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub service_account: String,
}

impl Pod {
    pub fn new(namespace: &str, sa: &str) -> Pod {
        Pod {
            namespace: namespace.into(),
            name: format!("{sa}-pod"),
            uid: format!("uid-{sa}-{}", rand_suffix()),
            service_account: sa.into(),
        }
    }

    /// A token for this pod, as kubelet's TokenRequest makes it.
    pub fn token(&self, audience: &str) -> String {
        tokens::sign(&tokens::Claims::for_pod(self, audience))
    }

    /// The MountRequest the driver sends with `params` (class parameters) and a token
    /// for audience `vault` in `attributes`.
    pub fn request(&self, params: Value) -> MountRequest {
        self.request_with(params, Some(("vault", self.token("vault"))), false)
    }

    /// `token`: (audience, jwt) to pass; `in_secrets`: deliver it in `secrets` (k8s >= 1.35).
    pub fn request_with(
        &self,
        params: Value,
        token: Option<(&str, String)>,
        in_secrets: bool,
    ) -> MountRequest {
        let mut attrs = params.as_object().cloned().unwrap_or_default();
        let mut put = |k: &str, v: &str| {
            attrs.insert(k.into(), Value::String(v.into()));
        };
        put("secretProviderClass", "test-class");
        put("csi.storage.k8s.io/pod.name", &self.name);
        put("csi.storage.k8s.io/pod.namespace", &self.namespace);
        put("csi.storage.k8s.io/pod.uid", &self.uid);
        put(
            "csi.storage.k8s.io/serviceAccount.name",
            &self.service_account,
        );
        put("csi.storage.k8s.io/ephemeral", "true");
        let mut secrets = serde_json::Map::new();
        if let Some((aud, jwt)) = token {
            let tokens =
                json!({ aud: { "token": jwt, "expirationTimestamp": "2099-01-01T00:00:00Z" } })
                    .to_string();
            if in_secrets {
                secrets.insert(
                    "csi.storage.k8s.io/serviceAccount.tokens".into(),
                    Value::String(tokens),
                );
            } else {
                attrs.insert(
                    "csi.storage.k8s.io/serviceAccount.tokens".into(),
                    Value::String(tokens),
                );
            }
        }
        // As the driver's node server: a volume without nodePublishSecretRef (and no tokens
        // in secrets) has a nil map, which encoding/json writes as `null`.
        let secrets = if secrets.is_empty() {
            "null".to_string()
        } else {
            Value::Object(secrets).to_string()
        };
        MountRequest {
            attributes: Value::Object(attrs).to_string(),
            secrets,
            target_path: format!(
                "/var/lib/kubelet/pods/{}/volumes/kubernetes.io~csi/secrets/mount",
                self.uid
            ),
            permission: "420".into(),
            current_object_version: vec![],
        }
    }
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// File contents of a response by path.
pub fn file<'a>(resp: &'a MountResponse, path: &str) -> &'a [u8] {
    &resp
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| {
            panic!(
                "no file {path} in response: {:?}",
                resp.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            )
        })
        .contents
}

pub fn file_str<'a>(resp: &'a MountResponse, path: &str) -> &'a str {
    std::str::from_utf8(file(resp, path)).unwrap()
}

pub fn mode(resp: &MountResponse, path: &str) -> i32 {
    resp.files.iter().find(|f| f.path == path).unwrap().mode
}

pub fn version(resp: &MountResponse, id: &str) -> String {
    resp.object_version
        .iter()
        .find(|v| v.id == id)
        .unwrap_or_else(|| panic!("no version for {id}"))
        .version
        .clone()
}
