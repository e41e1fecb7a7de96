//! WebSockets through the gateway, with a real WebSocket upstream and client
//! (tokio-tungstenite): judged as reads by the whole pipeline before the upstream sees anything,
//! relayed both ways once allowed, counted once, closed when idle; and from a page in Chromium,
//! with the key as a `Sec-WebSocket-Protocol` entry.

use crate::common;

use std::time::Duration;

use common::chromium::{open_in_chromium, page_server};
use common::ws_upstream::WsUpstream;
use common::*;
use futures_util::{SinkExt, StreamExt};
use keygate::config::RouteConfig;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Handshake headers, as name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// `GET /ws` to the WebSocket upstream, for keys holding `orders:read`.
fn ws_route(upstream: &str) -> Vec<RouteConfig> {
    vec![RouteConfig {
        prefix: "/ws".to_owned(),
        methods: vec!["GET".parse().unwrap()],
        upstream: Some(upstream.parse().unwrap()),
        module: None,
        scope: Some(keygate::scope::Scope::parse("orders:read").unwrap()),
        write: None,
        forward_meta: false,
    }]
}

async fn gateway(tweak: impl FnOnce(&mut keygate::config::Config)) -> (TestApp, WsUpstream) {
    let upstream = WsUpstream::start().await;
    let url = upstream.url.clone();
    let app = spawn_with(move |c| {
        c.routes = ws_route(&url);
        tweak(c);
    })
    .await;
    (app, upstream)
}

/// Opens `ws://…/ws` with `headers`: the socket and the handshake's answer, or the refusal's
/// status and error code.
async fn open(app: &TestApp, headers: &[(&str, &str)]) -> Result<(Socket, http::HeaderMap), (u16, String)> {
    let mut request = format!("ws://{}/ws", app.public.trim_start_matches("http://")).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, response)) => Ok((socket, response.headers().clone())),
        Err(WsError::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap_or_default();
            Err((response.status().as_u16(), body["error"]["code"].as_str().unwrap_or_default().to_owned()))
        }
        Err(error) => panic!("the handshake failed below HTTP: {error}"),
    }
}

async fn echo(socket: &mut Socket, text: &str) -> String {
    socket.send(Message::text(text)).await.unwrap();
    match socket.next().await {
        Some(Ok(Message::Text(echoed))) => echoed.to_string(),
        other => panic!("no echo: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_handshake_is_upgraded_end_to_end_and_relayed_both_ways() {
    let (app, upstream) = gateway(|_| {}).await;
    let (key, secret) = app.orders_key("acme", &["orders:read"]).await;
    let bearer = format!("Bearer {secret}");
    let (mut socket, answer) = open(&app, &[("authorization", &bearer)]).await.expect("upgraded");
    assert!(answer.contains_key("x-ratelimit-remaining"), "the handshake's answer carries the quota");
    assert_eq!(echo(&mut socket, "hello").await, "hello");
    socket.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    for i in 0..50 {
        assert_eq!(echo(&mut socket, &format!("message {i}")).await, format!("message {i}"));
    }
    let seen = &upstream.handshakes()[0];
    assert_eq!(seen.get("x-keygate-tenant").unwrap(), "acme");
    assert_eq!(seen.get("x-keygate-key").unwrap(), key["id"].as_str().unwrap());
    assert_eq!(seen.get("x-keygate-channel").unwrap(), "server");
    assert!(seen.get("authorization").is_none(), "the key is not forwarded");
    socket.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_gets_the_envelope_and_never_reaches_the_upstream() {
    let (app, upstream) = gateway(|_| {}).await;
    let (_, reader) = app.orders_key("acme", &["orders:read"]).await;
    let (_, other_scope) = app.create_key("acme", json!({ "name": "w", "scopes": ["orders:write"] })).await;
    let entry = format!("keygate.key.{reader}");
    let cases: [(Headers, u16, &str); 5] = [
        (&[], 401, "API_KEY_REQUIRED"),
        (&[("authorization", "Bearer kg_not-a-real-key")], 401, "API_KEY_INVALID"),
        (&[("origin", "https://evil.example"), ("sec-websocket-protocol", &entry)], 403, "ORIGIN_NOT_ALLOWED"),
        (&[("authorization", &format!("Bearer {other_scope}"))], 403, "SCOPE_NOT_GRANTED"),
        (
            &[("origin", ORIGIN), ("sec-websocket-protocol", &format!("{entry}, keygate.session.not.a-token"))],
            401,
            "SESSION_INVALID",
        ),
    ];
    for (headers, status, code) in cases {
        let refused = open(&app, headers).await.map(|_| ()).unwrap_err();
        assert_eq!(refused, (status, code.to_owned()), "{headers:?}");
    }
    assert!(upstream.handshakes().is_empty(), "no refused handshake reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_cannot_open_a_new_one() {
    let (app, upstream) = gateway(|_| {}).await;
    let (key, secret) = app.orders_key("acme", &["orders:read"]).await;
    let bearer = format!("Bearer {secret}");
    let (mut socket, _) = open(&app, &[("authorization", &bearer)]).await.expect("upgraded");
    assert_eq!(echo(&mut socket, "before").await, "before");
    let id = key["id"].as_str().unwrap();
    let revoked = app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(
        open(&app, &[("authorization", &bearer)]).await.map(|_| ()).unwrap_err(),
        (401, "API_KEY_REVOKED".to_owned())
    );
    assert_eq!(upstream.handshakes().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_s_credentials_as_protocol_entries_are_used_and_never_forwarded() {
    let (app, upstream) = gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read", "sessions:create"]).await;
    let entry = format!("keygate.key.{secret}");

    // keygate's entry and the marker offered: the answer selects the marker, as a browser
    // requires, never the credential.
    let offered = format!("keygate, {entry}");
    let (mut socket, answer) = open(&app, &[("origin", ORIGIN), ("sec-websocket-protocol", &offered)]).await.unwrap();
    assert_eq!(answer.get("sec-websocket-protocol").unwrap(), "keygate");
    assert_eq!(answer.get("access-control-allow-origin").unwrap(), ORIGIN);
    assert_eq!(echo(&mut socket, "from a page").await, "from a page");

    // With the application's own protocol and a session token: the upstream selects its own.
    let token = app.session(&secret, ORIGIN).await;
    let offered = format!("chat, keygate, {entry}, keygate.session.{token}");
    let (mut socket, answer) = open(&app, &[("origin", ORIGIN), ("sec-websocket-protocol", &offered)]).await.unwrap();
    assert_eq!(answer.get("sec-websocket-protocol").unwrap(), "chat");
    assert_eq!(echo(&mut socket, "chat").await, "chat");

    let handshakes = upstream.handshakes();
    assert_eq!(handshakes.len(), 2);
    assert!(handshakes[0].get("sec-websocket-protocol").is_none());
    assert_eq!(handshakes[1].get("sec-websocket-protocol").unwrap(), "chat");
    for seen in &handshakes {
        let all = format!("{seen:?}");
        assert!(!all.contains("keygate.") && !all.contains(&secret) && !all.contains(&token), "{all}");
        let protocols = seen.get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(!protocols.contains("keygate"), "the marker is not forwarded: {protocols}");
        assert_eq!(seen.get("x-keygate-channel").unwrap(), "browser");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101_never_echoes_a_credential() {
    let (app, _upstream) = gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read", "sessions:create"]).await;
    let token = app.session(&secret, ORIGIN).await;
    // Only credentials offered, the upstream selecting none: the 101 selects none either (before,
    // it echoed `keygate.key.<secret>`).
    for offered in [format!("keygate.key.{secret}"), format!("keygate.key.{secret}, keygate.session.{token}")] {
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nOrigin: {ORIGIN}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {offered}\r\n\r\n"
        );
        let mut stream = tokio::net::TcpStream::connect(common::raw::address(&app.public)).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("sec-websocket-protocol"), "{head}");
        assert!(!head.contains(&secret) && !head.contains(&token) && !head.contains("keygate."), "{head}");
    }
}

/// Reads a response head, up to its blank line.
async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(stream, &mut byte)).await;
        match read {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_counts_once_however_many_messages_it_carries() {
    let (app, _upstream) = gateway(|_| {}).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &["orders:read"], 2).await;
    let bearer = format!("Bearer {secret}");
    let (mut first, answer) = open(&app, &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(answer.get("x-ratelimit-remaining").unwrap(), "1");
    for i in 0..20 {
        echo(&mut first, &i.to_string()).await;
    }
    let (_second, answer) = open(&app, &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(answer.get("x-ratelimit-remaining").unwrap(), "0");
    assert_eq!(
        open(&app, &[("authorization", &bearer)]).await.map(|_| ()).unwrap_err(),
        (429, "RATE_LIMITED".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_timeout() {
    let (app, _upstream) = gateway(|c| c.proxy.websocket_idle_timeout_ms = 300).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let bearer = format!("Bearer {secret}");
    let (mut socket, _) = open(&app, &[("authorization", &bearer)]).await.unwrap();
    // Traffic keeps it open past the timeout.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(echo(&mut socket, "still here").await, "still here");
    }
    // Silence closes it.
    let closed = tokio::time::timeout(Duration::from_secs(3), socket.next()).await.expect("closed within the timeout");
    assert!(!matches!(closed, Some(Ok(Message::Text(_)))), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_page_opens_one_with_its_key_as_a_protocol_entry_and_another_origin_cannot() {
    let (app, upstream) = gateway(|_| {}).await;
    let (allowed, allowed_html) = page_server().await;
    let (other, other_html) = page_server().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) =
        app.create_key("acme", json!({ "name": "web", "scopes": ["orders:read"], "allowedOrigins": [allowed] })).await;
    let ws_url = format!("ws://{}/ws", app.public.trim_start_matches("http://"));
    let page = format!(
        r#"<!doctype html><script>
const socket = new WebSocket("{ws_url}", ["keygate", "keygate.key.{secret}"]);
socket.onopen = () => socket.send("ping from the page");
socket.onmessage = (event) => {{ window.result = {{ echoed: event.data, protocol: socket.protocol }}; socket.close(); }};
socket.onclose = (event) => {{ if (window.result === undefined) window.result = {{ closed: event.code }}; }};
</script>"#
    );
    *allowed_html.lock().unwrap() = page.clone();
    *other_html.lock().unwrap() = page;

    let result = open_in_chromium(format!("{allowed}/")).await;
    assert_eq!(result["echoed"], "ping from the page", "{result}");
    assert_eq!(result["protocol"], "keygate", "the marker, never the credential");
    let result = open_in_chromium(format!("{other}/")).await;
    assert_eq!(result["closed"], 1006, "refused: {result}");

    let handshakes = upstream.handshakes();
    assert_eq!(handshakes.len(), 1, "only the allowed page's handshake reached the upstream");
    assert!(!format!("{:?}", handshakes[0]).contains("keygate."), "{:?}", handshakes[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_an_upgraded_connection_the_grace_then_closes_it() {
    let (app, _upstream) = gateway(|c| c.server.shutdown_grace_ms = 1000).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let bearer = format!("Bearer {secret}");
    let (mut socket, _) = open(&app, &[("authorization", &bearer)]).await.unwrap();
    let stopping = tokio::spawn(app.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(echo(&mut socket, "during the grace").await, "during the grace", "still relayed");
    let closed = tokio::time::timeout(Duration::from_secs(3), socket.next()).await.expect("closed after the grace");
    assert!(!matches!(closed, Some(Ok(Message::Text(_)))), "{closed:?}");
    stopping.await.unwrap();
}

/// Waits up to `within` for keygate's close frame: its code and reason, and how long it took.
async fn closed_by_keygate(socket: &mut Socket, within: Duration) -> (u16, String, Duration) {
    let started = std::time::Instant::now();
    loop {
        match tokio::time::timeout_at((started + within).into(), socket.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string(), started.elapsed());
            }
            Ok(Some(Ok(Message::Close(None)))) => panic!("closed without a code"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => panic!("ended without a close frame: {error}"),
            Ok(None) => panic!("ended without a close frame"),
            Err(_) => panic!("still open after {within:?}"),
        }
    }
}

/// Nothing sent once keygate closed reaches the upstream.
async fn nothing_relayed_after_the_close(socket: &mut Socket, upstream: &WsUpstream, marker: &str) {
    let _ = socket.send(Message::text(marker)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!upstream.messages().iter().any(|m| m == marker), "{marker} was relayed after the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_one_is_closed_within_a_second_of_each_change_that_would_refuse_its_handshake() {
    let (app, upstream) = gateway(|_| {}).await;
    // A second instance on the same store: a change made there reaches this one by the feed.
    let routes = app.config.routes.clone();
    let elsewhere = spawn_in(std::sync::Arc::clone(&app.test_store), move |c| c.routes = routes).await;
    type Change = Box<dyn Fn(String, String) -> futures_util::future::BoxFuture<'static, ()>>;
    let admin = |app: &TestApp| (app.admin.clone(), app.client.clone());
    let send = |(base, client): (String, reqwest::Client), method: Method, path: String, body: Value| async move {
        let answer = client.request(method, format!("{base}{path}")).bearer_auth(ADMIN_TOKEN).json(&body).send().await;
        assert_eq!(answer.unwrap().status(), 200, "{path}");
    };
    let cases: Vec<(&str, bool, Change)> = vec![
        ("API_KEY_REVOKED", false, {
            let at = admin(&elsewhere);
            Box::new(move |_, key| {
                Box::pin(send(at.clone(), Method::POST, format!("/admin/v1/keys/{key}/revoke"), json!({})))
            })
        }),
        ("TENANT_SUSPENDED", false, {
            let at = admin(&app);
            Box::new(move |tenant, _| {
                Box::pin(send(
                    at.clone(),
                    Method::PATCH,
                    format!("/admin/v1/tenants/{tenant}"),
                    json!({ "status": "suspended" }),
                ))
            })
        }),
        ("SUBSCRIPTION_CANCELLED", false, {
            let at = admin(&elsewhere);
            Box::new(move |tenant, _| {
                let body = json!({ "subscription": "cancelled" });
                Box::pin(send(at.clone(), Method::PATCH, format!("/admin/v1/tenants/{tenant}"), body))
            })
        }),
        ("ORIGIN_NOT_ALLOWED", true, {
            let at = admin(&app);
            Box::new(move |_, key| {
                let body = json!({ "allowedOrigins": ["https://second.example"] });
                Box::pin(send(at.clone(), Method::PATCH, format!("/admin/v1/keys/{key}"), body))
            })
        }),
        ("SCOPE_NOT_GRANTED", false, {
            let at = admin(&app);
            Box::new(move |_, key| {
                Box::pin(send(
                    at.clone(),
                    Method::PATCH,
                    format!("/admin/v1/keys/{key}"),
                    json!({ "scopes": ["orders:write"] }),
                ))
            })
        }),
        ("API_KEY_EXPIRED", false, {
            let at = admin(&elsewhere);
            Box::new(move |_, key| {
                let body = json!({ "expiresAt": rfc3339(now_seconds() - 60) });
                Box::pin(send(at.clone(), Method::PATCH, format!("/admin/v1/keys/{key}"), body))
            })
        }),
    ];
    for (index, (code, browser, change)) in cases.into_iter().enumerate() {
        let tenant = format!("t{index}");
        let (key, secret) = app.orders_key(&tenant, &["orders:read"]).await;
        let (bearer, entry) = (format!("Bearer {secret}"), format!("keygate, keygate.key.{secret}"));
        let headers: Headers = if browser {
            &[("origin", ORIGIN), ("sec-websocket-protocol", &entry)]
        } else {
            &[("authorization", &bearer)]
        };
        let (mut socket, _) = open(&app, headers).await.expect("upgraded");
        assert_eq!(echo(&mut socket, "before").await, "before");
        change(tenant.clone(), key["id"].as_str().unwrap().to_owned()).await;
        let (close, reason, took) = closed_by_keygate(&mut socket, Duration::from_secs(3)).await;
        assert_eq!((close, reason.as_str()), (1008, code), "{tenant}");
        assert!(took < Duration::from_secs(1), "{code}: closed {took:?} after the change");
        nothing_relayed_after_the_close(&mut socket, &upstream, &format!("after {code}")).await;
        // And the handshake is refused as the close said.
        assert_eq!(open(&app, headers).await.map(|_| ()).unwrap_err().1, code);
    }
    elsewhere.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_one_is_closed_when_its_session_or_its_key_expires_by_the_clock() {
    let (app, upstream) = gateway(|c| c.sessions.ttl_seconds = 2).await;
    let (key, secret) = app.orders_key("acme", &["orders:read", "sessions:create"]).await;
    let token = app.session(&secret, ORIGIN).await;
    let expires = jwt_part(&token, 1)["exp"].as_i64().unwrap();
    let entries = format!("keygate, keygate.key.{secret}, keygate.session.{token}");
    let (mut socket, _) = open(&app, &[("origin", ORIGIN), ("sec-websocket-protocol", &entries)]).await.unwrap();
    assert_eq!(echo(&mut socket, "before").await, "before");
    let (close, reason, _) = closed_by_keygate(&mut socket, Duration::from_secs(4)).await;
    assert_eq!((close, reason.as_str()), (1008, "SESSION_EXPIRED"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(now >= expires as f64 && now < expires as f64 + 1.0, "closed at {now}, the session ended at {expires}");
    nothing_relayed_after_the_close(&mut socket, &upstream, "after the session").await;

    // The key's own expiry, set while the connection is open.
    let bearer = format!("Bearer {secret}");
    let (mut socket, _) = open(&app, &[("authorization", &bearer)]).await.unwrap();
    let ends =
        (std::time::SystemTime::now() + Duration::from_millis(1500)).duration_since(std::time::UNIX_EPOCH).unwrap();
    let ends_at = chrono::DateTime::from_timestamp_millis(ends.as_millis() as i64).unwrap().to_rfc3339();
    app.patch_key(key["id"].as_str().unwrap(), json!({ "expiresAt": ends_at })).await;
    assert_eq!(echo(&mut socket, "still allowed").await, "still allowed");
    let (close, reason, took) = closed_by_keygate(&mut socket, Duration::from_secs(4)).await;
    assert_eq!((close, reason.as_str()), (1008, "API_KEY_EXPIRED"));
    assert!(took > Duration::from_millis(1000) && took < Duration::from_millis(2500), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_opened_with_an_earlier_secret_is_closed_when_the_roll_s_overlap_ends() {
    let (app, upstream) = gateway(|_| {}).await;
    let (key, old) = app.orders_key("acme", &["orders:read"]).await;
    let (mut with_old, _) = open(&app, &[("authorization", &format!("Bearer {old}"))]).await.unwrap();
    assert_eq!(echo(&mut with_old, "before").await, "before");

    let id = key["id"].as_str().unwrap();
    let rolled = app
        .admin_request(Method::POST, &format!("/admin/v1/keys/{id}/roll"), Some(json!({ "overlapSeconds": 1 })))
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.body);
    let new = rolled.body["data"]["secret"].as_str().unwrap().to_owned();
    let (mut with_new, _) = open(&app, &[("authorization", &format!("Bearer {new}"))]).await.unwrap();
    assert_eq!(echo(&mut with_old, "during the overlap").await, "during the overlap");

    let ends = rolled.body["data"]["rolledSecrets"][0]["expiresAt"].as_str().unwrap();
    let ends = keygate::time::parse_rfc3339(ends).unwrap();
    let (close, reason, _) = closed_by_keygate(&mut with_old, Duration::from_secs(3)).await;
    let now = keygate::time::now_millis();
    assert_eq!((close, reason.as_str()), (1008, "API_KEY_EXPIRED"));
    assert!(now >= ends && now < ends + 1000, "closed at {now}, the overlap ended at {ends}");
    nothing_relayed_after_the_close(&mut with_old, &upstream, "after the overlap").await;
    // The one opened with the new secret goes on.
    assert_eq!(echo(&mut with_new, "after").await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_closes_those_its_routes_no_longer_allow_and_only_those() {
    let (app, upstream) = gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let bearer = format!("Bearer {secret}");
    let (mut socket, _) = open(&app, &[("authorization", &bearer)]).await.unwrap();
    let with_routes = |routes: Vec<RouteConfig>| {
        let routes = routes.clone();
        move |c: &mut keygate::config::Config| c.routes = routes
    };
    // A reload that still allows it leaves it open.
    let mut routes = ws_route(&upstream.url);
    routes.push(RouteConfig { prefix: "/other".to_owned(), ..routes[0].clone() });
    app.reload(with_routes(routes.clone())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(echo(&mut socket, "after a harmless reload").await, "after a harmless reload");

    // A scope it does not hold: closed.
    routes[0].scope = Some(keygate::scope::Scope::parse("orders:admin").unwrap());
    let reloaded = std::time::Instant::now();
    app.reload(with_routes(routes.clone())).await;
    let (close, reason, _) = closed_by_keygate(&mut socket, Duration::from_secs(3)).await;
    assert_eq!((close, reason.as_str()), (1008, "SCOPE_NOT_GRANTED"));
    assert!(reloaded.elapsed() < Duration::from_secs(1));

    // The route gone: closed.
    app.reload(with_routes(ws_route(&upstream.url))).await;
    let (mut socket, _) = open(&app, &[("authorization", &bearer)]).await.unwrap();
    let reloaded = std::time::Instant::now();
    app.reload(with_routes(vec![routes[1].clone()])).await;
    let (close, reason, _) = closed_by_keygate(&mut socket, Duration::from_secs(3)).await;
    assert_eq!((close, reason.as_str()), (1008, "NOT_FOUND"));
    assert!(reloaded.elapsed() < Duration::from_secs(1));
    nothing_relayed_after_the_close(&mut socket, &upstream, "after the route went").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_at_its_maximum_lifetime_whatever_passes() {
    let (app, _upstream) = gateway(|c| c.proxy.websocket_max_lifetime_ms = 700).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let bearer = format!("Bearer {secret}");
    let (mut socket, _) = open(&app, &[("authorization", &bearer)]).await.unwrap();
    let opened = std::time::Instant::now();
    // Traffic does not keep it open past its lifetime (the idle deadline would reset on it).
    let closed = loop {
        socket.send(Message::text("busy")).await.ok();
        match tokio::time::timeout(Duration::from_secs(3), socket.next()).await.expect("an answer") {
            Some(Ok(Message::Text(_))) => tokio::time::sleep(Duration::from_millis(50)).await,
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(u16::from(closed.code), 1008);
    assert!(closed.reason.contains("lifetime"), "{}", closed.reason);
    assert!(opened.elapsed() >= Duration::from_millis(600) && opened.elapsed() < Duration::from_secs(2));
}

/// The refusal of a handshake: status, code and `Retry-After`.
async fn refused(app: &TestApp, headers: Headers<'_>) -> (u16, String, Option<String>) {
    let mut request = format!("ws://{}/ws", app.public.trim_start_matches("http://")).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(WsError::Http(response)) => {
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), body["error"]["code"].as_str().unwrap().to_owned(), retry)
        }
        other => panic!("not refused: {:?}", other.map(|(_, response)| response.status())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_have_caps_of_their_own_and_never_hold_the_connections_requests_need() {
    let (app, upstream) = gateway(|c| {
        c.proxy.max_websockets = 4;
        c.proxy.max_websockets_per_key = 2;
        // Fewer connections than WebSockets: upgraded ones do not count against it.
        c.server.max_connections = 3;
    })
    .await;
    let (_, first) = app.orders_key("acme", &["orders:read"]).await;
    let mut bearers = vec![format!("Bearer {first}")];
    for name in ["b", "c"] {
        let (_, secret) = app.create_key("acme", json!({ "name": name, "scopes": ["orders:read"] })).await;
        bearers.push(format!("Bearer {secret}"));
    }
    let mut open_ones = Vec::new();
    // One handshake at a time, each connection given a moment to leave the connection cap once
    // upgraded (its task ends after the 101 is written).
    let settle = || tokio::time::sleep(Duration::from_millis(50));
    for bearer in [&bearers[0], &bearers[0]] {
        open_ones.push(open(&app, &[("authorization", bearer)]).await.expect("within the key's cap").0);
        settle().await;
    }
    let (status, code, retry) = refused(&app, &[("authorization", &bearers[0])]).await;
    assert_eq!((status, code.as_str(), retry.as_deref()), (429, "RATE_LIMITED", Some("1")), "the key's cap");
    settle().await;
    for bearer in [&bearers[1], &bearers[1]] {
        open_ones.push(open(&app, &[("authorization", bearer)]).await.expect("another key, within the instance's").0);
        settle().await;
    }
    let (status, code, retry) = refused(&app, &[("authorization", &bearers[2])]).await;
    assert_eq!((status, code.as_str(), retry.as_deref()), (429, "RATE_LIMITED", Some("1")), "the instance's cap");
    assert_eq!(upstream.handshakes().len(), 4, "a refused handshake never reaches the upstream");
    settle().await;

    // Four WebSockets open, on a listener capped at three connections: requests are still served.
    for _ in 0..3 {
        let health = app.client.get(format!("{}/healthz", app.public)).send().await.expect("/healthz answers");
        assert_eq!(health.status(), 200);
    }
    for socket in &mut open_ones {
        assert_eq!(echo(socket, "still relayed").await, "still relayed");
    }
    // A place freed is a place to take.
    open_ones.remove(0).close(None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Seen once in a full run: this handshake's connection closed unanswered. Said here, should
    // it come again: how many of the three connections were taken.
    let connections = app.metric("keygate_connections_open{listener=\"public\"}").await;
    eprintln!("public connections open before the last handshake: {connections}");
    assert!(open(&app, &[("authorization", &bearers[2])]).await.is_ok());
}
