//! The server state machine against hand-built client frames.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

use super::*;
use crate::frame::{self, kind, Frame, Head, Reason};
use crate::hpack::{Decoder, Encoder};

/// A client: encodes requests and decodes what the server wrote.
struct Client {
    enc: Encoder,
    dec: Decoder,
}

#[derive(Debug, PartialEq)]
enum Out {
    Settings(frame::Settings),
    SettingsAck,
    PingAck([u8; 8]),
    Window(u32, u32),
    Rst(u32, Reason),
    GoAway(u32, Reason),
    /// stream, fields as (name, value), end_stream
    Headers(u32, Vec<(String, String)>, bool),
    Data(u32, Vec<u8>, bool),
}

impl Client {
    fn new() -> Client {
        Client {
            enc: Encoder::new(),
            dec: Decoder::new(4096),
        }
    }

    fn hello() -> BytesMut {
        let mut b = BytesMut::from(&frame::PREFACE[..]);
        let mut v = Vec::new();
        frame::write_settings(&[], &mut v);
        b.extend_from_slice(&v);
        b
    }

    fn block(&mut self, method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut blk = Vec::new();
        self.enc.begin(&mut blk);
        self.enc.pseudo(2, method.as_bytes(), &mut blk);
        self.enc.pseudo(6, b"https", &mut blk);
        self.enc.pseudo(4, path.as_bytes(), &mut blk);
        self.enc.pseudo(1, b"example.com", &mut blk);
        for (n, v) in extra {
            // Literal, new name, without indexing: lets tests send names HeaderName refuses.
            blk.push(0);
            crate::hpack::encoder::integer(n.len(), 7, 0, &mut blk);
            blk.extend_from_slice(n.as_bytes());
            crate::hpack::encoder::integer(v.len(), 7, 0, &mut blk);
            blk.extend_from_slice(v.as_bytes());
        }
        blk
    }

    fn request(
        &mut self,
        stream: u32,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        end: bool,
    ) -> Vec<u8> {
        let blk = self.block(method, path, extra);
        let mut v = Vec::new();
        frame::write_headers(stream, &blk, end, 16_384, &mut v);
        v
    }

    fn read(&mut self, out: &mut Vec<u8>) -> Vec<Out> {
        let mut buf = Bytes::from(std::mem::take(out));
        let mut got = Vec::new();
        while !buf.is_empty() {
            let head = Head::parse(buf[..frame::HEAD_LEN].try_into().unwrap());
            let _ = buf.split_to(frame::HEAD_LEN);
            let f = frame::parse(head, buf.split_to(head.len)).unwrap();
            got.push(match f {
                Frame::Settings(s) => Out::Settings(s),
                Frame::SettingsAck => Out::SettingsAck,
                Frame::Ping { payload, .. } => Out::PingAck(payload),
                Frame::WindowUpdate { stream, increment } => Out::Window(stream, increment),
                Frame::RstStream { stream, reason } => Out::Rst(stream, reason),
                Frame::GoAway {
                    last_stream,
                    reason,
                } => Out::GoAway(last_stream, reason),
                Frame::Headers {
                    stream,
                    block,
                    end_stream,
                    end_headers,
                    ..
                } => {
                    assert!(end_headers);
                    let mut fields = Vec::new();
                    self.dec
                        .decode(&block, usize::MAX, |f| {
                            fields.push((
                                String::from_utf8(f.name.as_bytes().to_vec()).unwrap(),
                                String::from_utf8(f.value.to_vec()).unwrap(),
                            ))
                        })
                        .unwrap();
                    Out::Headers(stream, fields, end_stream)
                }
                Frame::Data {
                    stream,
                    data,
                    end_stream,
                    ..
                } => Out::Data(stream, data.to_vec(), end_stream),
                f => panic!("server sent {f:?}"),
            });
        }
        got
    }
}

fn open(config: Config) -> (Connection, Client) {
    let mut c = Connection::new(config);
    let mut client = Client::new();
    let mut input = Client::hello();
    c.recv(&mut input).unwrap();
    assert!(input.is_empty());
    let out = client.read(c.output(usize::MAX));
    assert!(
        matches!(out[0], Out::Settings(s) if s.max_concurrent_streams == Some(config.max_concurrent_streams)
        && s.initial_window_size == Some(config.stream_window) && s.enable_push == Some(false))
    );
    assert_eq!(out[1], Out::Window(0, config.conn_window - 65_535));
    assert_eq!(out[2], Out::SettingsAck);
    assert_eq!(out.len(), 3);
    (c, client)
}

fn feed(c: &mut Connection, bytes: &[u8]) -> Result<(), ConnError> {
    let mut input = BytesMut::from(bytes);
    let r = c.recv(&mut input);
    if r.is_ok() {
        assert!(input.is_empty(), "a complete frame was left unread");
    }
    r
}

/// A DATA frame carrying `payload`.
fn data_frame(stream: u32, payload: &[u8], end: bool) -> Vec<u8> {
    let mut v = Vec::new();
    frame::write_data_head(stream, payload.len(), end, &mut v);
    v.extend_from_slice(payload);
    v
}

/// Response body bytes in what the server wrote.
fn data_len<'a>(out: impl IntoIterator<Item = &'a Out>) -> usize {
    out.into_iter()
        .map(|o| {
            if let Out::Data(_, d, _) = o {
                d.len()
            } else {
                0
            }
        })
        .sum()
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect()
}

#[test]
fn a_get_and_its_response() {
    let (mut c, mut client) = open(Config::default());
    feed(
        &mut c,
        &client.request(1, "GET", "/a?b", &[("accept", "*/*")], true),
    )
    .unwrap();
    let ev = events(&mut c);
    let [Event::Request {
        stream: 1,
        head,
        end_stream: true,
    }] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(head.uri, "https://example.com/a?b");
    assert_eq!(head.headers["accept"], "*/*");

    c.send_response(
        1,
        StatusCode::OK,
        &headers(&[("content-type", "text/plain"), ("x-a", "1")]),
        false,
    );
    c.send_data(1, Bytes::from_static(b"hello"), true);
    let out = client.read(c.output(usize::MAX));
    assert_eq!(
        out,
        [
            Out::Headers(
                1,
                vec![
                    (":status".into(), "200".into()),
                    ("content-type".into(), "text/plain".into()),
                    ("x-a".into(), "1".into())
                ],
                false
            ),
            Out::Data(1, b"hello".to_vec(), true),
        ]
    );
    assert_eq!(c.active_streams(), 0);
    assert_eq!(c.counters().requests, 1);

    // A second request on the same connection; a status outside the static table.
    feed(&mut c, &client.request(3, "GET", "/", &[], true)).unwrap();
    assert_eq!(events(&mut c).len(), 1);
    c.send_response(3, StatusCode::IM_A_TEAPOT, &HeaderMap::new(), true);
    assert_eq!(
        client.read(c.output(usize::MAX)),
        [Out::Headers(
            3,
            vec![(":status".into(), "418".into())],
            true
        )]
    );
}

#[test]
fn pings_are_answered_and_frames_may_arrive_in_pieces() {
    let mut c = Connection::new(Config::default());
    let mut client = Client::new();
    let mut all = Client::hello().to_vec();
    let mut ping = Vec::new();
    Head {
        len: 8,
        kind: kind::PING,
        flags: 0,
        stream: 0,
    }
    .write(&mut ping);
    ping.extend_from_slice(b"12345678");
    all.extend_from_slice(&ping);
    all.extend_from_slice(&client.request(1, "GET", "/", &[], true));
    // One byte at a time.
    let mut input = BytesMut::new();
    for b in all {
        input.extend_from_slice(&[b]);
        c.recv(&mut input).unwrap();
    }
    assert!(input.is_empty());
    let out = client.read(c.output(usize::MAX));
    assert!(out.contains(&Out::PingAck(*b"12345678")));
    assert_eq!(events(&mut c).len(), 1);
}

#[test]
fn a_bad_preface_or_first_frame_ends_the_connection() {
    let mut c = Connection::new(Config::default());
    let e = feed(&mut c, b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
    assert_eq!(e.reason, Reason::PROTOCOL_ERROR);
    let out = Client::new().read(c.output(usize::MAX));
    assert_eq!(out.last(), Some(&Out::GoAway(0, Reason::PROTOCOL_ERROR)));
    assert!(c.is_closed());

    let mut c = Connection::new(Config::default());
    let mut input = frame::PREFACE.to_vec();
    frame::write_ping_ack(b"abcdefgh", &mut input);
    assert_eq!(
        feed(&mut c, &input).unwrap_err().reason,
        Reason::PROTOCOL_ERROR
    );
}

#[test]
fn request_body_flow_control_and_window_updates() {
    let config = Config {
        conn_window: 65_535,
        stream_window: 40,
        ..Config::default()
    };
    let mut c = Connection::new(config);
    let mut client = Client::new();
    c.recv(&mut Client::hello()).unwrap();
    // No WINDOW_UPDATE for the connection: 65,535 is where it starts.
    assert!(!client
        .read(c.output(usize::MAX))
        .iter()
        .any(|o| matches!(o, Out::Window(..))));
    feed(
        &mut c,
        &client.request(1, "POST", "/up", &[("content-length", "60")], false),
    )
    .unwrap();
    let data = data_frame(1, &[b'x'; 30], false);
    feed(&mut c, &data).unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(&ev[..], [Event::Request { end_stream: false, .. }, Event::Data { stream: 1, data, end_stream: false }] if data.len() == 30)
    );
    // Nothing given back until the application consumes it.
    assert!(client.read(c.output(usize::MAX)).is_empty());
    c.release(1, 30);
    // 30 >= 40 / 2: the stream's window reopens; the connection's (at half of 65,535) not yet.
    assert_eq!(client.read(c.output(usize::MAX)), [Out::Window(1, 30)]);

    let data = data_frame(1, &[b'y'; 30], true);
    feed(&mut c, &data).unwrap();
    assert!(matches!(
        &events(&mut c)[..],
        [Event::Data {
            end_stream: true,
            ..
        }]
    ));
    // The stream is done receiving: no update for it.
    c.release(1, 30);
    assert!(client.read(c.output(usize::MAX)).is_empty());

    // Past the stream's window: a stream error, and the application hears of it.
    feed(&mut c, &client.request(3, "POST", "/up", &[], false)).unwrap();
    events(&mut c);
    let data = data_frame(3, &[b'z'; 41], false);
    feed(&mut c, &data).unwrap();
    assert!(matches!(
        &events(&mut c)[..],
        [Event::Reset {
            stream: 3,
            reason: Reason::FLOW_CONTROL_ERROR
        }]
    ));
    assert!(client
        .read(c.output(usize::MAX))
        .contains(&Out::Rst(3, Reason::FLOW_CONTROL_ERROR)));

    // Past the connection's window: a connection error.
    let mut c = Connection::new(Config {
        conn_window: 65_535,
        ..Config::default()
    });
    c.recv(&mut Client::hello()).unwrap();
    let mut client = Client::new();
    feed(&mut c, &client.request(1, "POST", "/up", &[], false)).unwrap();
    let mut data = Vec::new();
    for _ in 0..4 {
        data.extend(data_frame(1, &[b'w'; 16_384], false));
    }
    assert_eq!(
        feed(&mut c, &data).unwrap_err().reason,
        Reason::FLOW_CONTROL_ERROR
    );
}

#[test]
fn the_connection_window_reopens_at_half() {
    let (mut c, mut client) = open(Config::default());
    feed(&mut c, &client.request(1, "POST", "/up", &[], false)).unwrap();
    let mut data = Vec::new();
    for _ in 0..33 {
        data.extend(data_frame(1, &[b'w'; 16_384], false));
    }
    feed(&mut c, &data).unwrap();
    let n: usize = events(&mut c)
        .iter()
        .map(|e| {
            if let Event::Data { data, .. } = e {
                data.len()
            } else {
                0
            }
        })
        .sum();
    assert_eq!(n, 33 * 16_384);
    c.release(1, n);
    // Both windows (1 MiB each) were more than half used.
    let out = client.read(c.output(usize::MAX));
    assert!(
        out.contains(&Out::Window(0, n as u32)) && out.contains(&Out::Window(1, n as u32)),
        "{out:?}"
    );
}

#[test]
fn response_data_waits_for_the_peers_windows() {
    let (mut c, mut client) = open(Config::default());
    // The client allows 10 bytes per stream.
    let mut s = Vec::new();
    frame::write_settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 10)], &mut s);
    feed(&mut c, &s).unwrap();
    assert_eq!(client.read(c.output(usize::MAX)), [Out::SettingsAck]);
    feed(&mut c, &client.request(1, "GET", "/", &[], true)).unwrap();
    events(&mut c);
    c.send_response(1, StatusCode::OK, &HeaderMap::new(), false);
    c.send_data(1, Bytes::from_static(b"0123456789abcdefghijklmno"), true);
    let out = client.read(c.output(usize::MAX));
    assert_eq!(out[1], Out::Data(1, b"0123456789".to_vec(), false));
    assert_eq!(out.len(), 2);
    assert_eq!(c.queued(1), Some(15));
    let mut w = Vec::new();
    frame::write_window_update(1, 10, &mut w);
    feed(&mut c, &w).unwrap();
    assert_eq!(
        client.read(c.output(usize::MAX)),
        [Out::Data(1, b"abcdefghij".to_vec(), false)]
    );
    // A larger initial window applies to open streams too (§6.9.2).
    let mut s = Vec::new();
    frame::write_settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 100)], &mut s);
    feed(&mut c, &s).unwrap();
    assert_eq!(
        client.read(c.output(usize::MAX)),
        [Out::SettingsAck, Out::Data(1, b"klmno".to_vec(), true)]
    );
    assert_eq!(c.active_streams(), 0);
}

#[test]
fn connection_window_is_shared_and_output_respects_the_limit() {
    let (mut c, mut client) = open(Config::default());
    for id in [1, 3] {
        feed(&mut c, &client.request(id, "GET", "/", &[], true)).unwrap();
        c.send_response(id, StatusCode::OK, &HeaderMap::new(), false);
        c.send_data(id, Bytes::from(vec![b'a'; 40_000]), true);
    }
    events(&mut c);
    // 65,535 bytes of connection window in all, in frames of at most 16,384.
    let out = client.read(c.output(usize::MAX));
    assert_eq!(data_len(&out), 65_535);
    assert!(out
        .iter()
        .all(|o| !matches!(o, Out::Data(_, d, _) if d.len() > 16_384)));
    assert!(
        out.iter().any(|o| matches!(o, Out::Data(1, ..)))
            && out.iter().any(|o| matches!(o, Out::Data(3, ..)))
    );
    let mut w = Vec::new();
    frame::write_window_update(0, 20_000, &mut w);
    feed(&mut c, &w).unwrap();
    // A small output limit: one frame per call.
    let first = client.read(c.output(1));
    assert_eq!(first.len(), 1);
    let rest = client.read(c.output(usize::MAX));
    assert_eq!(data_len(first.iter().chain(&rest)), 14_465);
    assert_eq!(c.active_streams(), 0);
}

#[test]
fn malformed_requests_reset_only_their_stream() {
    let (mut c, mut client) = open(Config::default());
    feed(
        &mut c,
        &client.request(1, "GET", "/", &[("Upper", "x")], true),
    )
    .unwrap();
    feed(
        &mut c,
        &client.request(3, "GET", "/", &[("connection", "close")], true),
    )
    .unwrap();
    feed(
        &mut c,
        &client.request(5, "POST", "/", &[("content-length", "3")], true),
    )
    .unwrap();
    assert!(events(&mut c).is_empty());
    assert_eq!(
        client.read(c.output(usize::MAX)),
        [
            Out::Rst(1, Reason::PROTOCOL_ERROR),
            Out::Rst(3, Reason::PROTOCOL_ERROR),
            Out::Rst(5, Reason::PROTOCOL_ERROR)
        ]
    );
    assert_eq!(c.counters().malformed_requests, 3);
    // Body longer than declared.
    feed(
        &mut c,
        &client.request(7, "POST", "/", &[("content-length", "2")], false),
    )
    .unwrap();
    let data = data_frame(7, b"abc", true);
    feed(&mut c, &data).unwrap();
    assert!(matches!(
        &events(&mut c)[..],
        [
            Event::Request { .. },
            Event::Reset {
                stream: 7,
                reason: Reason::PROTOCOL_ERROR
            }
        ]
    ));
    // The connection goes on.
    feed(&mut c, &client.request(9, "GET", "/", &[], true)).unwrap();
    assert!(matches!(
        &events(&mut c)[..],
        [Event::Request { stream: 9, .. }]
    ));
}

#[test]
fn an_oversized_header_list_gets_431_and_hpack_stays_in_step() {
    let (mut c, mut client) = open(Config {
        max_header_list_size: 200,
        ..Config::default()
    });
    let big = "v".repeat(300);
    feed(
        &mut c,
        &client.request(1, "GET", "/", &[("x-big", &big)], true),
    )
    .unwrap();
    assert!(events(&mut c).is_empty());
    assert_eq!(
        client.read(c.output(usize::MAX)),
        [Out::Headers(
            1,
            vec![(":status".into(), "431".into())],
            true
        )]
    );
    // The client's encoder inserted nothing (literals without indexing), but a following
    // request that does index still decodes.
    let mut blk = Vec::new();
    // The client's first block set its table to 0; this one sets it back to 4,096.
    blk.extend_from_slice(&[0x3f, 0xe1, 0x1f, 0x82, 0x87, 0x84, 0x41, 0x01, b'h']);
    let mut v = Vec::new();
    frame::write_headers(3, &blk, true, 16_384, &mut v);
    frame::write_headers(5, &[0x82, 0x87, 0x84, 0xbe], true, 16_384, &mut v);
    feed(&mut c, &v).unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(&ev[..], [Event::Request { stream: 3, .. }, Event::Request { stream: 5, head, .. }] if head.uri == "https://h/")
    );
}

#[test]
fn too_many_streams_are_refused() {
    let (mut c, mut client) = open(Config {
        max_concurrent_streams: 2,
        ..Config::default()
    });
    for id in [1, 3, 5] {
        feed(&mut c, &client.request(id, "GET", "/", &[], true)).unwrap();
    }
    assert_eq!(events(&mut c).len(), 2);
    assert_eq!(
        client.read(c.output(usize::MAX)),
        [Out::Rst(5, Reason::REFUSED_STREAM)]
    );
    c.send_response(1, StatusCode::OK, &HeaderMap::new(), true);
    feed(&mut c, &client.request(7, "GET", "/", &[], true)).unwrap();
    assert_eq!(events(&mut c).len(), 1);
}

#[test]
fn client_resets_cancel_and_rapid_resets_end_the_connection() {
    let (mut c, mut client) = open(Config {
        max_excess_resets: 5,
        ..Config::default()
    });
    let mut id = 1;
    let mut result = Ok(());
    for _ in 0..20 {
        let mut v = client.request(id, "GET", "/", &[], true);
        frame::write_rst_stream(id, Reason::CANCEL, &mut v);
        result = feed(&mut c, &v);
        if result.is_err() {
            break;
        }
        let ev = events(&mut c);
        assert!(
            matches!(
                &ev[..],
                [
                    Event::Request { .. },
                    Event::Reset {
                        reason: Reason::CANCEL,
                        ..
                    }
                ]
            ),
            "{ev:?}"
        );
        id += 2;
    }
    assert_eq!(result.unwrap_err().reason, Reason::ENHANCE_YOUR_CALM);
    assert_eq!(id, 11, "the sixth reset beyond completed requests ends it");
    assert!(c.is_closed());
}

#[test]
fn header_blocks_across_continuation_frames() {
    let (mut c, mut client) = open(Config::default());
    let blk = client.block("GET", "/split", &[("x-long", &"y".repeat(50))]);
    let mut v = Vec::new();
    frame::write_headers(1, &blk, true, 10, &mut v);
    feed(&mut c, &v).unwrap();
    assert!(
        matches!(&events(&mut c)[..], [Event::Request { head, .. }] if head.uri.path() == "/split" && head.headers["x-long"].len() == 50)
    );

    // Anything between HEADERS and its CONTINUATION ends the connection.
    let blk = client.block("GET", "/", &[]);
    let mut v = Vec::new();
    Head {
        len: 2,
        kind: kind::HEADERS,
        flags: 0,
        stream: 3,
    }
    .write(&mut v);
    v.extend_from_slice(&blk[..2]);
    frame::write_ping_ack(b"12345678", &mut v);
    assert_eq!(feed(&mut c, &v).unwrap_err().reason, Reason::PROTOCOL_ERROR);
}

#[test]
fn stream_id_rules() {
    let (mut c, mut client) = open(Config::default());
    assert_eq!(
        feed(&mut c, &client.request(2, "GET", "/", &[], true))
            .unwrap_err()
            .reason,
        Reason::PROTOCOL_ERROR
    );

    let (mut c, mut client) = open(Config::default());
    feed(&mut c, &client.request(5, "GET", "/", &[], true)).unwrap();
    c.send_response(5, StatusCode::OK, &HeaderMap::new(), true);
    // A lower id than one already used: that stream is closed.
    assert_eq!(
        feed(&mut c, &client.request(3, "GET", "/", &[], true))
            .unwrap_err()
            .reason,
        Reason::STREAM_CLOSED
    );

    let (mut c, _) = open(Config::default());
    let v = data_frame(1, b"x", true);
    assert_eq!(
        feed(&mut c, &v).unwrap_err().reason,
        Reason::PROTOCOL_ERROR,
        "DATA on an idle stream"
    );
}

#[test]
fn trailers_both_ways() {
    let (mut c, mut client) = open(Config::default());
    feed(&mut c, &client.request(1, "POST", "/", &[], false)).unwrap();
    let mut blk = Vec::new();
    client.enc.header(
        &HeaderName::from_static("grpc-status"),
        &HeaderValue::from_static("0"),
        &mut blk,
    );
    let mut v = Vec::new();
    frame::write_headers(1, &blk, true, 16_384, &mut v);
    feed(&mut c, &v).unwrap();
    let ev = events(&mut c);
    assert!(
        matches!(&ev[..], [Event::Request { .. }, Event::Trailers { stream: 1, trailers }] if trailers["grpc-status"] == "0")
    );

    c.send_response(1, StatusCode::OK, &HeaderMap::new(), false);
    c.send_data(1, Bytes::from_static(b"abc"), false);
    c.send_trailers(1, headers(&[("grpc-status", "0")]));
    let out = client.read(c.output(usize::MAX));
    assert_eq!(
        out[1..],
        [
            Out::Data(1, b"abc".to_vec(), false),
            Out::Headers(1, vec![("grpc-status".into(), "0".into())], true)
        ]
    );
    assert_eq!(c.active_streams(), 0);
}

#[test]
fn an_early_complete_response_stops_the_upload() {
    let (mut c, mut client) = open(Config::default());
    feed(&mut c, &client.request(1, "POST", "/", &[], false)).unwrap();
    events(&mut c);
    c.send_response(1, StatusCode::PAYLOAD_TOO_LARGE, &HeaderMap::new(), true);
    let out = client.read(c.output(usize::MAX));
    assert_eq!(out[1], Out::Rst(1, Reason::NO_ERROR));
    // Data already on its way is ignored, and its window given back.
    let v = data_frame(1, b"12345", false);
    feed(&mut c, &v).unwrap();
    assert!(events(&mut c).is_empty());
    assert_eq!(c.active_streams(), 0);
}

#[test]
fn graceful_goaway() {
    let (mut c, mut client) = open(Config::default());
    feed(&mut c, &client.request(1, "GET", "/", &[], true)).unwrap();
    events(&mut c);
    c.go_away();
    assert_eq!(
        client.read(c.output(usize::MAX)),
        [Out::GoAway(1, Reason::NO_ERROR)]
    );
    // A stream opened after GOAWAY is not served, but its headers are still decoded.
    feed(&mut c, &client.request(3, "GET", "/", &[], true)).unwrap();
    assert!(events(&mut c).is_empty());
    assert!(!c.is_closed());
    c.send_response(1, StatusCode::OK, &HeaderMap::new(), true);
    assert!(c.is_closed());
}

#[test]
fn garbage_never_panics() {
    // A small LCG: deterministic, no dependency.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) as u8
    };
    for round in 0..300 {
        let mut c = Connection::new(Config::default());
        let mut input = Client::hello();
        let mut client = Client::new();
        input.extend_from_slice(&client.request(1, "GET", "/", &[], false));
        // Plausible frame headers with random payloads, so parsing goes past the header.
        for _ in 0..20 {
            let len = usize::from(next() % 24);
            let kind = next() % 11;
            let flags = next();
            let stream = u32::from(next() % 8);
            let mut f = Vec::new();
            Head {
                len,
                kind,
                flags,
                stream,
            }
            .write(&mut f);
            f.extend((0..len).map(|_| next()));
            input.extend_from_slice(&f);
        }
        let _ = c.recv(&mut input);
        while c.poll_event().is_some() {}
        c.send_response(1, StatusCode::OK, &HeaderMap::new(), false);
        c.send_data(1, Bytes::from_static(b"x"), true);
        let _ = c.output(usize::MAX);
        assert!(round < 300);
    }
}
