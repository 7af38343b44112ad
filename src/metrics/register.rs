//! Every metric registered under its name, help and unit, in one registry with the
//! provider's prefix; the series a dashboard or an alert queries exist from the start.

use super::process::Process;
use super::*;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Unit;

fn mount_buckets() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ])
}

fn request_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix(PREFIX);
        let m = Metrics {
            registry: Registry::default(),
            mounts: Family::default(),
            mount_duration: Family::new_with_constructor(mount_buckets),
            mounts_in_flight: Gauge::default(),
            rejected: Family::default(),
            vault_requests: Family::default(),
            vault_duration: Family::new_with_constructor(request_buckets),
            vault_retries: Counter::default(),
            vault_failovers: Counter::default(),
            vault_rate_limited: Counter::default(),
            logins: Family::default(),
            renewals: Family::default(),
            token_cache_hits: Counter::default(),
            token_cache_misses: Counter::default(),
            identities: Gauge::default(),
            coalesced_reads: Counter::default(),
            leases_reused: Counter::default(),
            leases_replaced: Counter::default(),
            lease_store_entries: Gauge::default(),
            lease_renewals: Family::default(),
            lease_revocations: Family::default(),
            pods_watched: Gauge::default(),
            leases_tracked: Gauge::default(),
            version_key_loaded: Gauge::default(),
        };
        r.register(
            "mounts",
            "Mount calls answered, by gRPC status code",
            m.mounts.clone(),
        );
        r.register_with_unit(
            "mount_duration",
            "Time to answer a Mount call",
            Unit::Seconds,
            m.mount_duration.clone(),
        );
        r.register(
            "mounts_in_flight",
            "Mount calls being answered now",
            m.mounts_in_flight.clone(),
        );
        r.register(
            "rejected_requests",
            "Mount calls refused before or instead of an answer, by reason (bad_request, too_large, deadline)",
            m.rejected.clone(),
        );
        r.register(
            "vault_requests",
            "Requests sent to Vault, by operation and HTTP status class (error: no answer)",
            m.vault_requests.clone(),
        );
        r.register_with_unit(
            "vault_request_duration",
            "Time of one request to one Vault node",
            Unit::Seconds,
            m.vault_duration.clone(),
        );
        r.register(
            "vault_retries",
            "Rounds of requests to Vault tried again after every node failed",
            m.vault_retries.clone(),
        );
        r.register(
            "vault_failovers",
            "Requests moved on to another Vault node after one failed",
            m.vault_failovers.clone(),
        );
        r.register(
            "vault_rate_limited",
            "Answers 429 (rate-limit quota) from Vault",
            m.vault_rate_limited.clone(),
        );
        r.register("logins", "Vault logins, by result", m.logins.clone());
        r.register(
            "token_renewals",
            "Vault token renewals (renew-self), by result",
            m.renewals.clone(),
        );
        r.register(
            "token_cache_hits",
            "Mounts that used a Vault token already held",
            m.token_cache_hits.clone(),
        );
        r.register(
            "token_cache_misses",
            "Mounts that needed a login or a renewal",
            m.token_cache_misses.clone(),
        );
        r.register(
            "identities",
            "Identities (service account, role, connection) whose Vault token is held",
            m.identities.clone(),
        );
        r.register(
            "coalesced_reads",
            "Reads that joined an identical read already in flight instead of asking Vault",
            m.coalesced_reads.clone(),
        );
        r.register(
            "leases_reused",
            "Leased credentials and certificates handed again to the pod that holds them",
            m.leases_reused.clone(),
        );
        r.register(
            "leases_replaced",
            "Leased credentials and certificates replaced by new ones for the same pod and object",
            m.leases_replaced.clone(),
        );
        r.register(
            "lease_store_entries",
            "Leased credentials and certificates kept for rotation polls",
            m.lease_store_entries.clone(),
        );
        r.register(
            "lease_renewals",
            "Renewals of leases handed to pods that still run (sys/leases/renew), by result",
            m.lease_renewals.clone(),
        );
        r.register(
            "lease_revocations",
            "Revocations of leases handed to pods that are gone (sys/leases/revoke), by result",
            m.lease_revocations.clone(),
        );
        r.register(
            "pods_watched",
            "Pods running on this node, as the watch of the Kubernetes API shows them",
            m.pods_watched.clone(),
        );
        r.register(
            "leases_tracked",
            "Leases handed to pods of this node that are renewed while the pod runs and revoked when it is gone",
            m.leases_tracked.clone(),
        );
        r.register(
            "version_key_loaded",
            "1 when the object-version key is loaded, 0 while versions are empty",
            m.version_key_loaded.clone(),
        );
        r.register(
            "build",
            "Build information",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", env!("VCSP_GIT_COMMIT")),
            ]),
        );
        // Every series a dashboard or an alert queries exists from the start, at zero.
        for result in ["ok", "error"] {
            let _ = m.logins.get_or_create(&ResultLabel { result });
            let _ = m.renewals.get_or_create(&ResultLabel { result });
            let _ = m.mount_duration.get_or_create(&ResultLabel { result });
            let _ = m.lease_renewals.get_or_create(&ResultLabel { result });
            let _ = m.lease_revocations.get_or_create(&ResultLabel { result });
        }
        for reason in ["bad_request", "too_large", "deadline"] {
            let _ = m.rejected.get_or_create(&ReasonLabel { reason });
        }
        for operation in ["login", "read", "renew", "revoke"] {
            let _ = m
                .vault_duration
                .get_or_create(&OperationLabel { operation });
            for status in ["2xx", "4xx", "429", "5xx", "error"] {
                let _ = m
                    .vault_requests
                    .get_or_create(&RequestLabels { operation, status });
            }
        }
        let _ = m.mounts.get_or_create(&CodeLabel { code: "OK".into() });
        root.register_collector(Box::new(Process));
        Metrics {
            registry: root,
            ..m
        }
    }
}
