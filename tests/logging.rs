//! One structured log line per request, never carrying a secret.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: the server's tasks run on this thread, under this subscriber.
#[tokio::test(flavor = "current_thread")]
async fn each_request_logs_one_line_without_secrets() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let minted = app.mint(&secret, Some(ORIGIN)).await;
    let token = minted.body["data"]["sessionToken"].as_str().unwrap().to_owned();
    let refused = app.mint(&secret, Some("https://evil.example")).await;
    let invalid = app.mint(&format!("{secret}x"), Some(ORIGIN)).await;

    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains(&secret), "the secret is never logged");
    assert!(!text.contains(&secret[..20]), "not even in part");
    assert!(!text.contains(&token), "the session token is never logged");
    assert!(!text.contains(ADMIN_TOKEN), "the admin token is never logged");

    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["target"] == "keygate::request")
        .collect();
    let public: Vec<_> = lines.iter().filter(|l| l["fields"]["listener"] == "public").collect();
    assert_eq!(public.len(), 3, "one line per public request");
    for (line, seen) in public.iter().zip([&minted, &refused, &invalid]) {
        assert_eq!(line["fields"]["request_id"].as_str(), seen.header("x-request-id"));
        assert_eq!(line["fields"]["method"], "POST");
        assert_eq!(line["fields"]["path"], "/api/v1/sessions");
        assert_eq!(line["fields"]["status"], seen.status.as_u16());
    }
    assert_eq!(public[0]["fields"]["tenant"], "acme");
    assert_eq!(public[0]["fields"]["key_id"], key["id"]);
    assert_eq!(public[1]["fields"]["code"], "ORIGIN_NOT_ALLOWED");
    assert_eq!(public[2]["fields"]["code"], "API_KEY_INVALID");
    assert!(public[2]["fields"].get("key_id").is_none());
}
