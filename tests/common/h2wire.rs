//! HTTP/2 as it crosses the provider's socket, read for the tests: frames split out of a
//! byte stream, header blocks decoded (HPACK, with the `hpack` crate), gRPC messages taken
//! out of DATA frames. Used to decode what the driver's own client sent and what the
//! provider answered when its recorded bytes are replayed.

use std::collections::BTreeMap;

/// The client's connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// One frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
    /// Offset just past this frame in the stream it was read from.
    pub end: usize,
}

/// The complete frames of `bytes` (after the preface, if it starts with one).
pub fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut pos = if bytes.starts_with(PREFACE) {
        PREFACE.len()
    } else {
        0
    };
    let mut out = Vec::new();
    while bytes.len() >= pos + 9 {
        let len = u32::from_be_bytes([0, bytes[pos], bytes[pos + 1], bytes[pos + 2]]) as usize;
        if bytes.len() < pos + 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
            bytes[pos + 8],
        ]) & 0x7fff_ffff;
        out.push(Frame {
            kind: bytes[pos + 3],
            flags: bytes[pos + 4],
            stream,
            payload: bytes[pos + 9..pos + 9 + len].to_vec(),
            end: pos + 9 + len,
        });
        pos += 9 + len;
    }
    out
}

/// A HEADERS or DATA payload without padding and priority fields.
fn body(frame: &Frame) -> &[u8] {
    let mut p = frame.payload.as_slice();
    let mut pad = 0;
    if frame.flags & PADDED != 0 && frame.kind != CONTINUATION && !p.is_empty() {
        pad = p[0] as usize;
        p = &p[1..];
    }
    if frame.kind == HEADERS && frame.flags & PRIORITY != 0 && p.len() >= 5 {
        p = &p[5..];
    }
    &p[..p.len().saturating_sub(pad)]
}

/// One stream as one side sent it.
#[derive(Clone, Debug, Default)]
pub struct Stream {
    /// Each header block, decoded, in order (headers, then trailers).
    pub blocks: Vec<Vec<(String, String)>>,
    pub data: Vec<u8>,
    pub ended: bool,
    /// Offset just past the frame that ended the stream.
    pub end_offset: Option<usize>,
}

impl Stream {
    /// The first value of `name` in any block.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.blocks
            .iter()
            .flatten()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The gRPC messages in the DATA (5-byte prefix, then the message).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut p = self.data.as_slice();
        while p.len() >= 5 {
            let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
            if p.len() < 5 + len {
                break;
            }
            out.push(p[5..5 + len].to_vec());
            p = &p[5 + len..];
        }
        out
    }
}

/// The streams one side of a connection sent, by stream id, with every header block
/// decoded in order through one HPACK decoder (as the other side's is).
pub fn streams(bytes: &[u8]) -> Result<BTreeMap<u32, Stream>, String> {
    let mut decoder = hpack::Decoder::new();
    let mut out: BTreeMap<u32, Stream> = BTreeMap::new();
    let mut block: Option<(u32, Vec<u8>, bool)> = None;
    for frame in frames(bytes) {
        match frame.kind {
            HEADERS | CONTINUATION => {
                let (stream, mut buf, ends) = match (frame.kind, block.take()) {
                    (HEADERS, _) => (frame.stream, Vec::new(), frame.flags & END_STREAM != 0),
                    (_, Some(b)) => b,
                    (_, None) => return Err("CONTINUATION without HEADERS".into()),
                };
                buf.extend_from_slice(body(&frame));
                if frame.flags & END_HEADERS == 0 {
                    block = Some((stream, buf, ends));
                    continue;
                }
                let fields = decoder
                    .decode(&buf)
                    .map_err(|e| format!("HPACK: {e:?}"))?
                    .into_iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8_lossy(&n).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        )
                    })
                    .collect();
                let s = out.entry(stream).or_default();
                s.blocks.push(fields);
                if ends {
                    s.ended = true;
                    s.end_offset = Some(frame.end);
                }
            }
            DATA => {
                let s = out.entry(frame.stream).or_default();
                s.data.extend_from_slice(body(&frame));
                if frame.flags & END_STREAM != 0 {
                    s.ended = true;
                    s.end_offset = Some(frame.end);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
