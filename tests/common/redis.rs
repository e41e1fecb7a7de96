//! A real Redis for one test: its own `redis-server` in a temporary folder, stopped when
//! dropped (or earlier, to make the backend fail). On a unix socket; or, when `TEST_REDIS_TLS`
//! is set (`scripts/test` runs the Redis tests so once more), over TLS on a loopback port
//! (`--tls-port`), with a certificate made in the test and `rediss://`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::TestCa;

pub struct RedisServer {
    pub url: String,
    /// The authority to trust for `rediss://` (`rate_limit.ca_file`).
    pub ca_file: Option<String>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        match std::env::var_os("TEST_REDIS_TLS") {
            Some(_) => Self::start_tls(),
            None => Self::start_on_socket(),
        }
    }

    fn start_on_socket() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("redis.sock");
        let child = spawn(Command::new("redis-server").args(["--port", "0", "--unixsocket"]).arg(&socket));
        wait_until(|| socket.exists());
        Self { url: format!("unix://{}", socket.display()), ca_file: None, child: Some(child), _dir: dir }
    }

    fn start_tls() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("keygate test Redis CA");
        let leaf = ca.leaf(&["localhost"]);
        let (cert, key) = (dir.path().join("redis.crt"), dir.path().join("redis.key"));
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        let ca_file = ca.write(dir.path(), "ca.pem");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = spawn(
            Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--bind",
                    "127.0.0.1",
                    "--tls-port",
                    &port.to_string(),
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&ca_file),
        );
        wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        Self {
            url: format!("rediss://localhost:{port}"),
            ca_file: Some(ca_file.to_str().unwrap().to_owned()),
            child: Some(child),
            _dir: dir,
        }
    }

    /// Stops the server: the backend now fails.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(command: &mut Command) -> Child {
    command
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server runs (scripts/test installs it)")
}

fn wait_until(ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
