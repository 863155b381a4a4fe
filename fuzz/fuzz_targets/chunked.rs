//! tandem's incremental chunked-body scanner, fed whole and in pieces.
//!
//! Input layout: the first byte is the piece size (0 is treated as 1), the rest is the body.
//! `chunked` asserts that bytes consumed, data ranges reported, completion and any error are
//! the same whether the body arrives in one buffer or in pieces of that size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    tandem_proxy::fuzzing::chunked(body, usize::from(split));
});
