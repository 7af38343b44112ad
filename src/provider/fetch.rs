//! The fetch stage: every distinct read of a Mount once, `-parallel-reads` at a time; a
//! pod's still-good lease or certificate reused; identical reads in flight shared within an
//! identity; leased answers handed to the lifecycle.

use super::Provider;
use super::error::MountError;
use super::identity::{Held, Identity};
use super::reuse::{LeaseKey, ReadKey};
use crate::stages::answer::SecretResponse;
use crate::stages::plan::{MountPlan, ReadSpec};
use crate::vault::{VaultClient, VaultError};
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::time::Instant;

impl Provider {
    /// Every distinct read once, `parallel_reads` at a time; the first failure ends the Mount.
    pub(super) async fn read_all(
        &self,
        client: &VaultClient,
        held: &Held,
        plan: &MountPlan,
        identity: &Identity,
        budgets: &std::sync::Mutex<Vec<crate::vault::Budget>>,
        deadline: Instant,
    ) -> Result<Vec<Arc<SecretResponse>>, MountError> {
        let mut answers: Vec<Option<Arc<SecretResponse>>> = vec![None; plan.reads.len()];
        let mut reads = Vec::with_capacity(plan.reads.len());
        for (i, spec) in plan.reads.iter().enumerate() {
            reads.push(self.read_one(
                i,
                client,
                held,
                &plan.pod.uid,
                identity,
                spec,
                budgets,
                deadline,
            ));
        }
        let mut stream = futures_util::stream::iter(reads).buffer_unordered(self.parallel_reads);
        while let Some((i, result)) = stream.next().await {
            match result {
                Ok(answer) => answers[i] = Some(answer),
                Err(source) => {
                    let objects = plan
                        .objects
                        .iter()
                        .filter(|o| o.read == Some(i))
                        .map(|o| o.name.clone())
                        .collect();
                    return Err(MountError::Read { objects, source });
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.ok_or_else(|| MountError::Internal("a read produced no answer".into())))
            .collect()
    }

    /// One read: this pod's still-good lease or certificate, else a read shared with
    /// identical ones in flight.
    #[allow(clippy::too_many_arguments)]
    async fn read_one(
        &self,
        i: usize,
        client: &VaultClient,
        held: &Held,
        pod_uid: &str,
        identity: &Identity,
        spec: &ReadSpec,
        budgets: &std::sync::Mutex<Vec<crate::vault::Budget>>,
        deadline: Instant,
    ) -> (usize, Result<Arc<SecretResponse>, VaultError>) {
        let lease_key = (!pod_uid.is_empty()).then(|| LeaseKey {
            pod_uid: pod_uid.to_string(),
            identity: identity.clone(),
            spec: spec.clone(),
        });
        if let Some(answer) = lease_key
            .as_ref()
            .and_then(|k| self.leases.get(k, held.epoch))
        {
            return (i, Ok(answer));
        }
        let key = ReadKey {
            identity: identity.clone(),
            epoch: held.epoch,
            spec: spec.clone(),
        };
        let read = async {
            let (answer, budget) = client.read(&held.token, spec, deadline).await?;
            budgets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(budget);
            Ok(Arc::new(answer))
        };
        // Writes (PKI issue, ...) are never merged: each pod gets its own answer.
        let result = if spec.method == crate::stages::plan::Method::Get {
            self.flights.run(key, read).await
        } else {
            read.await
        };
        if let (Ok(answer), Some(k)) = (&result, lease_key) {
            if let Some(lifecycle) = &self.lifecycle {
                lifecycle.track(&k, held, answer);
            }
            self.leases.put(k, answer, held.epoch, held.expires_at);
        }
        (i, result)
    }
}
