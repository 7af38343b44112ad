//! A driver-like client that sends the `:authority` of older drivers: the raw socket path
//! (drivers <= v1.5.x) or the percent-encoded path (grpcio >= 1.57). tonic cannot put a
//! path in a URI, so the channel is opened with a placeholder authority of the same length
//! and a shim on the write side swaps the placeholder for the path in every header block
//! (HPACK sizes stay equal, so both ends' tables stay in step).

use bytes::{Buf, BytesMut};
use hyper_util::rt::TokioIo;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use vault_csi_provider::FrameRewriter;

/// The `:authority` a client sends.
#[derive(Clone, Copy, Debug)]
pub enum AuthorityForm {
    Localhost,
    RawPath,
    PercentEncoded,
}

impl AuthorityForm {
    pub fn value(self, socket: &Path) -> String {
        let path = socket.display().to_string();
        match self {
            AuthorityForm::Localhost => "localhost".into(),
            AuthorityForm::RawPath => path,
            AuthorityForm::PercentEncoded => path.replace('/', "%2F"),
        }
    }
}

struct Swap {
    inner: UnixStream,
    rewriter: FrameRewriter,
    out: BytesMut,
}

impl Swap {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Swap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Swap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        this.rewriter.push(buf, &mut this.out);
        let _ = this.drain(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One long-lived channel to `socket` sending `form` as `:authority`.
pub async fn channel(socket: &Path, form: AuthorityForm) -> tonic::transport::Channel {
    let target = form.value(socket);
    let placeholder = "a".repeat(target.len());
    let socket: PathBuf = socket.to_path_buf();
    let (from, to) = (placeholder.clone().into_bytes(), target.into_bytes());
    tonic::transport::Endpoint::from_shared(format!("http://{placeholder}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            let (from, to) = (from.clone(), to.clone());
            async move {
                let inner = UnixStream::connect(socket).await?;
                let fix = move |v: &[u8]| (v == from.as_slice()).then(|| to.clone());
                Ok::<_, io::Error>(TokioIo::new(Swap {
                    inner,
                    rewriter: FrameRewriter::new(Box::new(fix)),
                    out: BytesMut::new(),
                }))
            }
        }))
        .await
        .unwrap()
}
