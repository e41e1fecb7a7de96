//! The OpenAPI document (`openapi/keygate.json`) against the implementation: every documented
//! operation is exercised on a real keygate, and every answer must be a documented status,
//! carry the documented headers, and validate against the documented schema.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

struct Contract {
    doc: Value,
    covered: BTreeSet<(String, String)>,
}

/// `/admin/v1/tenants/{tenantId}` as a JSON pointer segment inside a URI fragment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1").replace('{', "%7B").replace('}', "%7D")
}

impl Contract {
    fn new() -> Self {
        let doc = serde_json::from_str(keygate::openapi::full()).expect("the document is JSON");
        Self { doc, covered: BTreeSet::new() }
    }

    #[track_caller]
    fn check(&mut self, method: &str, template: &str, seen: &Seen) {
        let method = method.to_lowercase();
        let operation = &self.doc["paths"][template][&method];
        assert!(operation.is_object(), "{method} {template} is not documented");
        let status = seen.status.as_u16().to_string();
        let mut response = &operation["responses"][&status];
        // As a URI fragment, for the schema's `$ref` below.
        let mut pointer = format!("#/paths/{}/{method}/responses/{status}", escape(template));
        // A response shared by several operations is a `$ref` into `components/responses`.
        if let Some(shared) = response["$ref"].as_str() {
            pointer = shared.to_owned();
            response = self.doc.pointer(shared.trim_start_matches('#')).unwrap_or(&Value::Null);
        }
        assert!(response.is_object(), "{method} {template} answered {status}, which is not documented: {}", seen.body);
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let documented = header.get("$ref").is_some() || header.get("schema").is_some();
            assert!(documented && seen.header(name).is_some(), "{method} {template} {status}: header {name} missing");
        }
        if response["content"]["application/json"].is_object() {
            let pointer = format!("{pointer}/content/application~1json/schema");
            let mut root = self.doc.clone();
            root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
            root["$ref"] = json!(pointer);
            let validator = jsonschema::validator_for(&root).expect("the schema compiles");
            let errors: Vec<String> =
                validator.iter_errors(&seen.body).map(|e| format!("{e} at {}", e.instance_path())).collect();
            assert!(errors.is_empty(), "{method} {template} {status}: {errors:?}\n{}", seen.body);
        }
        self.covered.insert((method, template.to_owned()));
    }

    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut all = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            // Beside its operations a path item may hold what they share (`parameters`).
            for method in item.as_object().unwrap().keys().filter(|key| *key != "parameters") {
                all.insert((method.clone(), path.clone()));
            }
        }
        all
    }
}

const READ_TOKEN: &str = "support-token-0123456789abc";

async fn unauthenticated(app: &TestApp, method: Method, url: String) -> Seen {
    Seen::from(app.client.request(method, url).send().await.unwrap()).await
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let app = spawn_with(|c| {
        c.server.decision_listen = Some("127.0.0.1:0".parse().unwrap());
        // Decided on only: the decision listener's operations are exercised on it.
        c.routes = vec![keygate::config::RouteConfig {
            prefix: "/api/v1/orders".to_owned(),
            methods: ["GET", "POST", "PUT", "PATCH", "DELETE"].iter().map(|m| m.parse().unwrap()).collect(),
            upstream: None,
            module: None,
            scope: None,
            write: None,
            forward_meta: false,
        }];
        c.sessions.algorithm = keygate::config::SessionAlgorithm::EdDSA;
        c.admin.tokens.push(keygate::config::AdminTokenConfig {
            name: "support".to_owned(),
            token: READ_TOKEN.to_owned(),
            role: keygate::config::AdminRole::Read,
        });
    })
    .await;
    let mut contract = Contract::new();

    // Admin API.
    let created = app
        .admin_request(
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({ "id": "acme", "name": "Acme", "modules": ["orders"] })),
        )
        .await;
    contract.check("POST", "/admin/v1/tenants", &created);
    let seen =
        app.admin_request(Method::POST, "/admin/v1/tenants", Some(json!({ "id": "acme", "name": "Again" }))).await;
    contract.check("POST", "/admin/v1/tenants", &seen);
    let seen = app.admin_request(Method::POST, "/admin/v1/tenants", Some(json!({ "name": "", "colour": 1 }))).await;
    contract.check("POST", "/admin/v1/tenants", &seen);
    let seen = unauthenticated(&app, Method::POST, format!("{}/admin/v1/tenants", app.admin)).await;
    contract.check("POST", "/admin/v1/tenants", &seen);
    contract.check(
        "GET",
        "/admin/v1/tenants",
        &app.admin_request(Method::GET, "/admin/v1/tenants?limit=1", None).await,
    );
    contract.check(
        "GET",
        "/admin/v1/tenants",
        &app.admin_request(Method::GET, "/admin/v1/tenants?limit=0", None).await,
    );
    contract.check(
        "GET",
        "/admin/v1/tenants/{tenantId}",
        &app.admin_request(Method::GET, "/admin/v1/tenants/acme", None).await,
    );
    contract.check(
        "GET",
        "/admin/v1/tenants/{tenantId}",
        &app.admin_request(Method::GET, "/admin/v1/tenants/nope", None).await,
    );
    let seen = app
        .admin_request(
            Method::PATCH,
            "/admin/v1/tenants/acme",
            Some(json!({ "rateLimit": { "limit": 5, "windowSeconds": DAY } })),
        )
        .await;
    contract.check("PATCH", "/admin/v1/tenants/{tenantId}", &seen);
    let body = json!({ "name": "web", "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN], "expiresAt": rfc3339(now_seconds() + 3600) });
    let key = app.admin_request(Method::POST, "/admin/v1/tenants/acme/keys", Some(body)).await;
    contract.check("POST", "/admin/v1/tenants/{tenantId}/keys", &key);
    let seen = app
        .admin_request(
            Method::POST,
            "/admin/v1/tenants/acme/keys",
            Some(json!({ "name": "x", "scopes": ["bad scope"] })),
        )
        .await;
    contract.check("POST", "/admin/v1/tenants/{tenantId}/keys", &seen);
    // A key migrated in: no secret in the answer; the same hash again is a conflict.
    let import = json!({ "name": "migrated", "scopes": [], "importHash": "ab".repeat(32), "prefix": "legacy" });
    for status in [201, 409] {
        let seen = app.admin_request(Method::POST, "/admin/v1/tenants/acme/keys", Some(import.clone())).await;
        assert_eq!(seen.status, status, "{}", seen.body);
        contract.check("POST", "/admin/v1/tenants/{tenantId}/keys", &seen);
    }
    let (id, secret) = (key.body["data"]["id"].as_str().unwrap(), key.body["data"]["secret"].as_str().unwrap());
    contract.check(
        "GET",
        "/admin/v1/tenants/{tenantId}/keys",
        &app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await,
    );
    let prefix = &key.body["data"]["prefix"].as_str().unwrap()[..6];
    for query in [format!("prefix={prefix}"), "prefix=abc".to_owned()] {
        let seen = app.admin_request(Method::GET, &format!("/admin/v1/keys?{query}"), None).await;
        contract.check("GET", "/admin/v1/keys", &seen);
    }
    contract.check(
        "GET",
        "/admin/v1/tenants/{tenantId}/keys",
        &app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys?state=usable", None).await,
    );
    contract.check(
        "GET",
        "/admin/v1/keys/{keyId}",
        &app.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await,
    );
    let seen =
        app.admin_request(Method::PATCH, &format!("/admin/v1/keys/{id}"), Some(json!({ "name": "web 2" }))).await;
    contract.check("PATCH", "/admin/v1/keys/{keyId}", &seen);

    // Public API, the documented endpoint first.
    let mint = |secret: Option<&str>, origin: Option<&str>| {
        let mut request = app.client.post(format!("{}/api/v1/sessions", app.public));
        if let Some(secret) = secret {
            request = request.bearer_auth(secret);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move { Seen::from(request.send().await.unwrap()).await }
    };
    for seen in [
        mint(Some(secret), Some(ORIGIN)).await,
        mint(None, Some(ORIGIN)).await,
        mint(Some(secret), None).await,
        mint(Some(secret), Some(ORIGIN)).await,
        mint(Some(secret), Some(ORIGIN)).await,
        mint(Some(secret), Some(ORIGIN)).await,
        mint(Some(secret), Some(ORIGIN)).await,
    ] {
        contract.check("POST", "/api/v1/sessions", &seen);
    }
    assert!(contract.doc["paths"]["/api/v1/sessions"]["post"]["responses"]["429"].is_object());
    for path in ["/healthz", "/readyz", "/.well-known/jwks.json", "/openapi.json"] {
        contract.check("GET", path, &app.get(path).await);
    }
    let served: Value = app.get("/openapi.json").await.body;
    assert!(served["paths"].as_object().unwrap().keys().all(|p| !p.starts_with("/admin")));

    // The decision listener: each method allowed and refused, a preflight, and its document.
    let (_, deciding) = app.browser_key("deciding-too", &["orders:read"]).await;
    let decision = app.decision.clone().unwrap();
    let decide = |method: &str, path: &str, headers: Vec<(&str, String)>| {
        let mut request =
            app.client.request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{decision}{path}"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { Seen::from(request.send().await.unwrap()).await }
    };
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let original = if method == "OPTIONS" { "GET" } else { method };
        let asked = |key: bool| {
            let mut headers =
                vec![("x-forwarded-method", original.to_owned()), ("x-forwarded-uri", "/api/v1/orders".to_owned())];
            if key {
                headers.push(("authorization", format!("Bearer {deciding}")));
            }
            headers
        };
        for key in [true, false] {
            let seen = decide(method, "/forward-auth", asked(key)).await;
            assert_eq!(seen.status, if key { 200 } else { 401 }, "{method}: {:?}", seen.body);
            contract.check(method, "/forward-auth", &seen);
        }
        let preflight = vec![("origin", ORIGIN.to_owned()), ("access-control-request-method", "POST".to_owned())];
        let ext = |key: bool| if key { vec![("authorization", format!("Bearer {deciding}"))] } else { Vec::new() };
        let (headers, statuses) = if method == "OPTIONS" {
            (vec![preflight.clone(), Vec::new()], [204, 405])
        } else {
            (vec![ext(true), ext(false)], [200, 401])
        };
        for (headers, status) in headers.into_iter().zip(statuses) {
            let seen = decide(method, "/ext-authz/api/v1/orders", headers).await;
            assert_eq!(seen.status, status, "{method} ext-authz: {:?}", seen.body);
            contract.check(method, "/ext-authz/{path}", &seen);
        }
    }
    let verify = |body: Value| app.client.post(format!("{decision}/v1/verify")).json(&body).send();
    for body in [json!({ "key": deciding }), json!({ "key": "kg_x", "path": "/api/v1/orders" }), json!({ "key": 1 })] {
        contract.check("POST", "/v1/verify", &Seen::from(verify(body).await.unwrap()).await);
    }
    let served = decide("GET", "/openapi.json", Vec::new()).await;
    let decision_part: Value = serde_json::from_str(keygate::openapi::decision()).unwrap();
    assert_eq!(served.body, decision_part, "the decision listener serves its part of the document");

    // Admin-only routes, and the admin listener's copy of the document.
    let roll_path = format!("/admin/v1/keys/{id}/roll");
    let roll = |body: Value| app.admin_request(Method::POST, &roll_path, Some(body));
    let seen = roll(json!({ "overlapSeconds": 3600 })).await;
    assert_eq!(seen.status, 200);
    contract.check("POST", "/admin/v1/keys/{keyId}/roll", &seen);
    contract.check("POST", "/admin/v1/keys/{keyId}/roll", &roll(json!({ "overlapSeconds": -1 })).await);
    let seen = app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await;
    contract.check("POST", "/admin/v1/keys/{keyId}/revoke", &seen);
    let seen = roll(json!({ "overlapSeconds": 60 })).await;
    assert_eq!(seen.status, 409);
    contract.check("POST", "/admin/v1/keys/{keyId}/roll", &seen);
    // Deletes: a tenant with keys is refused; its keys, then it, go.
    // Usage: a range, a refusal, and no such key.
    let month = "from=2026-12-01T00:00:00Z&to=2027-01-01T00:00:00Z";
    for (path, status) in [
        (format!("/admin/v1/keys/{id}/usage?{month}"), 200),
        (format!("/admin/v1/keys/{id}/usage?from=2026-12-01T00:30:00Z&to=2026-12-02T00:00:00Z"), 400),
        (format!("/admin/v1/keys/key_unknown/usage?{month}"), 404),
    ] {
        let seen = app.admin_request(Method::GET, &path, None).await;
        assert_eq!(seen.status.as_u16(), status, "{path}: {}", seen.body);
        contract.check("GET", "/admin/v1/keys/{keyId}/usage", &seen);
    }
    for (query, status) in [("&groupBy=key&granularity=day", 200), ("&groupBy=owner", 400)] {
        let seen = app.admin_request(Method::GET, &format!("/admin/v1/tenants/acme/usage?{month}{query}"), None).await;
        assert_eq!(seen.status.as_u16(), status, "{query}: {}", seen.body);
        contract.check("GET", "/admin/v1/tenants/{tenantId}/usage", &seen);
    }
    contract.check(
        "DELETE",
        "/admin/v1/tenants/{tenantId}",
        &app.admin_request(Method::DELETE, "/admin/v1/tenants/acme", None).await,
    );
    let keys = app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    for key in keys.body["data"].as_array().unwrap() {
        let path = format!("/admin/v1/keys/{}", key["id"].as_str().unwrap());
        let seen = app.admin_request(Method::DELETE, &path, None).await;
        assert_eq!(seen.status, 204);
        contract.check("DELETE", "/admin/v1/keys/{keyId}", &seen);
    }
    contract.check(
        "DELETE",
        "/admin/v1/keys/{keyId}",
        &app.admin_request(Method::DELETE, &format!("/admin/v1/keys/{id}"), None).await,
    );
    let seen = app.admin_request(Method::DELETE, "/admin/v1/tenants/acme", None).await;
    assert_eq!(seen.status, 204);
    contract.check("DELETE", "/admin/v1/tenants/{tenantId}", &seen);
    // Signing keys: list, rotate, retire, and the refusals.
    let listed = app.admin_request(Method::GET, "/admin/v1/signing-keys", None).await;
    contract.check("GET", "/admin/v1/signing-keys", &listed);
    let first = listed.body["data"][0]["kid"].as_str().unwrap().to_owned();
    let rotated = app.admin_request(Method::POST, "/admin/v1/signing-keys", None).await;
    contract.check("POST", "/admin/v1/signing-keys", &rotated);
    assert_eq!(rotated.status, 201);
    let newest = rotated.body["data"]["kid"].as_str().unwrap().to_owned();
    for (kid, status) in [(newest.as_str(), 409), (first.as_str(), 200), ("sk_unknown", 404)] {
        let seen = app.admin_request(Method::POST, &format!("/admin/v1/signing-keys/{kid}/retire"), None).await;
        assert_eq!(seen.status.as_u16(), status, "{kid}: {:?}", seen.body);
        contract.check("POST", "/admin/v1/signing-keys/{kid}/retire", &seen);
    }
    // The audit log: a page with each kind of object before and after, a filter, a refusal.
    for query in ["", "?limit=3", "?action=key.roll", "?tenantId=acme&since=2026-01-01T00:00:00Z", "?cursor=aud_1"] {
        let seen = app.admin_request(Method::GET, &format!("/admin/v1/audit{query}"), None).await;
        assert_eq!(seen.status, 200, "{query}: {}", seen.body);
        contract.check("GET", "/admin/v1/audit", &seen);
    }
    let seen = app.admin_request(Method::GET, "/admin/v1/audit?action=key.explode", None).await;
    assert_eq!(seen.status, 400);
    contract.check("GET", "/admin/v1/audit", &seen);
    // A read token's write: the 403 each write documents.
    let read = app.client.post(format!("{}/admin/v1/tenants", app.admin)).bearer_auth(READ_TOKEN).json(&json!({}));
    let seen = Seen::from(read.send().await.unwrap()).await;
    seen.assert_error(403, "ADMIN_READ_ONLY");
    contract.check("POST", "/admin/v1/tenants", &seen);
    let metrics = app.client.get(format!("{}/metrics", app.admin)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    contract.covered.insert(("get".to_owned(), "/metrics".to_owned()));
    contract.check("GET", "/metrics", &unauthenticated(&app, Method::GET, format!("{}/metrics", app.admin)).await);
    let served = app.admin_request(Method::GET, "/openapi.json", None).await;
    let admin_part: Value = serde_json::from_str(keygate::openapi::admin()).unwrap();
    assert_eq!(served.body, admin_part, "the admin listener serves the admin part of the committed document");
    let paths = served.body["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| p.starts_with("/admin/") || p == "/metrics" || p == "/openapi.json"), "{paths:?}");
    contract.check(
        "GET",
        "/openapi.json",
        &unauthenticated(&app, Method::GET, format!("{}/openapi.json", app.admin)).await,
    );

    assert_eq!(contract.covered, contract.operations(), "every documented operation was exercised");
}

#[test]
fn the_documented_error_codes_are_exactly_the_implementations() {
    let doc: Value = serde_json::from_str(keygate::openapi::full()).unwrap();
    let documented: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
        ["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let implemented: BTreeSet<&str> = keygate::error::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(documented, implemented);
}

/// Whether `value` is valid under the document's schema at `pointer` (`#/components/…`).
fn documented_valid(doc: &Value, pointer: &str, value: &Value) -> bool {
    let mut root = doc.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["$ref"] = json!(pointer);
    jsonschema::validator_for(&root).expect("the schema compiles").is_valid(value)
}

// Regression tests for what schemathesis found (scripts/schemathesis/run): for each value, the
// document and the admin API agree on whether it is acceptable.
#[tokio::test]
async fn the_document_states_the_constraints_the_admin_api_applies() {
    let app = spawn_app().await;
    let doc: Value = serde_json::from_str(keygate::openapi::full()).unwrap();
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, _) = app.create_key("acme", json!({ "name": "k", "scopes": [] })).await;
    let key_path = format!("/admin/v1/keys/{}", key["id"].as_str().unwrap());
    let patch = |body: Value| app.admin_request(Method::PATCH, &key_path, Some(body));

    let names = ["Acme", " a ", "\u{00b6}x", "\u{feff}", "a\u{0088}b", "\u{2003}", "\t", "x\u{7f}", "", "Été 😀"];
    for name in names {
        let documented = documented_valid(&doc, "#/components/schemas/ApiKeyPatch", &json!({ "name": name }));
        let status = patch(json!({ "name": name })).await.status.as_u16();
        assert_eq!(status == 200, documented, "name {name:?}: documented valid {documented}, answered {status}");
    }
    let scopes = ["orders:write", "orders:*", "*", "a.b-c_d", "7K::*", ":x", "x:", "a:*:b", "**", "a b", "x:*:*"];
    for scope in scopes {
        let documented = documented_valid(&doc, "#/components/schemas/Scope", &json!(scope));
        let status = patch(json!({ "scopes": [scope] })).await.status.as_u16();
        assert_eq!(status == 200, documented, "scope {scope:?}: documented valid {documented}, answered {status}");
    }
    // Allowlist entries: the pattern states their shape (a plain schemathesis run, without the
    // project's hooks, generates from it). Beyond it: a wildcard directly under a public suffix,
    // refused by keygate, allowed by the pattern; and a wildcard under one label that is no
    // public suffix, taken by keygate, refused by the pattern.
    let origins = [
        "https://app.example.com",
        "HTTP://App.Example.COM:8080",
        "https://app.example.com/",
        "http://localhost:3000",
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://[::ffff:10.0.0.1]",
        "https://*.example.com",
        "https://*.localhost:3000",
        "https://a-1.b2.c0m",
        "https://x.y-1",
        "https://app.example.com:00443",
        "",
        "00",
        "https://",
        "ftp://a.example",
        "https://a.example/x",
        "https://a.example?q",
        "https://u@a.example",
        "https://a..example",
        "https://-a.example",
        "https://a.example.",
        "https://1.2.3.999",
        "https://01.2.3.4",
        "https://a.example:0",
        "https://a.example:65536",
        "https://a.example:",
        "https://*.*.example.com",
        "https://a.*.example.com",
        "https://*.1.2.3.4",
        "https://[::1",
        "https://[1:2:3:4:5:6:7:8:9]",
        "*",
        "null",
        "https://Zürich.example",
    ];
    // A host of 253 characters, and of 254.
    let host = |last: usize| format!("{0}.{0}.{0}.{1}.example", "a".repeat(63), "b".repeat(last));
    let (long, too_long) = (format!("https://{}", host(53)), format!("https://{}:8080", host(54)));
    let samples = origins.iter().map(|o| o.to_string()).chain([long, too_long]);
    for origin in samples {
        let documented = documented_valid(&doc, "#/components/schemas/OriginPattern", &json!(origin));
        let status = patch(json!({ "allowedOrigins": [origin] })).await.status.as_u16();
        assert_eq!(status == 200, documented, "origin {origin:?}: documented valid {documented}, answered {status}");
    }
    for (origin, taken) in [("https://*.co.uk", false), ("https://*.com", false), ("https://*.internal", true)] {
        let status = patch(json!({ "allowedOrigins": [origin] })).await.status.as_u16();
        assert_eq!(status == 200, taken, "{origin}");
        let documented = documented_valid(&doc, "#/components/schemas/OriginPattern", &json!(origin));
        assert_eq!(documented, origin.ends_with(".co.uk"), "{origin}: the pattern's known difference");
    }
    // JSON Schema's integer includes 356.0.
    let seen = patch(json!({ "rateLimit": { "limit": 10.0, "windowSeconds": 356.0 } })).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body["data"]["rateLimit"], json!({ "limit": 10, "windowSeconds": 356 }));
    patch(json!({ "rateLimit": { "limit": 10.5, "windowSeconds": 60 } })).await.assert_error(400, "VALIDATION_ERROR");
    // Duplicates are dropped, as the document says, not refused.
    let tenant = app.patch_tenant("acme", json!({ "modules": ["orders", "orders"] })).await;
    assert_eq!(tenant["modules"], json!(["orders"]));
    // An absent body changes nothing.
    let unchanged = app.client.patch(format!("{}{key_path}", app.admin)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(unchanged.status(), 200);
    // Any cursor of the documented form pages from somewhere; anything else is refused, a
    // tenant's id included: cursors are opaque.
    for (cursor, status) in [
        ("c1_7a7a7a", 200),
        ("c1_ff00", 200),
        ("zzz", 400),
        ("acme", 400),
        ("c1_", 400),
        ("c1_7", 400),
        ("c1_+f", 400),
        ("a%20b", 400),
    ] {
        let seen = app.admin_request(Method::GET, &format!("/admin/v1/tenants?cursor={cursor}"), None).await;
        assert_eq!(seen.status.as_u16(), status, "cursor {cursor}: {}", seen.body);
    }
}
