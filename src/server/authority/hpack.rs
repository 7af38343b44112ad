//! HPACK (RFC 7541) as far as the authority fix needs it: integers, strings (with the
//! Huffman code), a mirror of the decoder's dynamic table, and a rewriter that replaces
//! one header value in a header block while keeping every table entry's size unchanged.
//!
//! The Huffman code is canonical: it is rebuilt here from the code length of each symbol
//! (RFC 7541 Appendix B) and checked against the RFC's examples in the tests.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// A header block that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HPACK: {0}")]
pub struct HpackError(pub &'static str);

/// Code length in bits of each symbol 0..=256 (256 is EOS), RFC 7541 Appendix B.
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// Names of the static table (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// Canonical decoding tables: for each length, the first code and where its symbols start.
struct Huffman {
    /// Symbols sorted by (length, symbol).
    sorted: Vec<u16>,
    first_code: [u32; 31],
    count: [u32; 31],
    offset: [u32; 31],
    /// Each symbol's code, for the encoder the tests use.
    #[cfg(test)]
    codes: [u32; 257],
}

fn huffman() -> &'static Huffman {
    static H: OnceLock<Huffman> = OnceLock::new();
    H.get_or_init(|| {
        let mut sorted: Vec<u16> = (0..257).collect();
        sorted.sort_by_key(|s| (CODE_LENGTHS[*s as usize], *s));
        let mut count = [0u32; 31];
        for l in CODE_LENGTHS {
            count[l as usize] += 1;
        }
        let mut first_code = [0u32; 31];
        let mut offset = [0u32; 31];
        let mut code = 0u32;
        let mut seen = 0u32;
        for len in 1..31 {
            code = (code + if len > 1 { count[len - 1] } else { 0 }) << 1;
            if len == 1 {
                code = 0;
            }
            first_code[len] = code;
            offset[len] = seen;
            seen += count[len];
        }
        #[cfg(test)]
        let codes = {
            let mut codes = [0u32; 257];
            for len in 1..31 {
                for i in 0..count[len] {
                    let sym = sorted[(offset[len] + i) as usize];
                    codes[sym as usize] = first_code[len] + i;
                }
            }
            codes
        };
        Huffman {
            sorted,
            first_code,
            count,
            offset,
            #[cfg(test)]
            codes,
        }
    })
}

/// Decodes a Huffman-coded string.
pub fn huffman_decode(input: &[u8]) -> Result<Vec<u8>, HpackError> {
    let h = huffman();
    let mut out = Vec::with_capacity(input.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    for byte in input {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            if len > 30 {
                return Err(HpackError("bad Huffman code"));
            }
            let delta = code.wrapping_sub(h.first_code[len]);
            if code >= h.first_code[len] && delta < h.count[len] {
                let sym = h.sorted[(h.offset[len] + delta) as usize];
                if sym == 256 {
                    return Err(HpackError("EOS inside a Huffman string"));
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (a prefix of EOS).
    if len >= 8 || code != (1u32 << len) - 1 {
        return Err(HpackError("bad Huffman padding"));
    }
    Ok(out)
}

/// Encodes a string with the Huffman code (used by tests and clients).
#[cfg(test)]
pub fn huffman_encode(input: &[u8]) -> Vec<u8> {
    let h = huffman();
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u64, 0u32);
    for &b in input {
        let len = u32::from(CODE_LENGTHS[b as usize]);
        acc = (acc << len) | u64::from(h.codes[b as usize]);
        bits += len;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
    out
}

/// Reads an integer with an N-bit prefix; returns it and the bytes used.
pub fn decode_int(buf: &[u8], prefix: u8) -> Result<(usize, usize), HpackError> {
    let first = *buf.first().ok_or(HpackError("truncated integer"))?;
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok((value, 1));
    }
    let mut shift = 0u32;
    for (i, b) in buf[1..].iter().enumerate() {
        if shift > 28 {
            return Err(HpackError("integer too large"));
        }
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok((value, i + 2));
        }
    }
    Err(HpackError("truncated integer"))
}

/// Writes an integer with an N-bit prefix; `flags` fills the bits above the prefix.
pub fn encode_int(value: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// Reads a string literal; returns its decoded bytes and the bytes used.
pub fn decode_string(buf: &[u8]) -> Result<(Vec<u8>, usize), HpackError> {
    let huffman = buf.first().ok_or(HpackError("truncated string"))? & 0x80 != 0;
    let (len, used) = decode_int(buf, 7)?;
    let end = used
        .checked_add(len)
        .filter(|e| *e <= buf.len())
        .ok_or(HpackError("truncated string"))?;
    let raw = &buf[used..end];
    let text = if huffman {
        huffman_decode(raw)?
    } else {
        raw.to_vec()
    };
    Ok((text, end))
}

/// Writes a string literal without Huffman coding.
pub fn encode_string_raw(value: &[u8], out: &mut Vec<u8>) {
    encode_int(value.len(), 7, 0, out);
    out.extend_from_slice(value);
}

/// The decoder's dynamic table, as far as names and sizes go.
#[derive(Debug, Clone)]
pub struct DynamicTable {
    /// Newest first: (name, entry size = 32 + name length + value length).
    entries: VecDeque<(Vec<u8>, usize)>,
    size: usize,
    max: usize,
}

impl Default for DynamicTable {
    fn default() -> Self {
        DynamicTable::new(4096)
    }
}

impl DynamicTable {
    pub fn new(max: usize) -> Self {
        DynamicTable {
            entries: VecDeque::new(),
            size: 0,
            max,
        }
    }

    #[cfg(test)]
    pub fn size(&self) -> usize {
        self.size
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some((_, s)) => self.size -= s,
                None => break,
            }
        }
    }

    fn set_max(&mut self, max: usize) {
        self.max = max;
        self.evict_to(max);
    }

    fn insert(&mut self, name: Vec<u8>, value_len: usize) {
        let size = 32 + name.len() + value_len;
        if size > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max - size);
        self.entries.push_front((name, size));
        self.size += size;
    }

    fn name(&self, index: usize) -> Result<Vec<u8>, HpackError> {
        match index {
            0 => Err(HpackError("index 0")),
            1..=61 => Ok(STATIC_NAMES[index - 1].as_bytes().to_vec()),
            i => self
                .entries
                .get(i - 62)
                .map(|(n, _)| n.clone())
                .ok_or(HpackError("index past the dynamic table")),
        }
    }
}

/// Walks a header block, mirroring its effect on the dynamic table, and replaces the value of
/// every literal `name` field for which `fix` returns a replacement. A replacement must have
/// the value's length, so that table entry sizes, and with them both ends' accounting, stay
/// identical. Returns the new block, or `None` when nothing was replaced.
pub fn rewrite_block(
    block: &[u8],
    table: &mut DynamicTable,
    name: &[u8],
    fix: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<Option<Vec<u8>>, HpackError> {
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let first = block[pos];
        if first & 0x80 != 0 {
            // Indexed field: no table change.
            let (index, used) = decode_int(&block[pos..], 7)?;
            if index == 0 {
                return Err(HpackError("index 0"));
            }
            table.name(index)?;
            pos += used;
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(&block[start..pos]);
            }
            continue;
        }
        if first & 0xe0 == 0x20 {
            let (max, used) = decode_int(&block[pos..], 5)?;
            table.set_max(max);
            pos += used;
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(&block[start..pos]);
            }
            continue;
        }
        // Literal: with incremental indexing (01), without (0000) or never indexed (0001).
        let (indexing, prefix) = if first & 0xc0 == 0x40 {
            (true, 6)
        } else {
            (false, 4)
        };
        let (name_index, used) = decode_int(&block[pos..], prefix)?;
        pos += used;
        let field_name = if name_index == 0 {
            let (n, used) = decode_string(&block[pos..])?;
            pos += used;
            n
        } else {
            table.name(name_index)?
        };
        let name_end = pos;
        let (value, used) = decode_string(&block[pos..])?;
        pos += used;
        let replacement = if field_name == name {
            fix(&value).filter(|r| r.len() == value.len())
        } else {
            None
        };
        if indexing {
            table.insert(field_name, value.len());
        }
        match replacement {
            Some(new_value) => {
                let o = out.get_or_insert_with(|| block[..start].to_vec());
                o.extend_from_slice(&block[start..name_end]);
                encode_string_raw(&new_value, o);
            }
            None => {
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(&block[start..pos]);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn huffman_matches_the_rfc_examples() {
        // RFC 7541 C.4.1 and C.4.2.
        assert_eq!(
            huffman_encode(b"www.example.com"),
            hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")
        );
        assert_eq!(huffman_encode(b"no-cache"), hex("a8eb 1064 9cbf"));
        assert_eq!(
            huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")).unwrap(),
            b"www.example.com"
        );
        // C.6.1
        assert_eq!(huffman_encode(b"302"), hex("6402"));
        assert_eq!(huffman_encode(b"private"), hex("aec3 771a 4b"));
        assert_eq!(
            huffman_encode(b"Mon, 21 Oct 2013 20:13:21 GMT"),
            hex("d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff")
        );
        assert_eq!(
            huffman_encode(b"https://www.example.com"),
            hex("9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3")
        );
        // Every byte value round-trips.
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(huffman_decode(&huffman_encode(&all)).unwrap(), all);
        assert!(
            huffman_decode(&[0x00, 0x00, 0x00, 0x00]).is_err(),
            "padding of zeros"
        );
    }

    #[test]
    fn integers_match_the_rfc_examples() {
        let mut out = Vec::new();
        encode_int(1337, 5, 0, &mut out);
        assert_eq!(out, vec![31, 154, 10]);
        assert_eq!(decode_int(&out, 5).unwrap(), (1337, 3));
        assert_eq!(decode_int(&[10], 5).unwrap(), (10, 1));
        assert!(decode_int(&[31, 0xff], 5).is_err());
    }

    #[test]
    fn table_sizes_follow_the_rfc_example() {
        // RFC 7541 C.3: three requests without Huffman; table size 57, 110, 164.
        let mut t = DynamicTable::new(4096);
        let keep = |_: &[u8]| None;
        rewrite_block(
            &hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"),
            &mut t,
            b":authority",
            &keep,
        )
        .unwrap();
        assert_eq!(t.size(), 57);
        rewrite_block(
            &hex("8286 84be 5808 6e6f 2d63 6163 6865"),
            &mut t,
            b":authority",
            &keep,
        )
        .unwrap();
        assert_eq!(t.size(), 110);
        rewrite_block(
            &hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"),
            &mut t,
            b":authority",
            &keep,
        )
        .unwrap();
        assert_eq!(t.size(), 164);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn rewrite_keeps_sizes_and_other_fields() {
        let path = b"/var/run/secrets-store-csi-providers/vault.sock";
        // :method GET, :authority (static name 1, incremental indexing) Huffman-coded path,
        // a custom header, then the authority again by dynamic index.
        let mut block = vec![0x82];
        block.push(0x41);
        let coded = huffman_encode(path);
        encode_int(coded.len(), 7, 0x80, &mut block);
        block.extend_from_slice(&coded);
        block.extend_from_slice(&[0x40, 0x01, b'x', 0x01, b'y']);
        block.push(0x80 | 63);
        let fix = |v: &[u8]| (v.first() == Some(&b'/')).then(|| vec![b'x'; v.len()]);
        let mut ours = DynamicTable::default();
        let new = rewrite_block(&block, &mut ours, b":authority", &fix)
            .unwrap()
            .unwrap();
        // Decoding the new block gives the same table sizes as the original.
        let mut theirs = DynamicTable::default();
        assert!(
            rewrite_block(&new, &mut theirs, b":authority", &|_| None)
                .unwrap()
                .is_none()
        );
        assert_eq!(ours.size(), theirs.size());
        assert_eq!(ours.size(), (32 + 10 + path.len()) + (32 + 1 + 1));
        assert!(new.windows(path.len()).all(|w| w != path));
        // Malformed blocks are errors, never panics.
        for bad in [
            &[0x80u8][..],
            &[0x41, 0x85, 0xff],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0xbf],
        ] {
            assert!(rewrite_block(bad, &mut DynamicTable::default(), b":authority", &fix).is_err());
        }
    }
}
