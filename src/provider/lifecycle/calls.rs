//! The lifecycle's requests to Vault: a token renewed (`renew-self`), a lease renewed
//! (`sys/leases/renew`) and its pod's reuse extended or ended, a lease revoked
//! (`sys/leases/revoke/<id>`) with the token that read it. Each is bounded in time, counted,
//! and retried within the lease when it fails; a refused revocation names the policy line
//! the role needs, once per identity.

use super::{
    CALL_TIMEOUT, Job, Lifecycle, RENEW_AT, TokenTrack, Tracked, lock, renew_at, retry_at,
};
use crate::provider::identity::Identity;
use crate::vault::{ClientPool, VaultError};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The policy line that lets a role revoke leases like `lease_id`: those of its own
/// secrets engine role (`sys/leases/revoke/database/creds/app/*`).
pub fn revoke_policy(lease_id: &str) -> String {
    let prefix = lease_id
        .rsplit_once('/')
        .map(|(p, _)| p)
        .filter(|p| crate::vault::plain_lease_id(p));
    match prefix {
        Some(p) => format!("path \"sys/leases/revoke/{p}/*\" {{ capabilities = [\"update\"] }}"),
        None => "path \"sys/leases/revoke\" { capabilities = [\"update\"] }".to_string(),
    }
}

impl Lifecycle {
    pub(super) async fn work(&self, pool: &ClientPool, job: Job) {
        match job {
            Job::Token(token) => self.renew_token(pool, &token).await,
            Job::Renew(pod, lease) => self.renew_lease(pool, (pod, lease)).await,
            Job::Revoke(t, left) => self.revoke_lease(pool, *t, left).await,
        }
    }

    async fn client(
        &self,
        pool: &ClientPool,
        identity: &Identity,
    ) -> Result<crate::vault::VaultClient, VaultError> {
        pool.client(&identity.connection, Instant::now() + CALL_TIMEOUT)
            .await
    }

    async fn renew_token(&self, pool: &ClientPool, token: &TokenTrack) {
        let now = Instant::now();
        let result = match self.client(pool, &token.identity).await {
            Ok(c) => c.renew_self(&token.token, now + CALL_TIMEOUT).await,
            Err(e) => Err(e),
        };
        let metrics = crate::metrics::get();
        crate::metrics::Metrics::result(&metrics.renewals, result.is_ok());
        let now = Instant::now();
        let mut s = lock(&token.state);
        s.in_flight = false;
        match result {
            Ok(renewed) => {
                // Mounts of the identity keep this token, and the answers it read.
                self.tokens.renewed(&token.identity, token.epoch, &renewed);
                let ttl = renewed.lease_duration;
                s.expires_at = (!ttl.is_zero()).then(|| now + ttl);
                // Capped far below the lease it had: the token nears its maximum TTL, and
                // every lease it read dies with it.
                let capped = ttl * 2 < s.ttl;
                s.next = (s.renewable && !capped && !ttl.is_zero())
                    .then(|| renew_at(now, ttl, 2.0 / 3.0));
                s.ttl = ttl;
                if capped {
                    drop(s);
                    self.end_reuse(token);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "renewing the Vault token of tracked leases failed; trying again");
                s.next = s.expires_at.and_then(|e| retry_at(now, e));
            }
        }
    }

    /// Every lease `token` read dies with it soon: their pods' next Mounts get new ones,
    /// read with a new token, while these still work.
    fn end_reuse(&self, token: &TokenTrack) {
        let now = Instant::now();
        let state = lock(&self.state);
        for t in state.leases.values() {
            if std::ptr::eq(Arc::as_ptr(&t.token), token) {
                self.reuse.reuse_until(&t.reuse, &t.lease_id, now);
            }
        }
    }

    async fn renew_lease(&self, pool: &ClientPool, id: (String, String)) {
        let (token, increment) = {
            let state = lock(&self.state);
            let Some(t) = state.leases.get(&id) else {
                return;
            };
            (t.token.clone(), t.increment)
        };
        let started = Instant::now();
        let result = match self.client(pool, &token.identity).await {
            Ok(c) => {
                c.renew_lease(&token.token, &id.1, increment, started + CALL_TIMEOUT)
                    .await
            }
            Err(e) => Err(e),
        };
        let metrics = crate::metrics::get();
        crate::metrics::Metrics::result(&metrics.lease_renewals, result.is_ok());
        let now = Instant::now();
        let token_end = lock(&token.state).expires_at;
        let mut state = lock(&self.state);
        let Some(t) = state.leases.get_mut(&id) else {
            return;
        };
        t.in_flight = false;
        match result {
            Ok(lease) if !lease.is_zero() => {
                t.expires_at = now + lease;
                // Capped by the lease's maximum TTL (not only by its token's, which is
                // renewed too): the pod's next Mount gets new credentials in time.
                let by_token = token_end.is_some_and(|e| e <= now + lease + Duration::from_secs(2));
                if lease < increment && !by_token {
                    // Renewed at half its lease, a lease that comes back capped still has at
                    // least half a lease left: the pod's next Mount gets new credentials now,
                    // while these keep working that long.
                    t.next = None;
                    self.reuse.reuse_until(&t.reuse, &t.lease_id, now);
                    tracing::debug!(
                        lease_s = lease.as_secs(),
                        "lease near its maximum TTL; the pod's next Mount gets new credentials"
                    );
                } else {
                    t.next = t.renewable.then(|| renew_at(now, lease, RENEW_AT));
                    // The pod's rotation polls keep getting the same credentials, past the
                    // next renewal (which extends this again).
                    self.reuse
                        .reuse_until(&t.reuse, &t.lease_id, now + lease.mul_f64(2.0 / 3.0));
                }
            }
            Ok(_) => t.next = None,
            Err(e) => {
                tracing::debug!(error = %e, "renewing a lease failed; trying again within it");
                t.next = retry_at(now, t.expires_at);
            }
        }
    }

    async fn revoke_lease(&self, pool: &ClientPool, t: Tracked, left: u32) {
        let now = Instant::now();
        let token_alive = lock(&t.token.state).expires_at.is_none_or(|e| e > now);
        if !token_alive || t.expires_at <= now {
            // Vault has revoked it already, with its token or at its TTL.
            return;
        }
        let result = match self.client(pool, &t.token.identity).await {
            Ok(c) => {
                c.revoke_lease(&t.token.token, &t.lease_id, now + CALL_TIMEOUT)
                    .await
            }
            Err(e) => Err(e),
        };
        let metrics = crate::metrics::get();
        crate::metrics::Metrics::result(&metrics.lease_revocations, result.is_ok());
        match result {
            Ok(()) => tracing::debug!(pod_uid = %t.pod_uid, "lease of a pod that is gone revoked"),
            Err(VaultError::Status { status: 403, .. }) => {
                let first = lock(&self.warned).insert(t.token.identity.clone());
                if first {
                    let policy = revoke_policy(&t.lease_id);
                    tracing::warn!(
                        namespace = %t.token.identity.namespace,
                        service_account = %t.token.identity.service_account,
                        role = %t.token.identity.role,
                        %policy,
                        "Vault refused to revoke the lease of a pod that is gone (permission denied): add the policy line to the role's policies; until then such leases lapse at their TTL"
                    );
                }
            }
            Err(e) if left > 1 => {
                tracing::debug!(error = %e, "revoking a lease failed; trying again");
                let mut state = lock(&self.state);
                state
                    .revoke
                    .push((t, left - 1, Instant::now() + Duration::from_secs(3)));
                drop(state);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot revoke the lease of a pod that is gone; it lapses at its TTL")
            }
        }
    }
}
