//! Vault's answers as data: bodies read under a size cap, statuses turned into errors with
//! Vault's own text, login and renewal answers, and what a transport failure most likely
//! means. No I/O beyond reading a body already on its way.

use super::{VaultError, VaultToken};
use crate::secret::SecretString;
use crate::stages::answer::SecretResponse;
use std::time::Duration;

/// Largest answer body accepted from Vault (the driver accepts 4 MiB for a whole volume).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Bytes of answer bodies being read at once, across every Vault the process talks to: a
/// tenant's server that sends huge answers waits for its turn instead of growing the process.
pub const IN_FLIGHT_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The longest lease or token lifetime believed, in seconds (a year).
pub const MAX_LEASE_SECS: u64 = 365 * 24 * 3600;

static BODY_BUDGET: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(IN_FLIGHT_BODY_BYTES));

/// The token of a login or renewal answer (`auth.client_token`, or `known` for a renewal,
/// whose answer repeats it), with its lease.
pub fn token_from_answer(
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
        // Whatever Vault (or a server posing as it) says, a lease is capped at a year.
        lease_duration: Duration::from_secs(
            auth.get("lease_duration")
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
                .min(MAX_LEASE_SECS),
        ),
        renewable: auth
            .get("renewable")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

/// Why a body could not be had.
pub enum BodyError {
    Http(reqwest::Error),
    TooLarge,
    /// The budget of answers in flight is spent.
    Busy,
}

impl From<reqwest::Error> for BodyError {
    fn from(e: reqwest::Error) -> Self {
        BodyError::Http(e)
    }
}

/// A share of the process-wide budget of answers in flight, held while the answer is.
#[derive(Default)]
pub struct Budget {
    /// Released when dropped.
    _permits: Vec<tokio::sync::SemaphorePermit<'static>>,
}

/// Answers this small (twice their size, for the body and its parsed form) need no share
/// of the budget: a Mount's ordinary answers never wait behind a tenant's huge ones.
const SMALL_ANSWER: usize = 32 * 1024;

/// Reads a body, refusing more than [`MAX_BODY`] bytes. A large answer takes its share of
/// the process-wide budget of answers in flight (twice its bytes: the body, then its parsed
/// form) in one piece before it is read, waiting inside the caller's timeout, and keeps it
/// with the answer until the Mount is done; a body of unknown length that grows past the
/// small size takes its share as it comes or fails at once. Nothing waits holding a part.
pub async fn read_body(mut resp: reqwest::Response) -> Result<(bytes::Bytes, Budget), BodyError> {
    let mut held = Vec::new();
    let declared = resp.content_length().map(|n| n as usize);
    if let Some(n) = declared {
        if n > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        if 2 * n > SMALL_ANSWER {
            let p = BODY_BUDGET
                .acquire_many(2 * n as u32)
                .await
                .map_err(|_| BodyError::Busy)?;
            held.push(p);
        }
    }
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > MAX_BODY
            || declared.is_some_and(|n| buf.len() + chunk.len() > n)
        {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
        if declared.is_none() && 2 * buf.len() > SMALL_ANSWER {
            let p = BODY_BUDGET
                .try_acquire_many(2 * chunk.len() as u32)
                .map_err(|_| BodyError::Busy)?;
            held.push(p);
        }
    }
    Ok((buf.freeze(), Budget { _permits: held }))
}

/// An error for any status that is not a success.
pub fn check_status(
    what: &str,
    status: reqwest::StatusCode,
    body: &[u8],
) -> Result<(), VaultError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(status_error(what, status, body, ""))
    }
}

/// A status as an error, with Vault's own text; a sealed Vault is named as such.
pub fn status_error(
    what: &str,
    status: reqwest::StatusCode,
    body: &[u8],
    address: &str,
) -> VaultError {
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
pub fn vault_errors(body: &[u8]) -> Option<String> {
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
            crate::text::cap(clean.trim(), 500)
        })
        .filter(|e| !e.is_empty())
        .take(5)
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

/// `Retry-After` in seconds, as Vault's rate-limit quotas send it.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What to change when a TLS handshake failed for a reason that will not go away.
pub fn tls_hint(detail: &str) -> Option<&'static str> {
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

/// Said when a TLS server drops us and we sent no client certificate.
pub const CLIENT_CERT_HINT: &str = " (Vault closed the connection during or right after the TLS handshake: it may require a client certificate, set vaultTLSClientCertPath and vaultTLSClientKeyPath or the -vault-tls-client-* flags)";

/// Whether a transport error means the server closed the connection on us.
pub fn closed_by_peer(detail: &str) -> bool {
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
    fn dropped_connections_are_recognised() {
        for d in [
            "error sending request: connection closed before message completed",
            "operation was canceled: connection closed",
            "Connection reset by peer (os error 104)",
            "Broken pipe (os error 32)",
            "peer closed connection without sending TLS close_notify: unexpected EOF",
        ] {
            assert!(closed_by_peer(d), "{d}");
        }
        assert!(!closed_by_peer("dns error: failed to lookup address"));
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
