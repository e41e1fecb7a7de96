//! A real nginx or Caddy in front of keygate's decision listener, run with the configuration
//! docs/proxies/ documents (`scripts/test` installs Debian's `nginx` and `caddy`). Each test
//! gets its own process, on a port of its own, stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestApp;

pub struct FrontProxy {
    /// `http://host:port` of the proxy.
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The documented file with its placeholders filled in for `app` and `upstream` (`host:port`).
fn filled(file: &str, listen: &str, app: &TestApp, upstream: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/docs/proxies/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let host_port = |url: &str| url.trim_start_matches("http://").to_owned();
    text.replace("{{LISTEN}}", listen)
        .replace("{{KEYGATE_DECISION}}", &host_port(app.decision.as_ref().expect("a decision listener")))
        .replace("{{KEYGATE_PUBLIC}}", &host_port(&app.public))
        .replace("{{UPSTREAM}}", &host_port(upstream))
}

const LOG: &str = "proxy.log";

/// Where the proxy's own log goes: read back if it fails to start.
fn log(dir: &tempfile::TempDir) -> std::fs::File {
    std::fs::File::create(dir.path().join(LOG)).unwrap()
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

impl FrontProxy {
    /// nginx with docs/proxies/nginx.conf, included in an `http { }` of its own: one process
    /// (no workers), in the foreground, every path in a temporary folder.
    pub fn nginx(app: &TestApp, upstream: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listen = free_address();
        let site = dir.path().join("keygate.conf");
        std::fs::write(&site, filled("nginx.conf", &listen, app, upstream)).unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let main = format!(
            "daemon off;\nmaster_process off;\nerror_log stderr warn;\npid {pid};\nevents {{}}\n\
             http {{\n  access_log off;\n  client_body_temp_path {body};\n  proxy_temp_path {proxy};\n\
             fastcgi_temp_path {fastcgi};\n  uwsgi_temp_path {uwsgi};\n  scgi_temp_path {scgi};\n  include {site};\n}}\n",
            pid = path("nginx.pid"),
            body = path("body"),
            proxy = path("proxy"),
            fastcgi = path("fastcgi"),
            uwsgi = path("uwsgi"),
            scgi = path("scgi"),
            site = site.display(),
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let child = Command::new("nginx")
            .args(["-p", &path(""), "-e", "stderr", "-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log(&dir))
            .spawn()
            .expect("nginx runs (scripts/test installs Debian's nginx)");
        Self::started(child, listen, dir)
    }

    /// Caddy with docs/proxies/Caddyfile, after global options of the test's own: no admin
    /// endpoint, its data in a temporary folder.
    pub fn caddy(app: &TestApp, upstream: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listen = free_address();
        let file = dir.path().join("Caddyfile");
        let text = format!("{{\n\tadmin off\n}}\n\n{}", filled("Caddyfile", &listen, app, upstream));
        std::fs::write(&file, text).unwrap();
        let child = Command::new("caddy")
            .args(["run", "--config", file.to_str().unwrap(), "--adapter", "caddyfile"])
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(log(&dir))
            .spawn()
            .expect("caddy runs (scripts/test installs Debian's caddy)");
        Self::started(child, listen, dir)
    }

    fn started(mut child: Child, listen: String, dir: tempfile::TempDir) -> Self {
        let started = Instant::now();
        while std::net::TcpStream::connect(&listen).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let logged = std::fs::read_to_string(dir.path().join(LOG)).unwrap_or_default();
                panic!("the proxy exited before it listened: {status}; it logged:\n{logged}");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the proxy did not listen on {listen}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { url: format!("http://{listen}"), child, _dir: dir }
    }
}
