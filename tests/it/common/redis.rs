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
    /// What starts it, again after [`RedisServer::stop`], on the same address.
    command: Vec<std::ffi::OsString>,
    /// Whether it answers on its address.
    ready: Box<dyn Fn() -> bool + Send>,
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
        let command = vec!["--port".into(), "0".into(), "--unixsocket".into(), socket.clone().into_os_string()];
        let url = format!("unix://{}", socket.display());
        let ready = Box::new(move || std::os::unix::net::UnixStream::connect(&socket).is_ok());
        Self::started(url, None, command, ready, dir)
    }

    fn started(
        url: String,
        ca_file: Option<String>,
        command: Vec<std::ffi::OsString>,
        ready: Box<dyn Fn() -> bool + Send>,
        dir: tempfile::TempDir,
    ) -> Self {
        let mut server = Self { url, ca_file, child: None, command, ready, _dir: dir };
        server.start_again();
        server
    }

    /// Starts it again after [`RedisServer::stop`], on the same address, empty.
    pub fn start_again(&mut self) {
        self.child = Some(spawn(Command::new("redis-server").args(&self.command)));
        wait_until(&self.ready);
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
        let mut command: Vec<std::ffi::OsString> =
            ["--port", "0", "--bind", "127.0.0.1", "--tls-auth-clients", "no"].into_iter().map(Into::into).collect();
        for (flag, value) in [
            ("--tls-port", port.to_string().into()),
            ("--tls-cert-file", cert.into_os_string()),
            ("--tls-key-file", key.into_os_string()),
            ("--tls-ca-cert-file", ca_file.clone().into_os_string()),
        ] {
            command.push(flag.into());
            command.push(value);
        }
        let ready = Box::new(move || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        let ca_file = Some(ca_file.to_str().unwrap().to_owned());
        Self::started(format!("rediss://localhost:{port}"), ca_file, command, ready, dir)
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

fn wait_until(ready: &dyn Fn() -> bool) {
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
