//! Fetch-stage reuse, so that a node full of pods is light on Vault:
//! - identical reads (same identity, token, path, method, query and body) that are in
//!   flight at the same time become one request ([`Flights`]); with `-read-share-window`
//!   a finished answer without a lease also serves identical reads for that long;
//! - answers with a lease (dynamic database or cloud credentials) and issued certificates
//!   are reused for the same pod and object until two thirds of their lease or validity
//!   have passed ([`Leases`]), so rotation polls mint nothing new while the old ones are good.

use crate::provider::identity::Identity;
use crate::stages::answer::SecretResponse;
use crate::stages::plan::ReadSpec;
use crate::vault::VaultError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;
use tokio::time::Instant;

type Outcome = Result<Arc<SecretResponse>, VaultError>;
/// A read's shared outcome and when it started.
type Flight = (Arc<OnceCell<Outcome>>, Instant);

/// How long an answer may be reused for the pod that asked: two thirds of its lease, or of
/// the remaining validity of the certificate it issued. `None`: not reusable (static data).
/// Pure: `now_unix` is the current time in seconds.
pub fn reuse_lifetime(answer: &SecretResponse, now_unix: i64) -> Option<Duration> {
    let max = crate::vault::MAX_LEASE_SECS as i64;
    if !answer.lease_id.is_empty() && answer.lease_duration > 0 {
        let secs = answer.lease_duration.min(max) as u64;
        return Some(Duration::from_secs(secs).mul_f64(2.0 / 3.0));
    }
    let data = answer.data.as_ref()?;
    let is_cert = data.get("certificate").is_some_and(|c| c.is_string());
    let expiration = data.get("expiration").and_then(|e| e.as_i64())?;
    (is_cert && expiration > now_unix).then(|| {
        let secs = expiration.saturating_sub(now_unix).min(max) as u64;
        Duration::from_secs(secs).mul_f64(2.0 / 3.0)
    })
}

/// Whether an answer is one pod's own (a lease or a certificate), never shared by the
/// read-share window.
fn is_per_pod(answer: &SecretResponse) -> bool {
    reuse_lifetime(answer, 0).is_some()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Who reads what with which token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadKey {
    pub identity: Identity,
    pub epoch: u64,
    pub spec: ReadSpec,
}

/// Reads in flight (and, with a window, recently finished) by key.
pub struct Flights {
    map: Mutex<HashMap<ReadKey, Flight>>,
    window: Duration,
}

impl Flights {
    pub fn new(window: Duration) -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
            window,
        }
    }

    /// Runs `read`, or joins an identical one already running (or shared within the window).
    /// An answer that is one pod's own (a lease, a certificate) is never handed to a pod that
    /// joined: that pod makes its own read.
    pub async fn run(&self, key: ReadKey, read: impl Future<Output = Outcome>) -> Outcome {
        let mut joined = false;
        let cell = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let usable = map.get(&key).filter(|(cell, created)| match cell.get() {
                None => true,
                Some(Ok(a)) => *created + self.window > now && !is_per_pod(a),
                Some(Err(_)) => false,
            });
            match usable {
                Some((cell, _)) => {
                    joined = true;
                    cell.clone()
                }
                None => {
                    if map.len() > 4096 {
                        map.retain(|_, (c, created)| {
                            c.get().is_none() || *created + self.window > now
                        });
                    }
                    let cell = Arc::new(OnceCell::new());
                    map.insert(key.clone(), (cell.clone(), now));
                    cell
                }
            }
        };
        let mut read = Some(read);
        let out = cell
            .get_or_init(|| {
                joined = false;
                read.take().expect("read is taken once")
            })
            .await
            .clone();
        if joined {
            if matches!(&out, Ok(a) if is_per_pod(a))
                && let Some(own) = read.take()
            {
                return own.await;
            }
            crate::metrics::get().coalesced_reads.inc();
        }
        let keep = self.window > Duration::ZERO && matches!(&out, Ok(a) if !is_per_pod(a));
        if !keep {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&key).is_some_and(|(c, _)| Arc::ptr_eq(c, &cell)) {
                map.remove(&key);
            }
        }
        out
    }
}

/// One pod's object read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    pub pod_uid: String,
    pub identity: Identity,
    pub spec: ReadSpec,
}

struct LeaseEntry {
    answer: Arc<SecretResponse>,
    reuse_until: Instant,
    epoch: u64,
    /// When it was last stored or handed out, as a sequence number (eviction order).
    used: u64,
    /// About the bytes it takes.
    bytes: usize,
}

/// About the bytes an answer takes in memory, counted without copying it.
fn answer_size(answer: &SecretResponse) -> usize {
    fn value(v: &serde_json::Value) -> usize {
        32 + match v {
            serde_json::Value::String(s) => s.len(),
            serde_json::Value::Array(items) => items.iter().map(value).sum(),
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| k.len() + value(v)).sum(),
            _ => 0,
        }
    }
    256 + answer.request_id.len()
        + answer.lease_id.len()
        + answer
            .data
            .as_ref()
            .map_or(0, |d| d.iter().map(|(k, v)| k.len() + value(v)).sum())
        + answer.auth.as_ref().map_or(0, value)
        + answer.wrap_info.as_ref().map_or(0, value)
}

/// Bytes of leases and certificates kept at most, whatever `-lease-store-size` allows.
pub const LEASE_STORE_BYTES: usize = 8 * 1024 * 1024;

/// Leased answers and issued certificates kept for the pod that asked, at most
/// `capacity` of them (`-lease-store-size`). When full, expired entries go first, then the
/// ones closest to the end of their reuse: an evicted entry costs that pod a new credential
/// or certificate at its next rotation poll, nothing more.
pub struct Leases {
    map: Mutex<HashMap<LeaseKey, LeaseEntry>>,
    /// Counts stores and hand-outs, for least-recently-used order.
    clock: std::sync::atomic::AtomicU64,
    /// When expired entries (pods gone, leases past reuse) were last dropped.
    last_purge: Mutex<Option<Instant>>,
    capacity: usize,
}

impl Default for Leases {
    fn default() -> Self {
        Leases::new(DEFAULT_LEASE_STORE_SIZE)
    }
}

/// Leases and certificates kept at most, by default (`-lease-store-size`).
pub const DEFAULT_LEASE_STORE_SIZE: usize = 1000;

/// How often expired entries are dropped once there are many.
const PURGE_EVERY: Duration = Duration::from_secs(60);

impl Leases {
    /// A store of at most `capacity` entries; 0 keeps nothing.
    pub fn new(capacity: usize) -> Self {
        Leases {
            map: Mutex::new(HashMap::new()),
            clock: std::sync::atomic::AtomicU64::new(0),
            last_purge: Mutex::new(None),
            capacity,
        }
    }

    /// A kept answer, if it is still within its reuse time and was read with this token.
    pub fn get(&self, key: &LeaseKey, epoch: u64) -> Option<Arc<SecretResponse>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = map
            .get_mut(key)
            .filter(|e| e.epoch == epoch && Instant::now() < e.reuse_until)?;
        e.used = self.tick();
        crate::metrics::get().leases_reused.inc();
        Some(e.answer.clone())
    }

    fn tick(&self) -> u64 {
        self.clock
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Keeps `answer` if it has a lease or is a certificate. Reuse also ends with the token
    /// that read it: Vault revokes a token's leases with the token.
    pub fn put(
        &self,
        key: LeaseKey,
        answer: &Arc<SecretResponse>,
        epoch: u64,
        token_expires: Option<Instant>,
    ) {
        let Some(lifetime) = reuse_lifetime(answer, now_unix()) else {
            return;
        };
        let now = Instant::now();
        let mut reuse_until = now + lifetime;
        if let Some(t) = token_expires {
            reuse_until = reuse_until.min(t);
        }
        if reuse_until <= now || self.capacity == 0 {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= 1024 {
            let mut last = self.last_purge.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t + PURGE_EVERY < now) {
                map.retain(|_, e| e.reuse_until > now);
                *last = Some(now);
            }
        }
        let bytes = answer_size(answer)
            + key.identity.weight()
            + key.pod_uid.len()
            + key.spec.path.len()
            + key.spec.body.as_ref().map_or(0, String::len);
        if bytes > LEASE_STORE_BYTES / 4 {
            return;
        }
        let replaced = map.remove(&key).is_some();
        let full = |map: &HashMap<LeaseKey, LeaseEntry>| {
            map.len() >= self.capacity
                || map.values().map(|e| e.bytes).sum::<usize>() + bytes > LEASE_STORE_BYTES
        };
        if full(&map) {
            map.retain(|_, e| e.reuse_until > now);
        }
        while full(&map) {
            // Closest to the end of its reuse first; among equals (reuse bounded by the
            // same token), the least recently used.
            let closest = map
                .iter()
                .min_by_key(|(_, e)| (e.reuse_until, e.used))
                .map(|(k, _)| k.clone());
            match closest {
                Some(k) => {
                    map.remove(&k);
                }
                None => break,
            }
        }
        map.insert(
            key,
            LeaseEntry {
                answer: answer.clone(),
                reuse_until,
                epoch,
                used: self.tick(),
                bytes,
            },
        );
        let metrics = crate::metrics::get();
        if replaced {
            metrics.leases_replaced.inc();
        }
        metrics.lease_store_entries.set(map.len() as i64);
    }

    /// Sets how long the kept answer of `key` may be reused, if it is still the one with
    /// `lease_id`: later while its lease is renewed, earlier when the lease (or the token
    /// that read it) nears its end, so that the pod's next Mount gets new credentials.
    pub fn reuse_until(&self, key: &LeaseKey, lease_id: &str, until: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(key)
            && e.answer.lease_id == lease_id
        {
            e.reuse_until = until;
        }
    }

    /// Drops every answer kept for pod `uid` (it is gone).
    pub fn forget_pod(&self, uid: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|k, _| k.pod_uid != uid);
        crate::metrics::get()
            .lease_store_entries
            .set(map.len() as i64);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> SecretResponse {
        SecretResponse::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn lifetimes() {
        let leased = answer(
            r#"{"lease_id":"database/creds/app/x","lease_duration":3600,"data":{"username":"u"}}"#,
        );
        assert_eq!(reuse_lifetime(&leased, 0), Some(Duration::from_secs(2400)));
        let cert = answer(r#"{"data":{"certificate":"-----BEGIN","expiration":1300}}"#);
        assert_eq!(reuse_lifetime(&cert, 1000), Some(Duration::from_secs(200)));
        assert_eq!(reuse_lifetime(&cert, 2000), None, "expired");
        let kv1 = answer(r#"{"lease_id":"","lease_duration":2764800,"data":{"k":"v"}}"#);
        assert_eq!(
            reuse_lifetime(&kv1, 0),
            None,
            "a TTL hint without a lease is static data"
        );
        assert_eq!(
            reuse_lifetime(&answer(r#"{"data":{"expiration":5}}"#), 0),
            None
        );
    }

    #[tokio::test]
    async fn concurrent_identical_reads_run_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let flights = Arc::new(Flights::new(Duration::ZERO));
        let runs = Arc::new(AtomicUsize::new(0));
        let key = ReadKey {
            identity: crate::provider::identity::tests_support::identity("a"),
            epoch: 1,
            spec: ReadSpec {
                method: crate::stages::plan::Method::Get,
                path: "/v1/secret/data/a".into(),
                query: vec![],
                body: None,
            },
        };
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (f, r, k) = (flights.clone(), runs.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                f.run(k, async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Arc::new(SecretResponse::default()))
                })
                .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Finished and no window: the next read is a new one.
        let r = runs.clone();
        flights
            .run(key, async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(Arc::new(SecretResponse::default()))
            })
            .await
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_store_is_bounded_and_evicts_the_closest_to_expiry() {
        let leases = Leases::new(3);
        let key = |pod: &str| LeaseKey {
            pod_uid: pod.into(),
            identity: crate::provider::identity::tests_support::identity("a"),
            spec: ReadSpec {
                method: crate::stages::plan::Method::Get,
                path: "/v1/database/creds/app".into(),
                query: vec![],
                body: None,
            },
        };
        let leased = |secs: u64| {
            Arc::new(answer(&format!(
                r#"{{"lease_id":"database/creds/app/x","lease_duration":{secs},"data":{{"username":"u"}}}}"#
            )))
        };
        leases.put(key("short"), &leased(60), 1, None);
        leases.put(key("long1"), &leased(3600), 1, None);
        leases.put(key("long2"), &leased(3600), 1, None);
        assert_eq!(leases.len(), 3);
        leases.put(key("new"), &leased(3600), 1, None);
        assert_eq!(leases.len(), 3, "bounded");
        assert!(
            leases.get(&key("short"), 1).is_none(),
            "closest to expiry went first"
        );
        assert!(leases.get(&key("new"), 1).is_some());
        assert!(leases.get(&key("long1"), 1).is_some());
        // Replacing an entry that is there evicts nothing.
        leases.put(key("new"), &leased(3600), 1, None);
        assert_eq!(leases.len(), 3);
        assert!(leases.get(&key("long2"), 1).is_some());
        let none = Leases::new(0);
        none.put(key("x"), &leased(3600), 1, None);
        assert!(none.is_empty());
    }
}
