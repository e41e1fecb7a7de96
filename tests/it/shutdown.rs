//! SIGTERM under steady load fails no request. Two keygate processes share a store behind a
//! small load balancer that, as a real one does, checks `/readyz` and sends requests only to
//! the instances that answer 200. Clients keep calling through it, half on kept-alive
//! connections and half on a new connection per request, while one instance is sent SIGTERM.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{self, Served};
use common::*;

/// How often the balancer checks `/readyz`.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// `server.shutdown_delay_ms`: well above the balancer's time to notice.
const SHUTDOWN_DELAY_MS: u64 = 1000;
const CLIENTS: usize = 8;

/// Round robin over the instances whose `/readyz` last answered 200.
struct Balancer {
    instances: Vec<String>,
    ready: Vec<AtomicBool>,
    next: AtomicUsize,
    /// Whether a check saw an instance answer `/readyz` with 503 `SERVICE_UNAVAILABLE`.
    saw_draining: AtomicBool,
}

impl Balancer {
    fn new(instances: Vec<String>) -> Arc<Self> {
        let ready = instances.iter().map(|_| AtomicBool::new(true)).collect();
        Arc::new(Self { instances, ready, next: AtomicUsize::new(0), saw_draining: AtomicBool::new(false) })
    }

    fn pick(&self) -> Option<usize> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.instances.len())
            .map(|offset| (start + offset) % self.instances.len())
            .find(|index| self.ready[*index].load(Ordering::Relaxed))
    }

    /// Checks every instance's `/readyz` each [`CHECK_EVERY`] until `stop` is set.
    async fn check(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let client = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
        while !stop.load(Ordering::Relaxed) {
            for (index, instance) in self.instances.iter().enumerate() {
                let answer = client.get(format!("http://{instance}/readyz")).send().await;
                let ready = match answer {
                    Ok(answer) if answer.status() == 200 => true,
                    Ok(answer) => {
                        let seen = Seen::from(answer).await;
                        if seen.status == 503 && seen.code() == "SERVICE_UNAVAILABLE" {
                            self.saw_draining.store(true, Ordering::Relaxed);
                        }
                        false
                    }
                    Err(_) => false,
                };
                self.ready[index].store(ready, Ordering::Relaxed);
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
}

/// What the clients saw.
#[derive(Default)]
struct Outcomes {
    /// Answered 200, by instance.
    answered: Vec<usize>,
    /// Responses that said `Connection: close`, by instance.
    closing: Vec<usize>,
    failures: Vec<String>,
}

/// One client: calls `/api/v1/open` through the balancer until `stop` is set.
async fn call(
    balancer: Arc<Balancer>,
    client: reqwest::Client,
    secret: String,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(index) = balancer.pick() else {
            outcomes.lock().unwrap().failures.push("no instance ready".to_owned());
            tokio::time::sleep(CHECK_EVERY).await;
            continue;
        };
        let url = format!("http://{}/api/v1/open", balancer.instances[index]);
        let answer = client.get(url).bearer_auth(&secret).send().await;
        let mut outcomes = outcomes.lock().unwrap();
        match answer {
            Ok(answer) if answer.status() == 200 => {
                outcomes.answered.push(index);
                if answer.headers().get("connection").is_some_and(|value| value == "close") {
                    outcomes.closing.push(index);
                }
            }
            Ok(answer) => outcomes.failures.push(format!("instance {index}: {}", answer.status())),
            Err(error) => outcomes.failures.push(format!("instance {index}: {error:?}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_steady_load_behind_a_load_balancer_fails_no_request() {
    let upstream = upstream::Upstream::start().await;
    let store = TestStore::new().await;
    let route =
        format!("[[routes]]\nprefix = \"/api/v1/open\"\nmethods = [\"GET\"]\nupstream = \"{}\"\n", upstream.url);
    let config = process::write_config(&store, "keygate", &route);
    let env = [
        ("KEYGATE_SERVER_SHUTDOWN_DELAY_MS", SHUTDOWN_DELAY_MS.to_string()),
        ("KEYGATE_RATE_LIMIT_LIMIT", "1000000000".to_owned()),
    ];
    let Served { child: mut stopping, public: first, admin, .. } = process::serve(&config, &env);
    let Served { child: mut staying, public: second, .. } = process::serve(&config, &env);

    let secret = process::tenant_with_key(&reqwest::Client::new(), &admin).await;

    let balancer = Balancer::new(vec![first, second]);
    let stop = Arc::new(AtomicBool::new(false));
    let checking = tokio::spawn(Arc::clone(&balancer).check(Arc::clone(&stop)));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let kept_alive = reqwest::Client::new();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|index| {
            let client = match index % 2 {
                0 => kept_alive.clone(),
                _ => reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
            };
            let (balancer, stop, outcomes) = (Arc::clone(&balancer), Arc::clone(&stop), Arc::clone(&outcomes));
            tokio::spawn(call(balancer, client, secret.clone(), stop, outcomes))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let terminated = Instant::now();
    process::signal(&stopping, "TERM");
    let exited = tokio::task::spawn_blocking(move || stopping.wait()).await.unwrap().unwrap();
    let stopped_after = terminated.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    checking.await.unwrap();
    staying.kill().unwrap();
    staying.wait().unwrap();

    let outcomes = outcomes.lock().unwrap();
    let failures = &outcomes.failures;
    assert!(
        failures.is_empty(),
        "{} failed requests, the first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(exited.success(), "the stopped instance exits cleanly: {exited}");
    assert!(
        stopped_after >= Duration::from_millis(SHUTDOWN_DELAY_MS),
        "it served on through the delay: {stopped_after:?}"
    );
    assert!(
        balancer.saw_draining.load(Ordering::Relaxed),
        "its /readyz answered 503 SERVICE_UNAVAILABLE while draining"
    );
    let closing_first = outcomes.closing.iter().filter(|index| **index == 0).count();
    assert!(closing_first > 0, "while draining, its responses closed their connections");
    let answered = |instance| outcomes.answered.iter().filter(|index| **index == instance).count();
    assert!(answered(0) > 0 && answered(1) > 0, "both instances served: {} and {}", answered(0), answered(1));
    assert_eq!(upstream.count(), outcomes.answered.len(), "every answered request reached the upstream once");
}

/// While draining, keygate goes on serving, says it is not ready, and closes each connection
/// after its response: a kept-alive connection opened before SIGTERM included. After
/// `server.shutdown_delay_ms` a new connection is refused, one it accepted before is served its
/// first request, and it exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_draining_keygate_serves_on_says_not_ready_and_closes_each_connection_after_its_response() {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = TestStore::new().await;
    let config = process::write_config(&store, "keygate", "");
    let env = [("KEYGATE_SERVER_SHUTDOWN_DELAY_MS", SHUTDOWN_DELAY_MS.to_string())];
    let Served { mut child, public, .. } = process::serve(&config, &env);

    // One HTTP/1.1 connection, kept alive, opened before SIGTERM.
    let stream = tokio::net::TcpStream::connect(&public).await.unwrap();
    let (mut kept, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let healthz = || http::Request::get("/healthz").header("host", &public).body(Empty::<Bytes>::new()).unwrap();
    let before = kept.send_request(healthz()).await.unwrap();
    assert_eq!(before.status(), 200);
    assert!(before.headers().get("connection").is_none(), "kept alive before SIGTERM");
    // And one HTTP/2 connection (prior knowledge), used once.
    let stream = tokio::net::TcpStream::connect(&public).await.unwrap();
    let executor = hyper_util::rt::TokioExecutor::new();
    let (mut multiplexed, http2) =
        hyper::client::conn::http2::handshake(executor, hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let http2 = tokio::spawn(http2);
    let http2_healthz = http::Request::get(format!("http://{public}/healthz")).body(Empty::<Bytes>::new()).unwrap();
    assert_eq!(multiplexed.send_request(http2_healthz).await.unwrap().status(), 200);

    let terminated = Instant::now();
    process::signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Well before the delay ends.
    let told = tokio::time::timeout(Duration::from_millis(300), http2).await;
    assert!(told.is_ok(), "the HTTP/2 connection is sent GOAWAY while draining, and closes");
    let during = kept.send_request(healthz()).await.expect("the kept-alive connection is still served");
    assert_eq!(during.status(), 200);
    assert_eq!(during.headers()["connection"], "close");
    let closed = tokio::time::timeout(Duration::from_secs(2), connection).await;
    assert!(closed.is_ok(), "the connection closes after that response");

    let client = reqwest::Client::new();
    let readyz = Seen::from(client.get(format!("http://{public}/readyz")).send().await.unwrap()).await;
    readyz.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(readyz.header("connection"), Some("close"));
    assert!(readyz.header("retry-after").is_some());

    // A connection opened while draining that has sent nothing yet (a balancer's spare one).
    let mut late = tokio::net::TcpStream::connect(&public).await.unwrap();
    let stopped = terminated + Duration::from_millis(SHUTDOWN_DELAY_MS + 300);
    tokio::time::sleep_until(tokio::time::Instant::from_std(stopped)).await;
    let refused = client.get(format!("http://{public}/healthz")).send().await;
    assert!(refused.as_ref().is_err_and(reqwest::Error::is_connect), "refused once stopped: {refused:?}");
    // Accepted before the listener closed, it is served its first request, then closed.
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: keygate\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), late.read_to_end(&mut answer)).await;
    assert!(read.is_ok_and(|read| read.is_ok()), "answered, then closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("connection: close"), "{answer}");

    let exited = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exited.success(), "exits cleanly: {exited}");
}
