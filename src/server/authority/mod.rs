//! Lets every driver release talk to us, whatever `:authority` it sends.
//!
//! Driver releases up to v1.5.x send the socket path (`/var/run/.../vault.sock`) as the
//! HTTP/2 `:authority`, and grpcio sends it percent-encoded; the `h2` crate under the gRPC
//! server resets such streams as malformed. [`AuthorityFix`] sits between the Unix socket and
//! the HTTP/2 server and rewrites, in the client-to-server bytes only, every `:authority`
//! value that would be refused into a valid one of the *same length*. HPACK table entries
//! therefore keep their sizes, and the client's encoder and the server's decoder keep
//! identical tables, evictions included. Everything else passes through byte for byte; a
//! connection that does not parse as HTTP/2 is passed through untouched from that point on,
//! so the server answers it with its own HTTP/2 error.

pub mod hpack;

use bytes::{Buf, BytesMut};
use hpack::DynamicTable;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Frames are re-emitted at most this large (the default SETTINGS_MAX_FRAME_SIZE).
const OUT_FRAME: usize = 16_384;
/// Larger frames or header blocks are not inspected.
const MAX_INSPECT: usize = 1 << 20;

/// Whether h2 would accept this `:authority` value.
pub fn authority_is_valid(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The server-side fix: a refused authority becomes `x…x` of the same length.
pub fn server_fix(value: &[u8]) -> Option<Vec<u8>> {
    (!value.is_empty() && !authority_is_valid(value)).then(|| vec![b'x'; value.len()])
}

struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
    raw: Vec<u8>,
}

/// Decides a replacement for an `:authority` value (of the same length), or keeps it.
pub type Fix = Box<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// Rewrites `:authority` values in a client-to-server HTTP/2 byte stream.
pub struct FrameRewriter {
    input: BytesMut,
    preface_seen: usize,
    passthrough: bool,
    table: DynamicTable,
    pending: Option<Pending>,
    fix: Fix,
    /// Header blocks rewritten so far.
    pub rewritten: u64,
}

impl FrameRewriter {
    pub fn new(fix: Fix) -> Self {
        FrameRewriter {
            input: BytesMut::new(),
            preface_seen: 0,
            passthrough: false,
            table: DynamicTable::default(),
            pending: None,
            fix,
            rewritten: 0,
        }
    }

    /// Feeds bytes from the client; appends what the server should read to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut BytesMut) {
        if self.passthrough {
            out.extend_from_slice(bytes);
            return;
        }
        self.input.extend_from_slice(bytes);
        while self.preface_seen < PREFACE.len() {
            let want = PREFACE.len() - self.preface_seen;
            let n = want.min(self.input.len());
            if n == 0 {
                return;
            }
            if self.input[..n] != PREFACE[self.preface_seen..self.preface_seen + n] {
                return self.flush_held(out);
            }
            out.extend_from_slice(&self.input[..n]);
            self.input.advance(n);
            self.preface_seen += n;
        }
        while self.input.len() >= 9 {
            let len = (usize::from(self.input[0]) << 16)
                | (usize::from(self.input[1]) << 8)
                | usize::from(self.input[2]);
            if len > MAX_INSPECT {
                return self.flush_held(out);
            }
            if self.input.len() < 9 + len {
                return;
            }
            let frame = self.input.split_to(9 + len);
            match self.frame(&frame, out) {
                Ok(()) => {}
                Err(Fail::Unwritten) => {
                    if let Some(p) = self.pending.take() {
                        out.extend_from_slice(&p.raw);
                    }
                    out.extend_from_slice(&frame);
                    return self.flush_held(out);
                }
                Err(Fail::Written) => return self.flush_held(out),
            }
        }
    }

    /// Stops inspecting: whatever is held passes through unchanged, in order, and so does
    /// everything after it.
    pub fn flush_held(&mut self, out: &mut BytesMut) {
        if let Some(p) = self.pending.take() {
            out.extend_from_slice(&p.raw);
        }
        out.extend_from_slice(&self.input);
        self.input.clear();
        self.passthrough = true;
    }

    fn frame(&mut self, frame: &[u8], out: &mut BytesMut) -> Result<(), Fail> {
        let kind = frame[3];
        let flags = frame[4];
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[9..];
        if let Some(p) = self.pending.as_mut() {
            // Nothing may come between HEADERS and its CONTINUATIONs: the server will say so.
            if kind != CONTINUATION
                || stream != p.stream
                || p.block.len() + payload.len() > MAX_INSPECT
            {
                return Err(Fail::Unwritten);
            }
            p.block.extend_from_slice(payload);
            p.raw.extend_from_slice(frame);
            if flags & END_HEADERS != 0
                && let Some(done) = self.pending.take()
            {
                self.finish(done, out)?;
            }
            return Ok(());
        }
        if kind != HEADERS {
            out.extend_from_slice(frame);
            return Ok(());
        }
        let mut body = payload;
        let mut pad = 0usize;
        if flags & PADDED != 0 {
            pad = usize::from(*body.first().ok_or(Fail::Unwritten)?);
            body = &body[1..];
        }
        let priority = if flags & PRIORITY != 0 {
            let p: [u8; 5] = body
                .get(..5)
                .and_then(|p| p.try_into().ok())
                .ok_or(Fail::Unwritten)?;
            body = &body[5..];
            Some(p)
        } else {
            None
        };
        if pad > body.len() {
            return Err(Fail::Unwritten);
        }
        let pending = Pending {
            stream,
            flags,
            priority,
            block: body[..body.len() - pad].to_vec(),
            raw: frame.to_vec(),
        };
        if flags & END_HEADERS != 0 {
            self.finish(pending, out)
        } else {
            self.pending = Some(pending);
            Ok(())
        }
    }

    /// Emits a complete header block, rewritten if needed.
    fn finish(&mut self, p: Pending, out: &mut BytesMut) -> Result<(), Fail> {
        match hpack::rewrite_block(&p.block, &mut self.table, b":authority", &*self.fix) {
            Ok(None) => {
                out.extend_from_slice(&p.raw);
                Ok(())
            }
            Ok(Some(block)) => {
                self.rewritten += 1;
                emit_headers(p.stream, p.flags & END_STREAM, p.priority, &block, out);
                Ok(())
            }
            Err(_) => {
                // The server's decoder will find the same fault and end the connection.
                out.extend_from_slice(&p.raw);
                Err(Fail::Written)
            }
        }
    }
}

/// How inspecting a frame failed: whether the frame has been written out already.
enum Fail {
    Unwritten,
    Written,
}

fn frame_header(len: usize, kind: u8, flags: u8, stream: u32, out: &mut BytesMut) {
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Writes a header block as HEADERS plus CONTINUATION frames, without padding.
fn emit_headers(
    stream: u32,
    end_stream: u8,
    priority: Option<[u8; 5]>,
    block: &[u8],
    out: &mut BytesMut,
) {
    let room = OUT_FRAME - priority.map_or(0, |_| 5);
    let first = block.len().min(room);
    let mut flags = end_stream | if priority.is_some() { PRIORITY } else { 0 };
    if first == block.len() {
        flags |= END_HEADERS;
    }
    frame_header(
        first + priority.map_or(0, |_| 5),
        HEADERS,
        flags,
        stream,
        out,
    );
    if let Some(p) = priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&block[..first]);
    let mut rest = &block[first..];
    while !rest.is_empty() {
        let n = rest.len().min(OUT_FRAME);
        let flags = if n == rest.len() { END_HEADERS } else { 0 };
        frame_header(n, CONTINUATION, flags, stream, out);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
}

/// A connection whose client-to-server bytes pass through a [`FrameRewriter`].
pub struct AuthorityFix<S> {
    inner: S,
    rewriter: FrameRewriter,
    ready: BytesMut,
    logged: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            rewriter: FrameRewriter::new(Box::new(server_fix)),
            ready: BytesMut::new(),
            logged: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let got = rb.filled();
            if got.is_empty() {
                // End of stream: hand over anything still held so the server sees it.
                this.rewriter.flush_held(&mut this.ready);
                if this.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.rewriter.push(got, &mut this.ready);
            if this.rewriter.rewritten > 0 && !this.logged {
                this.logged = true;
                tracing::debug!(
                    "client sent a path-shaped :authority (driver <= v1.5 or grpcio); rewriting it"
                );
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
