//! The key of object versions, shared by every node so that all agree on versions.
//!
//! From `-hmac-key-file` when set. Otherwise from the Kubernetes Secret named by
//! `-hmac-secret-name` in the provider's own namespace (data key `key`), created immutable
//! with 32 random bytes by whichever node needs it first; a node that loses the create race
//! reads the winner's. The key is held in memory once had. Without a key, versions are
//! empty strings, one warning is logged, mounts still work, and loading is retried at most
//! once a minute.

use crate::kube::{KubeClient, KubeError};
use crate::version::VersionKey;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

const DATA_KEY: &str = "key";
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Shortest key accepted from the Secret.
pub const MIN_SECRET_KEY: usize = 32;

/// Reads a key file: at least 16 bytes, surrounding whitespace ignored.
pub fn from_file(path: &Path) -> anyhow::Result<VersionKey> {
    use anyhow::Context;
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read -hmac-key-file {}", path.display()))?;
    let trimmed = bytes.trim_ascii();
    anyhow::ensure!(
        trimmed.len() >= 16,
        "-hmac-key-file {} holds {} bytes: use at least 16 random bytes (32 recommended)",
        path.display(),
        trimmed.len()
    );
    Ok(VersionKey::new(trimmed.to_vec()))
}

enum State {
    Loaded(VersionKey),
    Missing {
        retry_at: Option<Instant>,
        warned: bool,
    },
}

/// Where the key comes from, and the key once had.
pub struct KeySource {
    state: Mutex<State>,
    kube: Option<Arc<KubeClient>>,
    secret_name: String,
}

impl KeySource {
    /// A fixed key (from a file, or for tests).
    pub fn fixed(key: VersionKey) -> Self {
        crate::metrics::get()
            .version_key_loaded
            .set(i64::from(key.is_set()));
        KeySource {
            state: Mutex::new(State::Loaded(key)),
            kube: None,
            secret_name: String::new(),
        }
    }

    /// The key from the Secret `secret_name` through `kube` (`None`: no API access).
    pub fn from_secret(kube: Option<Arc<KubeClient>>, secret_name: String) -> Self {
        KeySource {
            state: Mutex::new(State::Missing {
                retry_at: None,
                warned: false,
            }),
            kube,
            secret_name,
        }
    }

    /// The key, loading it if it is not held yet (at most once a minute after a failure).
    pub async fn key(&self) -> VersionKey {
        let mut state = self.state.lock().await;
        let warned = match &*state {
            State::Loaded(k) => return k.clone(),
            State::Missing {
                retry_at: Some(t), ..
            } if Instant::now() < *t => return VersionKey::none(),
            State::Missing { warned, .. } => *warned,
        };
        let outcome = match &self.kube {
            None => Err(
                "no Kubernetes API configuration (in-cluster service account or KUBECONFIG)"
                    .to_string(),
            ),
            Some(kube) => {
                match tokio::time::timeout(Duration::from_secs(10), self.load(kube)).await {
                    Ok(Ok(k)) => Ok(k),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the Kubernetes API did not answer within 10s".to_string()),
                }
            }
        };
        match outcome {
            Ok(key) => {
                tracing::info!(secret = %self.secret_name, "object-version key loaded");
                crate::metrics::get().version_key_loaded.set(1);
                *state = State::Loaded(key.clone());
                key
            }
            Err(reason) => {
                if !warned {
                    tracing::warn!(
                        secret = %self.secret_name,
                        %reason,
                        "no object-version key: versions are empty until one can be had (set -hmac-key-file, or grant the RBAC in deploy/)"
                    );
                }
                *state = State::Missing {
                    retry_at: Some(Instant::now() + RETRY_AFTER),
                    warned: true,
                };
                VersionKey::none()
            }
        }
    }

    async fn load(&self, kube: &KubeClient) -> Result<VersionKey, KubeError> {
        if let Some(key) = kube.get_secret_key(&self.secret_name, DATA_KEY).await? {
            return self.checked(key);
        }
        let mut fresh = vec![0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut fresh[..]);
        if kube
            .create_secret(&self.secret_name, DATA_KEY, &fresh)
            .await?
        {
            tracing::info!(secret = %self.secret_name, namespace = %kube.namespace, "created the object-version key Secret");
            return Ok(VersionKey::new(fresh));
        }
        // Another node created it first: use theirs.
        let key = kube
            .get_secret_key(&self.secret_name, DATA_KEY)
            .await?
            .ok_or_else(|| KubeError::BadAnswer {
                action: format!("get Secret {}", self.secret_name),
                detail: "it was reported to exist but cannot be found".into(),
            })?;
        self.checked(key)
    }

    /// A key from the Secret must be at least [`MIN_SECRET_KEY`] bytes: a short (or empty)
    /// key would give guessable versions, the same on every cluster.
    fn checked(&self, key: Vec<u8>) -> Result<VersionKey, KubeError> {
        if key.len() < MIN_SECRET_KEY {
            return Err(KubeError::BadAnswer {
                action: format!("get Secret {}", self.secret_name),
                detail: format!(
                    "its data key {DATA_KEY:?} holds {} bytes; an object-version key needs at least {MIN_SECRET_KEY} random bytes: delete the Secret and the provider creates a good one",
                    key.len()
                ),
            });
        }
        Ok(VersionKey::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_from_the_secret_are_refused() {
        let source = KeySource::from_secret(None, "k".into());
        for n in [0, 1, 16, 31] {
            let e = source.checked(vec![7; n]).unwrap_err().to_string();
            assert!(e.contains("at least 32"), "{e}");
        }
        assert!(source.checked(vec![7; 32]).is_ok());
    }
}
