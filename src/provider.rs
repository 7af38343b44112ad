//! The Mount pipeline: parse → identity → fetch → render → version → response.
//! Each step lives in its own module; this file only strings them together.

use crate::error::MountError;
use crate::plan::{self, MountPlan, RawMount};
use crate::proto::{File, MountRequest, MountResponse, ObjectVersion};
use crate::render;
use crate::response::SecretResponse;
use crate::settings::VaultSettings;
use crate::vault::{ClientPool, Connection, VaultClient};
use crate::version::VersionKey;
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::time::Instant;

/// What the server shares between Mounts.
pub struct Provider {
    vault: VaultSettings,
    parallel_reads: usize,
    pool: ClientPool,
    versions: VersionKey,
}

impl Provider {
    pub fn new(vault: VaultSettings, parallel_reads: usize, versions: VersionKey) -> Self {
        Provider {
            vault,
            parallel_reads: parallel_reads.max(1),
            pool: ClientPool::default(),
            versions,
        }
    }

    /// Runs one Mount to completion: the complete file set, or an error and no files.
    pub async fn mount(
        &self,
        request: &MountRequest,
        deadline: Instant,
    ) -> Result<MountResponse, MountError> {
        let plan = plan::parse(&RawMount {
            attributes: &request.attributes,
            secrets: &request.secrets,
            permission: &request.permission,
        })?;
        tracing::debug!(
            role = %plan.role,
            objects = plan.objects.len(),
            reads = plan.reads.len(),
            audience = plan.effective_audience(),
            "mount plan"
        );
        let conn = Connection::resolve(&self.vault, &plan.connection);
        let client = self.pool.client(&conn).map_err(MountError::Connection)?;
        let token = self.login(&client, &plan, deadline).await?;
        let answers = self.read_all(&client, &token, &plan, deadline).await?;
        self.respond(&plan, &answers)
    }

    async fn login(
        &self,
        client: &VaultClient,
        plan: &MountPlan,
        deadline: Instant,
    ) -> Result<crate::secret::SecretString, MountError> {
        let sa_token = plan.token.as_ref().ok_or_else(|| MountError::NoToken {
            audience: plan.effective_audience().to_string(),
        })?;
        let mount = plan.auth_mount.as_deref().unwrap_or(&self.vault.auth_mount);
        let token = client
            .login(mount, &plan.role, &sa_token.token, deadline)
            .await
            .map_err(|source| MountError::Login {
                role: plan.role.clone(),
                mount: mount.to_string(),
                source,
            })?;
        Ok(token.token)
    }

    /// Every distinct read once, `parallel_reads` at a time; the first failure ends the Mount.
    async fn read_all(
        &self,
        client: &VaultClient,
        token: &crate::secret::SecretString,
        plan: &MountPlan,
        deadline: Instant,
    ) -> Result<Vec<Arc<SecretResponse>>, MountError> {
        let mut answers: Vec<Option<Arc<SecretResponse>>> = vec![None; plan.reads.len()];
        let reads: Vec<_> = plan
            .reads
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, spec)| {
                let (client, token) = (client.clone(), token.clone());
                async move { (i, client.read(&token, &spec, deadline).await) }
            })
            .collect();
        let mut stream = futures_util::stream::iter(reads).buffer_unordered(self.parallel_reads);
        while let Some((i, result)) = stream.next().await {
            match result {
                Ok(answer) => answers[i] = Some(Arc::new(answer)),
                Err(source) => {
                    let objects = plan
                        .objects
                        .iter()
                        .filter(|o| o.read == i)
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

    fn respond(
        &self,
        plan: &MountPlan,
        answers: &[Arc<SecretResponse>],
    ) -> Result<MountResponse, MountError> {
        let mut files = Vec::with_capacity(plan.objects.len());
        let mut versions = Vec::with_capacity(plan.objects.len());
        for object in &plan.objects {
            let answer = answers
                .get(object.read)
                .ok_or_else(|| MountError::Internal("object refers to a missing read".into()))?;
            let content = render::render(object, answer).map_err(|source| MountError::Render {
                object: object.name.clone(),
                source,
            })?;
            versions.push(ObjectVersion {
                id: object.name.clone(),
                version: self.versions.version(&object.config, content.expose()),
            });
            files.push(File {
                path: object.name.clone(),
                mode: object.mode as i32,
                contents: content.expose().to_vec(),
            });
        }
        Ok(MountResponse {
            object_version: versions,
            error: None,
            files,
        })
    }
}
