//! The key of object versions, shared by every node so that all agree on versions.
//!
//! From `-hmac-key-file` when set. Otherwise from the Kubernetes Secret named by
//! `-hmac-secret-name` in the provider's own namespace (data key `key`), created immutable
//! with 32 random bytes by whichever node needs it first; a node that loses the create race
//! reads the winner's.
//!
//! A Mount never waits on the Kubernetes API for it: the key is loaded in the background
//! from start ([`KeySource::load_in_background`]), retried with backoff until it is had,
//! and a Mount that finds none yet goes on with empty versions (said once in the log).

use crate::kube::{KubeClient, KubeError};
use crate::stages::version::VersionKey;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const DATA_KEY: &str = "key";
/// Longest one attempt to load the key may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits between attempts: doubling from the first to the last.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);
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

/// Where the key comes from, and the key once had.
pub struct KeySource {
    /// The key once had; read by Mounts, written once by the loader. Never held across I/O.
    key: RwLock<VersionKey>,
    kube: Option<Arc<KubeClient>>,
    secret_name: String,
    /// Whether a missing Secret is created (the server), or left alone (`mount`, run from a
    /// laptop against someone's cluster, must not leave Secrets behind).
    create: bool,
    /// Whether a Mount has already said that it found no key.
    said_missing: AtomicBool,
    /// Whether the background loader was started.
    started: AtomicBool,
}

impl KeySource {
    /// A fixed key (from a file, or for tests).
    pub fn fixed(key: VersionKey) -> Self {
        crate::metrics::get()
            .version_key_loaded
            .set(i64::from(key.is_set()));
        KeySource {
            key: RwLock::new(key),
            kube: None,
            secret_name: String::new(),
            create: false,
            said_missing: AtomicBool::new(false),
            started: AtomicBool::new(true),
        }
    }

    /// The key from the Secret `secret_name` through `kube` (`None`: no API access), once
    /// [`KeySource::load_in_background`] has had it; the Secret is created when missing
    /// only if `create`.
    pub fn from_secret(kube: Option<Arc<KubeClient>>, secret_name: String, create: bool) -> Self {
        KeySource {
            key: RwLock::new(VersionKey::none()),
            kube,
            secret_name,
            create,
            said_missing: AtomicBool::new(false),
            started: AtomicBool::new(false),
        }
    }

    /// The key as held now; never waits. Without one, versions are empty: the first Mount
    /// that meets this says so.
    pub fn key(&self) -> VersionKey {
        let key = self.key.read().unwrap_or_else(|p| p.into_inner()).clone();
        if !key.is_set() && !self.said_missing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                secret = %self.secret_name,
                "no object-version key yet: object versions are empty until it is loaded (set -hmac-key-file, or grant the RBAC in deploy/)"
            );
        }
        key
    }

    /// Starts loading the key in the background (once; a fixed key needs none) and waits
    /// at most `first_wait` for the first attempt, so that a healthy API gives the first
    /// Mounts their versions. Later attempts follow with backoff until the key is had.
    pub async fn load_in_background(self: &Arc<Self>, first_wait: Duration) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move { this.load_until_had(first_tx).await });
        let _ = tokio::time::timeout(first_wait, first_rx).await;
    }

    async fn load_until_had(&self, first_done: tokio::sync::oneshot::Sender<()>) {
        let Some(kube) = &self.kube else {
            tracing::warn!(
                secret = %self.secret_name,
                "no Kubernetes API configuration (in-cluster service account or KUBECONFIG) to load the object-version key from: versions stay empty (set -hmac-key-file)"
            );
            let _ = first_done.send(());
            return;
        };
        let mut first_done = Some(first_done);
        let mut wait = FIRST_RETRY;
        let mut warned = false;
        loop {
            let outcome = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.load(kube)).await {
                Ok(Ok(k)) => Ok(k),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "the Kubernetes API did not answer within {}s",
                    ATTEMPT_TIMEOUT.as_secs()
                )),
            };
            match outcome {
                Ok(key) => {
                    *self.key.write().unwrap_or_else(|p| p.into_inner()) = key;
                    crate::metrics::get().version_key_loaded.set(1);
                    tracing::info!(secret = %self.secret_name, "object-version key loaded");
                    if let Some(tx) = first_done.take() {
                        let _ = tx.send(());
                    }
                    return;
                }
                Err(reason) => {
                    if !warned {
                        tracing::warn!(
                            secret = %self.secret_name,
                            %reason,
                            "cannot load the object-version key yet; retrying in the background with backoff (set -hmac-key-file, or grant the RBAC in deploy/)"
                        );
                        warned = true;
                    } else {
                        tracing::debug!(secret = %self.secret_name, %reason, "object-version key still not loaded");
                    }
                }
            }
            if let Some(tx) = first_done.take() {
                let _ = tx.send(());
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LAST_RETRY);
        }
    }

    async fn load(&self, kube: &KubeClient) -> Result<VersionKey, KubeError> {
        if let Some(key) = kube.get_secret_key(&self.secret_name, DATA_KEY).await? {
            return self.checked(key);
        }
        if !self.create {
            return Err(KubeError::BadAnswer {
                action: format!("get Secret {}", self.secret_name),
                detail: format!(
                    "there is no such Secret in namespace {}, and this command does not create it (a provider does when it starts): object versions stay empty",
                    kube.namespace
                ),
            });
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
        let source = KeySource::from_secret(None, "k".into(), true);
        for n in [0, 1, 16, 31] {
            let e = source.checked(vec![7; n]).unwrap_err().to_string();
            assert!(e.contains("at least 32"), "{e}");
        }
        assert!(source.checked(vec![7; 32]).is_ok());
    }
}
