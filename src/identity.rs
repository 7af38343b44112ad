//! Identity stage: who the pod is to Vault. The service-account token comes from the
//! driver, or from the Kubernetes TokenRequest API when the driver sent none for the
//! audience; Vault tokens from logins are kept for reuse per identity.

use crate::secret::SecretString;
use crate::vault::{Connection, VaultToken};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Everything that decides which Vault token a Mount may use. The pod's namespace and
/// service account come from kubelet's attributes (which a pod author cannot override),
/// never from the token's claims; the role and connection settings are part of the key
/// so that no class can borrow another's login.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
    pub role: String,
    pub auth_mount: String,
    pub connection: Connection,
}

struct Entry {
    token: SecretString,
    /// Reuse ends here: two thirds into the token's lease.
    reuse_until: Option<Instant>,
}

/// Vault tokens by identity, at most `capacity` of them; `capacity` 0 disables reuse.
pub struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<Identity, Entry>>,
}

impl TokenCache {
    pub fn new(capacity: i64) -> Self {
        TokenCache {
            capacity: usize::try_from(capacity).unwrap_or(0),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, id: &Identity) -> Option<SecretString> {
        if self.capacity == 0 {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(id) {
            Some(e) if e.reuse_until.is_none_or(|t| Instant::now() < t) => Some(e.token.clone()),
            Some(_) => {
                entries.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, id: Identity, token: &VaultToken) {
        if self.capacity == 0 {
            return;
        }
        let reuse_until = (!token.lease_duration.is_zero())
            .then(|| Instant::now() + token.lease_duration.mul_f64(2.0 / 3.0));
        if reuse_until.is_some_and(|t| t <= Instant::now() + Duration::from_secs(1)) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&id) {
            // Drop the entry that expires first (never-expiring ones last).
            if let Some(victim) = entries
                .iter()
                .min_by_key(|(_, e)| {
                    e.reuse_until
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(u32::MAX as u64))
                })
                .map(|(k, _)| k.clone())
            {
                entries.remove(&victim);
            }
        }
        entries.insert(
            id,
            Entry {
                token: token.token.clone(),
                reuse_until,
            },
        );
    }

    pub fn remove(&self, id: &Identity) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::TlsSettings;

    fn id(sa: &str) -> Identity {
        Identity {
            namespace: "ns".into(),
            service_account: sa.into(),
            role: "r".into(),
            auth_mount: "kubernetes".into(),
            connection: Connection {
                address: "http://v".into(),
                namespace: None,
                tls: TlsSettings::default(),
                timeout: Duration::from_secs(1),
                max_retries: 0,
            },
        }
    }

    fn token(s: &str, lease: u64) -> VaultToken {
        VaultToken {
            token: SecretString::new(s.into()),
            lease_duration: Duration::from_secs(lease),
            renewable: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reuse_until_two_thirds_of_the_lease() {
        let c = TokenCache::new(10);
        c.put(id("a"), &token("t1", 300));
        assert_eq!(c.get(&id("a")).unwrap().expose(), "t1");
        assert!(c.get(&id("b")).is_none());
        tokio::time::advance(Duration::from_secs(199)).await;
        assert!(c.get(&id("a")).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(c.get(&id("a")).is_none());
    }

    #[tokio::test]
    async fn capacity_bounds_and_zero_disables() {
        let c = TokenCache::new(2);
        c.put(id("a"), &token("a", 100));
        c.put(id("b"), &token("b", 1000));
        c.put(id("c"), &token("c", 1000));
        assert_eq!(c.len(), 2);
        assert!(
            c.get(&id("a")).is_none(),
            "the soonest to expire went first"
        );
        let off = TokenCache::new(0);
        off.put(id("a"), &token("a", 100));
        assert!(off.get(&id("a")).is_none());
        let neg = TokenCache::new(-5);
        neg.put(id("a"), &token("a", 100));
        assert!(neg.get(&id("a")).is_none());
    }
}
