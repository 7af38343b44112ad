//! The calls the provider makes to the Kubernetes API for a Mount or the version key:
//! TokenRequest, Secret get and create. Each is bounded in time, and its error names the
//! call and, on a 403, the RBAC it needs.

use super::{KubeConfig, KubeError};
use crate::secret::SecretString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// Longest one call (TokenRequest, Secret get or create) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for the calls the provider makes.
pub struct KubeClient {
    client: kube::Client,
    server: String,
    pub namespace: String,
}

impl KubeClient {
    /// A client for `config`; needs the async runtime.
    pub fn new(config: KubeConfig) -> Result<KubeClient, KubeError> {
        crate::tls::install_crypto_provider();
        let client = kube::Client::try_from(config.inner).map_err(|e| KubeError::Config {
            source_name: config.source_name.clone(),
            detail: crate::text::error_chain(&e),
        })?;
        Ok(KubeClient {
            client,
            server: config.server,
            namespace: config.namespace,
        })
    }

    /// The kube-rs client, for watches.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Runs one call within [`CALL_TIMEOUT`], naming `action` and, on a 403, the RBAC
    /// `hint` in its error.
    async fn call<T>(
        &self,
        action: &str,
        hint: &str,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, KubeError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(action, hint, e)),
            Err(_) => Err(KubeError::Unreachable {
                server: self.server.clone(),
                detail: format!("no answer to {action} within {}s", CALL_TIMEOUT.as_secs()),
            }),
        }
    }

    fn error(&self, action: &str, hint: &str, e: kube::Error) -> KubeError {
        match e {
            kube::Error::Api(status) => KubeError::Status {
                action: action.to_string(),
                status: status.code,
                reason: status.reason.clone(),
                message: status.message.chars().take(500).collect(),
                hint: if status.code == 403 {
                    hint.to_string()
                } else {
                    String::new()
                },
            },
            e @ (kube::Error::HyperError(_) | kube::Error::Service(_)) => KubeError::Unreachable {
                server: self.server.clone(),
                detail: crate::text::error_chain(&e),
            },
            other => KubeError::BadAnswer {
                action: action.to_string(),
                detail: crate::text::error_chain(&other),
            },
        }
    }

    /// TokenRequest for `sa` bound to the pod: 900 s, audience only if given.
    pub async fn create_token(
        &self,
        namespace: &str,
        sa: &str,
        pod_name: &str,
        pod_uid: &str,
        audience: Option<&str>,
    ) -> Result<SecretString, KubeError> {
        let action = format!("create a token for service account {namespace}/{sa}");
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: Some(900),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod_name.into()),
                    uid: Some(pod_uid.into()),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let answer = self
            .call(
                &action,
                " (the provider's service account needs RBAC: create on serviceaccounts/token, cluster-wide; see deploy/vault-csi-provider.yaml)",
                api.create_token_request(sa, &PostParams::default(), &request),
            )
            .await?;
        answer
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .map(SecretString::new)
            .ok_or_else(|| KubeError::BadAnswer {
                action,
                detail: "no status.token".into(),
            })
    }

    /// The bytes under `key` of Secret `name` in our namespace; `None` if it does not exist.
    pub async fn get_secret_key(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, KubeError> {
        let action = format!("get Secret {}/{name}", self.namespace);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let hint = format!(
            " (the provider's service account needs RBAC: get on secrets named {name} in namespace {})",
            self.namespace
        );
        let Some(secret) = self.call(&action, &hint, api.get_opt(name)).await? else {
            return Ok(None);
        };
        secret
            .data
            .and_then(|mut d| d.remove(key))
            .map(|b| Some(b.0))
            .ok_or_else(|| KubeError::BadAnswer {
                action,
                detail: format!("data key {key:?} is missing"),
            })
    }

    /// Creates an immutable Secret; `Ok(false)` when one of that name already exists.
    pub async fn create_secret(
        &self,
        name: &str,
        key: &str,
        value: &[u8],
    ) -> Result<bool, KubeError> {
        let action = format!("create Secret {}/{name}", self.namespace);
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "vault-csi-provider".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            immutable: Some(true),
            data: Some([(key.to_string(), k8s_openapi::ByteString(value.to_vec()))].into()),
            ..Default::default()
        };
        let hint = format!(
            " (the provider's service account needs RBAC: create on secrets in namespace {})",
            self.namespace
        );
        match self
            .call(&action, &hint, api.create(&PostParams::default(), &secret))
            .await
        {
            Ok(_) => Ok(true),
            Err(KubeError::Status { status: 409, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
