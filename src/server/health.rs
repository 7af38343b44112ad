//! The health listener (`-health-addr`): plain HTTP/1.1 for the kubelet's probes and
//! Prometheus.
//!
//! - `GET /health/live`: 200 while the process's event loop answers (liveness);
//! - `GET /health/ready`: 200 only while every socket is in place and served and the
//!   provider is not shutting down, else 503 saying why (readiness);
//! - `GET /metrics`: the metrics (`metrics/`), Prometheus text, or OpenMetrics when the
//!   `Accept` header asks for it.
//!
//! None of them calls Vault: a Vault outage must not make the kubelet restart every
//! provider in the cluster. Nobody on the pod network can starve the probes either: every
//! connection is accepted at once (the listen backlog is the system's), a connection that
//! sends no request head within [`HEADER_TIMEOUT`] is closed, none lives longer than
//! [`MAX_CONNECTION_AGE`], and past [`MAX_CONNECTIONS`] the oldest connection not being
//! answered is closed to make room for the newest.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a connection may take to send a request head (a probe sends it at once).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a connection is kept open; a keep-alive scraper simply connects again.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(20);
/// Connections held open at most; past it the oldest one not being answered is closed.
pub const MAX_CONNECTIONS: usize = 256;

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

/// Listens on `addr` with the system's listen backlog (`net.core.somaxconn`), so that a
/// burst of connections waits in the kernel rather than being refused. `:port` (all
/// addresses) is `[::]:port`, which also takes IPv4 on a dual-stack host; where IPv6 is
/// off, `0.0.0.0:port`.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let bind = |addr: std::net::SocketAddr| {
        let socket = if addr.is_ipv6() {
            tokio::net::TcpSocket::new_v6()?
        } else {
            tokio::net::TcpSocket::new_v4()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(system_backlog())
    };
    match bind(addr) {
        Err(e) if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED => {
            let v4 = std::net::SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, addr.port()));
            bind(v4).map_err(|_| e)
        }
        other => other,
    }
}

/// The kernel's cap on listen backlogs; asking for more is silently cut to it anyway.
fn system_backlog() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Open {
    /// A request on it is being answered now.
    answering: AtomicBool,
    /// Closes it.
    close: tokio::sync::Notify,
}

/// The open connections, oldest first (ids only grow).
#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, Arc<Open>>,
}

impl Connections {
    /// Registers a new connection, closing the oldest one not being answered when full.
    fn admit(&mut self) -> (u64, Arc<Open>) {
        if self.open.len() >= MAX_CONNECTIONS
            && let Some(oldest) = self
                .open
                .iter()
                .find(|(_, c)| !c.answering.load(Ordering::SeqCst))
                .map(|(id, _)| *id)
            && let Some(conn) = self.open.remove(&oldest)
        {
            conn.close.notify_one();
        }
        let id = self.next;
        self.next += 1;
        let conn = Arc::new(Open::default());
        self.open.insert(id, conn.clone());
        (id, conn)
    }
}

/// Serves probes and scrapes until the runtime ends. Accepting never waits for a free
/// place: a new connection is always taken, and room is made by closing the oldest idle one.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>) {
    let connections = Arc::new(std::sync::Mutex::new(Connections::default()));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was taken.
                tracing::debug!(error = %e, "health listener: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (id, open) = connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit();
        let (health, connections) = (health.clone(), connections.clone());
        tokio::spawn(async move {
            let flag = open.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                flag.answering.store(true, Ordering::SeqCst);
                let response = answer(&req, &health);
                flag.answering.store(false, Ordering::SeqCst);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = tokio::time::timeout(MAX_CONNECTION_AGE, conn) => {}
                _ = open.close.notified() => {}
            }
            connections
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .open
                .remove(&id);
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
