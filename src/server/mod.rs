//! The long-running server: Unix sockets speaking the provider API (HTTP/2 gRPC), the
//! health endpoint, and shutdown on SIGTERM/SIGINT that stops accepting, lets in-flight
//! mounts finish within a bound, removes the sockets and returns.

pub mod authority;
pub mod health;
mod service;
pub mod status;

pub use service::{API_VERSION, RUNTIME_NAME};

use crate::proto::csi_driver_provider_server::CsiDriverProviderServer;
use crate::provider::Provider;
use crate::settings::Settings;
use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use service::Service;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

type GrpcService = CsiDriverProviderServer<Service>;

/// How long the first attempt to load the object-version key may hold back the sockets.
const KEY_FIRST_WAIT: Duration = Duration::from_secs(2);

/// Why a socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Something other than a socket (a file, a directory) is at the path.
    #[error(
        "{0} exists and is not a socket: refusing to replace it; remove it or choose another -endpoint"
    )]
    NotASocket(PathBuf),
    /// A live socket is at the path: another provider serves it.
    #[error("another process is serving on {0}: stop it first, or choose another -endpoint")]
    InUse(PathBuf),
    /// The socket or its directory could not be created, given its mode or moved into place.
    #[error("cannot create socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The socket file we created, removed on exit if it is still ours.
pub struct SocketFile {
    pub path: PathBuf,
    /// Device and inode of the socket we bound.
    pub inode: (u64, u64),
}

impl SocketFile {
    pub fn remove(&self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds `path` with `mode` (0600 by default) and optionally `group`. A stale socket (nothing answers) is replaced; a live one or
/// anything that is not a socket is an error. The socket is bound under a temporary name
/// and renamed into place, so it is never reachable with wider permissions.
pub fn bind_socket(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> Result<(SocketFile, UnixListener), SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse(path.to_path_buf()));
            }
            tracing::info!(socket = %path.display(), "replacing stale socket");
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => return Err(SocketError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Bound inside a private directory (0700) of our own, given its mode and group there,
    // then renamed into place: nobody can reach it before it has its final mode.
    let private = path.with_file_name(format!(".{name}.{}.d", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .map_err(io)?;
    let tmp = private.join(&name);
    let placed = UnixListener::bind(&tmp).and_then(|listener| {
        std::os::unix::fs::chown(&tmp, None, group)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&private);
    let listener = placed.map_err(io)?;
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    Ok((
        SocketFile {
            path: path.to_path_buf(),
            inode: (meta.dev(), meta.ino()),
        },
        listener,
    ))
}

/// Runs until `shutdown` resolves, then drains in-flight mounts (at most
/// `settings.shutdown_grace`), removes the sockets and returns.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let provider =
        Arc::new(Provider::from_settings(&settings, &crate::settings::process_env).await?);
    provider.start_lease_lifecycle();

    // The object-version key loads in the background from now on; a healthy API gives it
    // before the sockets open, a sick one costs at most this wait (Mounts never wait).
    provider.load_version_key(KEY_FIRST_WAIT).await;

    let mut bound = Vec::new();
    for path in &settings.endpoints {
        match bind_socket(path, settings.socket_mode, settings.socket_group) {
            Ok(b) => bound.push(b),
            Err(e) => {
                bound.iter().for_each(|(f, _): &(SocketFile, _)| f.remove());
                return Err(e.into());
            }
        }
    }

    let health = Arc::new(health::Health::default());
    if let Some(addr) = settings.health_addr {
        let listener = match health::listen(addr) {
            Ok(l) => l,
            Err(e) => {
                bound.iter().for_each(|(f, _)| f.remove());
                return Err(e).with_context(|| format!("cannot listen on -health-addr {addr}"));
            }
        };
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "health endpoint listening");
        tokio::spawn(health::serve(listener, health.clone()));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let tracker = TaskTracker::new();
    let mut files = Vec::new();
    for (file, listener) in bound {
        let flavour = crate::stages::flavour::Flavour::of_socket(&file.path);
        let service = CsiDriverProviderServer::new(Service::new(
            provider.clone(),
            settings.default_deadline,
            flavour,
            settings.max_response_bytes,
        ))
        .max_decoding_message_size(service::MAX_REQUEST)
        .max_encoding_message_size(usize::MAX);
        tracing::info!(socket = %file.path.display(), default_audience = flavour.default_audience(), "serving provider API");
        health.serving(file.path.clone(), file.inode);
        let health = health.clone();
        let (tracker, stop) = (tracker.clone(), stop_rx.clone());
        tokio::spawn(async move {
            accept_loop(listener, service, tracker, stop).await;
            health.stopped_serving();
        });
        files.push(file);
    }

    shutdown.await;
    tracing::info!(grace = ?settings.shutdown_grace, "shutting down: no new connections, draining in-flight mounts");
    health.drain();
    let _ = stop_tx.send(true);
    files.iter().for_each(SocketFile::remove);
    tracker.close();
    if tokio::time::timeout(settings.shutdown_grace, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tracker.len(),
            "in-flight mounts did not finish within -shutdown-grace; exiting anyway"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

async fn accept_loop(
    listener: UnixListener,
    service: GrpcService,
    tracker: TaskTracker,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tracker.spawn(serve_connection(stream, service.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn serve_connection(
    stream: UnixStream,
    service: GrpcService,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .max_concurrent_streams(256)
        .max_send_buf_size(4 * 1024 * 1024)
        .keep_alive_interval(None);
    // Between the socket and the HTTP/2 server: old drivers' path-shaped `:authority`.
    let stream = authority::AuthorityFix::new(stream);
    let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once shutdown has been signalled (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
