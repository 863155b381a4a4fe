//! tandem's PROXY protocol parser (v1 and v2) on arbitrary bytes.
//!
//! Input layout: the bytes a trusted proxy's connection starts with, as they are.
//! `proxy_protocol_header` asserts that a complete header lies within the input, that every
//! shorter prefix of it reads as incomplete (never as an error or another header), and that
//! its addresses survive tandem's own encoder and parser; any panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tandem_proxy::fuzzing::proxy_protocol_header(data);
});
