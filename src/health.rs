//! The health listener (`-health-addr`): plain HTTP/1.1 for the kubelet's probes and
//! Prometheus.
//!
//! - `GET /health/live`: 200 while the process's event loop answers (liveness);
//! - `GET /health/ready`: 200 only while every socket is in place and served and the
//!   provider is not shutting down, else 503 saying why (readiness);
//! - `GET /metrics`: the metrics (`metrics.rs`), Prometheus text, or OpenMetrics when the
//!   `Accept` header asks for it.
//!
//! None of them calls Vault: a Vault outage must not make the kubelet restart every
//! provider in the cluster. A connection that sends no request head within a few seconds is
//! closed.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a connection may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once at most; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// What readiness depends on.
#[derive(Default)]
pub struct Health {
    draining: AtomicBool,
    /// The socket files served, with the device and inode they were bound with.
    sockets: std::sync::Mutex<Vec<(PathBuf, (u64, u64))>>,
    /// Accept loops still running.
    serving: AtomicUsize,
}

impl Health {
    /// Records a socket being served from now on.
    pub fn serving(&self, path: PathBuf, inode: (u64, u64)) {
        self.sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((path, inode));
        self.serving.fetch_add(1, Ordering::SeqCst);
    }

    /// An accept loop has ended.
    pub fn stopped_serving(&self) {
        self.serving.fetch_sub(1, Ordering::SeqCst);
    }

    /// Shutting down: not ready from now on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// `None` when ready, else why not.
    pub fn not_ready(&self) -> Option<String> {
        if self.draining.load(Ordering::SeqCst) {
            return Some("shutting down".into());
        }
        let sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        if sockets.is_empty() || self.serving.load(Ordering::SeqCst) < sockets.len() {
            return Some("not serving every socket".into());
        }
        for (path, inode) in sockets.iter() {
            let same = std::fs::symlink_metadata(path)
                .map(|m| (m.dev(), m.ino()) == *inode)
                .unwrap_or(false);
            if !same {
                return Some(format!("socket {} is gone or was replaced", path.display()));
            }
        }
        None
    }
}

pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let health = health.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &health)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            // A probe or a scrape takes milliseconds; nothing holds a connection for long.
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

fn answer(req: &Request<hyper::body::Incoming>, health: &Health) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/health/live" => text(StatusCode::OK, "ok\n".into()),
        "/health/ready" => match health.not_ready() {
            None => text(StatusCode::OK, "ok\n".into()),
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            let m = crate::metrics::get();
            let (body, kind) = if openmetrics {
                (
                    m.openmetrics_text(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    m.prometheus_text(),
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                )
            };
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
                resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}
