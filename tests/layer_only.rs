//! The tower layer as an axum team gets it with `default-features = false`: no gateway, no
//! CLI, no PostgreSQL, Redis or TLS. `examples/orders_app` served by axum on port 0 over HTTP,
//! its keys made in process through `App::admin`: what a caller sees, and what reaches the
//! handlers. It runs in the full build too; CI runs it under both feature sets
//! (`scripts/test`). The whole end-to-end suite is `tests/it/`, which needs the full set.

#[path = "../examples/orders_app/app.rs"]
mod orders_app;

use keygate::{App, Config};
use serde_json::{Value, json};

const ORIGIN: &str = "https://app.example";

struct Served {
    base: String,
    keygate: App,
    orders: orders_app::Orders,
    client: reqwest::Client,
    _store: tempfile::TempDir,
}

async fn serve() -> Served {
    let store = tempfile::tempdir().unwrap();
    let text = format!("[store]\nurl = \"sqlite://{}\"\n", store.path().join("keygate.db").display());
    let keygate = App::build(Config::parse(&text, std::iter::empty()).unwrap()).await.unwrap();
    let orders = orders_app::Orders::default();
    let router = orders_app::router(&keygate, orders.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Served { base, keygate, orders, client: reqwest::Client::new(), _store: store }
}

impl Served {
    /// A tenant with the `orders` module, and a key of it with `scopes`: its id and secret.
    async fn key(&self, tenant: &str, scopes: &[&str]) -> (String, String) {
        let admin = &self.keygate.admin;
        let body = json!({ "id": tenant, "name": tenant, "modules": ["orders"] });
        admin.create_tenant("test", body.to_string().as_bytes()).await.unwrap();
        let body = json!({ "name": "web", "scopes": scopes, "allowedOrigins": [ORIGIN] });
        let created = admin.create_key("test", tenant, body.to_string().as_bytes()).await.unwrap();
        let created = serde_json::to_value(&created).unwrap();
        (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

#[tokio::test]
async fn the_layer_alone_guards_an_axum_app_end_to_end() {
    let app = serve().await;
    let orders = format!("{}/api/v1/orders", app.base);

    // No key: refused by the pipeline, in the envelope; the handler never ran.
    let (status, _, body) = app.send(app.client.post(&orders).json(&json!({ "item": "tea" }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("API_KEY_REQUIRED")), "{body}");
    assert_eq!(app.orders.count(), 0);

    // A key with the scope: the handler sees its principal, and the budget is in the headers.
    let (key_id, secret) = app.key("acme", &["orders:read", "orders:write", "sessions:create"]).await;
    let (status, headers, body) =
        app.send(app.client.post(&orders).bearer_auth(&secret).json(&json!({ "item": "tea" }))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["createdBy"], json!(key_id));
    assert_eq!(headers["x-ratelimit-limit"], "600");
    assert_eq!(headers["x-ratelimit-remaining"], "599");
    assert_eq!(app.orders.count(), 1);

    // Without the scope: 403, nothing written.
    let (_, reader) = app.key("globex", &["orders:read"]).await;
    let (status, _, body) =
        app.send(app.client.post(&orders).bearer_auth(&reader).json(&json!({ "item": "jam" }))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("SCOPE_NOT_GRANTED")), "{body}");
    assert_eq!(app.orders.count(), 1);

    // A browser write needs a session, minted by keygate's own route and bound to the origin.
    let write = |session: Option<&str>, origin: &str| {
        let request = app.client.post(&orders).bearer_auth(&secret).header("origin", origin);
        let request = match session {
            Some(token) => request.header("x-session-token", token),
            None => request,
        };
        request.json(&json!({ "item": "jam" }))
    };
    let (status, _, body) = app.send(write(None, ORIGIN)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("SESSION_REQUIRED")), "{body}");
    let sessions = format!("{}/api/v1/sessions", app.base);
    let (status, headers, body) =
        app.send(app.client.post(&sessions).bearer_auth(&secret).header("origin", ORIGIN)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let token = body["data"]["sessionToken"].as_str().unwrap().to_owned();
    let (status, headers, body) = app.send(write(Some(&token), ORIGIN)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["channel"], "browser");
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    assert_eq!(app.orders.count(), 2);
    // The same token from an origin the key does not allow is refused.
    let (status, _, body) = app.send(write(Some(&token), "https://evil.example")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("ORIGIN_NOT_ALLOWED")), "{body}");
    assert_eq!(app.orders.count(), 2);

    // A CORS preflight on the application's route is answered from the allowlists.
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, &orders)
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST");
    let (status, headers, _) = app.send(preflight).await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);

    // keygate's public paths are there; its gateway is not.
    let (status, _, body) = app.send(app.client.get(format!("{}/healthz", app.base))).await;
    assert_eq!((status, body["data"]["status"].as_str()), (200, Some("ok")), "{body}");
    let (status, _, body) = app.send(app.client.get(format!("{}/.well-known/jwks.json", app.base))).await;
    assert_eq!(status, 200);
    assert!(body["keys"].is_array(), "{body}");
    let (status, _, body) = app.send(app.client.get(format!("{}/elsewhere", app.base))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("NOT_FOUND")), "{body}");
}
