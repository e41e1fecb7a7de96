//! Step 7 through the gateway: browser-channel writes need a valid session, a presented token
//! is always checked, and each defect is `SESSION_INVALID` (or `SESSION_EXPIRED`). Tokens are
//! forged with the instance's real signing key, so every case tests exactly one defect.

use crate::common;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const SECOND_ORIGIN: &str = "https://second.example";

/// Signs `header`.`claims` with HS256 under `secret`, as keygate would.
fn forge(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

struct Fixture {
    app: TestApp,
    upstream: upstream::Upstream,
    secret: String,
    signing_key: Vec<u8>,
    header: Value,
    claims: Value,
}

async fn fixture() -> Fixture {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["sessions:create", "orders:read", "orders:write"]).await;
    let token = app.session(&secret, ORIGIN).await;
    let signing_key = app.store.signing_keys().await.unwrap().pop().unwrap().private_key;
    Fixture { header: jwt_part(&token, 0), claims: jwt_part(&token, 1), app, upstream, secret, signing_key }
}

impl Fixture {
    async fn write_with(&self, token: &str) -> Seen {
        self.app.request("POST", "/api/v1/orders").key(&self.secret).origin(ORIGIN).session(token).send().await
    }

    fn forged(&self, header_edit: impl FnOnce(&mut Value), claims_edit: impl FnOnce(&mut Value)) -> String {
        let (mut header, mut claims) = (self.header.clone(), self.claims.clone());
        header_edit(&mut header);
        claims_edit(&mut claims);
        forge(&self.signing_key, &header, &claims)
    }
}

#[tokio::test]
async fn a_valid_session_lets_a_browser_write_through() {
    let f = fixture().await;
    let token = f.app.session(&f.secret, ORIGIN).await;
    let seen = f.write_with(&token).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(f.upstream.last().header("x-keygate-channel"), Some("browser"));
    assert!(f.upstream.last().header("x-session-token").is_none());
    // The forging helper itself is right: an unedited forgery is accepted.
    assert_eq!(f.write_with(&f.forged(|_| {}, |_| {})).await.status, 200);
}

#[tokio::test]
async fn every_defect_is_session_invalid_and_nothing_reaches_the_upstream() {
    let f = fixture().await;
    let now = now_seconds();
    let real = f.app.session(&f.secret, ORIGIN).await;
    let other_real = f.app.session(&f.secret, ORIGIN).await;
    let parts: Vec<&str> = real.split('.').collect();
    let other_parts: Vec<&str> = other_real.split('.').collect();

    let (_, same_tenant_key) = f
        .app
        .create_key("acme", json!({ "name": "second", "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN] }))
        .await;
    let (_, other_tenant_key) = f.app.orders_key("globex", &["sessions:create"]).await;
    let none_header =
        URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": f.header["kid"] }).to_string());
    let mut edited = f.claims.clone();
    edited["sub"] = json!("key_someoneelse");

    let cases: Vec<(&str, String)> = vec![
        ("alg none", format!("{none_header}.{}.", parts[1])),
        ("alg none, no signature part", format!("{none_header}.{}", parts[1])),
        ("edited payload", format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(edited.to_string()), parts[2])),
        ("signature of another token", format!("{}.{}.{}", parts[0], parts[1], other_parts[2])),
        ("another key, same tenant", f.app.session(&same_tenant_key, ORIGIN).await),
        ("another key, other tenant", f.app.session(&other_tenant_key, ORIGIN).await),
        ("another allowed origin", f.app.session(&f.secret, SECOND_ORIGIN).await),
        ("typ JWS", f.forged(|h| h["typ"] = json!("JWS"), |_| {})),
        ("no typ", f.forged(|h| drop(h.as_object_mut().unwrap().remove("typ")), |_| {})),
        ("alg HS384", f.forged(|h| h["alg"] = json!("HS384"), |_| {})),
        ("unknown kid", f.forged(|h| h["kid"] = json!("sk_unknown"), |_| {})),
        ("no kid", f.forged(|h| drop(h.as_object_mut().unwrap().remove("kid")), |_| {})),
        ("crit header", f.forged(|h| h["crit"] = json!(["exp"]), |_| {})),
        ("jku header", f.forged(|h| h["jku"] = json!("https://evil.example/jwks.json"), |_| {})),
        ("jwk header", f.forged(|h| h["jwk"] = json!({ "kty": "oct", "k": "AAAA" }), |_| {})),
        ("x5u header", f.forged(|h| h["x5u"] = json!("https://evil.example/cert"), |_| {})),
        ("wrong aud", f.forged(|_| {}, |c| c["aud"] = json!("other"))),
        ("aud as array", f.forged(|_| {}, |c| c["aud"] = json!(["keygate:session"]))),
        ("wrong iss", f.forged(|_| {}, |c| c["iss"] = json!("someone-else"))),
        ("wrong tid", f.forged(|_| {}, |c| c["tid"] = json!("globex"))),
        ("origin not normalised", f.forged(|_| {}, |c| c["origin"] = json!("HTTP://LOCALHOST:3000"))),
        ("iat as a string", f.forged(|_| {}, |c| c["iat"] = json!(now.to_string()))),
        ("exp as a float", f.forged(|_| {}, |c| c["exp"] = json!(now as f64 + 600.5))),
        ("sub as a number", f.forged(|_| {}, |c| c["sub"] = json!(7))),
        ("missing jti", f.forged(|_| {}, |c| drop(c.as_object_mut().unwrap().remove("jti")))),
        ("missing exp", f.forged(|_| {}, |c| drop(c.as_object_mut().unwrap().remove("exp")))),
        (
            "iat in the future",
            f.forged(
                |_| {},
                |c| {
                    c["iat"] = json!(now + 60);
                    c["exp"] = json!(now + 600);
                },
            ),
        ),
        (
            "lifetime above the ttl",
            f.forged(
                |_| {},
                |c| {
                    c["iat"] = json!(now - 10);
                    c["exp"] = json!(now - 10 + 3601);
                },
            ),
        ),
        (
            "expired and another origin",
            f.forged(
                |_| {},
                |c| {
                    c["iat"] = json!(now - 100);
                    c["exp"] = json!(now - 10);
                    c["origin"] = json!(SECOND_ORIGIN);
                },
            ),
        ),
        ("garbage", "not a token".to_owned()),
        ("empty", String::new()),
    ];
    for (case, token) in &cases {
        let seen = f.write_with(token).await;
        assert_eq!((seen.status.as_u16(), seen.code()), (401, "SESSION_INVALID"), "{case}: {}", seen.body);
        seen.assert_error(401, "SESSION_INVALID");
    }
    assert_eq!(f.upstream.count(), 0, "no defective request reached the upstream");
}

#[tokio::test]
async fn required_missing_doubled_and_checked_on_reads() {
    let f = fixture().await;
    let token = f.app.session(&f.secret, ORIGIN).await;
    f.app
        .request("POST", "/api/v1/orders")
        .key(&f.secret)
        .origin(ORIGIN)
        .send()
        .await
        .assert_error(401, "SESSION_REQUIRED");
    let response = f
        .app
        .client
        .post(format!("{}/api/v1/orders", f.app.public))
        .bearer_auth(&f.secret)
        .header("origin", ORIGIN)
        .header("x-session-token", &token)
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    Seen::from(response).await.assert_error(401, "SESSION_INVALID");
    // Reads need no session, but a presented one is checked.
    assert_eq!(f.app.request("GET", "/api/v1/orders").key(&f.secret).origin(ORIGIN).send().await.status, 200);
    f.app
        .request("GET", "/api/v1/orders")
        .key(&f.secret)
        .origin(ORIGIN)
        .session("x.y.z")
        .send()
        .await
        .assert_error(401, "SESSION_INVALID");
    assert_eq!(
        f.app.request("GET", "/api/v1/orders").key(&f.secret).origin(ORIGIN).session(&token).send().await.status,
        200
    );
    // The server channel needs no session for writes.
    assert_eq!(f.app.request("POST", "/api/v1/orders").key(&f.secret).send().await.status, 200);
    assert_eq!(f.upstream.count(), 3);
}

#[tokio::test]
async fn a_token_valid_but_for_its_age_is_session_expired() {
    let f = fixture().await;
    let now = now_seconds();
    let expired = f.forged(
        |_| {},
        |c| {
            c["iat"] = json!(now - 100);
            c["exp"] = json!(now - 10);
        },
    );
    f.write_with(&expired).await.assert_error(401, "SESSION_EXPIRED");
    let at_exp = f.forged(
        |_| {},
        |c| {
            c["iat"] = json!(now - 100);
            c["exp"] = json!(now);
        },
    );
    f.write_with(&at_exp).await.assert_error(401, "SESSION_EXPIRED");
    assert_eq!(f.upstream.count(), 0);
}

#[tokio::test]
async fn a_one_second_session_expires() {
    let (app, upstream) = spawn_gateway(|c| c.sessions.ttl_seconds = 1).await;
    let (_, secret) = app.orders_key("acme", &["sessions:create", "orders:write"]).await;
    let token = app.session(&secret, ORIGIN).await;
    let exp = jwt_part(&token, 1)["exp"].as_i64().unwrap();
    while now_seconds() < exp {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.request("POST", "/api/v1/orders")
        .key(&secret)
        .origin(ORIGIN)
        .session(&token)
        .send()
        .await
        .assert_error(401, "SESSION_EXPIRED");
    assert_eq!(upstream.count(), 0);
}

#[tokio::test]
async fn revoking_the_key_or_removing_the_origin_ends_its_sessions() {
    let f = fixture().await;
    let token = f.app.session(&f.secret, ORIGIN).await;
    let (key, secret) = f
        .app
        .create_key("acme", json!({ "name": "k", "scopes": ["*"], "allowedOrigins": [ORIGIN, SECOND_ORIGIN] }))
        .await;
    let other_token = f.app.session(&secret, ORIGIN).await;
    assert_eq!(f.write_with(&token).await.status, 200);

    f.app.patch_key(key["id"].as_str().unwrap(), json!({ "allowedOrigins": [SECOND_ORIGIN] })).await;
    f.app
        .request("POST", "/api/v1/orders")
        .key(&secret)
        .origin(ORIGIN)
        .session(&other_token)
        .send()
        .await
        .assert_error(403, "ORIGIN_NOT_ALLOWED");

    let listed = f.app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    let id = listed.body["data"].as_array().unwrap().iter().find(|k| k["name"] == "web").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    f.app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await;
    f.write_with(&token).await.assert_error(401, "API_KEY_REVOKED");
    assert_eq!(f.upstream.count(), 1);
}
