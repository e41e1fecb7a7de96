//! WebSockets through the gateway (SPEC §7, §17). A `GET` with `Upgrade: websocket` on a route
//! that allows `GET` is judged by the pipeline as a read, like any other request, and counted
//! once against the rate limit; when allowed, and when the instance and the key have a place
//! for one more ([`open`]), it is forwarded with its upgrade headers, and once the upstream
//! answers 101 both connections are taken over and relayed ([`relay`]) — for as long as the
//! handshake would still be allowed.
//!
//! A browser cannot set headers on the handshake, so a page's key and session token may come as
//! `Sec-WebSocket-Protocol` entries `keygate.key.<secret>` and `keygate.session.<token>` (as
//! Kubernetes carries bearer tokens). [`take_credentials`] moves them into `Authorization` and
//! `X-Session-Token` before the pipeline runs; they are never forwarded, never logged, and never
//! echoed: when the upstream selects no protocol, the 101 selects the plain marker `keygate` if
//! the page offered it, and nothing otherwise.

mod frames;
pub(crate) mod open;
mod relay;

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;

pub(crate) use open::OpenSockets;
pub(crate) use relay::RelaySettings;

use crate::error::ApiError;
use crate::model::KeyWithTenant;

const KEY_ENTRY: &str = "keygate.key.";
const SESSION_ENTRY: &str = "keygate.session.";
/// The entry a page offers so that a handshake whose upstream selects no protocol can select one
/// (a browser that offered protocols fails a handshake that selects none).
const MARKER: &str = "keygate";

/// The page offered the plain marker `keygate`.
#[derive(Clone, Copy)]
pub(crate) struct OfferedMarker;

/// What the proxy needs of a WebSocket handshake: the client's connection to take over once
/// the upstream agrees, and whether the page offered the marker.
pub(crate) struct Handshake {
    client: OnUpgrade,
    marker: bool,
}

/// A handshake with its place among the open WebSockets, on its way to the upstream.
pub(crate) struct Admitted {
    handshake: Handshake,
    watched: relay::Watched,
}

impl Handshake {
    /// The handshake `parts` carries, taken out of its extensions; `None` for any other
    /// request, at the cost of one header lookup.
    pub(crate) fn take(parts: &mut http::request::Parts) -> Option<Self> {
        if !is_upgrade(&parts.headers) {
            return None;
        }
        let client = parts.extensions.remove::<OnUpgrade>()?;
        Some(Self { client, marker: parts.extensions.remove::<OfferedMarker>().is_some() })
    }

    /// Takes a place for the connection among `sockets` (429 when there is none), and keeps
    /// what the handshake asked — its path and `headers` as the pipeline judged them — to judge
    /// it again while it is open.
    pub(crate) fn admit(
        self,
        sockets: &std::sync::Arc<OpenSockets>,
        record: &KeyWithTenant,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Admitted, ApiError> {
        let slot = sockets.reserve(record)?;
        let handshake = open::Handshaken::of(path, headers, sockets);
        Ok(Admitted {
            handshake: self,
            watched: relay::Watched { sockets: std::sync::Arc::clone(sockets), slot, handshake },
        })
    }
}

impl Admitted {
    /// The upstream answered 101 (`upstream`): makes `headers` the client's 101, and relays the
    /// two connections; the place is held until the relay ends.
    pub(crate) fn accept(self, upstream: OnUpgrade, headers: &mut HeaderMap, settings: &RelaySettings) {
        mark_upgrade(headers);
        if self.handshake.marker && !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(MARKER));
        }
        tokio::spawn(relay::relay(self.handshake.client, upstream, settings.clone(), self.watched));
    }
}

/// `Connection: upgrade` and `Upgrade: websocket`: hop-by-hop headers, set again on each hop.
pub(crate) fn mark_upgrade(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// A WebSocket handshake: `Upgrade: websocket`, with `upgrade` among the `Connection` tokens.
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers.get(header::UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade && tokens(headers, header::CONNECTION).any(|token| token.eq_ignore_ascii_case("upgrade"))
}

fn tokens(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers.get_all(name).into_iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// Moves keygate's `Sec-WebSocket-Protocol` entries into `Authorization` and `X-Session-Token`
/// (a header that is already there wins), leaving only the application's entries. Returns
/// whether the page offered the plain marker `keygate` (not forwarded either).
pub(crate) fn take_credentials(headers: &mut HeaderMap) -> Option<OfferedMarker> {
    if !headers.contains_key(header::SEC_WEBSOCKET_PROTOCOL) {
        return None;
    }
    let (mut key, mut session, mut marker, mut kept) = (None, None, None, Vec::new());
    for entry in tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).filter(|entry| !entry.is_empty()) {
        if entry == MARKER {
            marker = Some(OfferedMarker);
            continue;
        }
        let secret = entry.strip_prefix(KEY_ENTRY);
        let token = entry.strip_prefix(SESSION_ENTRY);
        if secret.is_none() && token.is_none() {
            kept.push(entry.to_owned());
            continue;
        }
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
    marker
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().map(|(n, v)| (n.parse().unwrap(), HeaderValue::from_str(v).unwrap())).collect()
    }

    #[test]
    fn keygate_entries_become_the_credential_headers_and_are_not_forwarded() {
        let mut h = headers(&[("sec-websocket-protocol", "chat, keygate, keygate.key.kg_abc, keygate.session.e.y.z")]);
        assert!(take_credentials(&mut h).is_some(), "the marker was offered");
        assert_eq!(h["sec-websocket-protocol"], "chat", "neither the marker nor a credential is forwarded");
        assert_eq!(h["authorization"], "Bearer kg_abc");
        assert_eq!(h["x-session-token"], "e.y.z");

        let mut h = headers(&[("sec-websocket-protocol", "keygate.key.kg_abc"), ("authorization", "Bearer kg_x")]);
        assert!(take_credentials(&mut h).is_none(), "no marker offered");
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
