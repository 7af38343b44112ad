//! Vault I/O: logins and reads over HTTP, with retries inside the caller's deadline.
//!
//! One `reqwest::Client` (one connection pool) exists per TLS setting and transport and is
//! shared by every Mount ([`ClientPool`]); a [`VaultClient`] is that pool plus an address,
//! a namespace and retry settings.

pub use crate::tls::install_crypto_provider;

use crate::plan::{ConnectionOverrides, ReadSpec};
use crate::response::SecretResponse;
use crate::secret::SecretString;
use crate::settings::{TlsSettings, VaultSettings};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Largest answer body accepted from Vault.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A failure talking to Vault. Messages keep Vault's own error text and never carry tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    #[error("cannot reach Vault at {address}: {detail}{hint}")]
    Unreachable {
        address: String,
        detail: String,
        hint: &'static str,
    },
    #[error("Vault at {address} did not answer within {timeout:?} (VAULT_CLIENT_TIMEOUT)")]
    Timeout { address: String, timeout: Duration },
    #[error("Vault at {address} is sealed: unseal it, the mount will be retried")]
    Sealed { address: String },
    #[error("Vault answered {what} with HTTP {status}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("Vault's answer to {what} is not usable: {detail}")]
    BadAnswer { what: String, detail: String },
    #[error("the mount's deadline passed while {what}")]
    Deadline { what: String },
    #[error("cannot set up the connection to Vault: {0}")]
    Setup(String),
    #[error("TLS with Vault at {address} failed: {detail}{hint}")]
    Tls {
        address: String,
        detail: String,
        hint: &'static str,
    },
}

impl VaultError {
    /// Whether retrying later could succeed: Vault unreachable, sealed, or failing with 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            VaultError::Unreachable { .. }
            | VaultError::Timeout { .. }
            | VaultError::Sealed { .. } => true,
            VaultError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Connection settings of one Mount: process settings with the class's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Connection {
    pub address: String,
    pub namespace: Option<String>,
    pub tls: TlsSettings,
    pub timeout: Duration,
    pub max_retries: u32,
}

impl Connection {
    /// Class parameters win over flags, which won over the environment in `Settings`.
    /// Skip-verify can only be turned on; the CA file wins over the CA directory.
    pub fn resolve(base: &VaultSettings, o: &ConnectionOverrides) -> Self {
        let mut tls = base.tls.clone();
        if o.ca_cert.is_some() || o.ca_directory.is_some() {
            tls.ca_cert = o.ca_cert.clone();
            tls.ca_directory = o.ca_directory.clone();
        }
        if let Some(name) = &o.server_name {
            tls.server_name = Some(name.clone());
        }
        if o.client_cert.is_some() {
            tls.client_cert = o.client_cert.clone();
            tls.client_key = o.client_key.clone();
        }
        tls.skip_verify = tls.skip_verify || o.skip_verify == Some(true);
        Connection {
            address: o.address.clone().unwrap_or_else(|| base.address.clone()),
            namespace: o
                .namespace
                .clone()
                .or_else(|| base.namespace.clone())
                .filter(|n| !n.is_empty()),
            tls,
            timeout: base.timeout,
            max_retries: base.max_retries,
        }
    }
}

/// Shared HTTP clients, one per transport and TLS setting, and one bound on concurrent
/// requests per Vault address, so that a herd of pods cannot stampede it.
pub struct ClientPool {
    clients: Mutex<HashMap<(Option<String>, TlsSettings), reqwest::Client>>,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    concurrency: usize,
}

impl Default for ClientPool {
    fn default() -> Self {
        ClientPool::new(DEFAULT_CONCURRENCY)
    }
}

/// Requests in flight to one Vault at most, by default (`-vault-concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 32;

impl ClientPool {
    pub fn new(concurrency: usize) -> Self {
        ClientPool {
            clients: Mutex::new(HashMap::new()),
            limits: Mutex::new(HashMap::new()),
            concurrency: concurrency.max(1),
        }
    }

    /// A client for `conn`, reusing the shared pool for its transport and TLS setting.
    pub fn client(&self, conn: &Connection) -> Result<VaultClient, VaultError> {
        let (base, socket) = split_address(&conn.address)?;
        let key = (socket.clone(), conn.tls.clone());
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let http = match clients.get(&key) {
            Some(c) => c.clone(),
            None => {
                let c = build_http(socket.as_deref(), &conn.tls)?;
                clients.insert(key, c.clone());
                c
            }
        };
        drop(clients);
        let limit = self
            .limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(conn.address.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.concurrency)))
            .clone();
        Ok(VaultClient {
            http,
            limit,
            client_cert: conn.tls.client_cert.is_some(),
            base,
            address: conn.address.clone(),
            namespace: conn.namespace.clone(),
            timeout: conn.timeout,
            max_retries: conn.max_retries,
        })
    }
}

/// `unix:///path` becomes an `http://localhost` base reached through that socket.
fn split_address(address: &str) -> Result<(url::Url, Option<String>), VaultError> {
    if let Some(path) = address.strip_prefix("unix://") {
        let base =
            url::Url::parse("http://localhost/").map_err(|e| VaultError::Setup(e.to_string()))?;
        return Ok((base, Some(path.to_string())));
    }
    let mut base = url::Url::parse(address)
        .map_err(|e| VaultError::Setup(format!("address {address:?} is not a URL: {e}")))?;
    if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
        return Err(VaultError::Setup(format!(
            "address {address:?} must start with https://, http:// or unix://"
        )));
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok((base, None))
}

fn build_http(socket: Option<&str>, tls: &TlsSettings) -> Result<reqwest::Client, VaultError> {
    install_crypto_provider();
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

/// A Vault token from a login.
#[derive(Debug, Clone)]
pub struct VaultToken {
    pub token: SecretString,
    pub lease_duration: Duration,
    pub renewable: bool,
}

/// One Vault endpoint as seen by one Mount.
#[derive(Clone)]
pub struct VaultClient {
    http: reqwest::Client,
    /// Shared by every client of this Vault address.
    limit: Arc<Semaphore>,
    client_cert: bool,
    base: url::Url,
    address: String,
    namespace: Option<String>,
    timeout: Duration,
    max_retries: u32,
}

impl VaultClient {
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `POST /v1/auth/<mount>/login` with `{"role", "jwt"}`; serves kubernetes and jwt auth.
    pub async fn login(
        &self,
        mount: &str,
        role: &str,
        jwt: &SecretString,
        deadline: Instant,
    ) -> Result<VaultToken, VaultError> {
        let what = format!("login at auth/{mount} with role {role:?}");
        let body = serde_json::json!({ "role": role, "jwt": jwt.expose() }).to_string();
        let url = self.url(&format!("v1/auth/{mount}/login"), &[])?;
        let (status, bytes) = self
            .send(&what, deadline, || {
                self.request(reqwest::Method::POST, url.clone(), None)
                    .header("content-type", "application/json")
                    .body(body.clone())
            })
            .await?;
        check_status(&what, status, &bytes)?;
        token_from_answer(&what, &bytes, None)
    }

    /// `POST /v1/auth/token/renew-self`: extends the token's lease.
    pub async fn renew_self(
        &self,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<VaultToken, VaultError> {
        let what = "renewal of the Vault token".to_string();
        let url = self.url("v1/auth/token/renew-self", &[])?;
        let (status, bytes) = self
            .send(&what, deadline, || {
                self.request(reqwest::Method::POST, url.clone(), Some(token))
                    .header("content-type", "application/json")
                    .body("{}")
            })
            .await?;
        check_status(&what, status, &bytes)?;
        token_from_answer(&what, &bytes, Some(token))
    }

    /// Reads one path with a Vault token.
    pub async fn read(
        &self,
        token: &SecretString,
        spec: &ReadSpec,
        deadline: Instant,
    ) -> Result<SecretResponse, VaultError> {
        let what = format!("{} {}", spec.method.as_str(), spec.display());
        let url = self.url(spec.path.trim_start_matches('/'), &spec.query)?;
        let method = match spec.method {
            crate::plan::Method::Get => reqwest::Method::GET,
            crate::plan::Method::Put => reqwest::Method::PUT,
            crate::plan::Method::Post => reqwest::Method::POST,
        };
        let (status, bytes) = self
            .send(&what, deadline, || {
                let mut r = self.request(method.clone(), url.clone(), Some(token));
                if let Some(body) = &spec.body {
                    r = r
                        .header("content-type", "application/json")
                        .body(body.clone());
                }
                r
            })
            .await?;
        check_status(&what, status, &bytes)?;
        if status == reqwest::StatusCode::NO_CONTENT || bytes.is_empty() {
            return Err(VaultError::BadAnswer {
                what,
                detail:
                    "it is empty (HTTP 204): the path returns no data; check secretPath and method"
                        .into(),
            });
        }
        SecretResponse::parse(&bytes).ok_or_else(|| VaultError::BadAnswer {
            what,
            detail: "not a JSON object".into(),
        })
    }

    fn url(&self, path: &str, query: &[(String, String)]) -> Result<url::Url, VaultError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| VaultError::Setup(format!("bad request path {path:?}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    fn request(
        &self,
        method: reqwest::Method,
        url: url::Url,
        token: Option<&SecretString>,
    ) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, url)
            .header("X-Vault-Request", "true");
        if let Some(ns) = &self.namespace {
            r = r.header("X-Vault-Namespace", ns);
        }
        if let Some(t) = token
            && let Ok(mut value) = reqwest::header::HeaderValue::from_str(t.expose())
        {
            // Sensitive: never entered in HPACK tables, printed as "Sensitive" by Debug.
            value.set_sensitive(true);
            r = r.header("X-Vault-Token", value);
        }
        r
    }

    /// Sends with retries on connection failures, timeouts, 5xx and 412, inside `deadline`.
    async fn send(
        &self,
        what: &str,
        deadline: Instant,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes), VaultError> {
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(VaultError::Deadline {
                    what: what.to_string(),
                });
            }
            // Queue for a place among the requests in flight to this Vault, inside the deadline.
            let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, self.limit.acquire()).await
            else {
                return Err(VaultError::Deadline {
                    what: format!(
                        "{what} was queued behind other requests to Vault (-vault-concurrency)"
                    ),
                });
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let per_try = self.timeout.min(remaining);
            let outcome = tokio::time::timeout(per_try, async {
                let resp = build().send().await?;
                let status = resp.status();
                let body = read_body(resp).await?;
                Ok::<_, BodyError>((status, body))
            })
            .await;
            let err = match outcome {
                Err(_) if per_try < self.timeout => {
                    return Err(VaultError::Deadline {
                        what: what.to_string(),
                    });
                }
                Err(_) => VaultError::Timeout {
                    address: self.address.clone(),
                    timeout: self.timeout,
                },
                Ok(Err(BodyError::TooLarge)) => {
                    return Err(VaultError::BadAnswer {
                        what: what.to_string(),
                        detail: format!("larger than {MAX_BODY} bytes"),
                    });
                }
                Ok(Err(BodyError::Http(e))) => {
                    let detail = error_chain(&e);
                    // A certificate problem will only fail again: no retry, not UNAVAILABLE.
                    if let Some(hint) = tls_hint(&detail) {
                        return Err(VaultError::Tls {
                            address: self.address.clone(),
                            detail,
                            hint,
                        });
                    }
                    // TLS 1.3 servers refuse a missing client certificate after the handshake,
                    // which the client only sees as a connection closed, reset or canceled.
                    let hint = if self.base.scheme() == "https"
                        && !self.client_cert
                        && closed_by_peer(&detail)
                    {
                        CLIENT_CERT_HINT
                    } else {
                        ""
                    };
                    VaultError::Unreachable {
                        address: self.address.clone(),
                        detail,
                        hint,
                    }
                }
                Ok(Ok((status, body))) => {
                    let retry = status.is_server_error()
                        && status != reqwest::StatusCode::NOT_IMPLEMENTED
                        || status == reqwest::StatusCode::PRECONDITION_FAILED;
                    if !retry {
                        return Ok((status, body));
                    }
                    status_error(what, status, &body, &self.address)
                }
            };
            if attempt >= self.max_retries {
                return Err(err);
            }
            attempt += 1;
            let backoff = Duration::from_millis(250 * (1 << attempt.min(5)));
            if Instant::now() + backoff >= deadline {
                return Err(err);
            }
            tracing::debug!(attempt, error = %err, "retrying Vault request");
            tokio::time::sleep(backoff).await;
        }
    }
}

/// The token of a login or renewal answer (`auth.client_token`, or `known` for a renewal,
/// whose answer repeats it), with its lease.
fn token_from_answer(
    what: &str,
    bytes: &[u8],
    known: Option<&SecretString>,
) -> Result<VaultToken, VaultError> {
    let bad = |detail: &str| VaultError::BadAnswer {
        what: what.to_string(),
        detail: detail.to_string(),
    };
    let answer = SecretResponse::parse(bytes).ok_or_else(|| bad("not a JSON object"))?;
    let auth = answer.auth.as_ref().ok_or_else(|| {
        bad("it carries no auth section: is this auth mount a kubernetes or jwt method?")
    })?;
    let token = match known {
        Some(t) => t.clone(),
        None => auth
            .get("client_token")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::new(t.to_string()))
            .ok_or_else(|| bad("it carries no client token"))?,
    };
    Ok(VaultToken {
        token,
        lease_duration: Duration::from_secs(
            auth.get("lease_duration")
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
        ),
        renewable: auth
            .get("renewable")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

enum BodyError {
    Http(reqwest::Error),
    TooLarge,
}

impl From<reqwest::Error> for BodyError {
    fn from(e: reqwest::Error) -> Self {
        BodyError::Http(e)
    }
}

async fn read_body(mut resp: reqwest::Response) -> Result<bytes::Bytes, BodyError> {
    if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn check_status(what: &str, status: reqwest::StatusCode, body: &[u8]) -> Result<(), VaultError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(status_error(what, status, body, ""))
    }
}

fn status_error(what: &str, status: reqwest::StatusCode, body: &[u8], address: &str) -> VaultError {
    let message = vault_errors(body).unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("no error text")
            .to_string()
    });
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
        && message.to_ascii_lowercase().contains("sealed")
    {
        return VaultError::Sealed {
            address: address.to_string(),
        };
    }
    VaultError::Status {
        what: what.to_string(),
        status: status.as_u16(),
        message,
    }
}

/// Vault's `{"errors": [...]}` joined, trimmed and cleaned of control characters.
fn vault_errors(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<serde_json::Value>,
    }
    let parsed: Errors = serde_json::from_slice(body).ok()?;
    let texts: Vec<String> = parsed
        .errors
        .iter()
        .filter_map(|e| e.as_str())
        .map(|e| {
            let clean: String = e
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let clean = clean.trim().to_string();
            if clean.len() > 500 {
                let mut end = 500;
                while !clean.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}...", &clean[..end])
            } else {
                clean
            }
        })
        .filter(|e| !e.is_empty())
        .take(5)
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

/// Said when a TLS server drops us and we sent no client certificate.
const CLIENT_CERT_HINT: &str = " (Vault closed the connection during or right after the TLS handshake: it may require a client certificate, set vaultTLSClientCertPath and vaultTLSClientKeyPath or the -vault-tls-client-* flags)";

/// Whether a transport error means the server closed the connection on us.
fn closed_by_peer(detail: &str) -> bool {
    let d = detail.to_ascii_lowercase();
    [
        "connection closed",
        "canceled",
        "cancelled",
        "broken pipe",
        "reset",
        "unexpected eof",
        "incomplete message",
        "close_notify",
    ]
    .iter()
    .any(|s| d.contains(s))
}

/// What to change when a TLS handshake failed for a reason that will not go away.
fn tls_hint(detail: &str) -> Option<&'static str> {
    if detail.contains("invalid peer certificate") {
        Some(
            " (check the CA: vaultCACertPath, vaultCADirectory or -vault-tls-ca-cert; and the name: vaultTLSServerName)",
        )
    } else if detail.contains("received fatal alert") {
        Some(
            " (Vault refused the TLS handshake: it may require a client certificate, set vaultTLSClientCertPath and vaultTLSClientKeyPath or the -vault-tls-client-* flags)",
        )
    } else {
        None
    }
}

/// An error and its causes, deduplicated, for messages.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_error_text_is_kept_and_cleaned() {
        let body = br#"{"errors":["permission denied","line\nbreak"]}"#;
        assert_eq!(vault_errors(body).unwrap(), "permission denied; line break");
        assert_eq!(vault_errors(b"<html>"), None);
        let e = status_error(
            "x",
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            br#"{"errors":["Vault is sealed"]}"#,
            "http://v",
        );
        assert!(matches!(e, VaultError::Sealed { .. }));
        assert!(e.is_transient());
        let e = status_error(
            "x",
            reqwest::StatusCode::FORBIDDEN,
            br#"{"errors":["permission denied"]}"#,
            "",
        );
        assert!(!e.is_transient());
    }

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

    #[test]
    fn class_overrides_win_and_skip_verify_only_turns_on() {
        let base = VaultSettings {
            address: "https://a".into(),
            auth_mount: "kubernetes".into(),
            namespace: Some("ns1".into()),
            tls: TlsSettings {
                skip_verify: true,
                ..Default::default()
            },
            timeout: Duration::from_secs(60),
            max_retries: 2,
        };
        let o = ConnectionOverrides {
            address: Some("https://b".into()),
            namespace: Some("ns2".into()),
            skip_verify: Some(false),
            ..Default::default()
        };
        let c = Connection::resolve(&base, &o);
        assert_eq!(c.address, "https://b");
        assert_eq!(c.namespace.as_deref(), Some("ns2"));
        assert!(c.tls.skip_verify);
    }
}
