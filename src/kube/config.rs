//! Where the Kubernetes API is and who the provider is there, discovered the standard way
//! and in this order: `KUBECONFIG` if set, else the pod's own service account (in-cluster),
//! else `~/.kube/config`. The files are read with kube-rs's kubeconfig types; the context,
//! cluster and user are checked here first so that a broken file is named plainly, and
//! exec or auth-provider plugins (which would run programs) are refused.

use super::KubeError;
use crate::settings::EnvLookup;
use std::path::Path;
use std::time::Duration;

const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Longest a connection to the API server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A discovered configuration, ready to build a client from.
pub struct KubeConfig {
    pub(super) inner: kube::Config,
    /// The API server, for messages.
    pub server: String,
    /// The namespace the provider lives in (in-cluster) or the context's namespace.
    pub namespace: String,
    /// Where it came from, for messages.
    pub source_name: String,
}

impl KubeConfig {
    /// `KUBECONFIG` (its first file that exists), else in-cluster (the service host and
    /// port in the environment and a mounted token), else `~/.kube/config`. `None` when none
    /// of them exists.
    pub async fn discover(env: EnvLookup<'_>) -> Result<Option<KubeConfig>, KubeError> {
        if let Some(list) = env("KUBECONFIG") {
            let file = list
                .split(':')
                .find(|p| !p.is_empty() && Path::new(p).exists())
                .ok_or_else(|| KubeError::Config {
                    source_name: format!("KUBECONFIG={list}"),
                    detail: "no such file".into(),
                })?;
            return Self::from_kubeconfig(Path::new(file)).await.map(Some);
        }
        if env("KUBERNETES_SERVICE_HOST").is_some()
            && env("KUBERNETES_SERVICE_PORT").is_some()
            && Path::new(IN_CLUSTER_DIR).join("token").exists()
        {
            return Self::in_cluster().map(Some);
        }
        if let Some(home) = env("HOME") {
            let file = Path::new(&home).join(".kube/config");
            if file.exists() {
                return Self::from_kubeconfig(&file).await.map(Some);
            }
        }
        Ok(None)
    }

    /// kube's configuration, with our connect timeout, named by where it came from.
    fn with(mut inner: kube::Config, source_name: String) -> KubeConfig {
        inner.connect_timeout = Some(CONNECT_TIMEOUT);
        KubeConfig {
            server: inner.cluster_url.to_string(),
            namespace: inner.default_namespace.clone(),
            inner,
            source_name,
        }
    }

    fn in_cluster() -> Result<KubeConfig, KubeError> {
        let source_name = "in-cluster service account".to_string();
        let inner = kube::Config::incluster().map_err(|e| KubeError::Config {
            source_name: source_name.clone(),
            detail: crate::text::error_chain(&e),
        })?;
        Ok(Self::with(inner, source_name))
    }

    /// Reads a kubeconfig file and resolves its current context.
    pub async fn from_kubeconfig(file: &Path) -> Result<KubeConfig, KubeError> {
        let source_name = file.display().to_string();
        let err = |detail: String| KubeError::Config {
            source_name: source_name.clone(),
            detail,
        };
        let kubeconfig = kube::config::Kubeconfig::read_from(file)
            .map_err(|e| err(crate::text::error_chain(&e)))?;
        let find = |what: &str, name: &str| err(format!("{what} {name:?} is not defined"));
        let current = kubeconfig.current_context.clone().unwrap_or_default();
        let context = kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == current)
            .and_then(|c| c.context.as_ref())
            .ok_or_else(|| find("current-context", &current))?;
        if !kubeconfig
            .clusters
            .iter()
            .any(|c| c.name == context.cluster)
        {
            return Err(find("cluster", &context.cluster));
        }
        let user = context.user.clone().unwrap_or_default();
        let plugin = kubeconfig
            .auth_infos
            .iter()
            .find(|u| u.name == user)
            .and_then(|u| u.auth_info.as_ref())
            .is_some_and(|a| a.exec.is_some() || a.auth_provider.is_some());
        if plugin {
            return Err(err(format!(
                "user {user:?} authenticates with an exec or auth-provider plugin, which is not supported: use a token, tokenFile or client certificate"
            )));
        }
        let inner = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| err(crate::text::error_chain(&e)))?;
        Ok(Self::with(inner, source_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kubeconfig_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u, namespace: team}\nclusters:\n- name: k\n  cluster: {server: 'http://127.0.0.1:9'}\nusers:\n- name: u\n  user: {token: abc}\n",
        )
        .unwrap();
        let c = KubeConfig::from_kubeconfig(&file).await.unwrap();
        assert_eq!(c.namespace, "team");
        assert_eq!(c.server, "http://127.0.0.1:9/");
        std::fs::write(&file, "current-context: missing\n").unwrap();
        let err = KubeConfig::from_kubeconfig(&file).await.err().unwrap();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::write(
            &file,
            "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster: {server: 'https://x'}\nusers:\n- name: u\n  user: {exec: {command: evil, apiVersion: client.authentication.k8s.io/v1}}\n",
        )
        .unwrap();
        let err = KubeConfig::from_kubeconfig(&file).await.err().unwrap();
        assert!(err.to_string().contains("exec or auth-provider"), "{err}");
        let env = |k: &str| (k == "KUBECONFIG").then(|| "/no/such/file".to_string());
        assert!(KubeConfig::discover(&env).await.is_err());
        let none = |_: &str| None;
        assert!(matches!(KubeConfig::discover(&none).await, Ok(None)));
    }
}
