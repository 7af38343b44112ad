//! One Vault cluster as seen by one Mount: logins, renewals and reads. Each request goes
//! through the send loop (`send.rs`), which picks the node and retries.

use super::answers::{Budget, check_status, token_from_answer};
use super::cluster::Cluster;
use super::{Connection, VaultError};
use crate::secret::SecretString;
use crate::stages::answer::SecretResponse;
use crate::stages::plan::ReadSpec;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A lease id that can go into a URL path as it is: segments of letters, digits, `.`, `_`
/// and `-`, none of them empty, `.` or `..`.
pub fn plain_lease_id(id: &str) -> bool {
    id.len() <= 1024
        && id.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

/// A Vault token from a login.
#[derive(Debug, Clone)]
pub struct VaultToken {
    pub token: SecretString,
    pub lease_duration: Duration,
    pub renewable: bool,
}

/// One node of the cluster: its address, its API base and the HTTP client that reaches it.
#[derive(Clone)]
pub(super) struct NodeClient {
    pub address: String,
    pub base: url::Url,
    pub http: reqwest::Client,
}

/// A request to make, independent of the node it goes to.
pub(super) struct Call<'a> {
    pub what: &'a str,
    /// `login`, `read` or `renew`, for metrics.
    pub operation: &'static str,
    pub method: reqwest::Method,
    /// API path without a leading `/`, e.g. `v1/secret/data/app`.
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub token: Option<&'a SecretString>,
    pub body: Option<&'a str>,
}

/// One Vault cluster (one or more nodes) as seen by one Mount.
#[derive(Clone)]
pub struct VaultClient {
    pub(super) cluster: Arc<Cluster>,
    pub(super) nodes: Vec<NodeClient>,
    pub(super) client_cert: bool,
    pub(super) namespace: Option<String>,
    pub(super) timeout: Duration,
    pub(super) max_retries: u32,
}

impl VaultClient {
    pub(super) fn new(cluster: Arc<Cluster>, nodes: Vec<NodeClient>, conn: &Connection) -> Self {
        VaultClient {
            cluster,
            nodes,
            client_cert: conn.tls.client_cert.is_some(),
            namespace: conn.namespace.clone(),
            timeout: conn.timeout,
            max_retries: conn.max_retries,
        }
    }

    /// `POST /v1/auth/<mount>/login` with `{"role", "jwt"}`; serves kubernetes and jwt auth.
    pub async fn login(
        &self,
        mount: &str,
        role: &str,
        jwt: &SecretString,
        deadline: Instant,
    ) -> Result<VaultToken, VaultError> {
        let what = format!(
            "login at auth/{mount} with role {}",
            crate::text::quote(role)
        );
        let body = serde_json::json!({ "role": role, "jwt": jwt.expose() }).to_string();
        let path = format!("v1/auth/{mount}/login");
        let call = Call {
            what: &what,
            operation: "login",
            method: reqwest::Method::POST,
            path: &path,
            query: &[],
            token: None,
            body: Some(&body),
        };
        let (status, bytes, _) = self.send(&call, deadline).await?;
        check_status(&what, status, &bytes)?;
        token_from_answer(&what, &bytes, None)
    }

    /// `POST /v1/auth/token/renew-self`: extends the token's lease.
    pub async fn renew_self(
        &self,
        token: &SecretString,
        deadline: Instant,
    ) -> Result<VaultToken, VaultError> {
        let what = "renewal of the Vault token";
        let call = Call {
            what,
            operation: "renew",
            method: reqwest::Method::POST,
            path: "v1/auth/token/renew-self",
            query: &[],
            token: Some(token),
            body: Some("{}"),
        };
        let (status, bytes, _) = self.send(&call, deadline).await?;
        check_status(what, status, &bytes)?;
        token_from_answer(what, &bytes, Some(token))
    }

    /// `PUT /v1/sys/leases/renew` with `{"lease_id", "increment"}`: extends a lease (a
    /// dynamic credential's); returns the lease it now has, which Vault caps at the lease's
    /// maximum TTL (and at its token's).
    pub async fn renew_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
        increment: Duration,
        deadline: Instant,
    ) -> Result<Duration, VaultError> {
        let what = "renewal of a lease";
        let body = serde_json::json!({ "lease_id": lease_id, "increment": increment.as_secs() })
            .to_string();
        let call = Call {
            what,
            operation: "renew",
            method: reqwest::Method::PUT,
            path: "v1/sys/leases/renew",
            query: &[],
            token: Some(token),
            body: Some(&body),
        };
        let (status, bytes, _) = self.send(&call, deadline).await?;
        check_status(what, status, &bytes)?;
        let answer = SecretResponse::parse(&bytes).ok_or_else(|| VaultError::BadAnswer {
            what: what.into(),
            detail: "not a JSON object".into(),
        })?;
        Ok(Duration::from_secs(
            u64::try_from(answer.lease_duration)
                .unwrap_or(0)
                .min(super::MAX_LEASE_SECS),
        ))
    }

    /// `PUT /v1/sys/leases/revoke/<lease_id>`: ends a lease now (the database user is
    /// dropped, the cloud key deleted). The lease id in the path lets a policy allow only
    /// the role's own leases (`sys/leases/revoke/database/creds/app/*`); an id that is not
    /// a plain path goes in the body instead.
    pub async fn revoke_lease(
        &self,
        token: &SecretString,
        lease_id: &str,
        deadline: Instant,
    ) -> Result<(), VaultError> {
        let what = "revocation of a lease";
        let (path, body) = if plain_lease_id(lease_id) {
            (format!("v1/sys/leases/revoke/{lease_id}"), None)
        } else {
            (
                "v1/sys/leases/revoke".to_string(),
                Some(serde_json::json!({ "lease_id": lease_id }).to_string()),
            )
        };
        let call = Call {
            what,
            operation: "revoke",
            method: reqwest::Method::PUT,
            path: &path,
            query: &[],
            token: Some(token),
            body: body.as_deref(),
        };
        let (status, bytes, _) = self.send(&call, deadline).await?;
        check_status(what, status, &bytes)
    }

    /// Reads one path with a Vault token. The [`Budget`] is the answer's share of the
    /// process's budget of answers in flight: keep it as long as the answer.
    pub async fn read(
        &self,
        token: &SecretString,
        spec: &ReadSpec,
        deadline: Instant,
    ) -> Result<(SecretResponse, Budget), VaultError> {
        let what = format!("{} {}", spec.method.as_str(), spec.display());
        let call = Call {
            what: &what,
            operation: "read",
            method: match spec.method {
                crate::stages::plan::Method::Get => reqwest::Method::GET,
                crate::stages::plan::Method::Put => reqwest::Method::PUT,
                crate::stages::plan::Method::Post => reqwest::Method::POST,
            },
            path: spec.path.trim_start_matches('/'),
            query: &spec.query,
            token: Some(token),
            body: spec.body.as_deref(),
        };
        let (status, bytes, budget) = self.send(&call, deadline).await?;
        check_status(&what, status, &bytes)?;
        if status == reqwest::StatusCode::NO_CONTENT || bytes.is_empty() {
            return Err(VaultError::BadAnswer {
                what,
                detail:
                    "it is empty (HTTP 204): the path returns no data; check secretPath and method"
                        .into(),
            });
        }
        let answer = SecretResponse::parse(&bytes).ok_or_else(|| VaultError::BadAnswer {
            what,
            detail: "not a JSON object".into(),
        })?;
        Ok((answer, budget))
    }

    /// The HTTP request of `call` to `node`.
    pub(super) fn request(
        &self,
        node: &NodeClient,
        call: &Call<'_>,
    ) -> Result<reqwest::RequestBuilder, VaultError> {
        let mut url = node.base.join(call.path).map_err(|e| {
            VaultError::Setup(format!(
                "bad request path {}: {e}",
                crate::text::quote(call.path)
            ))
        })?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(call.query);
        }
        let mut r = node
            .http
            .request(call.method.clone(), url)
            .header("X-Vault-Request", "true");
        if let Some(ns) = &self.namespace {
            r = r.header("X-Vault-Namespace", ns);
        }
        if let Some(t) = call.token
            && let Ok(mut value) = reqwest::header::HeaderValue::from_str(t.expose())
        {
            // Sensitive: never entered in HPACK tables, printed as "Sensitive" by Debug.
            value.set_sensitive(true);
            r = r.header("X-Vault-Token", value);
        }
        if let Some(body) = call.body {
            r = r
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        Ok(r)
    }
}
