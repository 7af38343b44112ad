//! The HTTP clients and the routing state shared by every Mount.
//!
//! One `reqwest::Client` (one connection pool) exists per transport and TLS setting. One
//! [`Cluster`] exists per Vault address list (`https://a,https://b,https://c`): it bounds
//! the requests in flight to that cluster (`-vault-concurrency`, counted across its nodes),
//! remembers the node that last answered well, and keeps failing nodes out of the way for a
//! cool-down.

use super::client::{NodeClient, VaultClient};
use super::{Connection, VaultError, answers::error_chain};
use crate::settings::TlsSettings;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Requests in flight to one Vault cluster at most, by default (`-vault-concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 32;

/// How long a node that failed is tried only after the others.
pub const NODE_COOL_DOWN: Duration = Duration::from_secs(10);

/// Most nodes one address list may name.
pub const MAX_NODES: usize = 10;

/// Routing state of one Vault cluster (one address list).
pub struct Cluster {
    /// Bounds requests in flight to the whole cluster.
    pub(super) limit: Semaphore,
    /// The node that last answered well.
    preferred: AtomicUsize,
    /// Until when each node is tried only after the others.
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Cluster {
    fn new(nodes: usize, concurrency: usize) -> Self {
        Cluster {
            limit: Semaphore::new(concurrency),
            preferred: AtomicUsize::new(0),
            down_until: Mutex::new(vec![None; nodes]),
        }
    }

    /// The order to try nodes in: the one that last answered well, then the others in
    /// list order, then those cooling down (soonest back first).
    pub(super) fn order(&self, now: Instant) -> Vec<usize> {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        let n = down.len();
        let preferred = self.preferred.load(Ordering::Relaxed) % n.max(1);
        let cooling = |i: usize| down[i].is_some_and(|t| t > now);
        let mut order: Vec<usize> = std::iter::once(preferred)
            .chain((0..n).filter(|i| *i != preferred))
            .filter(|i| !cooling(*i))
            .collect();
        let mut cold: Vec<usize> = (0..n).filter(|i| cooling(*i)).collect();
        cold.sort_by_key(|i| down[*i]);
        order.extend(cold);
        order
    }

    /// Node `i` answered well: prefer it.
    pub(super) fn good(&self, i: usize) {
        self.preferred.store(i, Ordering::Relaxed);
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = down.get_mut(i) {
            *d = None;
        }
    }

    /// Node `i` failed: try it after the others until the cool-down has passed.
    pub(super) fn bad(&self, i: usize, now: Instant) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = down.get_mut(i) {
            *d = Some(now + NODE_COOL_DOWN);
        }
    }
}

/// Shared HTTP clients and cluster states.
pub struct ClientPool {
    http: Mutex<HashMap<(Option<String>, TlsSettings), reqwest::Client>>,
    clusters: Mutex<HashMap<String, Arc<Cluster>>>,
    concurrency: usize,
}

impl Default for ClientPool {
    fn default() -> Self {
        ClientPool::new(DEFAULT_CONCURRENCY)
    }
}

impl ClientPool {
    pub fn new(concurrency: usize) -> Self {
        ClientPool {
            http: Mutex::new(HashMap::new()),
            clusters: Mutex::new(HashMap::new()),
            concurrency: concurrency.max(1),
        }
    }

    /// A client for `conn`: its cluster's state and one HTTP client per node, shared.
    pub fn client(&self, conn: &Connection) -> Result<VaultClient, VaultError> {
        let addresses = conn.nodes();
        if addresses.is_empty() {
            return Err(VaultError::Setup("no Vault address is set".into()));
        }
        if addresses.len() > MAX_NODES {
            return Err(VaultError::Setup(format!(
                "{} Vault addresses are listed; at most {MAX_NODES} nodes of one cluster",
                addresses.len()
            )));
        }
        let mut nodes = Vec::with_capacity(addresses.len());
        for address in addresses {
            let (base, socket) = split_address(address)?;
            let http = self.http(socket, &conn.tls)?;
            nodes.push(NodeClient {
                address: address.to_string(),
                base,
                http,
            });
        }
        let cluster = self
            .clusters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(conn.address.clone())
            .or_insert_with(|| Arc::new(Cluster::new(nodes.len(), self.concurrency)))
            .clone();
        Ok(VaultClient::new(cluster, nodes, conn))
    }

    fn http(
        &self,
        socket: Option<String>,
        tls: &TlsSettings,
    ) -> Result<reqwest::Client, VaultError> {
        let key = (socket, tls.clone());
        let mut clients = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = build_http(key.0.as_deref(), tls)?;
        clients.insert(key, c.clone());
        Ok(c)
    }
}

/// `unix:///path` becomes an `http://localhost` base reached through that socket.
pub(super) fn split_address(address: &str) -> Result<(url::Url, Option<String>), VaultError> {
    if let Some(path) = address.strip_prefix("unix://") {
        let base =
            url::Url::parse("http://localhost/").map_err(|e| VaultError::Setup(e.to_string()))?;
        return Ok((base, Some(path.to_string())));
    }
    let mut base = url::Url::parse(address).map_err(|e| {
        VaultError::Setup(format!(
            "address {} is not a URL: {e}",
            crate::error::quote(address)
        ))
    })?;
    if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
        return Err(VaultError::Setup(format!(
            "address {} must start with https://, http:// or unix://",
            crate::error::quote(address)
        )));
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok((base, None))
}

fn build_http(socket: Option<&str>, tls: &TlsSettings) -> Result<reqwest::Client, VaultError> {
    crate::tls::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("vault-csi-provider/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tls_backend_preconfigured(crate::tls::client_config(tls).map_err(VaultError::Setup)?);
    if let Some(path) = socket {
        builder = builder.unix_socket(path);
    }
    builder
        .build()
        .map_err(|e| VaultError::Setup(error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let (base, sock) = split_address("unix:///var/run/vault/agent.sock").unwrap();
        assert_eq!(base.as_str(), "http://localhost/");
        assert_eq!(sock.as_deref(), Some("/var/run/vault/agent.sock"));
        let (base, _) = split_address("https://vault.example.com:8200/prefix").unwrap();
        assert_eq!(
            base.join("v1/x").unwrap().as_str(),
            "https://vault.example.com:8200/prefix/v1/x"
        );
        assert!(split_address("ftp://x").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn routing_prefers_the_last_good_node_and_cools_failing_ones() {
        let c = Cluster::new(3, 4);
        let now = Instant::now();
        assert_eq!(c.order(now), vec![0, 1, 2]);
        c.bad(0, now);
        assert_eq!(c.order(now), vec![1, 2, 0], "a failed node goes last");
        c.good(2);
        assert_eq!(
            c.order(now),
            vec![2, 1, 0],
            "the node that answered goes first"
        );
        c.bad(1, now + Duration::from_secs(1));
        assert_eq!(
            c.order(now),
            vec![2, 0, 1],
            "cooling nodes, soonest back first"
        );
        tokio::time::advance(NODE_COOL_DOWN + Duration::from_secs(2)).await;
        assert_eq!(c.order(Instant::now()), vec![2, 0, 1], "back in list order");
    }
}
