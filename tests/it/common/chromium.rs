//! Debian's headless Chromium, driven by `e2e/open-page.mjs`: opens a page and returns what its
//! script stored in `window.result`. Needs `/usr/bin/chromium` and `e2e/node_modules`
//! (`scripts/test` installs both); without them a test fails, saying so: it never skips.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Opens `url` in headless Chromium; what the page stored in `window.result`.
pub async fn open_in_chromium(url: String) -> Value {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        Path::new("/usr/bin/chromium").exists() && e2e.join("node_modules/playwright-core").exists(),
        "the browser test needs Debian's chromium and e2e/node_modules: run scripts/test (it installs both)"
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(e2e.join("open-page.mjs")).arg(url).output().expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "driver failed: {}\n{}", stdout, String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).expect("the page's result as JSON")
}

/// A page origin of its own: serves at `/` whatever HTML is put in the returned slot.
pub async fn page_server() -> (String, Arc<Mutex<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let html = Arc::new(Mutex::new(String::new()));
    let served = Arc::clone(&html);
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = served.lock().unwrap().clone();
            async move { axum::response::Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, html)
}
