//! The server side of an HTTP/2 connection as a state machine (RFC 9113 §5, §6).
//!
//! The shell hands it the bytes it read ([`Connection::recv`]) and takes back what to write
//! ([`Connection::output`]) and what happened ([`Connection::poll_event`]): requests, request
//! body data, trailers and resets. The application answers with [`Connection::send_response`],
//! [`Connection::send_data`] and [`Connection::send_trailers`]; response data is queued per
//! stream and written as the peer's flow-control windows allow.
//!
//! Everything a client can get wrong is answered here as RFC 9113 says: malformed requests
//! and stream-level mistakes reset the stream, the rest end the connection with GOAWAY. Header
//! blocks are always decoded, even for streams being refused, so HPACK state never drifts.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue};
use http::StatusCode;

use crate::frame::{self, flag, kind, setting, Frame, FrameError, Head, Reason, Settings};
use crate::hpack::{Decoded, Decoder, Encoder, Name};
use crate::request::{Malformed, RequestBuilder, RequestHead};

/// What this endpoint offers; defaults as hyper's server, which tandem used before.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub conn_window: u32,
    pub stream_window: u32,
    pub max_frame_size: u32,
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
    /// Resets a client may cause (its own RST_STREAM, or streams tandem had to reset) beyond
    /// the requests it completed, before the connection is closed with ENHANCE_YOUR_CALM: the
    /// "rapid reset" attack opens and cancels streams to make the server work for nothing.
    pub max_excess_resets: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            conn_window: 1024 * 1024,
            stream_window: 1024 * 1024,
            max_frame_size: frame::DEFAULT_MAX_FRAME as u32,
            max_concurrent_streams: 200,
            max_header_list_size: 16 * 1024,
            max_excess_resets: 1024,
        }
    }
}

/// HPACK table size this endpoint allows its peer (the protocol default).
const HEADER_TABLE_SIZE: usize = 4096;
/// Initial flow-control window of every connection and stream before SETTINGS (§6.9.2).
const DEFAULT_WINDOW: i64 = 65_535;
/// Streams this endpoint reset recently, whose late frames are ignored (§5.1 "closed").
const RECENT_RESETS: usize = 32;

#[derive(Debug)]
pub enum Event {
    Request {
        stream: u32,
        head: RequestHead,
        end_stream: bool,
    },
    Data {
        stream: u32,
        data: Bytes,
        end_stream: bool,
    },
    /// The request body ended with trailers.
    Trailers { stream: u32, trailers: HeaderMap },
    /// The stream is gone before the exchange completed: reset by the client, or by tandem
    /// for a rule the client broke on it. Its request must be cancelled.
    Reset { stream: u32, reason: Reason },
}

/// The connection cannot go on; a GOAWAY with `reason` is queued in the output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/2 connection error {reason}: {detail}")]
pub struct ConnError {
    pub reason: Reason,
    pub detail: &'static str,
}

fn fail(reason: Reason, detail: &'static str) -> ConnError {
    ConnError { reason, detail }
}

/// Counters for the shell's metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub requests: u64,
    pub malformed_requests: u64,
    pub stream_errors: u64,
    pub resets_by_client: u64,
}

#[derive(Debug)]
struct Stream {
    /// The client may still send (no END_STREAM yet).
    recv_open: bool,
    /// tandem has not ended its side yet.
    send_open: bool,
    headers_sent: bool,
    send_window: i64,
    recv_window: i64,
    /// Request body bytes the application consumed and the window has not been given back.
    recv_released: u32,
    content_length: Option<u64>,
    received: u64,
    queue: VecDeque<Bytes>,
    queued: usize,
    end_queued: bool,
    trailers: Option<HeaderMap>,
}

/// Stream ids are chosen by the client but bounded in number; a multiplicative hash spreads
/// the odd, increasing ids across the table without SipHash's cost.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Streams = HashMap<u32, Stream, BuildHasherDefault<IdHasher>>;

/// A header block still waiting for CONTINUATION frames.
struct PendingBlock {
    stream: u32,
    block: BytesMut,
    end_stream: bool,
}

enum Phase {
    /// Waiting for the 24-byte client preface.
    Preface,
    /// The preface came; the next frame must be SETTINGS (§3.4).
    FirstSettings,
    Open,
    /// A connection error was queued; nothing more is read.
    Failed,
}

pub struct Connection {
    config: Config,
    phase: Phase,
    out: Vec<u8>,
    events: VecDeque<Event>,
    decoder: Decoder,
    encoder: Encoder,
    block: Vec<u8>,
    streams: Streams,
    /// Streams with queued data, in the order they get to send.
    ready: VecDeque<u32>,
    last_client_stream: u32,
    recent_resets: VecDeque<u32>,
    pending: Option<PendingBlock>,
    conn_send_window: i64,
    conn_recv_window: i64,
    conn_released: u32,
    peer_initial_window: i64,
    peer_max_frame: usize,
    /// Set once GOAWAY went out: streams above it are not served.
    goaway_last: Option<u32>,
    completed: u64,
    resets: u64,
    counters: Counters,
}

impl Connection {
    pub fn new(mut config: Config) -> Connection {
        // A connection's window starts at 65,535 and can only grow (§6.9.2).
        config.conn_window = config.conn_window.max(DEFAULT_WINDOW as u32);
        let mut out = Vec::with_capacity(256);
        frame::write_settings(
            &[
                (setting::ENABLE_PUSH, 0),
                (
                    setting::MAX_CONCURRENT_STREAMS,
                    config.max_concurrent_streams,
                ),
                (setting::INITIAL_WINDOW_SIZE, config.stream_window),
                (setting::MAX_FRAME_SIZE, config.max_frame_size),
                (setting::MAX_HEADER_LIST_SIZE, config.max_header_list_size),
            ],
            &mut out,
        );
        let conn_window = i64::from(config.conn_window);
        if conn_window > DEFAULT_WINDOW {
            frame::write_window_update(0, (conn_window - DEFAULT_WINDOW) as u32, &mut out);
        }
        Connection {
            config,
            phase: Phase::Preface,
            out,
            events: VecDeque::new(),
            decoder: Decoder::new(HEADER_TABLE_SIZE),
            encoder: Encoder::new(),
            block: Vec::with_capacity(256),
            streams: Streams::default(),
            ready: VecDeque::new(),
            last_client_stream: 0,
            recent_resets: VecDeque::new(),
            pending: None,
            conn_send_window: DEFAULT_WINDOW,
            conn_recv_window: conn_window,
            conn_released: 0,
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            goaway_last: None,
            completed: 0,
            resets: 0,
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Streams whose exchange is still going on.
    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    /// Whether GOAWAY went out and every stream it let through has finished.
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
            || (self.goaway_last.is_some() && self.streams.is_empty())
    }

    /// Whether the client's preface and first SETTINGS have arrived.
    pub fn handshaken(&self) -> bool {
        !matches!(self.phase, Phase::Preface | Phase::FirstSettings)
    }

    /// Bytes in the output buffer (written or not; the shell clears it once written).
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes to write, with queued response data added while windows allow and the buffer is
    /// under `limit`. The shell writes them all and clears the buffer.
    pub fn output(&mut self, limit: usize) -> &mut Vec<u8> {
        self.pump(limit);
        &mut self.out
    }

    /// Whether more response data could be written now (queued data with open windows).
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty() || (self.conn_send_window > 0 && !self.ready.is_empty())
    }

    /// Take every complete frame out of `input`. On a connection error the GOAWAY is queued
    /// and the error returned: the shell writes the output and closes.
    pub fn recv(&mut self, input: &mut BytesMut) -> Result<(), ConnError> {
        match self.recv_frames(input) {
            Ok(()) => Ok(()),
            Err(e) => {
                if !matches!(self.phase, Phase::Failed) {
                    frame::write_goaway(self.last_client_stream, e.reason, &mut self.out);
                    self.phase = Phase::Failed;
                }
                Err(e)
            }
        }
    }

    fn recv_frames(&mut self, input: &mut BytesMut) -> Result<(), ConnError> {
        loop {
            match self.phase {
                Phase::Failed => return Ok(()),
                Phase::Preface => {
                    let n = input.len().min(frame::PREFACE.len());
                    if input[..n] != frame::PREFACE[..n] {
                        return Err(fail(Reason::PROTOCOL_ERROR, "invalid connection preface"));
                    }
                    if n < frame::PREFACE.len() {
                        return Ok(());
                    }
                    input.advance(n);
                    self.phase = Phase::FirstSettings;
                }
                Phase::FirstSettings | Phase::Open => {
                    let Some(head) = input.get(..frame::HEAD_LEN) else {
                        return Ok(());
                    };
                    let head = Head::parse(head.try_into().unwrap_or(&[0; frame::HEAD_LEN]));
                    if head.len > self.config.max_frame_size as usize {
                        return Err(fail(
                            Reason::FRAME_SIZE_ERROR,
                            "frame larger than MAX_FRAME_SIZE",
                        ));
                    }
                    if input.len() < frame::HEAD_LEN + head.len {
                        input.reserve(frame::HEAD_LEN + head.len - input.len());
                        return Ok(());
                    }
                    input.advance(frame::HEAD_LEN);
                    let payload = input.split_to(head.len).freeze();
                    if matches!(self.phase, Phase::FirstSettings) {
                        if head.kind != kind::SETTINGS || head.flags & flag::ACK != 0 {
                            return Err(fail(
                                Reason::PROTOCOL_ERROR,
                                "first frame is not SETTINGS",
                            ));
                        }
                        self.phase = Phase::Open;
                    }
                    self.frame(head, payload)?;
                }
            }
        }
    }

    fn frame(&mut self, head: Head, payload: Bytes) -> Result<(), ConnError> {
        if let Some(p) = &self.pending {
            if head.kind != kind::CONTINUATION || head.stream != p.stream {
                return Err(fail(Reason::PROTOCOL_ERROR, "header block interrupted"));
            }
        }
        let f = match frame::parse(head, payload) {
            Ok(f) => f,
            Err(FrameError::Connection(reason, detail)) => return Err(fail(reason, detail)),
            Err(FrameError::Stream(id, reason, _)) => {
                self.stream_error(id, reason);
                return Ok(());
            }
        };
        match f {
            Frame::Data {
                stream,
                data,
                end_stream,
                flow_len,
            } => self.data(stream, data, end_stream, flow_len),
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers,
                priority,
            } => {
                if priority.is_some_and(|p| p.depends_on == stream) {
                    // Decoded for HPACK's sake, then refused (§5.3.1).
                    if !end_headers {
                        return Err(fail(Reason::PROTOCOL_ERROR, "stream depends on itself"));
                    }
                    self.decode(&block, usize::MAX, |_| {})?;
                    self.last_client_stream = self.last_client_stream.max(stream);
                    self.stream_error(stream, Reason::PROTOCOL_ERROR);
                    return Ok(());
                }
                if end_headers {
                    self.header_block(stream, block, end_stream)
                } else {
                    self.pending = Some(PendingBlock {
                        stream,
                        block: BytesMut::from(&block[..]),
                        end_stream,
                    });
                    Ok(())
                }
            }
            Frame::Continuation {
                stream: _,
                block,
                end_headers,
            } => {
                let Some(mut p) = self.pending.take() else {
                    return Err(fail(Reason::PROTOCOL_ERROR, "CONTINUATION without HEADERS"));
                };
                // Bounded, or CONTINUATION frames could grow the block without end.
                if p.block.len() + block.len()
                    > 2 * self.config.max_header_list_size as usize + 16_384
                {
                    return Err(fail(Reason::ENHANCE_YOUR_CALM, "header block too large"));
                }
                p.block.extend_from_slice(&block);
                if end_headers {
                    self.header_block(p.stream, p.block.freeze(), p.end_stream)
                } else {
                    self.pending = Some(p);
                    Ok(())
                }
            }
            Frame::Priority { .. } | Frame::Unknown { .. } | Frame::SettingsAck => Ok(()),
            Frame::RstStream { stream, reason } => {
                if stream > self.last_client_stream {
                    return Err(fail(Reason::PROTOCOL_ERROR, "RST_STREAM on an idle stream"));
                }
                if let Some(s) = self.streams.remove(&stream) {
                    self.counters.resets_by_client += 1;
                    if s.send_open {
                        self.note_reset()?;
                        self.events.push_back(Event::Reset { stream, reason });
                    }
                }
                Ok(())
            }
            Frame::Settings(s) => self.settings(s),
            Frame::PushPromise { .. } => {
                Err(fail(Reason::PROTOCOL_ERROR, "PUSH_PROMISE from a client"))
            }
            Frame::Ping { ack, payload } => {
                if !ack {
                    frame::write_ping_ack(&payload, &mut self.out);
                }
                Ok(())
            }
            Frame::GoAway { .. } => {
                // The client opens no more streams; those in flight finish.
                if self.goaway_last.is_none() {
                    self.go_away();
                }
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => self.window_update(stream, increment),
        }
    }

    fn settings(&mut self, s: Settings) -> Result<(), ConnError> {
        if s.header_table_size.is_some() {
            self.encoder.peer_table_size_changed();
        }
        if let Some(n) = s.max_frame_size {
            self.peer_max_frame = n as usize;
        }
        if let Some(n) = s.initial_window_size {
            let delta = i64::from(n) - self.peer_initial_window;
            self.peer_initial_window = i64::from(n);
            for s in self.streams.values_mut() {
                s.send_window += delta;
                if s.send_window > i64::from(frame::MAX_WINDOW) {
                    return Err(fail(
                        Reason::FLOW_CONTROL_ERROR,
                        "stream window above 2^31-1",
                    ));
                }
            }
            if delta > 0 {
                self.requeue_all();
            }
        }
        frame::write_settings_ack(&mut self.out);
        Ok(())
    }

    fn window_update(&mut self, stream: u32, increment: u32) -> Result<(), ConnError> {
        if stream == 0 {
            self.conn_send_window += i64::from(increment);
            if self.conn_send_window > i64::from(frame::MAX_WINDOW) {
                return Err(fail(
                    Reason::FLOW_CONTROL_ERROR,
                    "connection window above 2^31-1",
                ));
            }
            // Streams parked on the connection's window may go on.
            self.requeue_all();
            return Ok(());
        }
        if stream > self.last_client_stream {
            return Err(fail(
                Reason::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return Ok(());
        };
        s.send_window += i64::from(increment);
        if s.send_window > i64::from(frame::MAX_WINDOW) {
            self.stream_error(stream, Reason::FLOW_CONTROL_ERROR);
            return Ok(());
        }
        if (s.queued > 0 || (s.end_queued && s.send_open)) && !self.ready.contains(&stream) {
            self.ready.push_back(stream);
        }
        Ok(())
    }

    fn data(
        &mut self,
        stream: u32,
        data: Bytes,
        end_stream: bool,
        flow_len: u32,
    ) -> Result<(), ConnError> {
        let flow = i64::from(flow_len);
        self.conn_recv_window -= flow;
        if self.conn_recv_window < 0 {
            return Err(fail(
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        if stream > self.last_client_stream {
            return Err(fail(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
        }
        // Padding, and data for streams gone, is given back at once.
        let mut give_back = flow_len - data.len() as u32;
        let verdict = match self.streams.get_mut(&stream) {
            None => {
                give_back = flow_len;
                if self.recent_resets.contains(&stream) {
                    None
                } else {
                    Some(Reason::STREAM_CLOSED)
                }
            }
            Some(s) if !s.recv_open => {
                give_back = flow_len;
                Some(Reason::STREAM_CLOSED)
            }
            Some(s) => {
                s.recv_window -= flow;
                s.received += data.len() as u64;
                if s.recv_window < 0 {
                    give_back = flow_len;
                    Some(Reason::FLOW_CONTROL_ERROR)
                } else if s
                    .content_length
                    .is_some_and(|n| s.received > n || (end_stream && s.received != n))
                {
                    give_back = flow_len;
                    self.counters.malformed_requests += 1;
                    Some(Reason::PROTOCOL_ERROR)
                } else {
                    s.recv_open = !end_stream;
                    None
                }
            }
        };
        self.release_conn(give_back);
        match verdict {
            Some(reason) => self.stream_error(stream, reason),
            None if self.streams.contains_key(&stream) => {
                self.events.push_back(Event::Data {
                    stream,
                    data,
                    end_stream,
                });
                self.maybe_finish(stream);
            }
            None => {}
        }
        Ok(())
    }

    fn header_block(
        &mut self,
        stream: u32,
        block: Bytes,
        end_stream: bool,
    ) -> Result<(), ConnError> {
        let max_list = self.config.max_header_list_size as usize;
        if stream > self.last_client_stream {
            // Client-initiated streams are odd; `& 1` rather than `is_multiple_of` (Rust 1.87).
            if stream & 1 == 0 {
                return Err(fail(Reason::PROTOCOL_ERROR, "client opened an even stream"));
            }
            self.last_client_stream = stream;
            let mut req = RequestBuilder::new();
            let decoded = self.decode(&block, max_list, |f| req.field(f))?;
            if self.goaway_last.is_some_and(|last| stream > last) {
                // After GOAWAY: not processed; the client may retry it elsewhere.
                return Ok(());
            }
            if self.streams.len() >= self.config.max_concurrent_streams as usize {
                self.reset_stream(stream, Reason::REFUSED_STREAM);
                return self.note_reset();
            }
            if decoded == Decoded::TooLarge {
                self.counters.malformed_requests += 1;
                self.local_answer(
                    stream,
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    end_stream,
                );
                return self.note_reset();
            }
            let head = match req.finish() {
                Ok(h) if end_stream && h.content_length.is_some_and(|n| n != 0) => {
                    Err(Malformed("content-length without DATA"))
                }
                r => r,
            };
            let head = match head {
                Ok(h) => h,
                Err(_) => {
                    self.counters.malformed_requests += 1;
                    self.reset_stream(stream, Reason::PROTOCOL_ERROR);
                    return self.note_reset();
                }
            };
            self.counters.requests += 1;
            self.streams.insert(
                stream,
                Stream {
                    recv_open: !end_stream,
                    send_open: true,
                    headers_sent: false,
                    send_window: self.peer_initial_window,
                    recv_window: i64::from(self.config.stream_window),
                    recv_released: 0,
                    content_length: head.content_length,
                    received: 0,
                    queue: VecDeque::new(),
                    queued: 0,
                    end_queued: false,
                    trailers: None,
                },
            );
            self.events.push_back(Event::Request {
                stream,
                head,
                end_stream,
            });
            return Ok(());
        }
        // An existing stream: trailers, if it is still open for the client.
        let mut trailers = HeaderMap::new();
        let mut bad = false;
        let decoded = self.decode(&block, max_list, |f| match f.name {
            Name::Header(n) => match HeaderValue::from_maybe_shared(f.value) {
                Ok(v) => {
                    trailers.append(n, v);
                }
                Err(_) => bad = true,
            },
            _ => bad = true,
        })?;
        match self.streams.get_mut(&stream) {
            Some(s) if s.recv_open => {
                let length_ok = s.content_length.is_none_or(|n| n == s.received);
                if !end_stream || bad || decoded == Decoded::TooLarge || !length_ok {
                    self.counters.malformed_requests += 1;
                    self.stream_error(stream, Reason::PROTOCOL_ERROR);
                } else {
                    s.recv_open = false;
                    self.events.push_back(Event::Trailers { stream, trailers });
                    self.maybe_finish(stream);
                }
            }
            Some(_) => self.stream_error(stream, Reason::STREAM_CLOSED),
            None if self.recent_resets.contains(&stream) => {}
            None => return Err(fail(Reason::STREAM_CLOSED, "HEADERS on a closed stream")),
        }
        Ok(())
    }

    fn decode(
        &mut self,
        block: &Bytes,
        max_list: usize,
        emit: impl FnMut(crate::hpack::Field),
    ) -> Result<Decoded, ConnError> {
        self.decoder
            .decode(block, max_list, emit)
            .map_err(|_| fail(Reason::COMPRESSION_ERROR, "header block cannot be decoded"))
    }

    /// Count a stream that ended without a completed exchange, and stop a client that makes
    /// tandem reset (or resets) far more streams than it completes.
    fn note_reset(&mut self) -> Result<(), ConnError> {
        self.resets += 1;
        if self.resets > self.completed + u64::from(self.config.max_excess_resets) {
            return Err(fail(Reason::ENHANCE_YOUR_CALM, "too many streams reset"));
        }
        Ok(())
    }

    /// A stream error (§5.4.2): RST_STREAM, and the application hears the stream is gone.
    fn stream_error(&mut self, stream: u32, reason: Reason) {
        self.counters.stream_errors += 1;
        let was_live = self.streams.get(&stream).is_some_and(|s| s.send_open);
        self.reset_stream(stream, reason);
        if was_live {
            self.events.push_back(Event::Reset { stream, reason });
        }
        let _ = self.note_reset();
    }

    fn reset_stream(&mut self, stream: u32, reason: Reason) {
        self.streams.remove(&stream);
        frame::write_rst_stream(stream, reason, &mut self.out);
        if self.recent_resets.len() == RECENT_RESETS {
            self.recent_resets.pop_front();
        }
        self.recent_resets.push_back(stream);
    }

    /// tandem's own answer on a stream that never reaches the application.
    fn local_answer(&mut self, stream: u32, status: StatusCode, end_stream: bool) {
        self.block.clear();
        self.encoder.begin(&mut self.block);
        self.encoder.status(status, &mut self.block);
        frame::write_headers(
            stream,
            &self.block,
            true,
            self.peer_max_frame,
            &mut self.out,
        );
        if !end_stream {
            // The client need not send the rest of its request (§8.1).
            self.reset_stream(stream, Reason::NO_ERROR);
        } else {
            self.recent_resets.push_back(stream);
            if self.recent_resets.len() > RECENT_RESETS {
                self.recent_resets.pop_front();
            }
        }
    }

    // ------------------------------------------------------------ the application's side

    /// The response head. `end_stream` when there is no body.
    pub fn send_response(
        &mut self,
        stream: u32,
        status: StatusCode,
        headers: &HeaderMap,
        end_stream: bool,
    ) {
        if matches!(self.phase, Phase::Failed) {
            return;
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if s.headers_sent || !s.send_open {
            return;
        }
        s.headers_sent = true;
        self.block.clear();
        self.encoder.begin(&mut self.block);
        self.encoder.status(status, &mut self.block);
        for (name, value) in headers {
            self.encoder.header(name, value, &mut self.block);
        }
        frame::write_headers(
            stream,
            &self.block,
            end_stream,
            self.peer_max_frame,
            &mut self.out,
        );
        if end_stream {
            self.end_send(stream);
        }
    }

    /// Queue response data; it goes out as the windows allow. Check [`Connection::queued`]
    /// before queueing more, so a slow client does not make tandem buffer without bound.
    pub fn send_data(&mut self, stream: u32, data: Bytes, end_stream: bool) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if !s.send_open || s.end_queued {
            return;
        }
        s.queued += data.len();
        if !data.is_empty() {
            s.queue.push_back(data);
        }
        s.end_queued = end_stream;
        if !self.ready.contains(&stream) {
            self.ready.push_back(stream);
        }
    }

    /// End the response with trailers, after any queued data.
    pub fn send_trailers(&mut self, stream: u32, trailers: HeaderMap) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if !s.send_open || s.end_queued {
            return;
        }
        s.trailers = Some(trailers);
        s.end_queued = true;
        if !self.ready.contains(&stream) {
            self.ready.push_back(stream);
        }
    }

    /// Response bytes queued and not yet written; `None` once the stream is gone.
    pub fn queued(&self, stream: u32) -> Option<usize> {
        self.streams.get(&stream).map(|s| s.queued)
    }

    /// The application gives up on a stream (its backend failed mid-response, say).
    pub fn reset(&mut self, stream: u32, reason: Reason) {
        if self.streams.contains_key(&stream) {
            self.reset_stream(stream, reason);
            let _ = self.note_reset();
        }
    }

    /// The application consumed `n` bytes of a request body: the window opens again.
    pub fn release(&mut self, stream: u32, n: usize) {
        let n = n as u32;
        self.release_conn(n);
        let half = self.config.stream_window / 2;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.recv_released += n;
            if s.recv_open && s.recv_released >= half {
                frame::write_window_update(stream, s.recv_released, &mut self.out);
                s.recv_window += i64::from(s.recv_released);
                s.recv_released = 0;
            }
        }
    }

    fn release_conn(&mut self, n: u32) {
        self.conn_released += n;
        if self.conn_released >= self.config.conn_window / 2 {
            frame::write_window_update(0, self.conn_released, &mut self.out);
            self.conn_recv_window += i64::from(self.conn_released);
            self.conn_released = 0;
        }
    }

    /// Stop taking new streams (graceful shutdown): GOAWAY names the last stream that will be
    /// served; the connection is closed once those finish.
    pub fn go_away(&mut self) {
        if self.goaway_last.is_none() && !matches!(self.phase, Phase::Failed) {
            self.goaway_last = Some(self.last_client_stream);
            frame::write_goaway(self.last_client_stream, Reason::NO_ERROR, &mut self.out);
        }
    }

    fn requeue_all(&mut self) {
        for (&id, s) in &self.streams {
            if (s.queued > 0 || s.end_queued) && s.send_open && !self.ready.contains(&id) {
                self.ready.push_back(id);
            }
        }
    }

    /// Write queued data, round-robin over the ready streams, one frame per turn.
    fn pump(&mut self, limit: usize) {
        if matches!(self.phase, Phase::Failed) {
            // After GOAWAY for an error nothing more goes out.
            return;
        }
        let mut turns = self.ready.len() * 64 + 64;
        while self.out.len() < limit && turns > 0 {
            turns -= 1;
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            if !s.send_open {
                continue;
            }
            if s.queued > 0 {
                let window = s.send_window.min(self.conn_send_window);
                if window <= 0 {
                    // Parked until a WINDOW_UPDATE or SETTINGS requeues it.
                    continue;
                }
                let Some(front) = s.queue.front_mut() else {
                    continue;
                };
                let n = front.len().min(window as usize).min(self.peer_max_frame);
                let chunk = front.split_to(n);
                if front.is_empty() {
                    s.queue.pop_front();
                }
                s.queued -= n;
                s.send_window -= n as i64;
                self.conn_send_window -= n as i64;
                let last = s.queued == 0 && s.end_queued && s.trailers.is_none();
                frame::write_data_head(id, n, last, &mut self.out);
                self.out.extend_from_slice(&chunk);
                if last {
                    self.end_send(id);
                } else if s.queued > 0 || s.end_queued {
                    self.ready.push_back(id);
                }
            } else if s.end_queued {
                match s.trailers.take() {
                    Some(t) => {
                        self.block.clear();
                        self.encoder.begin(&mut self.block);
                        for (name, value) in &t {
                            self.encoder.header(name, value, &mut self.block);
                        }
                        frame::write_headers(
                            id,
                            &self.block,
                            true,
                            self.peer_max_frame,
                            &mut self.out,
                        );
                    }
                    None => frame::write_data_head(id, 0, true, &mut self.out),
                }
                self.end_send(id);
            }
        }
    }

    /// tandem's side of the stream ended.
    fn end_send(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.send_open = false;
            s.queue.clear();
            s.queued = 0;
            if s.recv_open {
                // Complete answer before the whole request: the client may stop (§8.1).
                self.reset_stream(stream, Reason::NO_ERROR);
            }
            self.completed += 1;
        }
        self.maybe_finish(stream);
    }

    fn maybe_finish(&mut self, stream: u32) {
        if self
            .streams
            .get(&stream)
            .is_some_and(|s| !s.send_open && !s.recv_open)
        {
            self.streams.remove(&stream);
        }
    }
}

#[cfg(test)]
mod tests;
