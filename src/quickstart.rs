//! `keygate quickstart`: demo tenants and keys on the configured store, a small demo upstream
//! behind gateway routes (one outside `/api/v1`), and ready-to-run curl lines that show a
//! session being minted, a browser-style write through the gateway, and each class of refusal.
//! Each run revokes the keys of the previous run (their secrets were shown once and are gone)
//! and creates fresh ones. On the demo origin itself (`localhost:3000`) it serves the example
//! page, `examples/browser/`, which calls keygate with the browser client, `clients/js/`.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use serde_json::{Value, json};

use crate::admin::{Admin, PageQuery};
use crate::app::{App, Listeners, StartError};
use crate::config::{Config, RouteConfig, UpstreamUrl};
use crate::error::{ApiError, ErrorCode};
use crate::scope::Scope;
use crate::secret::random_base62;

pub const DEMO_ORIGIN: &str = "http://localhost:3000";
/// Where the example page is served: the demo origin's port, on loopback.
const PAGE_ADDRESS: ([u8; 4], u16) = ([127, 0, 0, 1], 3000);
const KEY_NAME_PREFIX: &str = "quickstart:";
/// The audit log's actor of what the quickstart creates.
const ACTOR: &str = "quickstart";

/// The demo's secrets and settings, for the lines printed once keygate listens.
pub struct Demo {
    browser: String,
    unscoped: String,
    limited: String,
    /// The limited key's id: the printed CLI line revokes it.
    limited_id: String,
    suspended: String,
    generated_admin_token: Option<String>,
    store_url: String,
    /// The example page's address, or why it is not served.
    page: Result<SocketAddr, String>,
}

/// Prepares the demo data (and, without configured routes, a demo upstream behind
/// `/api/v1/orders` and `/v2/status`), and returns the app ready to serve, with its listeners. They are bound
/// before any key is touched: if an address is taken, the previous run's keys stay as they
/// were.
pub async fn prepare(mut config: Config) -> Result<(App, Listeners, Demo), StartError> {
    let generated_admin_token = config.server.admin_token.is_none().then(|| format!("kgadmin_{}", random_base62(32)));
    if let Some(token) = &generated_admin_token {
        config.server.admin_token = Some(token.clone());
    }
    if config.routes.is_empty() {
        config.routes = demo_routes(&start_demo_upstream().await?)?;
    }
    let app = App::build(config).await?;
    let listeners = app.bind().await?;
    // Optional: with the port taken, the rest of the demo still runs.
    let page_listener = tokio::net::TcpListener::bind(SocketAddr::from(PAGE_ADDRESS))
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", SocketAddr::from(PAGE_ADDRESS)));
    let admin = &app.admin;
    ensure_tenant(admin, json!({ "id": "demo", "name": "Demo Inc.", "modules": ["orders"] })).await?;
    ensure_tenant(admin, json!({ "id": "demo-suspended", "name": "Suspended Ltd.", "status": "suspended" })).await?;
    for tenant in ["demo", "demo-suspended"] {
        revoke_previous_keys(admin, tenant).await?;
    }
    let key = |tenant: &'static str, name: &str, scopes: &[&str], limit: u64| {
        let body = json!({
            "name": format!("{KEY_NAME_PREFIX}{name}"),
            "scopes": scopes,
            "allowedOrigins": [DEMO_ORIGIN],
            "rateLimit": { "limit": limit, "windowSeconds": 60 },
        });
        async move {
            let created = admin.create_key(ACTOR, tenant, body.to_string().as_bytes()).await?;
            Ok::<_, ApiError>((created.key.key.id, created.secret.ok_or_else(ApiError::internal)?))
        }
    };
    let (_, browser) = key("demo", "browser", &["sessions:create", "orders:*"], 100).await?;
    let (_, unscoped) = key("demo", "no sessions:create", &["orders:read"], 100).await?;
    let (limited_id, limited) = key("demo", "one request a minute", &["sessions:create"], 1).await?;
    let page_config = json!({
        "baseUrl": format!("http://{}", listeners.public.local_addr()?),
        "browserKey": browser,
        "unscopedKey": unscoped,
    });
    let page = match page_listener {
        Ok(listener) => serve_example_page(listener, &page_config),
        Err(reason) => Err(reason),
    };
    let demo = Demo {
        browser,
        unscoped,
        limited,
        limited_id,
        suspended: key("demo-suspended", "suspended tenant", &["sessions:create"], 100).await?.1,
        generated_admin_token,
        store_url: app.config.store.url.to_string(),
        page,
    };
    Ok((app, listeners, demo))
}

/// Serves `examples/browser/` with the browser client and a `config.js` naming keygate's
/// address and the demo keys.
fn serve_example_page(listener: tokio::net::TcpListener, config: &Value) -> Result<SocketAddr, String> {
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let config = format!("export default {config};\n");
    let file = |content_type: &'static str, body: String| {
        axum::routing::get(move || async move { ([(http::header::CONTENT_TYPE, content_type)], body) })
    };
    let html = "text/html; charset=utf-8";
    let script = "text/javascript; charset=utf-8";
    let app = Router::new()
        .route("/", file(html, include_str!("../examples/browser/index.html").to_owned()))
        .route("/app.js", file(script, include_str!("../examples/browser/app.js").to_owned()))
        .route("/keygate.js", file(script, include_str!("../clients/js/keygate.js").to_owned()))
        .route("/config.js", file(script, config));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

impl Demo {
    /// Prints the demo: each block is a `#` line naming the expected answer, then a shell
    /// command to run as is.
    pub fn print(&self, public: SocketAddr, admin: Option<SocketAddr>) {
        let base = format!("http://{public}");
        let mint = |secret: &str, origin: Option<&str>| {
            let origin = origin.map(|o| format!(" -H 'Origin: {o}'")).unwrap_or_default();
            format!("curl -s -i -X POST {base}/api/v1/sessions -H 'Authorization: Bearer {secret}'{origin}")
        };
        let browser = &self.browser;
        let token = format!(
            "TOKEN=$(curl -s -X POST {base}/api/v1/sessions -H 'Authorization: Bearer {browser}' -H 'Origin: {DEMO_ORIGIN}' \
             | sed -E 's/.*\"sessionToken\":\"([^\"]+)\".*/\\1/')"
        );
        let write = |session: &str| {
            format!(
                "curl -s -i -X POST {base}/api/v1/orders -H 'Authorization: Bearer {browser}' -H 'Origin: {DEMO_ORIGIN}'{session} \
                 -H 'Content-Type: application/json' -d '{{\"item\":\"tea\"}}'"
            )
        };
        println!("\nkeygate quickstart: demo data is in {}", self.store_url);
        if let (Some(token), Some(admin)) = (&self.generated_admin_token, admin) {
            println!("Admin API on http://{admin}, with this token (generated for this run): {token}");
        }
        if let Some(admin) = admin {
            println!("Admin console: http://{admin}/console/ (sign in with the admin token; docs/console.md)");
        }
        match &self.page {
            Ok(_) => println!(
                "Open {DEMO_ORIGIN}/ in a browser: the example page (examples/browser/) mints a session, writes \
                 through the gateway, shows a refusal and the remaining quota."
            ),
            Err(reason) => println!("The example page is not served ({reason}); the blocks below still run."),
        }
        println!("Each block below is a shell command; its first line says what it answers.\n");
        let blocks = [
            ("201: mint a session token from an allowed browser origin", mint(browser, Some(DEMO_ORIGIN))),
            (
                "200: a browser-style write through the gateway (mint a session, then POST with X-Session-Token)",
                format!("{token}\n{}", write(" -H \"X-Session-Token: $TOKEN\"")),
            ),
            ("401 SESSION_REQUIRED: the same write without a session token", write("")),
            ("401 API_KEY_REQUIRED", format!("curl -s -i -X POST {base}/api/v1/sessions -H 'Origin: {DEMO_ORIGIN}'")),
            ("401 API_KEY_INVALID", mint("kg_not-a-real-key", Some(DEMO_ORIGIN))),
            ("403 ORIGIN_NOT_ALLOWED: another site's page", mint(browser, Some("https://evil.example"))),
            ("403 ORIGIN_NOT_ALLOWED: no browser origin", mint(browser, None)),
            ("403 SCOPE_NOT_GRANTED", mint(&self.unscoped, Some(DEMO_ORIGIN))),
            ("403 TENANT_SUSPENDED", mint(&self.suspended, Some(DEMO_ORIGIN))),
            (
                "429 RATE_LIMITED: the key allows one request a minute",
                format!(
                    "{} > /dev/null; {}",
                    mint(&self.limited, Some(DEMO_ORIGIN)),
                    mint(&self.limited, Some(DEMO_ORIGIN))
                ),
            ),
            (
                "200: a route outside /api/v1, called server to server (no browser origin)",
                format!("curl -s -i {base}/v2/status -H 'Authorization: Bearer {browser}'"),
            ),
            (
                "204: CORS preflight",
                format!(
                    "curl -s -i -X OPTIONS {base}/api/v1/orders -H 'Origin: {DEMO_ORIGIN}' -H 'Access-Control-Request-Method: POST'"
                ),
            ),
        ];
        for (expect, command) in blocks {
            println!("# {expect}\n{command}\n");
        }
        if let Some(admin) = admin {
            self.print_revoke(admin, &mint(&self.limited, Some(DEMO_ORIGIN)));
        }
    }

    /// The CLI, through the admin API, as it runs when pasted: this very binary by its path
    /// (no `keygate` on `PATH` needed), the admin URL and a generated token exported first.
    fn print_revoke(&self, admin: SocketAddr, next_request: &str) {
        let exe = std::env::current_exe().map_or_else(|_| "keygate".to_owned(), |path| path.display().to_string());
        let exe = format!("'{}'", exe.replace('\'', r"'\''"));
        let mut export = format!("export KEYGATE_ADMIN_URL=http://{admin}");
        if let Some(token) = &self.generated_admin_token {
            export.push_str(&format!(" KEYGATE_SERVER_ADMIN_TOKEN={token}"));
        }
        println!(
            "Revoke a key with the CLI, through the admin API (the 429 block's key; list them with `key list demo`):"
        );
        println!("{export}\n{exe} key revoke {}", self.limited_id);
        println!("# 401 API_KEY_REVOKED: its next request\n{next_request}\n");
    }
}

fn demo_routes(upstream: &str) -> Result<Vec<RouteConfig>, String> {
    let upstream: UpstreamUrl = upstream.parse()?;
    let route = |prefix: &str, methods: &[&str], scope: &str| -> Result<RouteConfig, String> {
        Ok(RouteConfig {
            prefix: prefix.to_owned(),
            methods: methods.iter().map(|m| m.parse()).collect::<Result<_, _>>()?,
            upstream: Some(upstream.clone()),
            module: Some("orders".to_owned()),
            scope: Some(Scope::parse(scope)?),
            write: None,
            forward_meta: false,
        })
    };
    Ok(vec![
        route("/api/v1/orders", &["GET"], "orders:read")?,
        route("/api/v1/orders", &["POST", "PATCH", "DELETE"], "orders:write")?,
        // Routes may lie on any path.
        route("/v2/status", &["GET"], "orders:read")?,
    ])
}

/// A demo application: answers every request with what it received from keygate.
async fn start_demo_upstream() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = Router::new().fallback(|request: Request| async move {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_else(|_| Bytes::new());
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        axum::Json(json!({
            "data": {
                "message": "hello from the demo upstream",
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "tenant": header("x-keygate-tenant"),
                "key": header("x-keygate-key"),
                "channel": header("x-keygate-channel"),
                "body": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            }
        }))
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{address}"))
}

async fn ensure_tenant(admin: &Admin, body: Value) -> Result<(), ApiError> {
    match admin.create_tenant(ACTOR, body.to_string().as_bytes()).await {
        Ok(_) => Ok(()),
        Err(error) if error.code == ErrorCode::Conflict => Ok(()),
        Err(error) => Err(error),
    }
}

async fn revoke_previous_keys(admin: &Admin, tenant: &str) -> Result<(), ApiError> {
    let mut query = PageQuery { limit: Some("1000".to_owned()), ..PageQuery::default() };
    loop {
        let page = admin.keys(tenant, &query).await?;
        for key in page.data.iter().filter(|k| k.key.name.starts_with(KEY_NAME_PREFIX) && k.key.revoked_at.is_none()) {
            admin.revoke_key(ACTOR, &key.key.id).await?;
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(()),
        }
    }
}
