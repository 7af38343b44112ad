//! The identity stage: the pod's service-account token (the driver's, or one requested
//! with TokenRequest), and the identity's Vault token: held, renewed, or from a new login,
//! one login per identity however many pods mount at once.

use super::Provider;
use super::error::MountError;
use super::identity::{Held, Identity, Slot};
use crate::secret::SecretString;
use crate::stages::plan::MountPlan;
use crate::vault::VaultClient;
use tokio::time::Instant;

impl Provider {
    /// The pod's service-account token: the driver's, or one requested from Kubernetes.
    pub(super) async fn service_account_token(
        &self,
        plan: &MountPlan,
        deadline: Instant,
    ) -> Result<SecretString, MountError> {
        if let Some(t) = &plan.token {
            return Ok(t.token.clone());
        }
        let no_token = |reason: String| MountError::NoToken {
            audience: plan.audience.clone(),
            reason,
        };
        let Some(kube) = &self.kube else {
            return Err(no_token(
                "and the provider has no Kubernetes API access to request one (in-cluster service account or KUBECONFIG)".into(),
            ));
        };
        let pod = &plan.pod;
        for (what, value) in [
            ("pod namespace", &pod.namespace),
            ("service account", &pod.service_account),
            ("pod name", &pod.name),
        ] {
            if !crate::text::valid_name(value) {
                return Err(no_token(format!(
                    "and the driver sent no valid {what} to request one for"
                )));
            }
        }
        if pod.uid.is_empty() || pod.uid.len() > 128 {
            return Err(no_token(
                "and the driver sent no pod uid to request one for".into(),
            ));
        }
        let request = kube.create_token(
            &pod.namespace,
            &pod.service_account,
            &pod.name,
            &pod.uid,
            plan.explicit_audience.as_deref(),
        );
        match tokio::time::timeout_at(deadline, request).await {
            Ok(Ok(token)) => Ok(token),
            Ok(Err(e)) => Err(MountError::TokenRequest(e)),
            Err(_) => Err(MountError::Deadline(
                "requesting a service-account token".into(),
            )),
        }
    }

    /// The identity's Vault token: held, renewed, or from a new login. Whoever holds the
    /// slot's lock does the work; concurrent mounts of the identity wait for it (single
    /// flight). Returns the token and whether it comes from a login made just now.
    pub(super) async fn token(
        &self,
        slot: &tokio::sync::Mutex<Slot>,
        client: &VaultClient,
        plan: &MountPlan,
        identity: &Identity,
        deadline: Instant,
    ) -> Result<(Held, bool), MountError> {
        let mut s = tokio::time::timeout_at(deadline, slot.lock())
            .await
            .map_err(|_| {
                MountError::Deadline("waiting for this service account's Vault login".into())
            })?;
        crate::provider::identity::touch(&mut s);
        let now = Instant::now();
        let metrics = crate::metrics::get();
        if let Some(h) = s.held.clone() {
            if h.fresh(now) {
                metrics.token_cache_hits.inc();
                return Ok((h, false));
            }
            metrics.token_cache_misses.inc();
            if h.renewable_now(now) {
                let renewal = client.renew_self(&h.token, deadline).await;
                crate::metrics::Metrics::result(&metrics.renewals, renewal.is_ok());
                match renewal {
                    // A renewal capped far below the lease it extends: the token nears its
                    // maximum lifetime, and would die soon after being handed out.
                    Ok(renewed) if renewed.lease_duration * 2 < h.lease => {
                        tracing::debug!(
                            lease_s = renewed.lease_duration.as_secs(),
                            "Vault token near its maximum lifetime; logging in again"
                        );
                    }
                    Ok(renewed) => {
                        let held = s.store(&renewed, false);
                        if s.held.is_some() {
                            tracing::debug!(
                                lease_s = renewed.lease_duration.as_secs(),
                                "Vault token renewed"
                            );
                            return Ok((held, false));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "Vault token renewal failed; logging in again")
                    }
                }
            }
        } else {
            metrics.token_cache_misses.inc();
        }
        let sa_token = self.service_account_token(plan, deadline).await?;
        let login = client
            .login(&identity.auth_mount, &plan.role, &sa_token, deadline)
            .await;
        crate::metrics::Metrics::result(&metrics.logins, login.is_ok());
        let token = login.map_err(|source| MountError::Login {
            role: plan.role.clone(),
            mount: identity.auth_mount.clone(),
            source,
        })?;
        Ok((s.store(&token, true), true))
    }
}
