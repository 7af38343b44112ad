//! Prometheus metrics, served at `GET /metrics` on the health listener (`health.rs`) in the
//! Prometheus text format, or OpenMetrics when the scraper asks for it.
//!
//! One process-wide set, built with the Prometheus project's Rust client. Names follow
//! Prometheus' conventions (base units, `_total` for counters, one `vault_csi_provider_`
//! prefix; process metrics under `process_`); labels have a fixed, small set of values
//! (a gRPC code, an operation, a status class, a reason): never a pod, a path or a token.
//!
//! - this file: the metrics, their labels, and how the provider records into them;
//! - `register.rs`: each family's name, help and unit, and the series that exist at zero;
//! - `process.rs`: the standard `process_*` metrics, read from `/proc` at each scrape.

mod process;
mod register;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
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
    pub(super) registry: Registry,
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

impl Metrics {
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
