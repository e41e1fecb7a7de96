//! WebSockets through the gateway, with a real WebSocket upstream and client
//! (tokio-tungstenite): judged as reads by the whole pipeline before the upstream sees anything,
//! relayed both ways once allowed, counted once, closed when idle; and from a page in Chromium,
//! with the key as a `Sec-WebSocket-Protocol` entry.

mod common;

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
        methods: vec!["GET".to_owned()],
        upstream: upstream.to_owned(),
        module: None,
        scope: Some("orders:read".to_owned()),
        write: None,
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

    // Only keygate's entry offered: the answer selects it, as a browser requires.
    let (mut socket, answer) = open(&app, &[("origin", ORIGIN), ("sec-websocket-protocol", &entry)]).await.unwrap();
    assert_eq!(answer.get("sec-websocket-protocol").unwrap(), entry.as_str());
    assert_eq!(answer.get("access-control-allow-origin").unwrap(), ORIGIN);
    assert_eq!(echo(&mut socket, "from a page").await, "from a page");

    // With the application's own protocol and a session token: the upstream selects its own.
    let token = app.session(&secret, ORIGIN).await;
    let offered = format!("chat, {entry}, keygate.session.{token}");
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
        assert_eq!(seen.get("x-keygate-channel").unwrap(), "browser");
    }
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
const socket = new WebSocket("{ws_url}", ["keygate.key.{secret}"]);
socket.onopen = () => socket.send("ping from the page");
socket.onmessage = (event) => {{ window.result = {{ echoed: event.data, protocol: socket.protocol }}; socket.close(); }};
socket.onclose = (event) => {{ if (window.result === undefined) window.result = {{ closed: event.code }}; }};
</script>"#
    );
    *allowed_html.lock().unwrap() = page.clone();
    *other_html.lock().unwrap() = page;

    let result = open_in_chromium(format!("{allowed}/")).await;
    assert_eq!(result["echoed"], "ping from the page", "{result}");
    assert_eq!(result["protocol"], format!("keygate.key.{secret}"));
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
