//! The OpenAPI 3.1 document of the public and admin APIs, kept in the repo
//! (`openapi/keygate.json`) and checked against the implementation by `tests/it/openapi.rs`.
//! Each listener serves the part it answers (SPEC §9): a client generated from it, or a
//! fuzzer run against it, meets only operations that exist there.

use std::sync::OnceLock;

const DOCUMENT: &str = include_str!("../openapi/keygate.json");

/// The whole document.
pub fn full() -> &'static str {
    DOCUMENT
}

/// Whether `path` is served by the admin listener (`/openapi.json` is served by both).
fn on_admin(path: &str) -> bool {
    path.starts_with("/admin/") || path == "/metrics" || path == "/openapi.json"
}

/// Whether `path` is only the decision listener's (SPEC §14).
fn on_decision(path: &str) -> bool {
    path == "/forward-auth" || path.starts_with("/ext-authz/") || path == "/v1/verify"
}

/// The public listener's document: without the admin and decision paths and security schemes.
pub fn public() -> &'static str {
    static PUBLIC: OnceLock<String> = OnceLock::new();
    PUBLIC.get_or_init(|| {
        part(
            |path| (!on_admin(path) || path == "/openapi.json") && !on_decision(path),
            |doc| {
                untokened_document(doc);
                drop_schemes(doc, &["adminToken", "decisionToken"]);
            },
        )
    })
}

/// The decision listener's document: its endpoints, this document and `/healthz`.
pub fn decision() -> &'static str {
    static DECISION: OnceLock<String> = OnceLock::new();
    DECISION.get_or_init(|| {
        part(
            |path| on_decision(path) || path == "/openapi.json" || path == "/healthz",
            |doc| {
                untokened_document(doc);
                drop_schemes(doc, &["adminToken"]);
            },
        )
    })
}

/// The admin listener's document: the admin API, `/metrics` and this document, all behind the
/// admin token.
pub fn admin() -> &'static str {
    static ADMIN: OnceLock<String> = OnceLock::new();
    ADMIN.get_or_init(|| {
        part(on_admin, |doc| {
            if let Some(operation) = doc.pointer_mut("/paths/~1openapi.json/get") {
                operation["security"] = serde_json::json!([{ "adminToken": [] }]);
            }
        })
    })
}

/// The document with only the paths `keep` keeps, then `edit`ed for its listener.
fn part(keep: impl Fn(&str) -> bool, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(DOCUMENT) else { return String::new() };
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.retain(|path, _| keep(path));
    }
    edit(&mut doc);
    doc.to_string()
}

/// `/openapi.json` on a listener that never asks for a token there: no 401.
fn untokened_document(doc: &mut serde_json::Value) {
    if let Some(responses) = doc.pointer_mut("/paths/~1openapi.json/get/responses").and_then(|r| r.as_object_mut()) {
        responses.remove("401");
    }
}

fn drop_schemes(doc: &mut serde_json::Value, names: &[&str]) {
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object_mut() {
        for name in names {
            schemes.remove(*name);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_listener_s_part_has_only_its_own_paths() {
        let admin: serde_json::Value = serde_json::from_str(super::admin()).unwrap();
        let paths: Vec<&String> = admin["paths"].as_object().unwrap().keys().collect();
        assert!(paths.iter().all(|p| super::on_admin(p)), "{paths:?}");
        assert!(paths.iter().any(|p| *p == "/admin/v1/tenants") && paths.iter().any(|p| *p == "/metrics"));
        let full: serde_json::Value = serde_json::from_str(super::full()).unwrap();
        assert_eq!(full["openapi"], "3.1.0");
        let public: serde_json::Value = serde_json::from_str(super::public()).unwrap();
        let paths: Vec<&String> = public["paths"].as_object().unwrap().keys().collect();
        assert!(paths.iter().all(|p| !p.starts_with("/admin") && *p != "/metrics"), "{paths:?}");
        assert!(paths.iter().any(|p| *p == "/api/v1/sessions"));
    }
}
