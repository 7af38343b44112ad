//! The Mount pipeline: parse → identity → fetch → render → version → response.
//! Each step lives in its own module; this file only strings them together.

use crate::error::MountError;
use crate::identity::{Held, Identity, Slot, TokenCache};
use crate::keys::KeySource;
use crate::kube::KubeClient;
use crate::lifecycle::Lifecycle;
use crate::proto::{File, MountRequest, MountResponse, ObjectVersion};
use crate::reuse::{Flights, LeaseKey, Leases, ReadKey};
use crate::secret::{SecretBytes, SecretString};
use crate::settings::VaultSettings;
use crate::stages::answer::SecretResponse;
use crate::stages::plan::{
    self, Attributes, MountPlan, ObjectKind, ObjectSpec, RawMount, ReadSpec, VersionInput,
};
use crate::stages::render;
use crate::stages::template::{self, ObjectText};
use crate::stages::version::VersionKey;
use crate::vault::{ClientPool, Connection, VaultClient, VaultError};
use futures_util::StreamExt;
use std::collections::BTreeMap;
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
    max_response_bytes: usize,
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
    /// Largest answer the driver accepts (`-max-response-size`).
    pub max_response_bytes: usize,
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
                KeySource::fixed(crate::keys::from_file(path)?)
            }
            None => KeySource::from_secret(kube.clone(), settings.hmac_secret_name.clone()),
        };
        Ok(Provider::new(ProviderParts {
            vault: settings.vault.clone(),
            parallel_reads: settings.parallel_reads,
            keys,
            kube,
            cache_size: settings.cache_size,
            max_response_bytes: settings.max_response_bytes,
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
            max_response_bytes: parts.max_response_bytes,
            template_limits: parts.template_limits,
            policy: parts.policy,
        }
    }

    /// Leases and certificates held for rotation polls now.
    pub fn leases_held(&self) -> usize {
        self.leases.len()
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
    pub async fn mount(
        &self,
        request: &MountRequest,
        attributes: &Attributes,
        flavour: crate::stages::flavour::Flavour,
        deadline: Instant,
    ) -> Result<MountResponse, MountError> {
        let plan = plan::parse(&RawMount {
            attributes,
            secrets: &request.secrets,
            permission: &request.permission,
            flavour,
        })?;
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

        let slot = self.tokens.slot(&identity);
        let (held, new_login) = self
            .token(&slot, &client, &plan, &identity, deadline)
            .await?;
        // This Mount's share of the budget of answers in flight, held until it is answered.
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
        check_size(&response, self.max_response_bytes)?;
        Ok(response)
    }

    /// The pod's service-account token: the driver's, or one requested from Kubernetes.
    async fn service_account_token(
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
    async fn token(
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
        crate::identity::touch(&mut s);
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

    /// Every distinct read once, `parallel_reads` at a time; the first failure ends the Mount.
    async fn read_all(
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

/// Secrets synced from a volume (`secretObjects`) cannot exceed Kubernetes' 1 MiB.
const SECRET_SYNC_LIMIT: usize = 1024 * 1024;

/// Refuses an answer the driver would refuse, and warns about one Secret sync would.
fn check_size(response: &MountResponse, limit: usize) -> Result<(), MountError> {
    use prost::Message;
    let size = response.encoded_len();
    if size > limit {
        return Err(MountError::TooLarge { size, limit });
    }
    let content: usize = response.files.iter().map(|f| f.contents.len()).sum();
    if content > SECRET_SYNC_LIMIT {
        tracing::warn!(
            bytes = content,
            "the files total more than 1 MiB: mounting works, but syncing them into a Kubernetes Secret (secretObjects) will fail"
        );
    }
    Ok(())
}

/// Renders every object and versions it: the complete answer. Objects that select from
/// their read come first; templates then see their files by name.
fn respond(
    plan: &MountPlan,
    answers: &[Arc<SecretResponse>],
    key: &VersionKey,
    limits: &template::Limits,
) -> Result<MountResponse, MountError> {
    let answer_of = |object: &ObjectSpec| -> Result<Option<&SecretResponse>, MountError> {
        match object.read {
            None => Ok(None),
            Some(r) => answers
                .get(r)
                .map(|a| Some(&**a))
                .ok_or_else(|| MountError::Internal("object refers to a missing read".into())),
        }
    };
    let mut rendered: Vec<Vec<(String, SecretBytes)>> = vec![Vec::new(); plan.objects.len()];
    let mut texts: BTreeMap<String, ObjectText> = BTreeMap::new();
    let templates = plan.has_templates();
    for (i, object) in plan.objects.iter().enumerate() {
        if matches!(object.kind, ObjectKind::Template(_)) {
            continue;
        }
        let answer = answer_of(object)?
            .ok_or_else(|| MountError::Internal("object without a read".into()))?;
        let files = render::render(object, answer).map_err(|source| MountError::Render {
            object: object.name.clone(),
            source,
        })?;
        if templates {
            texts.insert(object.name.clone(), object_text(object, &files));
        }
        rendered[i] = files;
    }
    let mut fuel = template::Fuel(limits.fuel);
    for (i, object) in plan.objects.iter().enumerate() {
        let ObjectKind::Template(source) = &object.kind else {
            continue;
        };
        let ctx = template::Context {
            answer: answer_of(object)?,
            objects: &texts,
        };
        let bytes = template::render(source, &ctx, limits, &mut fuel).map_err(|source| {
            MountError::Template {
                object: object.name.clone(),
                source,
            }
        })?;
        rendered[i] = vec![(object.name.clone(), SecretBytes::new(bytes))];
    }

    let mut files = Vec::with_capacity(plan.objects.len());
    let mut versions = Vec::with_capacity(plan.objects.len());
    for (object, object_files) in plan.objects.iter().zip(rendered) {
        let dir = matches!(object.kind, ObjectKind::AllKeys(_));
        for (path, content) in object_files {
            let version = match &object.version {
                VersionInput::Go(json) => key.go_version(json, content.expose()),
                // A directory's files are versioned one by one, each with its own path.
                VersionInput::Own(config) if dir => {
                    key.own_version(&[config.as_bytes(), path.as_bytes()], content.expose())
                }
                VersionInput::Own(config) => {
                    key.own_version(&[config.as_bytes()], content.expose())
                }
            };
            versions.push(ObjectVersion {
                id: path.clone(),
                version,
            });
            files.push(File {
                path,
                mode: object.mode as i32,
                contents: content.expose().to_vec(),
            });
        }
    }
    Ok(MountResponse {
        object_version: versions,
        error: None,
        files,
    })
}

/// An object's files as a template sees them.
fn object_text(object: &ObjectSpec, files: &[(String, SecretBytes)]) -> ObjectText {
    match object.kind {
        ObjectKind::AllKeys(_) => {
            let prefix = format!("{}/", object.name);
            ObjectText::Dir(
                files
                    .iter()
                    .map(|(path, c)| {
                        let key = path.strip_prefix(&prefix).unwrap_or(path);
                        (key.to_string(), c.expose().to_vec())
                    })
                    .collect(),
            )
        }
        _ => ObjectText::File(
            files
                .first()
                .map(|(_, c)| c.expose().to_vec())
                .unwrap_or_default(),
        ),
    }
}
