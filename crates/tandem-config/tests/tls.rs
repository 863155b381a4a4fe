//! `tls`: certificates are loaded and checked when the file is read; a key that does not
//! belong to its certificate, an unreadable file or a file without a certificate is an error
//! naming the file, and never shows key material.

use tandem_config::*;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

fn service(tls: &str) -> String {
    format!("[[pool]]\nname = \"p\"\nbackends = [{{ address = \"127.0.0.1:8001\" }}]\n[[service]]\nname = \"s\"\nlisten = \"127.0.0.1:8443\"\npool = \"p\"\ntls = {tls}\n")
}

#[test]
fn certificates_are_checked_at_load() {
    let dir = std::env::temp_dir().join(format!("tandem-cfg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["a.example.test".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["b.example.test".into()]).unwrap();
    let a_cert = write(&dir, "a.pem", &a.cert.pem());
    let a_key = write(&dir, "a.key", &a.key_pair.serialize_pem());
    let b_key = write(&dir, "b.key", &b.key_pair.serialize_pem());
    let empty = write(&dir, "empty.pem", "nothing here\n");

    let ok = parse_str(
        &service(&format!("{{ certificates = [{{ cert = \"{a_cert}\", key = \"{a_key}\" }}], min_version = \"1.3\", hsts = \"max-age=60\" }}")),
        "t.toml",
    )
    .expect("valid");
    let tls = ok.services[0].tls.as_ref().expect("tls");
    assert_eq!(tls.min_version, TlsVersion::V1_3);
    assert_eq!(tls.hsts.as_deref(), Some("max-age=60"));
    assert_eq!(tls.certificates[0].cert.display().to_string(), a_cert);

    let err = |tls: String| -> String {
        match parse_str(&service(&tls), "t.toml") {
            Ok(_) => panic!("expected an error for {tls}"),
            Err(e) => e.to_string(),
        }
    };
    let e = err(format!(
        "{{ certificates = [{{ cert = \"{a_cert}\", key = \"{b_key}\" }}] }}"
    ));
    assert!(
        e.contains(&format!(
            "private key file {b_key} does not belong to the certificate in {a_cert}"
        )),
        "{e}"
    );
    assert!(e.contains("service[s].tls.certificates[0].cert"), "{e}");
    assert!(
        !e.contains("PRIVATE KEY") && !e.contains("MII"),
        "no key material: {e}"
    );
    let e = err(format!(
        "{{ certificates = [{{ cert = \"{empty}\", key = \"{a_key}\" }}] }}"
    ));
    assert!(
        e.contains(&format!("certificate file {empty} has no PEM certificate")),
        "{e}"
    );
    let e = err(format!(
        "{{ certificates = [{{ cert = \"{a_cert}\", key = \"/nonexistent/k\" }}] }}"
    ));
    assert!(e.contains("private key file /nonexistent/k"), "{e}");
    let e = err("{ certificates = [] }".to_string());
    assert!(e.contains("no certificates"), "{e}");
    let e = err(format!("{{ certificates = [{{ cert = \"{a_cert}\", key = \"{a_key}\" }}], min_version = \"1.1\" }}"));
    assert!(e.contains("min_version is \"1.2\" or \"1.3\""), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
