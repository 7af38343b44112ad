//! A real three-node OpenBao cluster with integrated (raft) storage on loopback: each node
//! its own API and cluster port, initialised with one key share, unsealed, joined, and
//! waited on until every node is a voter. Also a proxy that can be put in front of one
//! node to make it misbehave the way a load balancer or a dying node does.

use super::{Admin, bao_binary, free_port_pair};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One node of the cluster.
pub struct Node {
    child: Option<Child>,
    pub addr: String,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
}

impl Node {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bao_binary())
            .args(["server", &format!("-config={}", self.config.display())])
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start bao");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three OpenBao nodes with raft storage, killed on drop.
pub struct RaftCluster {
    pub nodes: Vec<Node>,
    pub root_token: String,
    unseal_key: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for RaftCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

impl RaftCluster {
    /// Starts three nodes, initialises the first, joins the others, and waits until all
    /// three are unsealed voters with one active node. A cluster that does not form within
    /// its bounds (a join answered and then going nowhere, a port taken between being
    /// picked and bound) is thrown away and built again on new ports, three times at most;
    /// each failure says which step did not happen.
    pub async fn start() -> RaftCluster {
        vault_csi_provider::install_crypto_provider();
        let mut failures = Vec::new();
        for attempt in 1..=3 {
            match Self::try_start().await {
                Ok(cluster) => return cluster,
                Err(why) => {
                    eprintln!("raft: cluster attempt {attempt} did not form: {why}");
                    failures.push(why);
                }
            }
        }
        panic!(
            "a three-node raft cluster did not form in 3 attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    async fn try_start() -> Result<RaftCluster, String> {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let port = free_port_pair();
            let data = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&data).unwrap();
            let config = dir.path().join(format!("node{i}.hcl"));
            std::fs::write(
                &config,
                format!(
                    r#"storage "raft" {{
  path = "{data_path}"
  node_id = "node{i}"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cport}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cport}"
disable_mlock = true
"#,
                    data_path = data.display(),
                    cport = port + 1,
                ),
            )
            .unwrap();
            let mut node = Node {
                child: None,
                addr: format!("http://127.0.0.1:{port}"),
                config,
                data,
                log: dir.path().join(format!("node{i}.log")),
            };
            node.start();
            nodes.push(node);
        }
        let http = reqwest::Client::new();
        let mut cluster = RaftCluster {
            nodes,
            root_token: String::new(),
            unseal_key: String::new(),
            http,
            _dir: dir,
        };
        for i in 0..3 {
            cluster.listening(i).await?;
        }
        let init = cluster
            .until(Duration::from_secs(30), "node 0 initialised", 0, || {
                cluster.try_call(
                    0,
                    "PUT",
                    "sys/init",
                    Some(json!({"secret_shares": 1, "secret_threshold": 1})),
                )
            })
            .await?;
        cluster.unseal_key = init["keys_base64"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        cluster.root_token = init["root_token"].as_str().unwrap_or_default().to_string();
        let key = cluster.unseal_key.clone();
        cluster
            .until(Duration::from_secs(30), "node 0 unsealed", 0, || {
                cluster.try_call(0, "PUT", "sys/unseal", Some(json!({ "key": key })))
            })
            .await?;
        cluster.healthy(0, &[200]).await?;
        // Joined nodes become voters after the stabilisation time: make it short.
        cluster
            .until(Duration::from_secs(30), "autopilot configured", 0, || {
                cluster.try_call(
                    0,
                    "POST",
                    "sys/storage/raft/autopilot/configuration",
                    Some(json!({"server_stabilization_time": "1s", "cleanup_dead_servers": false})),
                )
            })
            .await?;
        for i in 1..3 {
            let leader = cluster.nodes[0].addr.clone();
            cluster
                .until(Duration::from_secs(30), "join answered", i, || {
                    cluster.try_call(
                        i,
                        "POST",
                        "sys/storage/raft/join",
                        Some(json!({"leader_api_addr": leader})),
                    )
                })
                .await?;
            let key = cluster.unseal_key.clone();
            cluster
                .until(Duration::from_secs(30), "unseal answered", i, || {
                    cluster.try_call(i, "PUT", "sys/unseal", Some(json!({ "key": key })))
                })
                .await?;
            cluster
                .wait_voter(i, Duration::from_secs(40))
                .await
                .map_err(|state| cluster.failure(i, &format!("node {i} is no voter: {state}")))?;
        }
        for i in 1..3 {
            cluster.healthy(i, &[429]).await?;
        }
        Ok(cluster)
    }

    /// Calls `f` until it answers, at most `limit`; else what did not happen, with node
    /// `i`'s log.
    async fn until<F, Fut>(
        &self,
        limit: Duration,
        what: &str,
        i: usize,
        f: F,
    ) -> Result<Value, String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value, String>>,
    {
        let start = Instant::now();
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if start.elapsed() > limit => {
                    return Err(self.failure(i, &format!("{what}: not within {limit:?}: {e}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// `why`, with the end of node `i`'s log.
    fn failure(&self, i: usize, why: &str) -> String {
        let log = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{why}\nnode {i}'s log ends:\n{}", tail.join("\n"))
    }

    /// Node `i` answers on its API port (30 s at most).
    async fn listening(&self, i: usize) -> Result<(), String> {
        let url = format!("{}/v1/sys/health", self.nodes[i].addr);
        self.until(Duration::from_secs(30), "API listening", i, || async {
            self.http
                .get(&url)
                .send()
                .await
                .map(|_| Value::Null)
                .map_err(|e| e.to_string())
        })
        .await
        .map(|_| ())
    }

    /// Node `i`'s health is one of `codes` (60 s at most).
    async fn healthy(&self, i: usize, codes: &[u16]) -> Result<(), String> {
        let url = format!("{}/v1/sys/health", self.nodes[i].addr);
        self.until(
            Duration::from_secs(60),
            &format!("health {codes:?}"),
            i,
            || async {
                match self.http.get(&url).send().await {
                    Ok(r) if codes.contains(&r.status().as_u16()) => Ok(Value::Null),
                    Ok(r) => Err(format!("health {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await
        .map(|_| ())
    }

    /// Waits up to `limit` until node `i` is unsealed and a voter in the leader's raft
    /// configuration; else says what it saw.
    async fn wait_voter(&self, i: usize, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        let id = format!("node{}", i + 1);
        loop {
            let unsealed = match self
                .http
                .get(format!("{}/v1/sys/health", self.nodes[i].addr))
                .send()
                .await
            {
                Ok(r) => matches!(r.status().as_u16(), 200 | 429),
                Err(_) => false,
            };
            let config = self
                .try_call(0, "GET", "sys/storage/raft/configuration", None)
                .await
                .unwrap_or(Value::Null);
            let voter = config["data"]["config"]["servers"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["node_id"] == id && s["voter"] == true));
            if unsealed && voter {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "after {limit:?}: unsealed {unsealed}, voter {voter}, leader's configuration {config}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// One call, its JSON answer or why not; no retry.
    async fn try_call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}/v1/{path}", self.nodes[i].addr);
        let mut req = self
            .http
            .request(method.parse().unwrap(), &url)
            .header("X-Vault-Request", "true")
            .timeout(Duration::from_secs(10));
        if !self.root_token.is_empty() {
            req = req.header("X-Vault-Token", &self.root_token);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The three API addresses, comma-separated, as a class or flag lists them.
    pub fn addresses(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The operator's API through the active node (whichever it is now).
    pub async fn admin(&self) -> Admin {
        let i = self.active().await.expect("no active node");
        Admin::new(&self.nodes[i].addr, &self.root_token)
    }

    /// The index of the active node, if there is one now.
    pub async fn active(&self) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if let Ok(r) = self
                .http
                .get(format!("{}/v1/sys/health", n.addr))
                .send()
                .await
                && r.status() == 200
            {
                return Some(i);
            }
        }
        None
    }

    /// Waits until a node other than `not` is active; returns it and how long it took.
    pub async fn wait_new_active(&self, not: usize) -> (usize, Duration) {
        let start = Instant::now();
        loop {
            if let Some(i) = self.active().await
                && i != not
            {
                return (i, start.elapsed());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no new active node within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops node `i` (SIGKILL): it is gone, as after a crash.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Restarts node `i`: it comes back sealed.
    pub async fn restart_sealed(&mut self, i: usize) {
        self.nodes[i].kill();
        self.nodes[i].start();
        self.wait_listening(i).await;
        self.wait_health(i, &[503]).await;
    }

    /// Unseals node `i` with the cluster's key.
    pub async fn unseal(&self, i: usize) {
        let key = self.unseal_key.clone();
        self.call(i, "PUT", "sys/unseal", Some(json!({ "key": key })))
            .await;
    }

    /// Waits until node `i` is unsealed and a member again (active or standby).
    pub async fn wait_member(&self, i: usize) {
        self.wait_health(i, &[200, 429]).await;
    }

    async fn call(&self, i: usize, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/v1/{path}", self.nodes[i].addr);
        let start = Instant::now();
        loop {
            let mut req = self
                .http
                .request(method.parse().unwrap(), &url)
                .header("X-Vault-Request", "true");
            if !self.root_token.is_empty() {
                req = req.header("X-Vault-Token", &self.root_token);
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    let text = r.text().await.unwrap_or_default();
                    return serde_json::from_str(&text).unwrap_or(Value::Null);
                }
                Ok(r) if start.elapsed() > Duration::from_secs(30) => {
                    let status = r.status();
                    panic!(
                        "{method} {path} on node {i} -> {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    panic!("{method} {path} on node {i}: {e}")
                }
                // Raft is still settling (no leader yet, join in progress): try again.
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn wait_listening(&self, i: usize) {
        let start = Instant::now();
        loop {
            if self
                .http
                .get(format!("{}/v1/sys/health", self.nodes[i].addr))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "node {i} does not listen:\n{}",
                std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_health(&self, i: usize, codes: &[u16]) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self
                .http
                .get(format!("{}/v1/sys/health", self.nodes[i].addr))
                .send()
                .await
                && codes.contains(&r.status().as_u16())
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node {i} health never became {codes:?}:\n{}",
                std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How the proxy in front of a node behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Pass requests through to the node.
    Forward,
    /// Answer every request with this status and a Vault-style error body.
    Status(u16),
    /// Send the head of a 200 with a long Content-Length, then a few bytes, then close.
    CutShort,
    /// Accept the request and never answer.
    Stall,
}

/// An HTTP proxy in front of one node, whose behaviour a test sets.
pub struct FlakyProxy {
    pub addr: String,
    pub mode: Arc<Mutex<ProxyMode>>,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FlakyProxy {
    pub async fn start(upstream: &str, mode: ProxyMode) -> FlakyProxy {
        vault_csi_provider::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(mode));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let (m, n) = (mode.clone(), requests.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (m, n, upstream, client) =
                    (m.clone(), n.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let mode = *m.lock().unwrap();
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if mode == ProxyMode::CutShort {
                        cut_short(stream).await;
                        return;
                    }
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (upstream, client) = (upstream.clone(), client.clone());
                            async move {
                                Ok::<_, std::convert::Infallible>(
                                    answer(mode, req, &upstream, &client).await,
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FlakyProxy {
            addr,
            mode,
            requests,
            task,
        }
    }

    pub fn set(&self, mode: ProxyMode) {
        *self.mode.lock().unwrap() = mode;
    }
}

async fn cut_short(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 8192];
    let _ = stream.read(&mut buf).await;
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{\"data\":{\"k\":")
        .await;
    let _ = stream.shutdown().await;
}

async fn answer(
    mode: ProxyMode,
    req: Request<hyper::body::Incoming>,
    upstream: &str,
    client: &reqwest::Client,
) -> Response<Full<Bytes>> {
    match mode {
        ProxyMode::Status(code) => {
            let mut r = Response::new(Full::new(Bytes::from(
                json!({"errors": [format!("proxy says {code}")]}).to_string(),
            )));
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            r
        }
        ProxyMode::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Response::new(Full::new(Bytes::new()))
        }
        ProxyMode::CutShort | ProxyMode::Forward => {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let url = format!(
                "{upstream}{}",
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            );
            let mut out = client.request(parts.method.clone(), url).body(body);
            for (k, v) in &parts.headers {
                if k != "host" && k != "content-length" {
                    out = out.header(k, v);
                }
            }
            match out.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp.bytes().await.unwrap_or_default();
                    let mut r = Response::new(Full::new(bytes));
                    *r.status_mut() = status;
                    r
                }
                Err(_) => {
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = StatusCode::BAD_GATEWAY;
                    r
                }
            }
        }
    }
}
