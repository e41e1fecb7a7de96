//! Requests written byte for byte: HTTP clients normalise paths and refuse odd header names,
//! and a security test must send exactly what an attacker would.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `host:port` of a listener URL.
pub fn address(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// Sends `request` as it is on a new connection and reads the whole answer (the request should
/// say `Connection: close`). A server that does not close within 10 s fails the test.
pub async fn exchange(url: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address(url)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server answered and closed within 10 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// `GET target` with a bearer key, exactly as written, plus any extra header lines.
pub async fn get(url: &str, target: &str, secret: &str, extra_headers: &str) -> String {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {secret}\r\n{extra_headers}Connection: close\r\n\r\n",
        address(url)
    );
    exchange(url, &request).await
}

/// The status code of a raw answer.
pub fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// Waits until the server closes `stream` (EOF or reset), reading and discarding what it sends;
/// returns how long that took, or `None` if it is still open after `limit`.
pub async fn time_until_closed(stream: &mut TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::from_std(since + limit);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}
