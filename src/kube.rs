//! The few Kubernetes API calls the provider makes, over plain HTTPS with reqwest:
//! TokenRequest (a service-account token for a pod the driver sent none for) and Secret
//! get/create (the key of object versions). Configuration is discovered the standard way:
//! in a pod, its service account; otherwise `KUBECONFIG` or `~/.kube/config`.

use crate::secret::SecretString;
use crate::settings::EnvLookup;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A failure talking to the Kubernetes API. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "no Kubernetes API configuration: run in a pod with a service account, or set KUBECONFIG"
    )]
    NoConfig,
    #[error("Kubernetes configuration {source_name}: {detail}")]
    Config { source_name: String, detail: String },
    #[error("cannot reach the Kubernetes API at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("the Kubernetes API refused to {action}: {message}{hint}")]
    Status {
        action: String,
        status: u16,
        reason: String,
        message: String,
        hint: String,
    },
    #[error("the Kubernetes API's answer to {action} is not usable: {detail}")]
    BadAnswer { action: String, detail: String },
}

impl KubeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_transient(&self) -> bool {
        match self {
            KubeError::Unreachable { .. } => true,
            KubeError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// How the client authenticates.
enum Credentials {
    None,
    Token(SecretString),
    /// Re-read on use: projected service-account tokens rotate.
    TokenFile(PathBuf),
}

/// Where the API is and who we are there.
pub struct KubeConfig {
    pub server: url::Url,
    /// The namespace the provider lives in (in-cluster) or the context's namespace.
    pub namespace: String,
    credentials: Credentials,
    tls: rustls::ClientConfig,
    pub source_name: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawKubeconfig {
    #[serde(default)]
    current_context: String,
    #[serde(default)]
    contexts: Vec<Named<RawContext>>,
    #[serde(default)]
    clusters: Vec<Named<RawCluster>>,
    #[serde(default)]
    users: Vec<Named<RawUser>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: Option<T>,
}

#[derive(Deserialize, Default)]
struct RawContext {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawCluster {
    #[serde(default)]
    server: String,
    certificate_authority: Option<PathBuf>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawUser {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    client_certificate: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_key: Option<PathBuf>,
    client_key_data: Option<String>,
    exec: Option<Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<Value>,
}

impl KubeConfig {
    /// In a pod (KUBERNETES_SERVICE_HOST and a mounted token): its service account.
    /// Otherwise the first file of `KUBECONFIG`, or `~/.kube/config`. `None` when none exists.
    pub fn discover(env: EnvLookup<'_>) -> Result<Option<KubeConfig>, KubeError> {
        if let Some(list) = env("KUBECONFIG") {
            let file = list
                .split(':')
                .find(|p| !p.is_empty() && Path::new(p).exists())
                .ok_or_else(|| KubeError::Config {
                    source_name: format!("KUBECONFIG={list}"),
                    detail: "no such file".into(),
                })?;
            return Self::from_kubeconfig(Path::new(file)).map(Some);
        }
        if let (Some(host), Some(port)) = (
            env("KUBERNETES_SERVICE_HOST"),
            env("KUBERNETES_SERVICE_PORT"),
        ) && Path::new(IN_CLUSTER_DIR).join("token").exists()
        {
            return Self::in_cluster(&host, &port).map(Some);
        }
        if let Some(home) = env("HOME") {
            let file = Path::new(&home).join(".kube/config");
            if file.exists() {
                return Self::from_kubeconfig(&file).map(Some);
            }
        }
        Ok(None)
    }

    fn in_cluster(host: &str, port: &str) -> Result<KubeConfig, KubeError> {
        let source_name = "in-cluster service account".to_string();
        let err = |detail: String| KubeError::Config {
            source_name: source_name.clone(),
            detail,
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let server =
            url::Url::parse(&format!("https://{host}:{port}/")).map_err(|e| err(e.to_string()))?;
        let dir = Path::new(IN_CLUSTER_DIR);
        let ca =
            std::fs::read(dir.join("ca.crt")).map_err(|e| err(format!("reading ca.crt: {e}")))?;
        let namespace = std::fs::read_to_string(dir.join("namespace"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "default".into());
        let roots =
            crate::tls::Roots::Certs(crate::tls::certs_from_pem(&ca, "ca.crt").map_err(err)?);
        let tls = crate::tls::build(roots, None, None, false).map_err(err)?;
        Ok(KubeConfig {
            server,
            namespace,
            credentials: Credentials::TokenFile(dir.join("token")),
            tls,
            source_name,
        })
    }

    /// Reads a kubeconfig file and resolves its current context.
    pub fn from_kubeconfig(file: &Path) -> Result<KubeConfig, KubeError> {
        let source_name = file.display().to_string();
        let err = |detail: String| KubeError::Config {
            source_name: source_name.clone(),
            detail,
        };
        let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
        let raw: RawKubeconfig = serde_yaml_ng::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let find = |what: &str, name: &str| err(format!("{what} {name:?} is not defined"));

        let ctx = raw
            .contexts
            .iter()
            .find(|c| c.name == raw.current_context)
            .and_then(|c| c.value.as_ref())
            .ok_or_else(|| find("current-context", &raw.current_context))?;
        let cluster = raw
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .and_then(|c| c.value.as_ref())
            .ok_or_else(|| find("cluster", &ctx.cluster))?;
        let default_user = RawUser::default();
        let user = raw
            .users
            .iter()
            .find(|u| u.name == ctx.user)
            .and_then(|u| u.value.as_ref())
            .unwrap_or(&default_user);
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(err(format!(
                "user {:?} authenticates with an exec or auth-provider plugin, which is not supported: use a token, tokenFile or client certificate",
                ctx.user
            )));
        }

        let mut server = url::Url::parse(&cluster.server)
            .map_err(|e| err(format!("server {:?}: {e}", cluster.server)))?;
        if !server.path().ends_with('/') {
            let p = format!("{}/", server.path());
            server.set_path(&p);
        }
        let b64 = |s: &str, what: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|_| err(format!("{what} is not base64")))
        };
        let read = |p: &Path| {
            std::fs::read(rel(p)).map_err(|e| err(format!("reading {}: {e}", rel(p).display())))
        };

        let ca = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(d), _) => Some(b64(d, "certificate-authority-data")?),
            (None, Some(p)) => Some(read(p)?),
            (None, None) => None,
        };
        let roots = match ca {
            Some(pem) => crate::tls::Roots::Certs(
                crate::tls::certs_from_pem(&pem, "certificate-authority").map_err(err)?,
            ),
            None => crate::tls::Roots::System,
        };
        let cert = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(d), _) => Some(b64(d, "client-certificate-data")?),
            (None, Some(p)) => Some(read(p)?),
            (None, None) => None,
        };
        let key = match (&user.client_key_data, &user.client_key) {
            (Some(d), _) => Some(b64(d, "client-key-data")?),
            (None, Some(p)) => Some(read(p)?),
            (None, None) => None,
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some(crate::tls::ClientIdentity {
                certs: crate::tls::certs_from_pem(&c, "client-certificate").map_err(err)?,
                key: crate::tls::key_from_pem(&k, "client-key").map_err(err)?,
            }),
            (None, None) => None,
            _ => {
                return Err(err(
                    "a client certificate needs both certificate and key".into()
                ));
            }
        };
        let tls = crate::tls::build(
            roots,
            cluster.tls_server_name.as_deref(),
            identity,
            cluster.insecure_skip_tls_verify,
        )
        .map_err(err)?;
        let credentials = match (&user.token, &user.token_file) {
            (Some(t), _) => Credentials::Token(SecretString::new(t.clone())),
            (None, Some(f)) => Credentials::TokenFile(rel(f)),
            (None, None) => Credentials::None,
        };
        Ok(KubeConfig {
            server,
            namespace: ctx
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
            credentials,
            tls,
            source_name,
        })
    }
}

/// A client for the calls the provider makes.
pub struct KubeClient {
    http: reqwest::Client,
    server: url::Url,
    credentials: Credentials,
    pub namespace: String,
}

/// A Kubernetes object name or namespace, safe to put in a URL path.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && name != "."
        && name != ".."
}

impl KubeClient {
    pub fn new(config: KubeConfig) -> Result<KubeClient, KubeError> {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("vault-csi-provider/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .tls_backend_preconfigured(config.tls)
            .build()
            .map_err(|e| KubeError::Config {
                source_name: config.source_name.clone(),
                detail: crate::vault::error_chain(&e),
            })?;
        Ok(KubeClient {
            http,
            server: config.server,
            credentials: config.credentials,
            namespace: config.namespace,
        })
    }

    /// The bearer token, read fresh from a token file (kubelet rotates it). A file that
    /// cannot be read, or is empty, is an error: never an anonymous request.
    async fn bearer(&self) -> Result<Option<SecretString>, KubeError> {
        match &self.credentials {
            Credentials::None => Ok(None),
            Credentials::Token(t) => Ok(Some(t.clone())),
            Credentials::TokenFile(p) => {
                let unreadable = |detail: String| KubeError::Config {
                    source_name: "service-account token".into(),
                    detail: format!("cannot read {}: {detail}", p.display()),
                };
                let text = tokio::fs::read_to_string(p)
                    .await
                    .map_err(|e| unreadable(e.to_string()))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(unreadable("it is empty".into()));
                }
                Ok(Some(SecretString::new(token.to_string())))
            }
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        action: &str,
    ) -> Result<(u16, Value), KubeError> {
        let url = self.server.join(path).map_err(|e| KubeError::BadAnswer {
            action: action.into(),
            detail: e.to_string(),
        })?;
        let mut req = self
            .http
            .request(method, url)
            .header("accept", "application/json");
        if let Some(token) = self.bearer().await?
            && let Ok(mut v) =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        {
            v.set_sensitive(true);
            req = req.header("authorization", v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| KubeError::Unreachable {
            server: self.server.to_string(),
            detail: crate::vault::error_chain(&e),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| KubeError::Unreachable {
            server: self.server.to_string(),
            detail: crate::vault::error_chain(&e),
        })?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    fn status_error(action: &str, status: u16, body: &Value, hint: &str) -> KubeError {
        let message = body["message"]
            .as_str()
            .unwrap_or("no message")
            .chars()
            .take(500)
            .collect();
        KubeError::Status {
            action: action.to_string(),
            status,
            reason: body["reason"].as_str().unwrap_or("").to_string(),
            message,
            hint: if status == 403 {
                hint.to_string()
            } else {
                String::new()
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
        let mut spec = json!({
            "expirationSeconds": 900,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod_name, "uid": pod_uid},
        });
        if let Some(aud) = audience {
            spec["audiences"] = json!([aud]);
        }
        let body =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        let path = format!("api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token");
        let (status, answer) = self
            .call(reqwest::Method::POST, &path, Some(body), &action)
            .await?;
        if !(200..300).contains(&status) {
            return Err(Self::status_error(
                &action,
                status,
                &answer,
                " (the provider's service account needs RBAC: create on serviceaccounts/token, cluster-wide; see deploy/vault-csi-provider.yaml)",
            ));
        }
        answer["status"]["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::new(t.to_string()))
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
        let path = format!("api/v1/namespaces/{}/secrets/{name}", self.namespace);
        let (status, answer) = self
            .call(reqwest::Method::GET, &path, None, &action)
            .await?;
        match status {
            200 => {
                let data = answer["data"][key]
                    .as_str()
                    .ok_or_else(|| KubeError::BadAnswer {
                        action: action.clone(),
                        detail: format!("data key {key:?} is missing"),
                    })?;
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map(Some)
                    .map_err(|_| KubeError::BadAnswer {
                        action,
                        detail: format!("data key {key:?} is not base64"),
                    })
            }
            404 => Ok(None),
            s => Err(Self::status_error(
                &action,
                s,
                &answer,
                &format!(
                    " (the provider's service account needs RBAC: get on secrets named {name} in namespace {})",
                    self.namespace
                ),
            )),
        }
    }

    /// Creates an immutable Secret; `Ok(false)` when one of that name already exists.
    pub async fn create_secret(
        &self,
        name: &str,
        key: &str,
        value: &[u8],
    ) -> Result<bool, KubeError> {
        let action = format!("create Secret {}/{name}", self.namespace);
        let body = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "immutable": true,
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "vault-csi-provider"}},
            "data": {key: base64::engine::general_purpose::STANDARD.encode(value)},
        });
        let path = format!("api/v1/namespaces/{}/secrets", self.namespace);
        let (status, answer) = self
            .call(reqwest::Method::POST, &path, Some(body), &action)
            .await?;
        match status {
            200..=299 => Ok(true),
            409 => Ok(false),
            s => Err(Self::status_error(
                &action,
                s,
                &answer,
                &format!(
                    " (the provider's service account needs RBAC: create on secrets in namespace {})",
                    self.namespace
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_safe_for_paths() {
        for good in ["default", "kube-system", "app.v1", "a"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "..", "a/b", "A", "-a", ".a", "a b", "a%2F"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn kubeconfig_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u, namespace: team}\nclusters:\n- name: k\n  cluster: {server: 'http://127.0.0.1:9'}\nusers:\n- name: u\n  user: {token: abc}\n",
        )
        .unwrap();
        let c = KubeConfig::from_kubeconfig(&file).unwrap();
        assert_eq!(c.namespace, "team");
        assert_eq!(c.server.as_str(), "http://127.0.0.1:9/");
        std::fs::write(&file, "current-context: missing\n").unwrap();
        let err = KubeConfig::from_kubeconfig(&file).err().unwrap();
        assert!(err.to_string().contains("missing"), "{err}");
        let env = |k: &str| (k == "KUBECONFIG").then(|| "/no/such/file".to_string());
        assert!(KubeConfig::discover(&env).is_err());
        let none = |_: &str| None;
        assert!(matches!(KubeConfig::discover(&none), Ok(None)));
    }
}
