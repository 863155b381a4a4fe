//! Entry points for `fuzz/` (cargo-fuzz) and its regression replays; not part of the API.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};

use crate::frame::{self, Frame, Head};
use crate::hpack::Decoder;
use crate::server::{Config, Connection, Event};

/// Run the server over `input` (what a client sends after its preface and SETTINGS). Checks:
/// nothing panics; fed whole or in pieces of `piece` bytes, with the application answering
/// after all of it, the connection error (if any) and the output are the same (the state
/// machine depends on bytes, not on how they arrive); and with the application answering
/// every request as soon as it appears (as the shell does), everything the server writes is
/// valid HTTP/2 whose header blocks decode.
pub fn server(input: &[u8], piece: usize) {
    let piece = piece.max(1);
    let (whole, whole_err) = run(input, input.len().max(1), false);
    let (pieces, pieces_err) = run(input, piece, false);
    assert_eq!(
        whole_err, pieces_err,
        "the connection error depends on how the input was split"
    );
    assert_eq!(whole, pieces, "output depends on how the input was split");
    check_output(&whole);
    let (eager, _) = run(input, piece, true);
    check_output(&eager);
}

/// Answer the requests and consume the body data the connection reported.
fn answer(c: &mut Connection) {
    while let Some(ev) = c.poll_event() {
        match ev {
            Event::Request { stream, .. } => {
                c.send_response(stream, StatusCode::OK, &HeaderMap::new(), false);
                c.send_data(stream, Bytes::from_static(b"fuzz"), true);
            }
            Event::Data { stream, data, .. } => c.release(stream, data.len()),
            Event::Trailers { .. } | Event::Reset { .. } => {}
        }
    }
}

fn run(input: &[u8], piece: usize, eager: bool) -> (Vec<u8>, Option<crate::frame::Reason>) {
    let mut c = Connection::new(Config {
        max_excess_resets: 16,
        ..Config::default()
    });
    let mut all = frame::PREFACE.to_vec();
    frame::write_settings(&[], &mut all);
    all.extend_from_slice(input);
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut error = None;
    for chunk in all.chunks(piece) {
        buf.extend_from_slice(chunk);
        if let Err(e) = c.recv(&mut buf) {
            error = Some(e.reason);
        }
        if eager {
            answer(&mut c);
        }
        out.extend_from_slice(c.output(usize::MAX));
        c.output(0).clear();
        if error.is_some() {
            break;
        }
    }
    answer(&mut c);
    out.extend_from_slice(c.output(usize::MAX));
    (out, error)
}

fn check_output(out: &[u8]) {
    let mut buf = Bytes::copy_from_slice(out);
    let mut dec = Decoder::new(4096);
    let mut block: Option<Vec<u8>> = None;
    while !buf.is_empty() {
        assert!(
            buf.len() >= frame::HEAD_LEN,
            "truncated frame header in output"
        );
        let head = Head::parse(buf[..frame::HEAD_LEN].try_into().expect("9 bytes"));
        let _ = buf.split_to(frame::HEAD_LEN);
        assert!(buf.len() >= head.len, "truncated frame in output");
        assert!(
            head.len <= frame::DEFAULT_MAX_FRAME,
            "frame above the default maximum"
        );
        let f = frame::parse(head, buf.split_to(head.len)).expect("server wrote an invalid frame");
        match f {
            Frame::Headers {
                block: b,
                end_headers,
                ..
            } => {
                assert!(block.is_none(), "HEADERS inside a header block");
                if end_headers {
                    dec.decode(&b, usize::MAX, |_| {})
                        .expect("header block decodes");
                } else {
                    block = Some(b.to_vec());
                }
            }
            Frame::Continuation {
                block: b,
                end_headers,
                ..
            } => {
                let mut acc = block.take().expect("CONTINUATION without HEADERS");
                acc.extend_from_slice(&b);
                if end_headers {
                    dec.decode(&Bytes::from(acc), usize::MAX, |_| {})
                        .expect("header block decodes");
                } else {
                    block = Some(acc);
                }
            }
            _ => assert!(block.is_none(), "frame inside a header block"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_few_inputs() {
        let mut req = Vec::new();
        crate::frame::write_headers(
            1,
            &[0x82, 0x86, 0x84, 0x41, 0x01, b'h'],
            true,
            16_384,
            &mut req,
        );
        for input in [&[][..], &req, &[0xff; 40], &req[..5]] {
            for piece in [1, 3, 7, 1000] {
                super::server(input, piece);
            }
        }
    }
}
