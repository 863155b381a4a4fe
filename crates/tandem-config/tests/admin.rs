//! `[admin]`: the listener and its bearer token.

use tandem_config::parse_str;

fn errors(src: &str) -> Vec<String> {
    match parse_str(src, "t.toml") {
        Ok(cfg) => panic!("expected errors, parsed fine:\n{src}\n{cfg:#?}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn temp_file(name: &str, contents: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tandem-config-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write");
    p
}

#[test]
fn token_file_is_read_without_its_newline() {
    let f = temp_file("good", b"0123456789abcdef0123\n");
    let src = format!("[admin]\ntoken_file = \"{}\"\n", f.display());
    let cfg = parse_str(&src, "t.toml").expect("valid");
    let token = cfg.admin.token.clone().expect("token");
    assert_eq!(token.0, b"0123456789abcdef0123");
    // Debug never shows the token.
    assert!(!format!("{:?}", cfg.admin).contains("0123456789"));
}

#[test]
fn non_loopback_listen_needs_a_token() {
    assert_eq!(
        errors("[admin]\nlisten = \"0.0.0.0:9900\"\n"),
        ["t.toml:2:10: admin.listen: 0.0.0.0:9900 is not a loopback address, so every request to the admin API needs a token: set [admin] token_file to a file holding one (e.g. `openssl rand -hex 32 > /etc/tandem/admin.token`), or listen on 127.0.0.1"]
    );
    let f = temp_file("remote", b"0123456789abcdef0123");
    let src = format!(
        "[admin]\nlisten = \"198.51.100.1:9900\"\ntoken_file = \"{}\"\n",
        f.display()
    );
    assert!(parse_str(&src, "t.toml").is_ok());
    // Loopback (any of 127/8, ::1) needs none.
    assert!(parse_str("[admin]\nlisten = \"127.77.1.1:9900\"\n", "t.toml").is_ok());
    assert!(parse_str("[admin]\nlisten = \"[::1]:9900\"\n", "t.toml").is_ok());
}

#[test]
fn bad_token_files_are_named() {
    assert_eq!(
        errors("[admin]\ntoken_file = \"/nonexistent/tok\"\n"),
        ["t.toml:2:14: admin.token_file: cannot read /nonexistent/tok: No such file or directory (os error 2)"]
    );
    let short = temp_file("short", b"abc\n");
    let got = errors(&format!("[admin]\ntoken_file = \"{}\"\n", short.display()));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains(&format!(
            "the token in {} is 3 bytes; use at least 16",
            short.display()
        )),
        "{got:?}"
    );
    let spaced = temp_file("spaced", b"0123456789 abcdef0123");
    let got = errors(&format!("[admin]\ntoken_file = \"{}\"\n", spaced.display()));
    assert!(got[0].contains("printable ASCII without spaces"), "{got:?}");
}
