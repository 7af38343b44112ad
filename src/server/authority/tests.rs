use super::hpack::{self, DynamicTable, encode_int, huffman_encode};
use super::*;

const PATH: &[u8] = b"/var/run/secrets-store-csi-providers/vault.sock";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame_header(payload.len(), kind, flags, stream, &mut out);
    out.extend_from_slice(payload);
    out.to_vec()
}

/// A request header block with the authority as a Huffman literal, indexed.
fn block_with(authority: &[u8]) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    b.push(0x41); // :authority, incremental indexing, static name 1
    let coded = huffman_encode(authority);
    encode_int(coded.len(), 7, 0x80, &mut b);
    b.extend_from_slice(&coded);
    b.push(0x44); // :path, incremental indexing
    encode_int(30, 7, 0, &mut b);
    b.extend_from_slice(b"/v1alpha1.CSIDriverProvider/Mo");
    b
}

fn run(input: &[u8]) -> (Vec<u8>, FrameRewriter) {
    let mut r = FrameRewriter::new(Box::new(server_fix));
    let mut out = BytesMut::new();
    r.push(input, &mut out);
    (out.to_vec(), r)
}

fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff])
}

#[test]
fn authority_forms() {
    assert!(authority_is_valid(b"localhost"));
    assert!(!authority_is_valid(PATH));
    assert!(!authority_is_valid(b"%2Fvar%2Frun%2Fvault.sock"));
    assert_eq!(server_fix(b"localhost"), None);
    assert_eq!(server_fix(PATH).unwrap().len(), PATH.len());
}

#[test]
fn path_authority_is_rewritten_with_the_same_table_sizes() {
    let mut input = PREFACE.to_vec();
    input.extend(settings());
    let block = block_with(PATH);
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
    let (out, r) = run(&input);
    assert_eq!(r.rewritten, 1);
    assert_eq!(
        &out[..PREFACE.len() + 15],
        &input[..PREFACE.len() + 15],
        "preface and SETTINGS untouched"
    );
    let headers = &out[PREFACE.len() + 15..];
    let len = (usize::from(headers[1]) << 8) | usize::from(headers[2]);
    assert_eq!(headers[3], HEADERS);
    assert_eq!(headers[4], END_HEADERS);
    let new_block = &headers[9..9 + len];
    assert_eq!(
        &headers[9 + len..],
        &frame(0x0, END_STREAM, 1, b"\0\0\0\0\0")[..],
        "DATA untouched"
    );
    // Both blocks leave tables of the same size, and the new one holds no path.
    let (mut a, mut b) = (DynamicTable::default(), DynamicTable::default());
    hpack::rewrite_block(&block, &mut a, b":authority", &|_| None).unwrap();
    hpack::rewrite_block(new_block, &mut b, b":authority", &|_| None).unwrap();
    assert_eq!(a.size(), b.size());
    assert!(new_block.windows(PATH.len()).all(|w| w != PATH));
}

#[test]
fn valid_authority_and_other_frames_pass_byte_for_byte() {
    let mut input = PREFACE.to_vec();
    input.extend(settings());
    input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &{
        let mut p = vec![3];
        p.extend(block_with(b"localhost"));
        p.extend([0, 0, 0]);
        p
    }));
    input.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
    let (out, r) = run(&input);
    assert_eq!(r.rewritten, 0);
    assert_eq!(out, input);
}

#[test]
fn continuation_padding_priority_and_byte_by_byte_feeding() {
    let block = block_with(PATH);
    let (first, rest) = block.split_at(10);
    let mut input = PREFACE.to_vec();
    let mut headers = vec![2u8]; // pad length
    headers.extend([0x80, 0, 0, 3, 15]); // priority: exclusive, depends on 3, weight 15
    headers.extend(first);
    headers.extend([0, 0]);
    input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 5, &headers));
    input.extend(frame(CONTINUATION, END_HEADERS, 5, rest));
    let (whole, r) = run(&input);
    assert_eq!(r.rewritten, 1);
    let mut one = FrameRewriter::new(Box::new(server_fix));
    let mut out = BytesMut::new();
    for b in &input {
        one.push(std::slice::from_ref(b), &mut out);
    }
    assert_eq!(out.to_vec(), whole, "the same whatever the read sizes");
    let h = &whole[PREFACE.len()..];
    assert_eq!(h[3], HEADERS);
    assert_eq!(h[4], END_HEADERS | PRIORITY | END_STREAM);
    assert_eq!(&h[9..14], &[0x80, 0, 0, 3, 15]);
}

#[test]
fn long_blocks_are_split_into_continuations() {
    let mut block = block_with(PATH);
    for i in 0..400 {
        block.push(0x40);
        let name = format!("x-churn-{i}");
        encode_int(name.len(), 7, 0, &mut block);
        block.extend(name.as_bytes());
        encode_int(40, 7, 0, &mut block);
        block.extend([b'v'; 40]);
    }
    assert!(block.len() > OUT_FRAME);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, 0, 1, &block[..15000]));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, &block[15000..]));
    let (out, r) = run(&input);
    assert_eq!(r.rewritten, 1);
    let first = &out[PREFACE.len()..];
    let len = (usize::from(first[0]) << 16) | (usize::from(first[1]) << 8) | usize::from(first[2]);
    assert_eq!(len, OUT_FRAME);
    assert_eq!(first[4] & END_HEADERS, 0);
    let second = &first[9 + len..];
    assert_eq!(second[3], CONTINUATION);
    assert_eq!(second[4], END_HEADERS);
}

#[test]
fn what_is_not_http2_passes_through_unchanged() {
    for input in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        {
            let mut v = PREFACE.to_vec();
            v.extend(frame(
                HEADERS,
                END_HEADERS,
                1,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ));
            v.extend(frame(HEADERS, END_HEADERS, 3, &block_with(PATH)));
            v
        },
        {
            let mut v = PREFACE.to_vec();
            v.extend(frame(HEADERS, 0, 1, &block_with(PATH)[..4]));
            v.extend(frame(0x0, 0, 1, b"data in the middle"));
            v
        },
        {
            let mut v = PREFACE.to_vec();
            v.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 1, 2]));
            v
        },
    ] {
        let (out, _) = run(&input);
        assert_eq!(out, input);
    }
}

/// Arbitrary bytes from a client, whole or split at every point: the same output, never a
/// panic; and with nothing rewritten, the bytes pass unchanged.
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn through(chunks: &[&[u8]]) -> (Vec<u8>, u64) {
        let mut r = FrameRewriter::new(Box::new(server_fix));
        let mut out = BytesMut::new();
        for c in chunks {
            r.push(c, &mut out);
        }
        r.flush_held(&mut out);
        (out.to_vec(), r.rewritten)
    }

    /// A client byte stream: the preface (or not), then frames of any kind, some of them
    /// header blocks carrying an authority of any shape, some cut or garbled.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let authority = prop_oneof![
            Just(PATH.to_vec()),
            Just(b"localhost".to_vec()),
            Just(b"%2Fvar%2Frun%2Fvault.sock".to_vec()),
            prop::collection::vec(any::<u8>(), 0..40),
        ];
        let frame_ = prop_oneof![
            authority.prop_map(|a| frame(HEADERS, END_HEADERS, 1, &block_with(&a))),
            (
                any::<u8>(),
                any::<u8>(),
                0u32..5,
                prop::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(k, f, s, p)| frame(k % 12, f, s, &p)),
            prop::collection::vec(any::<u8>(), 0..16),
        ];
        (any::<bool>(), prop::collection::vec(frame_, 0..6)).prop_map(|(preface, frames)| {
            let mut out = if preface {
                PREFACE.to_vec()
            } else {
                Vec::new()
            };
            out.extend_from_slice(&settings());
            for f in frames {
                out.extend_from_slice(&f);
            }
            out
        })
    }

    proptest! {
        #[test]
        fn splitting_never_changes_the_output(input in stream()) {
            let (whole, rewritten) = through(&[&input]);
            if rewritten == 0 {
                prop_assert_eq!(&whole, &input);
            }
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                let (split, _) = through(&[a, b]);
                prop_assert_eq!(&split, &whole, "cut at {}", cut);
            }
        }

        #[test]
        fn any_bytes_pass_without_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
            let (whole, _) = through(&[&input]);
            let one_by_one: Vec<&[u8]> = input.chunks(1).collect();
            let (bytes, _) = through(&one_by_one);
            prop_assert_eq!(bytes, whole);
        }
    }
}
