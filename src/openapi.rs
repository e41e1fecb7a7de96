//! The OpenAPI 3.1 document of the public and admin APIs, kept in the repo
//! (`openapi/keygate.json`) and checked against the implementation by `tests/openapi.rs`.
//! The admin listener serves all of it; the public listener serves the public part.

use std::sync::OnceLock;

const DOCUMENT: &str = include_str!("../openapi/keygate.json");

/// The whole document.
pub fn full() -> &'static str {
    DOCUMENT
}

/// The document without the admin listener's paths and security scheme.
pub fn public() -> &'static str {
    static PUBLIC: OnceLock<String> = OnceLock::new();
    PUBLIC.get_or_init(|| {
        let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(DOCUMENT) else { return String::new() };
        if let Some(paths) = doc["paths"].as_object_mut() {
            paths.retain(|path, _| !path.starts_with("/admin/") && path != "/metrics");
        }
        if let Some(schemes) = doc["components"]["securitySchemes"].as_object_mut() {
            schemes.remove("adminToken");
        }
        doc.to_string()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_parses_and_the_public_part_has_no_admin_paths() {
        let full: serde_json::Value = serde_json::from_str(super::full()).unwrap();
        assert_eq!(full["openapi"], "3.1.0");
        let public: serde_json::Value = serde_json::from_str(super::public()).unwrap();
        let paths: Vec<&String> = public["paths"].as_object().unwrap().keys().collect();
        assert!(paths.iter().all(|p| !p.starts_with("/admin") && *p != "/metrics"), "{paths:?}");
        assert!(paths.iter().any(|p| *p == "/api/v1/sessions"));
    }
}
