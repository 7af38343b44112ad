//! The HTTP clients and the cluster states shared by every Mount: one `reqwest::Client`
//! (one connection pool) per transport and TLS setting, one [`Cluster`] per Vault address
//! list, each kept in a cache with a byte budget; and the [`VaultClient`] a Mount gets from
//! them.

use super::client::{NodeClient, VaultClient};
use super::cluster::Cluster;
use super::{Connection, VaultError};
use crate::address::MAX_NODES;
use crate::settings::TlsSettings;
use crate::text::error_chain;
use std::sync::Arc;
use std::time::Duration;

/// Requests in flight to one Vault cluster at most, by default (`-vault-concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 32;

/// HTTP clients kept, by weight: about what one costs (its TLS configuration, root store
/// and connection pool), so that tenants naming many TLS settings cannot grow the process.
const CLIENT_WEIGHT: u64 = 160 * 1024;
/// Bytes of HTTP clients kept at most; the least recently used go first.
pub const CLIENT_CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes of cluster states (one per address list) kept at most.
const CLUSTER_CACHE_BYTES: u64 = 2 * 1024 * 1024;

/// HTTP clients being built at once at most.
static BUILDS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A cached HTTP client: transport, TLS setting, and the stamps of the files it read.
type HttpKey = (Option<String>, TlsSettings, Vec<Option<crate::tls::Stamp>>);

#[derive(Clone)]
struct HttpWeight;

impl quick_cache::Weighter<HttpKey, reqwest::Client> for HttpWeight {
    fn weight(&self, _: &HttpKey, _: &reqwest::Client) -> u64 {
        CLIENT_WEIGHT
    }
}

#[derive(Clone)]
struct ClusterWeight;

impl quick_cache::Weighter<String, Arc<Cluster>> for ClusterWeight {
    fn weight(&self, key: &String, _: &Arc<Cluster>) -> u64 {
        key.len() as u64 + 512
    }
}

/// Shared HTTP clients and cluster states, each in a cache with a byte budget.
pub struct ClientPool {
    http: quick_cache::sync::Cache<HttpKey, reqwest::Client, HttpWeight>,
    clusters: quick_cache::sync::Cache<String, Arc<Cluster>, ClusterWeight>,
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
            http: quick_cache::sync::Cache::with_weighter(
                (CLIENT_CACHE_BYTES / CLIENT_WEIGHT) as usize,
                CLIENT_CACHE_BYTES,
                HttpWeight,
            ),
            clusters: quick_cache::sync::Cache::with_weighter(
                1024,
                CLUSTER_CACHE_BYTES,
                ClusterWeight,
            ),
            concurrency: concurrency.max(1),
        }
    }

    /// A client for `conn`: its cluster's state and one HTTP client per node, shared. Files
    /// the TLS setting names are read off the async runtime, inside `deadline`, under no
    /// lock another Mount needs.
    pub async fn client(
        &self,
        conn: &Connection,
        deadline: tokio::time::Instant,
    ) -> Result<VaultClient, VaultError> {
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
        let stamps = if crate::tls::names_files(&conn.tls) {
            let tls = conn.tls.clone();
            blocking(deadline, move || Ok(crate::tls::stamps(&tls))).await?
        } else {
            Vec::new()
        };
        let mut nodes = Vec::with_capacity(addresses.len());
        for address in addresses {
            let (base, socket) = split_address(address)?;
            let http = self
                .http((socket, conn.tls.clone(), stamps.clone()), deadline)
                .await?;
            nodes.push(NodeClient {
                address: address.to_string(),
                base,
                http,
            });
        }
        // Created once even when many Mounts meet a new cluster at the same moment: its
        // concurrency bound must be one semaphore.
        let n = nodes.len();
        let cluster = self
            .clusters
            .get_or_insert_with(&conn.address, || {
                Ok::<_, std::convert::Infallible>(Arc::new(Cluster::new(n, self.concurrency)))
            })
            .unwrap_or_else(|never| match never {});
        Ok(VaultClient::new(cluster, nodes, conn))
    }

    /// The HTTP client for `key`, built once however many Mounts ask at the same moment.
    async fn http(
        &self,
        key: HttpKey,
        deadline: tokio::time::Instant,
    ) -> Result<reqwest::Client, VaultError> {
        let (socket, tls) = (key.0.clone(), key.1.clone());
        self.http
            .get_or_insert_async(&key, async move {
                // A few builds at a time: each holds a TLS configuration and a thread.
                let Ok(Ok(_build)) = tokio::time::timeout_at(deadline, BUILDS.acquire()).await
                else {
                    return Err(VaultError::Deadline {
                        what: "waiting to set up a connection to Vault".into(),
                    });
                };
                blocking(deadline, move || build_http(socket.as_deref(), &tls)).await
            })
            .await
    }
}

/// Runs blocking work (file reads, TLS set-up) on the blocking pool, inside `deadline`.
async fn blocking<T: Send + 'static>(
    deadline: tokio::time::Instant,
    work: impl FnOnce() -> Result<T, VaultError> + Send + 'static,
) -> Result<T, VaultError> {
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(VaultError::Setup("setting up the connection failed".into())),
        Err(_) => Err(VaultError::Deadline {
            what: "reading the TLS files".into(),
        }),
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
            crate::text::quote(address)
        ))
    })?;
    if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
        return Err(VaultError::Setup(format!(
            "address {} must start with https://, http:// or unix://",
            crate::text::quote(address)
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
}
