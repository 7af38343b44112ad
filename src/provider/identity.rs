//! Identity stage: who the pod is to Vault, and the Vault token that goes with it.
//!
//! The service-account token comes from the driver, or from the Kubernetes TokenRequest API
//! when the driver sent none for the audience (see `token.rs`). Vault tokens are held per
//! identity: one login per identity however many pods mount at once (single flight), reused
//! until two thirds of the lease, then renewed (`renew-self`) while renewable, else replaced
//! by a new login before the old one expires.

use crate::secret::SecretString;
use crate::vault::{Connection, VaultToken};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
    /// From the driver's token when it sent one; a recreated account is a new identity.
    pub service_account_uid: String,
    /// The token audience: a token for one audience never serves a class asking another.
    pub audience: String,
    pub role: String,
    pub auth_mount: String,
    pub connection: Connection,
}

/// A Vault token as held for reuse.
#[derive(Debug, Clone)]
pub struct Held {
    pub token: SecretString,
    pub renewable: bool,
    /// Reuse without asking Vault until here (two thirds into the lease); `None`: no expiry.
    pub reuse_until: Option<Instant>,
    /// The lease ends here.
    pub expires_at: Option<Instant>,
    /// The lease the token was given (at login or its last renewal).
    pub lease: Duration,
    /// Changes with every new login for this identity; answers read with an older token
    /// are not reused.
    pub epoch: u64,
}

/// Renewal must leave at least this much lease to be worth keeping.
const MIN_LEASE: Duration = Duration::from_secs(1);

impl Held {
    pub fn new(token: &VaultToken, epoch: u64, now: Instant) -> Held {
        let lease = token.lease_duration;
        let (reuse_until, expires_at) = if lease.is_zero() {
            (None, None)
        } else {
            (Some(now + lease.mul_f64(2.0 / 3.0)), Some(now + lease))
        };
        Held {
            token: token.token.clone(),
            renewable: token.renewable,
            reuse_until,
            expires_at,
            lease,
            epoch,
        }
    }

    /// Usable as it is.
    pub fn fresh(&self, now: Instant) -> bool {
        self.reuse_until.is_none_or(|t| now < t)
    }

    /// Worth renewing: renewable and still comfortably alive.
    pub fn renewable_now(&self, now: Instant) -> bool {
        self.renewable
            && self
                .expires_at
                .is_some_and(|t| now + Duration::from_secs(1) < t)
    }
}

/// The token slot of one identity. Holding its lock is the single flight: whoever holds it
/// logs in or renews; everyone else waits and then finds the token.
#[derive(Debug, Default)]
pub struct Slot {
    pub held: Option<Held>,
    pub epoch: u64,
    last_used: Option<Instant>,
}

impl Slot {
    /// Records a fresh login or renewal.
    pub fn store(&mut self, token: &VaultToken, new_login: bool) -> Held {
        if new_login {
            self.epoch += 1;
        }
        let held = Held::new(token, self.epoch, Instant::now());
        let keep = held
            .expires_at
            .is_none_or(|t| t > Instant::now() + MIN_LEASE);
        self.held = keep.then(|| held.clone());
        held
    }
}

/// Token slots by identity, at most `capacity` of them; `capacity` 0 disables reuse (and
/// with it single flight), as `-cache-size` does in the Go provider.
pub struct TokenCache {
    capacity: usize,
    slots: Mutex<HashMap<Identity, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl TokenCache {
    pub fn new(capacity: i64) -> Self {
        TokenCache {
            capacity: usize::try_from(capacity).unwrap_or(0),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The slot of `id`, created if needed.
    pub fn slot(&self, id: &Identity) -> Arc<tokio::sync::Mutex<Slot>> {
        if self.capacity == 0 {
            return Arc::new(tokio::sync::Mutex::new(Slot::default()));
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(id) {
            return s.clone();
        }
        let budget = IDENTITY_BYTES.saturating_sub(id.weight());
        if slots.len() >= self.capacity || weight_of(&slots) > budget {
            evict(&mut slots, self.capacity, budget);
        }
        let slot = Arc::new(tokio::sync::Mutex::new(Slot {
            last_used: Some(Instant::now()),
            ..Default::default()
        }));
        slots.insert(id.clone(), slot.clone());
        crate::metrics::get().identities.set(slots.len() as i64);
        slot
    }

    /// Drops the token of `id` if it is still the one of `epoch` (Vault refused it).
    pub async fn invalidate(&self, id: &Identity, epoch: u64) {
        let slot = self.slot(id);
        let mut s = slot.lock().await;
        if s.held.as_ref().is_some_and(|h| h.epoch == epoch) {
            s.held = None;
        }
    }

    /// The token of `id` and `epoch` was renewed elsewhere (the lease lifecycle keeps the
    /// tokens of running pods' leases alive): the slot learns its new lease, so Mounts keep
    /// using it (and the answers read with it) rather than logging in again. A slot busy
    /// with a login or renewal of its own is left alone.
    pub fn renewed(&self, id: &Identity, epoch: u64, token: &VaultToken) {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(id).cloned()
        };
        let Some(slot) = slot else {
            return;
        };
        if let Ok(mut s) = slot.try_lock()
            && s.held.as_ref().is_some_and(|h| h.epoch == epoch)
        {
            let held = Held::new(token, epoch, Instant::now());
            s.held = Some(held);
        }
    }

    /// Identities held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Bytes of identities (their keys: names, addresses, paths) kept at most; with the size
/// limits on each parameter this bounds the token cache by bytes, not only by count.
pub const IDENTITY_BYTES: usize = 4 * 1024 * 1024;

impl Identity {
    /// About the bytes this identity takes as a key.
    pub fn weight(&self) -> usize {
        let c = &self.connection;
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map_or(0, |p| p.as_os_str().len());
        256 + self.namespace.len()
            + self.service_account.len()
            + self.service_account_uid.len()
            + self.audience.len()
            + self.role.len()
            + self.auth_mount.len()
            + c.address.len()
            + c.namespace.as_ref().map_or(0, String::len)
            + path(&c.tls.ca_cert)
            + path(&c.tls.ca_directory)
            + path(&c.tls.client_cert)
            + path(&c.tls.client_key)
            + c.tls.server_name.as_ref().map_or(0, String::len)
    }
}

fn weight_of(slots: &HashMap<Identity, Arc<tokio::sync::Mutex<Slot>>>) -> usize {
    slots.keys().map(Identity::weight).sum()
}

/// Makes room: first slots without a usable token, then the least recently used, until
/// there are fewer than `capacity` and they weigh at most `budget`. Slots in use (locked)
/// are never dropped.
fn evict(
    slots: &mut HashMap<Identity, Arc<tokio::sync::Mutex<Slot>>>,
    capacity: usize,
    budget: usize,
) {
    let now = Instant::now();
    slots.retain(|_, s| match s.try_lock() {
        Ok(g) => g
            .held
            .as_ref()
            .is_some_and(|h| h.fresh(now) || h.renewable_now(now)),
        Err(_) => true,
    });
    while slots.len() >= capacity || weight_of(slots) > budget {
        let oldest = slots
            .iter()
            .filter_map(|(k, s)| s.try_lock().ok().map(|g| (k.clone(), g.last_used)))
            .min_by_key(|(_, t)| *t)
            .map(|(k, _)| k);
        match oldest {
            Some(k) => {
                slots.remove(&k);
            }
            None => break,
        }
    }
}

/// Marks a slot as used now (for eviction order).
pub fn touch(slot: &mut Slot) {
    slot.last_used = Some(Instant::now());
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::settings::TlsSettings;

    pub fn identity(sa: &str) -> Identity {
        Identity {
            namespace: "ns".into(),
            service_account: sa.into(),
            service_account_uid: String::new(),
            audience: "vault".into(),
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
}

#[cfg(test)]
mod tests {
    use super::tests_support::identity as id;
    use super::*;

    fn token(s: &str, lease: u64) -> VaultToken {
        VaultToken {
            token: SecretString::new(s.into()),
            lease_duration: Duration::from_secs(lease),
            renewable: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_until_two_thirds_then_renewable_until_the_end() {
        let c = TokenCache::new(10);
        let slot = c.slot(&id("a"));
        let held = slot.lock().await.store(&token("t1", 300), true);
        assert!(held.fresh(Instant::now()));
        tokio::time::advance(Duration::from_secs(199)).await;
        assert!(held.fresh(Instant::now()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!held.fresh(Instant::now()));
        assert!(held.renewable_now(Instant::now()));
        tokio::time::advance(Duration::from_secs(98)).await;
        assert!(
            !held.renewable_now(Instant::now()),
            "too close to the end: log in again"
        );
        // The same slot for the same identity, another for another.
        assert!(Arc::ptr_eq(&slot, &c.slot(&id("a"))));
        assert!(!Arc::ptr_eq(&slot, &c.slot(&id("b"))));
    }

    #[tokio::test]
    async fn epochs_guard_invalidation_and_capacity_bounds() {
        let c = TokenCache::new(2);
        let slot = c.slot(&id("a"));
        let first = slot.lock().await.store(&token("t1", 300), true);
        let second = slot.lock().await.store(&token("t2", 300), true);
        assert_ne!(first.epoch, second.epoch);
        c.invalidate(&id("a"), first.epoch).await;
        assert!(
            slot.lock().await.held.is_some(),
            "a stale epoch does not drop the new token"
        );
        c.invalidate(&id("a"), second.epoch).await;
        assert!(slot.lock().await.held.is_none());
        c.slot(&id("b")).lock().await.store(&token("b", 300), true);
        c.slot(&id("c"));
        c.slot(&id("d"));
        assert!(c.len() <= 2);
        let off = TokenCache::new(0);
        assert!(!Arc::ptr_eq(&off.slot(&id("a")), &off.slot(&id("a"))));
    }
}
