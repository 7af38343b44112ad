//! The Mount pipeline, and what every Mount shares. [`Provider::mount`] runs the stages in
//! order, each in a file of its own:
//!
//! 1. plan: the request parsed and checked (`stages::plan`), then the operator's limits
//!    (`stages::policy`), before anything is asked of Vault;
//! 2. identity (`token.rs`): the pod's service-account token, the identity's Vault token;
//! 3. fetch (`fetch.rs`): every distinct read once, in parallel;
//! 4. respond (`respond.rs`): files rendered, templates, versions: the complete volume.
//!
//! Beside the pipeline: `identity.rs` (Vault tokens held per identity), `reuse.rs`
//! (coalesced reads, pods' leases kept for rotation polls), `keys.rs` (the version key),
//! `lifecycle/` (leases renewed and revoked with their pods), `error.rs` (why a Mount
//! failed).

mod error;
mod fetch;
mod identity;
mod keys;
mod lifecycle;
mod respond;
mod reuse;
mod token;

pub use error::MountError;
pub use respond::{Volume, respond};

use crate::kube::KubeClient;
use crate::settings::VaultSettings;
use crate::stages::plan::{self, RawMount};
use crate::stages::template;
use crate::vault::{ClientPool, Connection, VaultError};
use identity::{Identity, TokenCache};
use keys::KeySource;
use lifecycle::Lifecycle;
use reuse::{Flights, Leases};
use std::sync::Arc;
use tokio::time::Instant;

/// What the server shares between Mounts.
pub struct Provider {
    vault: VaultSettings,
    parallel_reads: usize,
    pool: Arc<ClientPool>,
    keys: Arc<KeySource>,
    kube: Option<Arc<KubeClient>>,
    tokens: Arc<TokenCache>,
    flights: Flights,
    leases: Arc<Leases>,
    /// Renewal and revocation of leases handed to this node's pods, when it can be had.
    lifecycle: Option<Arc<Lifecycle>>,
    /// The watch of this node's pods the lifecycle follows.
    pods: Option<Arc<crate::kube::NodePods>>,
    node_name: Option<String>,
    lease_renewal: bool,
    lease_revocation: bool,
    template_limits: template::Limits,
    policy: crate::stages::policy::TenantPolicy,
}

/// The parts a [`Provider`] is made of.
pub struct ProviderParts {
    pub vault: VaultSettings,
    pub parallel_reads: usize,
    pub keys: KeySource,
    pub kube: Option<Arc<KubeClient>>,
    /// Vault tokens kept for reuse (`-cache-size`); 0 or less disables reuse.
    pub cache_size: i64,
    /// Requests in flight to one Vault at most (`-vault-concurrency`).
    pub vault_concurrency: usize,
    /// How long a finished answer without a lease serves identical reads (`-read-share-window`).
    pub read_share_window: std::time::Duration,
    /// Bounds on templates (`-template-*`).
    pub template_limits: template::Limits,
    /// Leases and certificates kept for rotation polls at most (`-lease-store-size`).
    pub lease_store_size: usize,
    /// What tenants' classes may ask for (`-allowed-*`, `-allow-class-*`).
    pub policy: crate::stages::policy::TenantPolicy,
    /// This node (`NODE_NAME`), whose pods' leases are renewed and revoked.
    pub node_name: Option<String>,
    /// `-lease-renewal`, `-lease-revocation`.
    pub lease_renewal: bool,
    pub lease_revocation: bool,
}

impl Provider {
    /// Wires a provider from settings: Kubernetes access discovered from `env` (in-cluster
    /// service account, `KUBECONFIG`, `~/.kube/config`), the version key from
    /// `-hmac-key-file` or the `-hmac-secret-name` Secret.
    pub async fn from_settings(
        settings: &crate::settings::Settings,
        env: crate::settings::EnvLookup<'_>,
    ) -> anyhow::Result<Self> {
        let kube = match crate::kube::KubeConfig::discover(env).await? {
            Some(config) => {
                tracing::info!(api = %config.server, namespace = %config.namespace, from = %config.source_name, "Kubernetes API configured");
                Some(Arc::new(KubeClient::new(config)?))
            }
            None => {
                tracing::info!("no Kubernetes API configuration: tokens must come from the driver");
                None
            }
        };
        let keys = match &settings.hmac_key_file {
            Some(path) => {
                tracing::info!(file = %path.display(), "object versions keyed from file");
                KeySource::fixed(crate::provider::keys::from_file(path)?)
            }
            None => KeySource::from_secret(
                kube.clone(),
                settings.hmac_secret_name.clone(),
                settings.create_version_key,
            ),
        };
        Ok(Provider::new(ProviderParts {
            vault: settings.vault.clone(),
            parallel_reads: settings.parallel_reads,
            keys,
            kube,
            cache_size: settings.cache_size,
            vault_concurrency: settings.vault_concurrency,
            read_share_window: settings.read_share_window,
            template_limits: settings.template_limits,
            lease_store_size: settings.lease_store_size,
            policy: settings.tenant_policy.clone(),
            node_name: settings.node_name.clone(),
            lease_renewal: settings.lease_renewal,
            lease_revocation: settings.lease_revocation,
        }))
    }

    pub fn new(parts: ProviderParts) -> Self {
        let leases = Arc::new(Leases::new(parts.lease_store_size));
        let tokens = Arc::new(TokenCache::new(parts.cache_size));
        let wanted = parts.lease_renewal || parts.lease_revocation;
        let (pods, lifecycle) = match (&parts.kube, &parts.node_name) {
            (Some(_), Some(node)) if wanted => {
                let pods = Arc::new(crate::kube::NodePods::new(node.clone()));
                let lifecycle = Arc::new(Lifecycle::new(
                    pods.clone(),
                    leases.clone(),
                    tokens.clone(),
                    parts.lease_renewal,
                    parts.lease_revocation,
                ));
                (Some(pods), Some(lifecycle))
            }
            _ => (None, None),
        };
        Provider {
            vault: parts.vault,
            parallel_reads: parts.parallel_reads.max(1),
            pool: Arc::new(ClientPool::new(parts.vault_concurrency)),
            keys: Arc::new(parts.keys),
            kube: parts.kube,
            tokens,
            flights: Flights::new(parts.read_share_window),
            leases,
            lifecycle,
            pods,
            node_name: parts.node_name,
            lease_renewal: parts.lease_renewal,
            lease_revocation: parts.lease_revocation,
            template_limits: parts.template_limits,
            policy: parts.policy,
        }
    }

    /// Starts the lease lifecycle: the watch of this node's pods, and the renewals and
    /// revocations that follow it. Says once what is done, and why not when it is not.
    pub fn start_lease_lifecycle(&self) {
        let (renewal, revocation) = (self.lease_renewal, self.lease_revocation);
        match (&self.lifecycle, &self.pods, &self.kube) {
            (Some(lifecycle), Some(pods), Some(kube)) => {
                tracing::info!(
                    node = pods.node(),
                    renewal,
                    revocation,
                    "watching this node's pods: leases handed to a pod are renewed while it runs and revoked when it is gone"
                );
                let (watched, on_gone) = (pods.clone(), lifecycle.clone());
                let client = kube.client();
                tokio::spawn(async move {
                    watched
                        .watch(client, move |uid| on_gone.pod_gone(uid))
                        .await
                });
                tokio::spawn(lifecycle.clone().run(self.pool.clone()));
            }
            _ if !renewal && !revocation => {
                tracing::info!(
                    "lease renewal and revocation are off (-lease-renewal=false, -lease-revocation=false): leases handed to pods lapse at their TTL"
                );
            }
            _ if self.node_name.is_none() => tracing::info!(
                "no NODE_NAME: leases handed to pods are neither renewed nor revoked and lapse at their TTL (set NODE_NAME from the downward API's spec.nodeName)"
            ),
            _ => tracing::info!(
                "no Kubernetes API access: leases handed to pods are neither renewed nor revoked and lapse at their TTL"
            ),
        }
    }

    /// Starts loading the object-version key in the background (Mounts never wait for
    /// it) and waits at most `first_wait` for the first attempt.
    pub async fn load_version_key(&self, first_wait: std::time::Duration) {
        self.keys.load_in_background(first_wait).await;
    }

    /// Runs one Mount to completion: the complete file set, or an error and no files.
    /// `flavour` is the provider the class is served as (its default audience).
    /// `attributes` is `request.attributes`, parsed by the caller (who names the log span
    /// after the pod before anything else can fail).
    pub async fn mount(&self, raw: &RawMount<'_>, deadline: Instant) -> Result<Volume, MountError> {
        // 1. The plan: everything checked before Vault is asked.
        let plan = plan::parse(raw)?;
        self.policy.check(&plan)?;
        tracing::debug!(
            role = %plan.role,
            objects = plan.objects.len(),
            reads = plan.reads.len(),
            audience = %plan.audience,
            driver_token = plan.token.is_some(),
            "mount plan"
        );
        let conn = Connection::resolve(&self.vault, &plan.connection);
        let client = self
            .pool
            .client(&conn, deadline)
            .await
            .map_err(MountError::Connection)?;
        let identity = Identity {
            namespace: plan.pod.namespace.clone(),
            service_account: plan.pod.service_account.clone(),
            service_account_uid: plan
                .token
                .as_ref()
                .and_then(|t| t.service_account_uid.clone())
                .unwrap_or_default(),
            audience: plan.audience.clone(),
            role: plan.role.clone(),
            auth_mount: plan
                .auth_mount
                .clone()
                .unwrap_or_else(|| self.vault.auth_mount.clone()),
            connection: conn,
        };

        // 2. Identity: the Vault token of the pod's identity.
        let slot = self.tokens.slot(&identity);
        let (held, new_login) = self
            .token(&slot, &client, &plan, &identity, deadline)
            .await?;
        // 3. Fetch: every distinct read once. This Mount's share of the budget of answers
        // in flight is held until it is answered.
        let budgets = std::sync::Mutex::new(Vec::new());
        let answers = match self
            .read_all(&client, &held, &plan, &identity, &budgets, deadline)
            .await
        {
            // A reused token may have been revoked: log in once more and retry once.
            Err(MountError::Read {
                source: VaultError::Status { status: 403, .. },
                ..
            }) if !new_login => {
                tracing::debug!("reused Vault token refused; logging in again");
                self.tokens.invalidate(&identity, held.epoch).await;
                let (held, _) = self
                    .token(&slot, &client, &plan, &identity, deadline)
                    .await?;
                self.read_all(&client, &held, &plan, &identity, &budgets, deadline)
                    .await?
            }
            other => other?,
        };
        // 4. Respond: files, templates, versions.
        let key = self.keys.key();
        let limits = self.template_limits;
        // Templates are bounded by their fuel, but still CPU work: off the async runtime.
        let response = if plan.has_templates() {
            tokio::task::spawn_blocking(move || respond(&plan, &answers, &key, &limits))
                .await
                .map_err(|_| MountError::Internal("rendering the files failed".into()))??
        } else {
            respond(&plan, &answers, &key, &limits)?
        };
        Ok(response)
    }
}
