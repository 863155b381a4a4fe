//! Every input that once crashed a fuzz target (`fuzz/regressions/`) is replayed here, so the
//! ordinary test suite keeps those bugs fixed without needing cargo-fuzz or a nightly compiler.

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), data)
        })
        .collect();
    out.sort();
    out
}

/// Same input layout as `fuzz/fuzz_targets/h1_heads.rs`.
#[test]
fn h1_heads_regressions_stay_fixed() {
    let all = inputs("h1_heads");
    assert!(!all.is_empty(), "no regression inputs found");
    for (name, data) in all {
        if data.len() < 2 {
            continue;
        }
        let (prefix, rest) = data.split_at(2);
        let split = usize::from(u16::from_be_bytes([prefix[0], prefix[1]])) % (rest.len() + 1);
        let (request, response) = rest.split_at(split);
        let outcome = std::panic::catch_unwind(|| {
            tandem_proxy::fuzzing::request_then_response(request, response)
        });
        assert!(outcome.is_ok(), "{name} crashes again");
    }
}
