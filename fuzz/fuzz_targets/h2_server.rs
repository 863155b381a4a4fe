//! tandem's HTTP/2 server state machine (`tandem-h2`), fed what a client might send.
//!
//! Input layout: the first byte is the piece size (0 is treated as 1), the rest is what the
//! client sends after its preface and SETTINGS. `server` runs the connection over it whole and
//! in pieces, answering every request, and asserts that the connection error (if any) is the
//! same both ways, that the output is identical when the connection stays up, and that all
//! the server writes is valid HTTP/2 with header blocks that decode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    tandem_h2::fuzzing::server(rest, usize::from(split));
});
