//! Request head then response head through tandem's HTTP/1.1 head rewriting.
//!
//! Input layout: 2 bytes (big-endian u16) choose where the rest is split; `rest[..split]` is the
//! request, `rest[split..]` the response, with `split = u16 % (rest.len() + 1)`.
//! `request_then_response` asserts that a rewritten request head parses again and that the
//! reported head lengths stay inside their buffers; any panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (prefix, rest) = data.split_at(2);
    let split = usize::from(u16::from_be_bytes([prefix[0], prefix[1]])) % (rest.len() + 1);
    let (request, response) = rest.split_at(split);
    tandem_proxy::fuzzing::request_then_response(request, response);
});
