//! HPACK against RFC 7541 Appendix C, and encoder/decoder round trips.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

use super::*;
use crate::hpack::hex;

fn decode_all(d: &mut Decoder, block: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let r = d.decode(&hex(block), usize::MAX, |f| {
        out.push((
            String::from_utf8(f.name.as_bytes().to_vec()).unwrap(),
            String::from_utf8(f.value.to_vec()).unwrap(),
        ))
    });
    assert_eq!(r, Ok(Decoded::Complete));
    out
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn requests(blocks: [&str; 3]) {
    let mut d = Decoder::new(4096);
    let got = decode_all(&mut d, blocks[0]);
    let mut want = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    assert_eq!(got, pairs(&want));
    assert_eq!((d.table().len(), d.table().size()), (1, 57));

    want.push(("cache-control", "no-cache"));
    assert_eq!(decode_all(&mut d, blocks[1]), pairs(&want));
    assert_eq!((d.table().len(), d.table().size()), (2, 110));

    let want = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    assert_eq!(decode_all(&mut d, blocks[2]), pairs(&want));
    assert_eq!((d.table().len(), d.table().size()), (3, 164));
}

#[test]
fn c3_requests_without_huffman() {
    requests([
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]);
}

#[test]
fn c4_requests_with_huffman() {
    requests([
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]);
}

#[test]
fn c5_responses_with_eviction() {
    // The decoder's table is 256 bytes here, so the third response evicts.
    let mut d = Decoder::new(256);
    let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
    let got = decode_all(
        &mut d,
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a \
         3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    );
    let loc = "https://www.example.com";
    assert_eq!(
        got,
        pairs(&[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", loc)
        ])
    );
    assert_eq!((d.table().len(), d.table().size()), (4, 222));

    let got = decode_all(&mut d, "4803 3330 37c1 c0bf");
    assert_eq!(
        got,
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", date1),
            ("location", loc)
        ])
    );
    assert_eq!((d.table().len(), d.table().size()), (4, 222));

    let got = decode_all(
        &mut d,
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 \
         677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 \
         553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
    );
    assert_eq!(
        got,
        pairs(&[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", loc),
            ("content-encoding", "gzip"),
            (
                "set-cookie",
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
            ),
        ])
    );
    assert_eq!((d.table().len(), d.table().size()), (3, 215));
}

#[test]
fn malformed_blocks_are_errors_not_panics() {
    let mut d = Decoder::new(4096);
    let mut run = |b: &str| d.decode(&hex(b), usize::MAX, |_| {});
    assert_eq!(run("80"), Err(DecodeError::Index(0)));
    assert_eq!(run("be"), Err(DecodeError::Index(62)));
    // A literal whose length runs past the block.
    assert_eq!(run("0077 7777"), Err(DecodeError::Truncated));
    assert_eq!(run("ff"), Err(DecodeError::Truncated));
    // An integer with too many continuation bytes.
    assert_eq!(run("ff ff ff ff ff 0f"), Err(DecodeError::Integer));
    // Size updates: above our limit, and after a field.
    assert_eq!(run("3fe2 1f"), Err(DecodeError::SizeUpdate(4097)));
    assert_eq!(run("82 20"), Err(DecodeError::LateSizeUpdate));
    // A Huffman string padded with zeros.
    assert!(matches!(run("0082 0000 00"), Err(DecodeError::Huffman(_))));
    // Every prefix of a valid block either decodes or fails cleanly.
    let full = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
    for n in 0..full.len() {
        let mut d = Decoder::new(4096);
        let _ = d.decode(&full.slice(..n), usize::MAX, |_| {});
    }
}

#[test]
fn size_updates_shrink_and_empty_the_table() {
    let mut d = Decoder::new(4096);
    decode_all(&mut d, "418c f1e3 c2e5 f23a 6ba0 ab90 f4ff");
    assert_eq!(d.table().len(), 1);
    // Update to 0, then back to 4096, then a field: the old entry is gone.
    decode_all(&mut d, "20 3fe1 1f 82");
    assert_eq!((d.table().len(), d.table().max_size()), (0, 4096));
}

#[test]
fn an_oversized_list_keeps_the_table_in_step() {
    let mut d = Decoder::new(4096);
    let block = hex("4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf 82");
    let mut seen = 0;
    // custom-key: custom-value counts 10 + 12 + 32 = 54.
    assert_eq!(d.decode(&block, 53, |_| seen += 1), Ok(Decoded::TooLarge));
    assert_eq!(seen, 0);
    // The entry was still inserted: index 62 resolves in the next block.
    let got = decode_all(&mut d, "be");
    assert_eq!(got, pairs(&[("custom-key", "custom-value")]));
}

#[test]
fn names_not_valid_in_http2_are_kept_as_invalid() {
    let mut d = Decoder::new(4096);
    let mut names = Vec::new();
    // Literal names: "Upper" (upper case), ":bogus" (unknown pseudo), "ok".
    let r = d.decode(
        &hex("0005 5570 7065 7200 00 063a 626f 6775 7300 0002 6f6b 00"),
        usize::MAX,
        |f| names.push(f.name),
    );
    assert_eq!(r, Ok(Decoded::Complete));
    assert!(matches!(&names[0], Name::Invalid(b) if &b[..] == b"Upper"));
    assert!(matches!(&names[1], Name::Invalid(b) if &b[..] == b":bogus"));
    assert!(matches!(&names[2], Name::Header(h) if h == "ok"));
}

#[test]
fn encoder_output_decodes_to_the_same_fields() {
    let mut e = Encoder::new();
    let mut block = Vec::new();
    e.begin(&mut block);
    e.status(StatusCode::OK, &mut block);
    let mut secret = HeaderValue::from_static("s=1");
    secret.set_sensitive(true);
    let headers = [
        (
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("text/plain"),
        ),
        (
            HeaderName::from_static("x-custom"),
            HeaderValue::from_static("v"),
        ),
        (HeaderName::from_static("set-cookie"), secret),
        (
            HeaderName::from_static("x-long"),
            HeaderValue::from_str(&"a".repeat(300)).unwrap(),
        ),
    ];
    for (n, v) in &headers {
        e.header(n, v, &mut block);
    }
    // A status not in the static table.
    e.status(StatusCode::IM_A_TEAPOT, &mut block);
    // Only the first block carries the size update.
    assert_eq!(block[0], 0x20);
    let mut next = Vec::new();
    e.begin(&mut next);
    assert!(next.is_empty());

    let mut d = Decoder::new(4096);
    let mut got = Vec::new();
    assert_eq!(
        d.decode(&Bytes::from(block), usize::MAX, |f| got.push(f)),
        Ok(Decoded::Complete)
    );
    assert_eq!(got.len(), 6);
    assert_eq!(got[0].name, Name::Pseudo(Pseudo::Status));
    assert_eq!(&got[0].value[..], b"200");
    for (f, (n, v)) in got[1..5].iter().zip(&headers) {
        assert_eq!(f.name, Name::Header(n.clone()));
        assert_eq!(&f.value[..], v.as_bytes());
        assert_eq!(f.sensitive, v.is_sensitive());
    }
    assert_eq!(&got[5].value[..], b"418");
    // Nothing was added to the peer's table.
    assert_eq!(d.table().len(), 0);
}
