//! `docs/openapi.yaml` describes exactly the routes the router serves, with their methods.
//!
//! A line scan rather than a YAML parser: the document keeps paths at two spaces and methods at
//! four under `paths:`, which this test also enforces, so it cannot pass by misreading.

use std::collections::{BTreeMap, BTreeSet};

use tandem_admin::router::ROUTES;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/openapi.yaml is readable");
    assert!(text.starts_with("openapi: 3."), "not an OpenAPI 3 document");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut in_paths = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            current = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            let p = p.strip_suffix(':').expect("a path line ends with ':'");
            let p = format!("/{p}");
            assert!(
                out.insert(p.clone(), BTreeSet::new()).is_none(),
                "{p} twice"
            );
            current = Some(p);
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            if METHODS.contains(&m) {
                let p = current.as_ref().expect("a method under a path");
                out.get_mut(p).expect("path").insert(m.to_uppercase());
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_with_its_methods() {
    let doc = documented();
    for (methods, template) in ROUTES {
        let Some(have) = doc.get(*template) else {
            panic!("{template} is served but not in docs/openapi.yaml");
        };
        let want: BTreeSet<String> = methods.iter().map(|m| m.to_string()).collect();
        assert_eq!(have, &want, "methods of {template} in docs/openapi.yaml");
    }
}

#[test]
fn nothing_documented_is_missing_from_the_router() {
    let served: BTreeSet<&str> = ROUTES.iter().map(|(_, t)| *t).collect();
    for path in documented().keys() {
        assert!(
            served.contains(path.as_str()),
            "docs/openapi.yaml documents {path}, which router::ROUTES does not list"
        );
    }
}
