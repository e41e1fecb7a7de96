//! `keygate quickstart`: demo tenants and keys on the configured store, and curl lines that
//! show a session being minted and each class of refusal. Each run revokes the keys of the
//! previous run (their secrets were shown once and are gone) and creates fresh ones.

use serde_json::json;

use crate::admin::{Admin, PageQuery};
use crate::app::{App, StartError};
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::secret::random_base62;

pub const DEMO_ORIGIN: &str = "http://localhost:3000";
const KEY_NAME_PREFIX: &str = "quickstart:";

/// Prepares the demo data, prints how to try it, and returns the app ready to serve.
pub async fn prepare(mut config: Config) -> Result<App, StartError> {
    let generated_token = config.server.admin_token.is_none().then(|| format!("kgadmin_{}", random_base62(32)));
    if let Some(token) = &generated_token {
        config.server.admin_token = Some(token.clone());
    }
    let app = App::build(config).await?;
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
        async move { admin.create_key(tenant, body.to_string().as_bytes()).await.map(|created| created.secret) }
    };
    let browser = key("demo", "browser", &["sessions:create", "orders:*"], 100).await?;
    let unscoped = key("demo", "no sessions:create", &["orders:read"], 100).await?;
    let limited = key("demo", "one request a minute", &["sessions:create"], 1).await?;
    let suspended = key("demo-suspended", "suspended tenant", &["sessions:create"], 100).await?;

    let base = format!("http://{}", app.config.server.listen);
    let mint = |secret: &str, origin: Option<&str>| {
        let origin = origin.map(|o| format!(" -H 'Origin: {o}'")).unwrap_or_default();
        format!("curl -i -X POST {base}/api/v1/sessions -H 'Authorization: Bearer {secret}'{origin}")
    };
    println!("\nkeygate quickstart — demo data is in {}\n", app.config.store.url);
    if let Some(token) = &generated_token {
        println!(
            "Admin API on http://{} with the token (generated for this run): {token}\n",
            app.config.server.admin_listen
        );
    }
    println!("Mint a session token from an allowed browser origin (201):\n  {}\n", mint(&browser, Some(DEMO_ORIGIN)));
    println!("401 API_KEY_REQUIRED:\n  curl -i -X POST {base}/api/v1/sessions -H 'Origin: {DEMO_ORIGIN}'\n");
    println!("401 API_KEY_INVALID:\n  {}\n", mint("kg_not-a-real-key", Some(DEMO_ORIGIN)));
    println!("403 ORIGIN_NOT_ALLOWED (other origin):\n  {}\n", mint(&browser, Some("https://evil.example")));
    println!("403 ORIGIN_NOT_ALLOWED (no browser origin):\n  {}\n", mint(&browser, None));
    println!("403 SCOPE_NOT_GRANTED:\n  {}\n", mint(&unscoped, Some(DEMO_ORIGIN)));
    println!("403 TENANT_SUSPENDED:\n  {}\n", mint(&suspended, Some(DEMO_ORIGIN)));
    println!("429 RATE_LIMITED (run it twice within a minute):\n  {}\n", mint(&limited, Some(DEMO_ORIGIN)));
    println!(
        "CORS preflight (204):\n  curl -i -X OPTIONS {base}/api/v1/sessions -H 'Origin: {DEMO_ORIGIN}' -H 'Access-Control-Request-Method: POST'\n"
    );
    println!(
        "Revoke the browser key with `keygate key revoke <id>` (see `keygate key list demo`), then mint again: 401 API_KEY_REVOKED.\n"
    );
    Ok(app)
}

async fn ensure_tenant(admin: &Admin, body: serde_json::Value) -> Result<(), ApiError> {
    match admin.create_tenant(body.to_string().as_bytes()).await {
        Ok(_) => Ok(()),
        Err(error) if error.code == ErrorCode::Conflict => Ok(()),
        Err(error) => Err(error),
    }
}

async fn revoke_previous_keys(admin: &Admin, tenant: &str) -> Result<(), ApiError> {
    let mut query = PageQuery { limit: Some("1000".to_owned()), cursor: None };
    loop {
        let page = admin.keys(tenant, &query).await?;
        for key in page.data.iter().filter(|k| k.name.starts_with(KEY_NAME_PREFIX) && k.revoked_at.is_none()) {
            admin.revoke_key(&key.id).await?;
        }
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return Ok(()),
        }
    }
}
