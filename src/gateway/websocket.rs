//! WebSockets through the gateway (SPEC §7). A `GET` with `Upgrade: websocket` on a route that
//! allows `GET` is judged by the pipeline as a read, like any other request, and counted once
//! against the rate limit; when allowed it is forwarded with its upgrade headers, and once the
//! upstream answers 101 both connections are taken over and relayed byte for byte.
//!
//! A browser cannot set headers on the handshake, so a page's key and session token may come as
//! `Sec-WebSocket-Protocol` entries `keygate.key.<secret>` and `keygate.session.<token>` (as
//! Kubernetes carries bearer tokens). [`take_credentials`] moves them into `Authorization` and
//! `X-Session-Token` before the pipeline runs; they are never forwarded, and never logged.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::http::connection::ConnectionPermit;

const KEY_ENTRY: &str = "keygate.key.";
const SESSION_ENTRY: &str = "keygate.session.";

/// The keygate entry the client offered: the answer selects it when the upstream selects no
/// protocol, since a browser that offered protocols fails a handshake that selects none. It
/// goes back only to the client that sent it.
#[derive(Clone)]
pub struct OfferedEntry(pub HeaderValue);

/// What the proxy needs of a WebSocket handshake: the client's connection to take over once
/// the upstream agrees, the connection's place under the cap, and the keygate entry to select.
pub struct Handshake {
    client: OnUpgrade,
    permit: Option<ConnectionPermit>,
    offered: Option<OfferedEntry>,
}

impl Handshake {
    /// The handshake `parts` carries, taken out of its extensions; `None` for any other
    /// request, at the cost of one header lookup.
    pub fn take(parts: &mut http::request::Parts) -> Option<Self> {
        if !is_upgrade(&parts.headers) {
            return None;
        }
        let client = parts.extensions.remove::<OnUpgrade>()?;
        Some(Self { client, permit: parts.extensions.remove(), offered: parts.extensions.remove() })
    }

    /// The upstream answered 101 (`upstream`): makes `headers` the client's 101, and relays the
    /// two connections until [`relay`] ends; the connection keeps its place under the cap
    /// until then.
    pub fn accept(
        self,
        upstream: OnUpgrade,
        headers: &mut HeaderMap,
        idle: Duration,
        drain: Duration,
        stopping: watch::Receiver<bool>,
    ) {
        mark_upgrade(headers);
        if let Some(offered) = self.offered.filter(|_| !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL)) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, offered.0);
        }
        let (client, permit) = (self.client, self.permit);
        tokio::spawn(async move {
            relay(client, upstream, idle, drain, stopping).await;
            drop(permit);
        });
    }
}

/// `Connection: upgrade` and `Upgrade: websocket`: hop-by-hop headers, set again on each hop.
pub fn mark_upgrade(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// A WebSocket handshake: `Upgrade: websocket`, with `upgrade` among the `Connection` tokens.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade && tokens(headers, header::CONNECTION).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// Moves keygate's `Sec-WebSocket-Protocol` entries into `Authorization` and `X-Session-Token`
/// (a header that is already there wins), leaving only the application's entries. Returns the
/// first keygate entry, for the answer to select.
pub fn take_credentials(headers: &mut HeaderMap) -> Option<OfferedEntry> {
    if !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        return None;
    }
    let (mut key, mut session, mut offered, mut kept) = (None, None, None, Vec::new());
    for entry in tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).filter(|entry| !entry.is_empty()) {
        let secret = entry.strip_prefix(KEY_ENTRY);
        let token = entry.strip_prefix(SESSION_ENTRY);
        if secret.is_none() && token.is_none() {
            kept.push(entry.to_owned());
            continue;
        }
        offered = offered.or_else(|| HeaderValue::from_str(entry).ok());
        key = key.or(secret.map(str::to_owned));
        session = session.or(token.map(str::to_owned));
    }
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(value) = HeaderValue::from_str(&kept.join(", "))
        && !kept.is_empty()
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some(value) = key.and_then(|secret| HeaderValue::from_str(&format!("Bearer {secret}")).ok()) {
        headers.entry(header::AUTHORIZATION).or_insert(value);
    }
    if let Some(value) = session.and_then(|token| HeaderValue::from_str(&token).ok()) {
        headers.entry("x-session-token").or_insert(value);
    }
    offered.map(OfferedEntry)
}

/// Relays bytes both ways between the two upgraded connections until either side closes, or
/// nothing has passed for `idle`, or — once `stopping` turns true — `drain` has passed (the
/// grace in-flight requests get).
async fn relay(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle: Duration,
    drain: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else { return };
    let (mut client_read, mut client_write) = tokio::io::split(TokioIo::new(client));
    let (mut upstream_read, mut upstream_write) = tokio::io::split(TokioIo::new(upstream));
    let (mut from_client, mut from_upstream) = (vec![0; 16 * 1024], vec![0; 16 * 1024]);
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    let mut draining = *stopping.borrow();
    if draining {
        deadline.as_mut().reset(tokio::time::Instant::now() + drain);
    }
    loop {
        let passed = tokio::select! {
            read = client_read.read(&mut from_client) => match read {
                Ok(n) if n > 0 => upstream_write.write_all(&from_client[..n]).await.is_ok(),
                _ => false,
            },
            read = upstream_read.read(&mut from_upstream) => match read {
                Ok(n) if n > 0 => client_write.write_all(&from_upstream[..n]).await.is_ok(),
                _ => false,
            },
            () = &mut deadline => false,
            changed = stopping.changed(), if !draining => {
                // The sender gone is the app gone: drain as for a shutdown.
                if changed.is_err() || *stopping.borrow() {
                    draining = true;
                    deadline.as_mut().reset(tokio::time::Instant::now() + drain);
                }
                continue;
            }
        };
        if !passed {
            break;
        }
        if !draining {
            deadline.as_mut().reset(tokio::time::Instant::now() + idle);
        }
    }
    let _ = tokio::join!(client_write.shutdown(), upstream_write.shutdown());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (n.parse().unwrap(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn keygate_entries_become_the_credential_headers_and_are_not_forwarded() {
        let mut h = headers(&[("sec-websocket-protocol", "chat, keygate.key.kg_abc, keygate.session.e.y.z")]);
        let offered = take_credentials(&mut h).unwrap();
        assert_eq!(offered.0, "keygate.key.kg_abc");
        assert_eq!(h["sec-websocket-protocol"], "chat");
        assert_eq!(h["authorization"], "Bearer kg_abc");
        assert_eq!(h["x-session-token"], "e.y.z");

        let mut h = headers(&[("sec-websocket-protocol", "keygate.key.kg_abc"), ("authorization", "Bearer kg_x")]);
        take_credentials(&mut h);
        assert!(!h.contains_key("sec-websocket-protocol"), "nothing of keygate's is left to forward");
        assert_eq!(h["authorization"], "Bearer kg_x", "a header that is there wins");

        let mut h = headers(&[("sec-websocket-protocol", "chat")]);
        assert!(take_credentials(&mut h).is_none());
        assert_eq!(h["sec-websocket-protocol"], "chat");
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        assert!(is_upgrade(&headers(&[("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade")])));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("upgrade", "h2c"), ("connection", "upgrade")])));
    }
}
