//! The pods of this node, as the Kubernetes API shows them: one list and watch of the pods
//! whose `spec.nodeName` is this node (kube-rs's watcher: it resumes a dropped watch from
//! its resource version and lists again when that version has expired), so the API's load
//! does not grow with the number of pods. Only what the lease lifecycle needs is kept: each
//! pod's uid, name and whether it still runs. A pod that is deleted, replaced under its name
//! by one with another uid, or finished (phase Succeeded or Failed) is reported gone once,
//! also when that happened while the watch was down (found by the next full list).

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How many uids of pods gone are remembered, to answer [`NodePods::state`].
const GONE_REMEMBERED: usize = 4096;

/// What the API says of a pod uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// On this node and not finished.
    Running,
    /// Deleted, replaced, or finished.
    Gone,
    /// Not seen on this node (not yet, or never: the sync controller's pod runs elsewhere).
    Unknown,
}

#[derive(Default)]
struct Known {
    /// uid → (namespace/name), for pods running on this node.
    running: HashMap<String, String>,
    /// (namespace/name) → uid.
    by_name: HashMap<String, String>,
    /// Recently gone uids, oldest first.
    gone: VecDeque<String>,
    gone_set: HashSet<String>,
    /// The pods of a list in progress (between `Init` and `InitDone`).
    listing: Option<HashMap<String, String>>,
}

impl Known {
    fn forget(&mut self, uid: &str) -> bool {
        let Some(name) = self.running.remove(uid) else {
            return false;
        };
        if self.by_name.get(&name).is_some_and(|u| u == uid) {
            self.by_name.remove(&name);
        }
        if self.gone_set.insert(uid.to_string()) {
            self.gone.push_back(uid.to_string());
            if self.gone.len() > GONE_REMEMBERED
                && let Some(old) = self.gone.pop_front()
            {
                self.gone_set.remove(&old);
            }
        }
        true
    }
}

/// The pods of one node, kept current by [`NodePods::watch`].
pub struct NodePods {
    node: String,
    known: Mutex<Known>,
    /// A full list has been seen.
    synced: AtomicBool,
}

/// The parts of a pod the lifecycle needs: uid, namespace/name, whether it still runs.
fn describe(pod: &Pod) -> Option<(String, String, bool)> {
    let uid = pod.metadata.uid.clone()?;
    let name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    Some((uid, name, !finished))
}

impl NodePods {
    pub fn new(node: String) -> Self {
        NodePods {
            node,
            known: Mutex::new(Known::default()),
            synced: AtomicBool::new(false),
        }
    }

    /// The node watched.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether a full list has been seen (until then, every pod is [`PodState::Unknown`]).
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// What is known of pod `uid`.
    pub fn state(&self, uid: &str) -> PodState {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.running.contains_key(uid) {
            PodState::Running
        } else if known.gone_set.contains(uid) {
            PodState::Gone
        } else {
            PodState::Unknown
        }
    }

    /// Pods known to run on this node now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running
            .len()
    }

    /// One event of the watch; returns the uids that are gone because of it.
    pub fn apply(&self, event: watcher::Event<Pod>) -> Vec<String> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut gone = Vec::new();
        match event {
            watcher::Event::Init => known.listing = Some(HashMap::new()),
            watcher::Event::InitApply(pod) => {
                if let (Some((uid, name, true)), Some(listing)) =
                    (describe(&pod), known.listing.as_mut())
                {
                    listing.insert(uid, name);
                }
            }
            watcher::Event::InitDone => {
                let listed = known.listing.take().unwrap_or_default();
                let before: Vec<String> = known.running.keys().cloned().collect();
                for uid in before {
                    if !listed.contains_key(&uid) && known.forget(&uid) {
                        gone.push(uid);
                    }
                }
                for (uid, name) in listed {
                    gone.extend(self.add(&mut known, uid, name));
                }
                self.synced.store(true, Ordering::SeqCst);
            }
            watcher::Event::Apply(pod) => match describe(&pod) {
                Some((uid, name, true)) => gone.extend(self.add(&mut known, uid, name)),
                Some((uid, _, false)) if known.forget(&uid) => gone.push(uid),
                _ => {}
            },
            watcher::Event::Delete(pod) => {
                if let Some((uid, _, _)) = describe(&pod)
                    && known.forget(&uid)
                {
                    gone.push(uid);
                }
            }
        }
        crate::metrics::get()
            .pods_watched
            .set(known.running.len() as i64);
        gone
    }

    /// Records a running pod; a different uid under its name is gone.
    fn add(&self, known: &mut Known, uid: String, name: String) -> Option<String> {
        if known.gone_set.contains(&uid) {
            return None;
        }
        let replaced = known.by_name.get(&name).filter(|old| **old != uid).cloned();
        let gone = replaced.filter(|old| known.forget(old));
        known.running.insert(uid.clone(), name.clone());
        known.by_name.insert(name, uid);
        gone
    }

    /// Watches this node's pods until the process ends, calling `on_gone` with each uid
    /// that is gone. Errors (the API down, RBAC missing) are retried with backoff and logged
    /// once until the watch works again.
    pub async fn watch(&self, client: kube::Client, on_gone: impl Fn(&str)) {
        use kube::runtime::WatchStreamExt;
        let api: kube::Api<Pod> = kube::Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let stream = watcher(api, config).default_backoff();
        futures_util::pin_mut!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    if failing {
                        tracing::info!(node = %self.node, "watching this node's pods again");
                        failing = false;
                    }
                    for uid in self.apply(event) {
                        on_gone(&uid);
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            node = %self.node,
                            error = %crate::text::error_chain(&e),
                            "cannot watch this node's pods (retrying with backoff): leases are renewed and revoked only while it works; the provider's service account needs get, list and watch on pods"
                        );
                        failing = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watcher::Event;

    fn pod(name: &str, uid: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid},
            "spec": {"nodeName": "n", "containers": [{"name": "c"}]},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn deletions_replacements_and_relists_are_gone_once() {
        let pods = NodePods::new("n".into());
        assert!(pods.apply(Event::Init).is_empty());
        for (n, u) in [("a", "1"), ("b", "2"), ("c", "3")] {
            assert!(
                pods.apply(Event::InitApply(pod(n, u, "Running")))
                    .is_empty()
            );
        }
        assert_eq!(
            pods.state("1"),
            PodState::Unknown,
            "not until the list is done"
        );
        assert!(pods.apply(Event::InitDone).is_empty());
        assert!(pods.synced());
        assert_eq!(pods.state("1"), PodState::Running);
        assert_eq!(pods.running(), 3);
        // Deleted.
        assert_eq!(pods.apply(Event::Delete(pod("a", "1", "Running"))), ["1"]);
        assert_eq!(pods.state("1"), PodState::Gone);
        assert!(
            pods.apply(Event::Delete(pod("a", "1", "Running")))
                .is_empty()
        );
        // Replaced under the same name.
        assert_eq!(pods.apply(Event::Apply(pod("b", "4", "Running"))), ["2"]);
        assert_eq!(pods.state("4"), PodState::Running);
        // Finished.
        assert_eq!(pods.apply(Event::Apply(pod("c", "3", "Succeeded"))), ["3"]);
        // A new list without a pod that was running: it went while the watch was down.
        pods.apply(Event::Apply(pod("d", "5", "Running")));
        pods.apply(Event::Init);
        pods.apply(Event::InitApply(pod("b", "4", "Running")));
        assert_eq!(pods.apply(Event::InitDone), ["5"]);
        assert_eq!(pods.state("5"), PodState::Gone);
        assert_eq!(pods.state("4"), PodState::Running);
        assert_eq!(pods.state("9"), PodState::Unknown);
    }
}
