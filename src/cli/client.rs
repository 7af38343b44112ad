//! A gRPC channel to a provider over its Unix socket, as the driver opens one.

use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};

/// Connects to the provider at `path`; the `:authority` is `localhost`, as driver v1.6 sends.
pub async fn connect(path: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path: PathBuf = path.to_path_buf();
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}
