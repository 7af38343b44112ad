//! Dynamic secrets live exactly as long as their pod.
//!
//! Every leased answer handed to a pod of this node (a database user, a cloud key) is
//! tracked here with the Vault token that read it (a lease dies with its token). While the
//! pod runs ([`NodePods`], the watch of this node's pods), both are renewed before they
//! expire, up to their maximum TTLs, and the pod's rotation polls keep getting the same
//! credentials (the reuse store's entry is extended). When a renewal is capped near the
//! maximum, the reuse ends in time for the pod's next Mount to get new credentials. When
//! the pod is gone (deleted, replaced under its name, finished), its leases are revoked at
//! once with the token that read them: never another identity's, never one of the
//! provider's own. A pod this node never shows (the sync controller's, elsewhere) is left
//! alone after a grace period; its leases lapse at their TTL, as do all of them after a
//! provider restart.
//!
//! Bounded: the state has a byte budget in all and per pod, renewals run a few at a time
//! and are spread over time, and no lock is held across a request to Vault.

use crate::kube::{NodePods, PodState};
mod calls;

use crate::provider::identity::{Held, Identity, TokenCache};
use crate::provider::reuse::{LeaseKey, Leases};
use crate::secret::SecretString;
use crate::stages::answer::SecretResponse;
use crate::vault::ClientPool;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Bytes of tracked leases kept at most, in all.
pub const TRACKED_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of tracked leases kept at most for one pod.
pub const TRACKED_BYTES_PER_POD: usize = 256 * 1024;
/// Renewals and revocations in flight at once.
const AT_ONCE: usize = 4;
/// Longest one renewal or revocation may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pod may stay unseen by the watch (it may lag the Mount) before its leases are
/// left to lapse on their own.
const UNSEEN_GRACE: Duration = Duration::from_secs(60);
/// The longest wait between two looks at what is due.
const TICK: Duration = Duration::from_secs(1);
/// Where in its lease a lease is renewed (spread a tenth either way): before the reuse
/// store's two thirds, so that rotation polls never fall between the two.
const RENEW_AT: f64 = 0.5;
/// Revocations tried at most, a few seconds apart.
const REVOKE_ATTEMPTS: u32 = 3;

/// The token a lease was read with, shared by every lease it read.
struct TokenTrack {
    identity: Identity,
    epoch: u64,
    token: SecretString,
    state: Mutex<TokenState>,
}

struct TokenState {
    renewable: bool,
    /// `None`: no expiry (a root or periodic-less token).
    expires_at: Option<Instant>,
    /// The lease it was last given.
    ttl: Duration,
    /// When to renew it next; `None`: not any more (capped, or not renewable).
    next: Option<Instant>,
    in_flight: bool,
}

/// One lease handed to one pod.
struct Tracked {
    pod_uid: String,
    lease_id: String,
    /// The lease asked for at each renewal: the one it was given first.
    increment: Duration,
    renewable: bool,
    expires_at: Instant,
    next: Option<Instant>,
    in_flight: bool,
    since: Instant,
    token: Arc<TokenTrack>,
    /// Its entry in the reuse store, extended while it is renewed.
    reuse: LeaseKey,
    bytes: usize,
}

#[derive(Default)]
struct State {
    leases: HashMap<(String, String), Tracked>,
    tokens: HashMap<(Identity, u64), Arc<TokenTrack>>,
    bytes: usize,
    per_pod: HashMap<String, usize>,
    /// Leases of pods that are gone, with the attempts left.
    revoke: Vec<(Tracked, u32, Instant)>,
}

/// What to do now.
enum Job {
    Token(Arc<TokenTrack>),
    Renew(String, String),
    Revoke(Box<Tracked>, u32),
}

/// The renewals and revocations of leases handed to this node's pods.
pub struct Lifecycle {
    pods: Arc<NodePods>,
    reuse: Arc<Leases>,
    tokens: Arc<TokenCache>,
    renew: bool,
    revoke: bool,
    state: Mutex<State>,
    wake: tokio::sync::Notify,
    /// Identities already told that their policy lacks `sys/leases/revoke`.
    warned: Mutex<HashSet<Identity>>,
    said_full: std::sync::atomic::AtomicBool,
}

/// A time `frac` of the way through `ttl` from `now`, spread by up to a tenth either way so
/// that leases handed out together are not all renewed in the same second.
fn renew_at(now: Instant, ttl: Duration, frac: f64) -> Instant {
    let spread: f64 = rand::Rng::random_range(&mut rand::rng(), -0.1..0.1);
    now + ttl.mul_f64((frac + spread * frac).clamp(0.1, 0.95))
}

/// When to try a failed renewal again: soon, and well inside what is left.
fn retry_at(now: Instant, expires_at: Instant) -> Option<Instant> {
    let left = expires_at.saturating_duration_since(now);
    (left > Duration::from_secs(2)).then(|| now + (left / 3).min(Duration::from_secs(30)))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Lifecycle {
    pub fn new(
        pods: Arc<NodePods>,
        reuse: Arc<Leases>,
        tokens: Arc<TokenCache>,
        renew: bool,
        revoke: bool,
    ) -> Self {
        Lifecycle {
            pods,
            reuse,
            tokens,
            renew,
            revoke,
            state: Mutex::new(State::default()),
            wake: tokio::sync::Notify::new(),
            warned: Mutex::new(HashSet::new()),
            said_full: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Leases tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        lock(&self.state).leases.len()
    }

    /// Tracks a leased answer just read for the pod of `key` with the token `held`.
    pub fn track(&self, key: &LeaseKey, held: &Held, answer: &SecretResponse) {
        if answer.lease_id.is_empty() || answer.lease_duration <= 0 || key.pod_uid.is_empty() {
            return;
        }
        if self.pods.state(&key.pod_uid) == PodState::Gone {
            return;
        }
        let now = Instant::now();
        let lease = Duration::from_secs(
            u64::try_from(answer.lease_duration)
                .unwrap_or(0)
                .min(crate::vault::MAX_LEASE_SECS),
        );
        let bytes = 320
            + key.pod_uid.len() * 2
            + answer.lease_id.len()
            + key.identity.weight()
            + key.spec.path.len()
            + key.spec.body.as_ref().map_or(0, String::len);
        let mut state = lock(&self.state);
        let pod_bytes = state.per_pod.get(&key.pod_uid).copied().unwrap_or(0);
        if state.bytes + bytes > TRACKED_BYTES || pod_bytes + bytes > TRACKED_BYTES_PER_POD {
            if !self
                .said_full
                .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    "too many leases to track: further ones are neither renewed nor revoked, and lapse at their TTL"
                );
            }
            return;
        }
        let token_key = (key.identity.clone(), held.epoch);
        let token = state
            .tokens
            .entry(token_key)
            .or_insert_with(|| {
                let ttl = held.lease;
                Arc::new(TokenTrack {
                    identity: key.identity.clone(),
                    epoch: held.epoch,
                    token: held.token.clone(),
                    state: Mutex::new(TokenState {
                        renewable: held.renewable,
                        expires_at: held.expires_at,
                        ttl,
                        next: (held.renewable && !ttl.is_zero())
                            .then(|| {
                                held.expires_at
                                    .map(|e| e.checked_sub(ttl.mul_f64(1.0 / 3.0)).unwrap_or(now))
                            })
                            .flatten(),
                        in_flight: false,
                    }),
                })
            })
            .clone();
        let tracked = Tracked {
            pod_uid: key.pod_uid.clone(),
            lease_id: answer.lease_id.clone(),
            increment: lease,
            renewable: answer.renewable,
            expires_at: now + lease,
            next: answer.renewable.then(|| renew_at(now, lease, RENEW_AT)),
            in_flight: false,
            since: now,
            token,
            reuse: key.clone(),
            bytes,
        };
        let id = (tracked.pod_uid.clone(), tracked.lease_id.clone());
        if let Some(old) = state.leases.insert(id, tracked) {
            state.bytes -= old.bytes;
            *state.per_pod.entry(old.pod_uid).or_default() -= old.bytes;
        }
        state.bytes += bytes;
        *state.per_pod.entry(key.pod_uid.clone()).or_default() += bytes;
        crate::metrics::get()
            .leases_tracked
            .set(state.leases.len() as i64);
        drop(state);
        self.wake.notify_one();
    }

    /// Pod `uid` is gone: its leases are revoked now (or, with revocation off, forgotten).
    pub fn pod_gone(&self, uid: &str) {
        self.reuse.forget_pod(uid);
        let mut state = lock(&self.state);
        let ids: Vec<(String, String)> = state
            .leases
            .keys()
            .filter(|(pod, _)| pod == uid)
            .cloned()
            .collect();
        if ids.is_empty() {
            return;
        }
        let now = Instant::now();
        for id in ids {
            if let Some(t) = Self::remove(&mut state, &id)
                && self.revoke
            {
                state.revoke.push((t, REVOKE_ATTEMPTS, now));
            }
        }
        drop(state);
        tracing::debug!(pod_uid = %uid, "pod gone: revoking its leases");
        self.wake.notify_one();
    }

    fn remove(state: &mut State, id: &(String, String)) -> Option<Tracked> {
        let t = state.leases.remove(id)?;
        state.bytes -= t.bytes;
        if let Some(b) = state.per_pod.get_mut(&t.pod_uid) {
            *b -= t.bytes;
            if *b == 0 {
                state.per_pod.remove(&t.pod_uid);
            }
        }
        let in_use = state
            .leases
            .values()
            .any(|l| Arc::ptr_eq(&l.token, &t.token));
        if !in_use {
            state
                .tokens
                .remove(&(t.token.identity.clone(), t.token.epoch));
        }
        crate::metrics::get()
            .leases_tracked
            .set(state.leases.len() as i64);
        Some(t)
    }

    /// What is due now, and when to look again.
    fn due(&self, now: Instant) -> (Vec<Job>, Instant) {
        let mut state = lock(&self.state);
        let mut jobs = Vec::new();
        let mut next = now + TICK;
        let mut drop_ids = Vec::new();
        let mut gone_ids = Vec::new();
        let synced = self.pods.synced();
        for (id, t) in state.leases.iter_mut() {
            if t.expires_at <= now {
                drop_ids.push(id.clone());
                continue;
            }
            match self.pods.state(&t.pod_uid) {
                PodState::Gone => {
                    gone_ids.push(id.clone());
                    continue;
                }
                PodState::Unknown if synced && now > t.since + UNSEEN_GRACE => {
                    drop_ids.push(id.clone());
                    continue;
                }
                _ => {}
            }
            if !self.renew || t.in_flight {
                continue;
            }
            if let Some(at) = t.next {
                if at <= now {
                    t.in_flight = true;
                    jobs.push(Job::Renew(id.0.clone(), id.1.clone()));
                } else {
                    next = next.min(at);
                }
            }
        }
        for id in drop_ids {
            Self::remove(&mut state, &id);
        }
        for id in gone_ids {
            if let Some(t) = Self::remove(&mut state, &id)
                && self.revoke
            {
                state.revoke.push((t, REVOKE_ATTEMPTS, now));
            }
        }
        if self.renew {
            for token in state.tokens.values() {
                let mut s = lock(&token.state);
                match s.next {
                    Some(at) if at <= now && !s.in_flight => {
                        s.in_flight = true;
                        jobs.push(Job::Token(token.clone()));
                    }
                    Some(at) => next = next.min(at),
                    None => {}
                }
            }
        }
        let mut later = Vec::new();
        for (t, left, at) in std::mem::take(&mut state.revoke) {
            if at <= now {
                jobs.push(Job::Revoke(Box::new(t), left));
            } else {
                next = next.min(at);
                later.push((t, left, at));
            }
        }
        state.revoke = later;
        (jobs, next)
    }

    /// Renews and revokes until the process ends.
    pub async fn run(self: Arc<Self>, pool: Arc<ClientPool>) {
        loop {
            let now = Instant::now();
            let (jobs, next) = self.due(now);
            if jobs.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = self.wake.notified() => {}
                }
                continue;
            }
            futures_util::stream::iter(jobs)
                .for_each_concurrent(AT_ONCE, |job| {
                    let (this, pool) = (self.clone(), pool.clone());
                    async move { this.work(&pool, job).await }
                })
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::calls::revoke_policy;
    use super::*;

    #[test]
    fn the_revoke_policy_names_the_roles_own_leases() {
        assert_eq!(
            revoke_policy("database/creds/app/AbC12.x-y_z"),
            r#"path "sys/leases/revoke/database/creds/app/*" { capabilities = ["update"] }"#
        );
        assert_eq!(
            revoke_policy("weird id"),
            r#"path "sys/leases/revoke" { capabilities = ["update"] }"#
        );
        assert!(crate::vault::plain_lease_id("aws/creds/deploy/x1"));
        for bad in ["", "a//b", "../sys/x", "a/./b", "a b", "a?b", "/a"] {
            assert!(!crate::vault::plain_lease_id(bad), "{bad}");
        }
    }

    fn setup() -> (Arc<NodePods>, Lifecycle) {
        let pods = Arc::new(NodePods::new("n".into()));
        let lifecycle = Lifecycle::new(
            pods.clone(),
            Arc::new(Leases::new(10)),
            Arc::new(TokenCache::new(10)),
            true,
            true,
        );
        (pods, lifecycle)
    }

    fn pod(name: &str, uid: &str) -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running"},
        }))
        .unwrap()
    }

    fn track(l: &Lifecycle, uid: &str, lease_id: &str) {
        let key = LeaseKey {
            pod_uid: uid.into(),
            identity: crate::provider::identity::tests_support::identity("a"),
            spec: crate::stages::plan::ReadSpec {
                method: crate::stages::plan::Method::Get,
                path: "/v1/database/creds/app".into(),
                query: vec![],
                body: None,
            },
        };
        let token = crate::vault::VaultToken {
            token: SecretString::new("t".into()),
            lease_duration: Duration::from_secs(3600),
            renewable: true,
        };
        let held = Held::new(&token, 1, Instant::now());
        let answer = SecretResponse::parse(
            format!(
                r#"{{"lease_id":"{lease_id}","lease_duration":60,"renewable":true,"data":{{}}}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        l.track(&key, &held, &answer);
    }

    #[tokio::test(start_paused = true)]
    async fn running_pods_are_renewed_gone_ones_revoked_and_unseen_ones_left_alone() {
        use kube::runtime::watcher::Event;
        let (pods, l) = setup();
        pods.apply(Event::Init);
        pods.apply(Event::InitApply(pod("a", "ua")));
        pods.apply(Event::InitApply(pod("b", "ub")));
        pods.apply(Event::InitDone);
        track(&l, "ua", "database/creds/app/1");
        track(&l, "ub", "database/creds/app/2");
        track(&l, "elsewhere", "database/creds/app/3");
        assert_eq!(l.tracked(), 3);
        // Nothing is due at once.
        let (jobs, _) = l.due(Instant::now());
        assert!(jobs.is_empty());
        // Half way through the 60 s lease: both running pods' leases and the unseen one
        // (within its grace) are renewed.
        tokio::time::advance(Duration::from_secs(40)).await;
        let (jobs, _) = l.due(Instant::now());
        let renewed = jobs.iter().filter(|j| matches!(j, Job::Renew(..))).count();
        assert_eq!(renewed, 3);
        // Pod b deleted: its lease is revoked, the others kept.
        for uid in pods.apply(Event::Delete(pod("b", "ub"))) {
            l.pod_gone(&uid);
        }
        let (jobs, _) = l.due(Instant::now());
        let revoked: Vec<&str> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Revoke(t, _) => Some(t.lease_id.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(revoked, ["database/creds/app/2"]);
        assert_eq!(l.tracked(), 2);
        // The pod this node never shows is dropped after the grace, not revoked.
        for t in lock(&l.state).leases.values_mut() {
            t.in_flight = false;
            t.expires_at = Instant::now() + Duration::from_secs(3600);
        }
        tokio::time::advance(UNSEEN_GRACE).await;
        let (jobs, _) = l.due(Instant::now());
        assert!(jobs.iter().all(|j| !matches!(j, Job::Revoke(..))));
        assert_eq!(l.tracked(), 1);
        assert!(
            lock(&l.state)
                .leases
                .contains_key(&("ua".to_string(), "database/creds/app/1".to_string()))
        );
    }

    #[test]
    fn the_state_has_a_byte_budget_per_pod() {
        let (_pods, l) = setup();
        for i in 0..10_000 {
            track(&l, "greedy", &format!("database/creds/app/{i}"));
        }
        let kept = l.tracked();
        assert!(kept < 10_000 && kept > 100, "{kept}");
        assert!(lock(&l.state).bytes <= TRACKED_BYTES_PER_POD);
        // Another pod still has room.
        track(&l, "modest", "database/creds/app/x");
        assert_eq!(l.tracked(), kept + 1);
    }

    #[test]
    fn renewals_come_before_the_reuse_ends_and_retries_inside_the_lease() {
        let now = Instant::now();
        let ttl = Duration::from_secs(60);
        for _ in 0..100 {
            let at = renew_at(now, ttl, RENEW_AT);
            assert!(at > now + Duration::from_secs(20) && at < now + Duration::from_secs(40));
        }
        assert_eq!(retry_at(now, now + Duration::from_secs(1)), None);
        let r = retry_at(now, now + Duration::from_secs(9)).unwrap();
        assert_eq!(r, now + Duration::from_secs(3));
        let r = retry_at(now, now + Duration::from_secs(600)).unwrap();
        assert_eq!(r, now + Duration::from_secs(30));
    }
}
