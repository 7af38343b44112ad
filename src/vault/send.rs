//! The send loop: which node a request goes to, and when it is tried again.
//!
//! A request goes to the node that last answered well. A node that cannot be reached, times
//! out, is sealed, answers 5xx (a standby with no active node, a proxy in front of a dead
//! one), 412, a standby's 307, or KV's "upgrading" 400 after a leader change, or cuts its
//! answer short is skipped for the next node at once, and cooled
//! down so that later requests try it last. When every node failed, the round is retried
//! with backoff, up to `VAULT_MAX_RETRIES` times. A 429 (a rate-limit quota, which holds for
//! the whole cluster) waits for `Retry-After` and tries again, a few times. Everything
//! happens inside the caller's deadline, and no place in the concurrency bound is held
//! while waiting.

use super::VaultError;
use super::answers::{
    BodyError, Budget, CLIENT_CERT_HINT, MAX_BODY, closed_by_peer, read_body, retry_after,
    status_error, tls_hint,
};
use super::client::{Call, NodeClient, VaultClient};
use crate::text::error_chain;
use std::time::Duration;
use tokio::time::Instant;

/// Rounds over every node of a cluster before giving up (with `VAULT_MAX_RETRIES` if
/// higher): about ten seconds of backoff, enough for a raft election.
pub const FAILOVER_RETRIES: u32 = 6;
/// Longest wait between two rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How many times a rate-limited request waits and tries again.
pub const MAX_RATE_LIMIT_WAITS: u32 = 4;
/// Longest single wait for a rate limit, whatever `Retry-After` says.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// KV v2 answers 400 for a moment after a new active node takes over, while it checks
/// its storage version: a passing state, retried like a 5xx.
fn kv_upgrading(status: reqwest::StatusCode, body: &[u8]) -> bool {
    status == reqwest::StatusCode::BAD_REQUEST
        && body.len() < 4096
        && String::from_utf8_lossy(body).contains("upgrade from non-versioned to versioned data")
}

/// What one try on one node came to.
enum Outcome {
    /// An answer to hand back (success, or a status the caller interprets).
    Answer(reqwest::StatusCode, bytes::Bytes, Budget),
    /// This node failed in a way another node (or a later try) may not.
    Failed(VaultError),
    /// Vault is rate limiting: wait, then try again.
    RateLimited(VaultError, Option<Duration>),
    /// A failure no retry can mend, or the deadline.
    Final(VaultError),
}

impl VaultClient {
    /// Sends `call` to the cluster with failover and retries, inside `deadline`.
    pub(super) async fn send(
        &self,
        call: &Call<'_>,
        deadline: Instant,
    ) -> Result<(reqwest::StatusCode, bytes::Bytes, Budget), VaultError> {
        let several = self.nodes.len() > 1;
        let mut last: Vec<Option<VaultError>> = vec![None; self.nodes.len()];
        let mut attempt = 0u32;
        let mut rate_waits = 0u32;
        loop {
            if deadline <= Instant::now() {
                return Err(VaultError::Deadline {
                    what: call.what.to_string(),
                });
            }
            // Queue for a place among the requests in flight to this cluster.
            let Ok(Ok(permit)) =
                tokio::time::timeout_at(deadline, self.cluster.limit.acquire()).await
            else {
                return Err(VaultError::Deadline {
                    what: format!(
                        "{} was queued behind other requests to Vault (-vault-concurrency)",
                        call.what
                    ),
                });
            };
            let order = self.cluster.order(Instant::now());
            let mut rate_limited = None;
            for (k, &i) in order.iter().enumerate() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(VaultError::Deadline {
                        what: call.what.to_string(),
                    });
                }
                // Leave time for the nodes still to try in this round.
                let share = remaining / (order.len() - k) as u32;
                let per_try = self.timeout.min(share);
                match self
                    .try_node(&self.nodes[i], call, per_try, remaining)
                    .await
                {
                    Outcome::Answer(status, body, budget) => {
                        self.cluster.good(i);
                        return Ok((status, body, budget));
                    }
                    Outcome::Final(e) => return Err(e),
                    Outcome::RateLimited(e, after) => {
                        crate::metrics::get().vault_rate_limited.inc();
                        rate_limited = Some((e, after));
                        break;
                    }
                    Outcome::Failed(e) => {
                        if several {
                            self.cluster.bad(i, Instant::now());
                            if k + 1 < order.len() {
                                crate::metrics::get().vault_failovers.inc();
                            }
                            tracing::debug!(node = %self.nodes[i].address, error = %e, "Vault node failed; trying the next");
                        }
                        last[i] = Some(e);
                    }
                }
            }
            drop(permit);

            if let Some((err, after)) = rate_limited {
                rate_waits += 1;
                // Vault rounds Retry-After down (0 for "within the second"): wait at least a
                // growing backoff.
                let backoff = Duration::from_millis(250 * (1 << (rate_waits - 1).min(4)));
                let wait = after.unwrap_or_default().max(backoff);
                // A quota that blocks for longer than we would wait is not worth waiting for:
                // the driver calls again, and the pod's events say why.
                if rate_waits > MAX_RATE_LIMIT_WAITS
                    || wait > MAX_RATE_LIMIT_WAIT
                    || Instant::now() + wait >= deadline
                {
                    return Err(err);
                }
                tracing::debug!(
                    wait_ms = wait.as_millis() as u64,
                    "Vault is rate limiting; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }

            let err = self.round_error(call.what, &mut last);
            // A cluster electing a new leader refuses everything for a few seconds: give it
            // enough rounds to come back, still inside the deadline.
            let retries = if several {
                self.max_retries.max(FAILOVER_RETRIES)
            } else {
                self.max_retries
            };
            if attempt >= retries {
                return Err(err);
            }
            attempt += 1;
            let backoff = Duration::from_millis(250 * (1 << attempt.min(5))).min(MAX_BACKOFF);
            if Instant::now() + backoff >= deadline {
                return Err(err);
            }
            crate::metrics::get().vault_retries.inc();
            tracing::debug!(attempt, error = %err, "retrying Vault request");
            tokio::time::sleep(backoff).await;
        }
    }

    /// The error of a round in which every node failed: the node's own error for a single
    /// address, else every node and what it did.
    fn round_error(&self, what: &str, last: &mut [Option<VaultError>]) -> VaultError {
        if let [only] = last {
            return only.clone().unwrap_or_else(|| VaultError::Deadline {
                what: what.to_string(),
            });
        }
        let nodes = self
            .nodes
            .iter()
            .zip(last.iter())
            .map(|(n, e)| match e {
                Some(e) => {
                    let text = e.to_string();
                    if text.contains(&n.address) {
                        text
                    } else {
                        format!("{}: {text}", n.address)
                    }
                }
                None => format!("{}: not tried", n.address),
            })
            .collect();
        VaultError::Nodes {
            what: what.to_string(),
            nodes,
        }
    }

    /// One try of `call` on `node`, at most `per_try` long.
    async fn try_node(
        &self,
        node: &NodeClient,
        call: &Call<'_>,
        per_try: Duration,
        remaining: Duration,
    ) -> Outcome {
        let request = match self.request(node, call) {
            Ok(r) => r,
            Err(e) => return Outcome::Final(e),
        };
        let started = Instant::now();
        let outcome = tokio::time::timeout(per_try, async {
            let resp = request.send().await?;
            let status = resp.status();
            let after = retry_after(resp.headers());
            let (body, budget) = read_body(resp).await?;
            Ok::<_, BodyError>((status, after, body, budget))
        })
        .await;
        let answered = match &outcome {
            Ok(Ok((status, _, _, _))) => Some(status.as_u16()),
            _ => None,
        };
        crate::metrics::get().vault_request(call.operation, answered, started.elapsed());
        match outcome {
            Err(_) if per_try >= remaining => Outcome::Final(VaultError::Deadline {
                what: call.what.to_string(),
            }),
            Err(_) => Outcome::Failed(VaultError::Timeout {
                address: node.address.clone(),
                timeout: per_try,
            }),
            Ok(Err(BodyError::Busy)) => Outcome::Failed(VaultError::Busy),
            Ok(Err(BodyError::TooLarge)) => Outcome::Final(VaultError::BadAnswer {
                what: call.what.to_string(),
                detail: format!("larger than {MAX_BODY} bytes"),
            }),
            Ok(Err(BodyError::Http(e))) => {
                let detail = error_chain(&e);
                // A certificate problem will only fail again: no retry, not UNAVAILABLE.
                if let Some(hint) = tls_hint(&detail) {
                    return Outcome::Final(VaultError::Tls {
                        address: node.address.clone(),
                        detail,
                        hint,
                    });
                }
                // TLS 1.3 servers refuse a missing client certificate after the handshake,
                // which the client only sees as a connection closed, reset or canceled.
                let hint = if node.base.scheme() == "https"
                    && !self.client_cert
                    && closed_by_peer(&detail)
                {
                    CLIENT_CERT_HINT
                } else {
                    ""
                };
                Outcome::Failed(VaultError::Unreachable {
                    address: node.address.clone(),
                    detail,
                    hint,
                })
            }
            Ok(Ok((status, after, body, budget))) => {
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    let message = super::answers::vault_errors(&body)
                        .unwrap_or_else(|| "no error text".into());
                    return Outcome::RateLimited(
                        VaultError::RateLimited {
                            address: node.address.clone(),
                            message,
                        },
                        after,
                    );
                }
                let retry = status.is_server_error()
                    && status != reqwest::StatusCode::NOT_IMPLEMENTED
                    || status == reqwest::StatusCode::PRECONDITION_FAILED
                    || kv_upgrading(status, &body)
                    // A standby that cannot forward redirects to the active node; redirects
                    // are not followed (a tenant's server could point anywhere), but another
                    // listed node, or a later try, will serve.
                    || status == reqwest::StatusCode::TEMPORARY_REDIRECT;
                if retry {
                    Outcome::Failed(status_error(call.what, status, &body, &node.address))
                } else {
                    Outcome::Answer(status, body, budget)
                }
            }
        }
    }
}
