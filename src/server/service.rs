//! The gRPC service: `Version` and `Mount`. Sets each Mount's deadline from `grpc-timeout`,
//! runs the pipeline in a span named after the pod, turns failures into statuses, and
//! contains panics to the one request.

use super::status;
use crate::proto::csi_driver_provider_server::CsiDriverProvider;
use crate::proto::{MountRequest, MountResponse, VersionRequest, VersionResponse};
use crate::provider::MountError;
use crate::provider::Provider;
use crate::stages::plan::{Attributes, Flavour, RawMount};
use futures_util::FutureExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::Instrument;

pub const API_VERSION: &str = "v1alpha1";

/// Largest Mount request accepted (checked from the gRPC frame's length before it is
/// read): a class's `objects` (256 KiB at most), the tokens and the other parameters fit
/// with room to spare.
pub const MAX_REQUEST: usize = 512 * 1024;
/// Requests larger than this take a share of [`REQUEST_BYTES`] while they are worked on.
const SMALL_REQUEST: usize = 64 * 1024;
/// Bytes of large requests worked on at once (three times each request's size: the request,
/// its parsed attributes, its plan). A large request that finds it spent is answered
/// UNAVAILABLE at once (the driver calls again a moment later) rather than waiting while it
/// holds its memory; ordinary requests never touch it.
pub const REQUEST_BYTES: usize = 8 * 1024 * 1024;

static REQUEST_BUDGET: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(REQUEST_BYTES);
pub const RUNTIME_NAME: &str = "vault-csi-provider";

pub struct Service {
    provider: Arc<Provider>,
    default_deadline: Duration,
    flavour: Flavour,
    /// Largest answer the driver accepts (`-max-response-size`).
    max_response_bytes: usize,
}

impl Service {
    /// `flavour`: which provider this socket serves (`openbao.sock`: OpenBao's).
    /// `max_response_bytes`: the largest answer the driver accepts.
    pub fn new(
        provider: Arc<Provider>,
        default_deadline: Duration,
        flavour: Flavour,
        max_response_bytes: usize,
    ) -> Self {
        Service {
            provider,
            default_deadline,
            flavour,
            max_response_bytes,
        }
    }
}

/// Parses a `grpc-timeout` value (`<digits><unit>`, unit one of H M S m u n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The caller's deadline less a small margin, so that our answer arrives before it expires.
fn deadline_of<T>(request: &Request<T>, default: Duration) -> Instant {
    let budget = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(default);
    let margin = (budget / 20).min(Duration::from_millis(500));
    Instant::now() + budget.saturating_sub(margin)
}

#[tonic::async_trait]
impl CsiDriverProvider for Service {
    async fn version(
        &self,
        _request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: API_VERSION.to_string(),
            runtime_name: RUNTIME_NAME.to_string(),
            runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn mount(
        &self,
        request: Request<MountRequest>,
    ) -> Result<Response<MountResponse>, Status> {
        let deadline = deadline_of(&request, self.default_deadline);
        let request = request.into_inner();
        let started = std::time::Instant::now();
        let _in_flight = crate::metrics::InFlight::start();
        let size = request.attributes.len() + request.secrets.len() + request.permission.len();
        let _budget = if size > SMALL_REQUEST {
            let share = (3 * size).min(REQUEST_BYTES) as u32;
            match REQUEST_BUDGET.try_acquire_many(share) {
                Ok(p) => Some(p),
                Err(_) => {
                    let status = status::status(&MountError::Busy);
                    crate::metrics::get().mount_done(status.code(), started.elapsed());
                    return Err(status);
                }
            }
        } else {
            None
        };
        // Parsed once, here, so that every outcome is logged with the pod's name.
        let attributes = match Attributes::parse(&request.attributes) {
            Ok(a) => a,
            Err(e) => {
                let status = status::status(&MountError::from(e));
                crate::metrics::get().mount_done(status.code(), started.elapsed());
                tracing::warn!(code = ?status.code(), error = %status.message(), "mount failed");
                return Err(status);
            }
        };
        let pod = attributes.pod();
        let span = tracing::info_span!(
            "mount",
            namespace = %pod.namespace,
            pod = %pod.name,
            class = attributes.class_name(),
        );
        let provider = self.provider.clone();
        let (flavour, limit) = (self.flavour, self.max_response_bytes);
        let work = async move {
            let raw = RawMount {
                attributes: &attributes,
                secrets: &request.secrets,
                permission: &request.permission,
                flavour,
            };
            let volume = provider.mount(&raw, deadline).await?;
            status::response(volume, limit)
        };
        let outcome =
            tokio::time::timeout_at(deadline, std::panic::AssertUnwindSafe(work).catch_unwind())
                .instrument(span.clone())
                .await;
        let result = match outcome {
            Err(_) => Err(MountError::Deadline(format!(
                "{:.1}s",
                started.elapsed().as_secs_f64()
            ))),
            Ok(Err(_panic)) => Err(MountError::Internal("the mount panicked".into())),
            Ok(Ok(r)) => r,
        };
        let _enter = span.enter();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(response) => {
                crate::metrics::get().mount_done(tonic::Code::Ok, started.elapsed());
                tracing::info!(files = response.files.len(), elapsed_ms, "mounted");
                Ok(Response::new(response))
            }
            Err(e) => {
                let status = status::status(&e);
                crate::metrics::get().mount_done(status.code(), started.elapsed());
                tracing::warn!(code = ?status.code(), elapsed_ms, error = %status.message(), "mount failed");
                Err(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("120S"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_grpc_timeout("1999m"),
            Some(Duration::from_millis(1999))
        );
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("1234567890S"), None);
    }
}
