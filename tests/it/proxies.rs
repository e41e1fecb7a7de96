//! Real nginx (`auth_request`) and real Caddy (`forward_auth`) in front of keygate's decision
//! listener and a recording upstream, each with the configuration docs/proxies/ documents:
//! for every outcome of SPEC §2 and §4 a client of the proxy sees what a client of keygate's own
//! gateway sees — status, code, envelope, headers — and the upstream gets keygate's identity
//! headers on an allow and nothing on a refusal.

use crate::common;
use crate::decisions::{Asked, answer, every_outcome, spawn_deciding, through_gateway};

use common::front::FrontProxy;
use common::*;
use serde_json::json;

async fn through(app: &TestApp, proxy: &FrontProxy, asked: &Asked) -> Seen {
    let method = reqwest::Method::from_bytes(asked.method.as_bytes()).unwrap();
    let mut request = app.client.request(method, format!("{}{}", proxy.url, asked.path));
    for (name, value) in &asked.headers {
        request = request.header(*name, value);
    }
    Seen::from(request.send().await.expect("a request through the proxy")).await
}

/// keygate behind `proxies`, trusting their address, as docs/decisions.md sets it up.
async fn behind_proxies() -> (TestApp, upstream::Upstream, FrontProxy, FrontProxy) {
    behind_proxies_with(|_| {}).await
}

async fn behind_proxies_with(
    tweak: impl FnOnce(&mut keygate::config::Config),
) -> (TestApp, upstream::Upstream, FrontProxy, FrontProxy) {
    let (app, upstream) = spawn_deciding(|config| {
        config.proxy.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        tweak(config);
    })
    .await;
    let (nginx, caddy) = (FrontProxy::nginx(&app, &upstream.url), FrontProxy::caddy(&app, &upstream.url));
    (app, upstream, nginx, caddy)
}

#[tokio::test]
async fn through_nginx_and_caddy_every_outcome_is_the_gateway_s() {
    let (app, upstream, nginx, caddy) = behind_proxies().await;
    for asked in every_outcome(&app).await {
        let before = upstream.count();
        let gateway = through_gateway(&app, &asked).await;
        let reached = upstream.count() > before;
        let forwarded = reached.then(|| upstream.last());
        let expected = answer(&gateway);
        for (name, proxy) in [("nginx", &nginx), ("caddy", &caddy)] {
            // nginx itself refuses a request with two Authorization headers (its own 400 page),
            // before anything is asked of keygate.
            if name == "nginx" && asked.name == "two Authorization headers" {
                continue;
            }
            let before = upstream.count();
            let seen = through(&app, proxy, &asked).await;
            assert_eq!(answer(&seen), expected, "{}: {name}: {:?} {:?}", asked.name, seen.body, seen.headers);
            if !seen.status.is_success() {
                assert_eq!(seen.body, gateway.body, "{}: {name}: keygate's envelope", asked.name);
                assert_eq!(seen.header("content-type"), Some("application/json"), "{}: {name}", asked.name);
            }
            match &forwarded {
                None => assert_eq!(upstream.count(), before, "{}: {name} forwarded a refusal", asked.name),
                Some(through_keygate) if seen.status.is_success() && asked.method != "OPTIONS" => {
                    assert_eq!(upstream.count(), before + 1, "{}: {name} forwarded it once", asked.name);
                    let received = upstream.last();
                    assert_eq!(received.target, through_keygate.target, "{}: {name}", asked.name);
                    for header in ["x-keygate-tenant", "x-keygate-key", "x-keygate-scopes", "x-keygate-channel"] {
                        assert_eq!(
                            received.header(header),
                            through_keygate.header(header),
                            "{}: {name}: {header}",
                            asked.name
                        );
                    }
                    for never in ["authorization", "x-session-token"] {
                        assert!(received.header(never).is_none(), "{}: {name} forwarded {never}", asked.name);
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// Over the limit: 429 with `Retry-After` and `X-RateLimit-*`, through nginx too (its
/// auth_request would make it a 500), with keygate's envelope.
#[tokio::test]
async fn a_rate_limited_key_gets_keygate_s_429_through_either_proxy() {
    let (app, upstream, nginx, caddy) = behind_proxies().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &[], 2).await;
    let asked = Asked::new("limited", "GET", "/api/v1/open").key(&secret);
    assert_eq!(through(&app, &nginx, &asked).await.status, 200);
    assert_eq!(through(&app, &caddy, &asked).await.status, 200);
    for proxy in [&nginx, &caddy] {
        let seen = through(&app, proxy, &asked).await;
        seen.assert_error(429, "RATE_LIMITED");
        assert!(seen.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() >= 1), "{:?}", seen.headers);
        assert_eq!((seen.header("x-ratelimit-limit"), seen.header("x-ratelimit-remaining")), (Some("2"), Some("0")));
    }
    assert_eq!(upstream.count(), 2);
}

/// keygate's 503 — its rate limiter unreachable, with `on_backend_error = "deny"` — reaches the
/// client through either proxy as keygate answers it, `Retry-After` and envelope included
/// (nginx's auth_request alone would make it a 500), and nothing reaches the upstream.
#[tokio::test]
async fn keygate_s_503_reaches_the_client_through_either_proxy() {
    let mut redis = common::redis::RedisServer::start();
    let (url, ca_file) = (redis.url.clone(), redis.ca_file.clone());
    let (app, upstream, nginx, caddy) = behind_proxies_with(move |c| {
        c.rate_limit.url = url.parse().unwrap();
        c.rate_limit.ca_file = ca_file;
        c.rate_limit.on_backend_error = keygate::config::OnBackendError::Deny;
    })
    .await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &[], 100).await;
    redis.stop();
    let asked = Asked::new("limiter down", "GET", "/api/v1/open").key(&secret);
    let gateway = through_gateway(&app, &asked).await;
    gateway.assert_error(503, "SERVICE_UNAVAILABLE");
    for (name, proxy) in [("nginx", &nginx), ("caddy", &caddy)] {
        let seen = through(&app, proxy, &asked).await;
        assert_eq!(answer(&seen), answer(&gateway), "{name}: {:?}", seen.headers);
        assert_eq!(seen.body, gateway.body, "{name}: keygate's envelope");
        assert_eq!(seen.header("retry-after"), Some("1"), "{name}");
    }
    assert_eq!(upstream.count(), 0);
}

/// The proxy's own spelling of keygate's headers never reaches the upstream.
#[tokio::test]
async fn a_client_s_own_keygate_headers_never_reach_the_upstream() {
    let (app, upstream, nginx, caddy) = behind_proxies().await;
    let (key, secret) = app.orders_key("acme", &["orders:read"]).await;
    for proxy in [&nginx, &caddy] {
        let asked = Asked::new("spoofed", "GET", "/api/v1/orders")
            .key(&secret)
            .with("x-keygate-tenant", "evil")
            .with("x-keygate-meta", "{\"plan\":\"free-forever\"}");
        assert_eq!(through(&app, proxy, &asked).await.status, 200);
        let received = upstream.last();
        assert_eq!(received.header("x-keygate-tenant"), Some("acme"));
        assert_eq!(received.header("x-keygate-key"), key["id"].as_str());
        assert!(received.header("x-keygate-meta").is_none(), "{:?}", received.headers);
    }
}

/// A page in headless Chromium behind Caddy: it mints through Caddy (to keygate's public
/// listener), then writes with the session, which Caddy asks keygate about; the page reads the
/// answer and its rate-limit headers through CORS, and the upstream hears a browser write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_mints_and_writes_through_caddy() {
    use common::chromium::{open_in_chromium, page_server};
    let (app, upstream, _nginx, caddy) = behind_proxies().await;
    let (origin, html) = page_server().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme", "modules": ["orders"] })).await;
    let body = json!({
        "name": "web", "scopes": ["sessions:create", "orders:write"], "allowedOrigins": [origin],
        "rateLimit": { "limit": 50, "windowSeconds": DAY },
    });
    let (_, secret) = app.create_key("acme", body).await;
    *html.lock().unwrap() = crate::browser::page(&caddy.url, &secret);
    let result = open_in_chromium(format!("{origin}/")).await;
    assert!(result.get("error").is_none(), "{result}");
    assert_eq!(result["mintStatus"], 201, "{result}");
    assert_eq!(result["writeStatus"], 200, "{result}");
    assert_eq!(result["writeBody"], json!({ "ok": true, "bytes": 14 }));
    assert_eq!(result["remaining"], "48", "X-RateLimit-Remaining is readable through CORS");
    assert!(result["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{result}");
    let received = upstream.last();
    assert_eq!(received.header("x-keygate-channel"), Some("browser"));
    assert_eq!(received.body.as_ref(), br#"{"item":"tea"}"#);
    assert!(received.header("x-session-token").is_none() && received.header("authorization").is_none());
}
