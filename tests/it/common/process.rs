//! keygate as a child process (`keygate serve`), for what only a process of its own shows:
//! signals, `kill -9`, a clock of its own.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};

use super::{ADMIN_TOKEN, TestStore};

/// A running `keygate serve`.
pub struct Served {
    pub child: KeygateChild,
    /// `host:port` of the public listener.
    pub public: String,
    /// `host:port` of the admin listener.
    pub admin: String,
    /// The lines it logs after the one saying where it listens.
    pub logged: Receiver<String>,
}

/// A keygate child process, killed when dropped: a test that ends, or fails, without stopping
/// it does not leave it running.
pub struct KeygateChild(Child);

impl std::ops::Deref for KeygateChild {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KeygateChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KeygateChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes `{name}.toml` in the store's folder: both listeners on port 0, the admin token, the
/// store, then `extra`.
pub fn write_config(store: &TestStore, name: &str, extra: &str) -> PathBuf {
    let config = store.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [store]\nurl = \"{}\"\n{extra}",
            store.url
        ),
    )
    .unwrap();
    config
}

/// Starts `keygate --config config serve` with `env` added to the environment; returns once
/// it listens.
pub fn serve(config: &Path, env: &[(&str, String)]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| {
            before.push(line.clone());
            line.contains("keygate listening")
        })
        .unwrap_or_else(|| panic!("keygate exited before it listened; it logged: {before:#?}"));
    let (send, logged) = channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    let line: serde_json::Value = serde_json::from_str(&listening).unwrap();
    let public = line["fields"]["public"].as_str().unwrap().to_owned();
    let admin = line["fields"]["admin"].as_str().unwrap_or_default().to_owned();
    Served { child: KeygateChild(child), public, admin, logged }
}

/// Sends `signal` (`TERM`, `HUP`, …) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill -{signal}");
}

/// The environment that sets a process's wall clock `offset` (libfaketime's syntax: `+45m`,
/// `-2h`) off this machine's, with libfaketime from Debian's `faketime` (`scripts/test`
/// installs it). Monotonic time is left alone, so timers and deadlines run at the real pace.
pub fn skewed_clock(offset: &str) -> Vec<(&'static str, String)> {
    let library = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| PathBuf::from(format!("/usr/lib/{arch}/faketime/libfaketime.so.1")))
        .find(|path| path.exists())
        .expect("libfaketime is installed (Debian's faketime; scripts/test installs it)");
    vec![
        ("LD_PRELOAD", library.display().to_string()),
        ("FAKETIME", offset.to_owned()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
    ]
}

/// `POST /admin/v1/tenants` on the admin listener at `admin` (`host:port`).
pub async fn create_tenant(client: &reqwest::Client, admin: &str, id: &str) -> reqwest::StatusCode {
    let response = client
        .post(format!("http://{admin}/admin/v1/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "id": id, "name": id }))
        .send()
        .await
        .unwrap();
    response.status()
}

/// Tenant `acme` and a key of it, through the admin listener at `admin`; returns the secret.
pub async fn tenant_with_key(client: &reqwest::Client, admin: &str) -> String {
    assert_eq!(create_tenant(client, admin, "acme").await, 201);
    let key: serde_json::Value = client
        .post(format!("http://{admin}/admin/v1/tenants/acme/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "name": "k", "scopes": [] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    key["data"]["secret"].as_str().unwrap().to_owned()
}
