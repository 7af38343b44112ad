//! Prometheus metrics, served at `GET /metrics` on the health listener (`health.rs`) in the
//! Prometheus text format, or OpenMetrics when the scraper asks for it.
//!
//! One process-wide set, built with the Prometheus project's Rust client. Names follow
//! Prometheus' conventions (base units, `_total` for counters, one `vault_csi_provider_`
//! prefix; process metrics under `process_`); labels have a fixed, small set of values
//! (a gRPC code, an operation, a status class, a reason): never a pod, a path or a token.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::sync::LazyLock;
use std::time::Duration;

/// The prefix of every metric of ours.
pub const PREFIX: &str = "vault_csi_provider";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// gRPC status code, e.g. `OK`, `INVALID_ARGUMENT`.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// `login`, `read`, `renew` or `revoke`.
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `login`, `read`, `renew` or `revoke`.
    pub operation: &'static str,
    /// `2xx`, `3xx`, `4xx`, `429`, `5xx`, or `error` (no answer).
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `bad_request`, `too_large` or `deadline`.
    pub reason: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the provider keeps.
pub struct Metrics {
    registry: Registry,
    pub mounts: Family<CodeLabel, Counter>,
    pub mount_duration: Histograms<ResultLabel>,
    pub mounts_in_flight: Gauge,
    pub rejected: Family<ReasonLabel, Counter>,
    pub vault_requests: Family<RequestLabels, Counter>,
    pub vault_duration: Histograms<OperationLabel>,
    pub vault_retries: Counter,
    pub vault_failovers: Counter,
    pub vault_rate_limited: Counter,
    pub logins: Family<ResultLabel, Counter>,
    pub renewals: Family<ResultLabel, Counter>,
    pub token_cache_hits: Counter,
    pub token_cache_misses: Counter,
    pub identities: Gauge,
    pub coalesced_reads: Counter,
    pub leases_reused: Counter,
    pub leases_replaced: Counter,
    pub lease_store_entries: Gauge,
    pub lease_renewals: Family<ResultLabel, Counter>,
    pub lease_revocations: Family<ResultLabel, Counter>,
    pub pods_watched: Gauge,
    pub leases_tracked: Gauge,
    pub version_key_loaded: Gauge,
}

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
    fn new() -> Metrics {
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

    /// The metrics in the Prometheus text format (0.0.4).
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The metrics in the OpenMetrics text format.
    pub fn openmetrics_text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records a finished Mount.
    pub fn mount_done(&self, code: tonic::Code, took: Duration) {
        self.mounts
            .get_or_create(&CodeLabel {
                code: code_name(code).to_string(),
            })
            .inc();
        let result = if code == tonic::Code::Ok {
            "ok"
        } else {
            "error"
        };
        self.mount_duration
            .get_or_create(&ResultLabel { result })
            .observe(took.as_secs_f64());
        let reason = match code {
            tonic::Code::InvalidArgument => Some("bad_request"),
            tonic::Code::ResourceExhausted => Some("too_large"),
            tonic::Code::DeadlineExceeded => Some("deadline"),
            _ => None,
        };
        if let Some(reason) = reason {
            self.rejected.get_or_create(&ReasonLabel { reason }).inc();
        }
    }

    /// Records one request to one Vault node: its HTTP status, or `None` for no answer.
    pub fn vault_request(&self, operation: &'static str, status: Option<u16>, took: Duration) {
        let status = match status {
            None => "error",
            Some(429) => "429",
            Some(s) if s < 300 => "2xx",
            Some(s) if s < 400 => "3xx",
            Some(s) if s < 500 => "4xx",
            Some(_) => "5xx",
        };
        self.vault_requests
            .get_or_create(&RequestLabels { operation, status })
            .inc();
        self.vault_duration
            .get_or_create(&OperationLabel { operation })
            .observe(took.as_secs_f64());
    }

    /// Records a login or a renewal.
    pub fn result(family: &Family<ResultLabel, Counter>, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        family.get_or_create(&ResultLabel { result }).inc();
    }
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// A gRPC code as its canonical name.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts a Mount in flight while alive.
pub struct InFlight;

impl InFlight {
    pub fn start() -> InFlight {
        get().mounts_in_flight.inc();
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        get().mounts_in_flight.dec();
    }
}

/// The standard process metrics, read from `/proc/self` at each scrape.
#[derive(Debug)]
struct Process;

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

impl Process {
    fn stat() -> Option<(f64, f64, f64, f64)> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        // With the state at index 0: utime 11, stime 12, threads 17, starttime 19, rss 21.
        let cpu = (num(11)? + num(12)?) / TICKS;
        let threads = num(17)?;
        let start = num(19)? / TICKS;
        let rss = num(21)? * 4096.0;
        Some((cpu, threads, start, rss))
    }

    fn boot_time() -> Option<f64> {
        std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((cpu, threads, start, rss)) = Process::stat() else {
            return Ok(());
        };
        let fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as f64)
            .unwrap_or(0.0);
        let cpu = ConstCounter::new(cpu);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        for (name, help, unit, value) in [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                rss,
            ),
            ("process_open_fds", "Open file descriptors", None, fds),
            ("process_threads", "OS threads", None, threads),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(Unit::Seconds),
                Process::boot_time().unwrap_or(0.0) + start,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_carry_the_families_with_conventional_names() {
        let m = get();
        m.mount_done(tonic::Code::Ok, Duration::from_millis(3));
        m.mount_done(tonic::Code::InvalidArgument, Duration::from_millis(1));
        m.vault_request("read", Some(200), Duration::from_millis(2));
        let text = m.prometheus_text();
        for needle in [
            "vault_csi_provider_mounts_total{code=\"OK\"}",
            "vault_csi_provider_rejected_requests_total{reason=\"bad_request\"}",
            "vault_csi_provider_mount_duration_seconds_bucket{",
            "vault_csi_provider_vault_requests_total{operation=\"read\",status=\"2xx\"}",
            "vault_csi_provider_build_info{",
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(!text.contains("# EOF"));
        let om = m.openmetrics_text();
        assert!(om.ends_with("# EOF\n"), "{om}");
    }
}
