//! Failed authentications per client address (`rate_limit.failed_auth_limit` per
//! `failed_auth_window_seconds`). A client that presented that many invalid, revoked or expired
//! keys in a window gets 429 for the rest of it, before its key is even parsed: guessing keys
//! costs the guesser, not the store or the other clients.
//!
//! Counted per instance, in memory: an attacker spread over N instances gets N times the
//! limit, which bounds guessing as well. Off by default: behind a load balancer that is not in
//! `proxy.trusted_proxies`, every client has the balancer's address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use http::HeaderMap;

use crate::model::RateLimit;
use crate::ratelimit::window_end;
use crate::time::Millis;
use crate::trusted::TrustedProxies;

const SHARDS: usize = 16;

/// Addresses tracked at most per shard: a flood from ever new addresses (IPv6 makes that cheap)
/// cannot grow memory without bound. When a shard is full, ended windows are dropped (once a
/// window, so a flood cannot make every failure a scan); if it is still full, a new address is
/// not counted.
const MAX_PER_SHARD: usize = 4096;

pub struct FailedAuthentications {
    rate: Option<RateLimit>,
    trusted: TrustedProxies,
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Default)]
struct Shard {
    windows: HashMap<IpAddr, Window>,
    /// The window in which ended windows were last dropped.
    swept_for: i64,
}

#[derive(Clone, Copy)]
struct Window {
    end: i64,
    count: u64,
}

impl FailedAuthentications {
    /// `rate`: `None` turns the limit off. `trusted`: proxies whose `X-Forwarded-For` names
    /// the client.
    pub fn new(rate: Option<RateLimit>, trusted: TrustedProxies) -> Self {
        Self { rate, trusted, shards: Default::default() }
    }

    /// The client's address ([`TrustedProxies::client`]). `None` when there is no limit, so
    /// that costs nothing.
    pub fn client(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        self.rate?;
        Some(self.trusted.client(peer?.ip(), headers))
    }

    /// Seconds until `client` may try again, if it has used up its failures for this window.
    pub fn refused(&self, client: IpAddr, now: Millis) -> Option<u64> {
        let rate = self.rate?;
        let end = window_end(rate, now);
        let shard = self.shard(client).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = shard.windows.get(&client).filter(|w| w.end == end && w.count >= rate.limit)?;
        Some((window.end - now.div_euclid(1000)).max(1) as u64)
    }

    /// Counts one failed authentication of `client`.
    pub fn record(&self, client: IpAddr, now: Millis) {
        let Some(rate) = self.rate else { return };
        let end = window_end(rate, now);
        let mut shard = self.shard(client).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if shard.windows.len() >= MAX_PER_SHARD && !shard.windows.contains_key(&client) {
            if shard.swept_for != end {
                shard.swept_for = end;
                shard.windows.retain(|_, window| window.end == end);
            }
            if shard.windows.len() >= MAX_PER_SHARD {
                return;
            }
        }
        let window = shard.windows.entry(client).or_insert(Window { end, count: 0 });
        if window.end != end {
            *window = Window { end, count: 0 };
        }
        window.count += 1;
    }

    fn shard(&self, client: IpAddr) -> &Mutex<Shard> {
        let index = match client {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            // The /64 decides: one host owns a whole /64 easily.
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as usize,
        };
        &self.shards[index % SHARDS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(limit: u64, trusted: &[&str]) -> FailedAuthentications {
        let trusted = TrustedProxies::new(trusted.iter().map(|net| net.parse().unwrap()).collect());
        FailedAuthentications::new(Some(RateLimit { limit, window_seconds: 60 }), trusted)
    }

    #[test]
    fn a_client_is_refused_after_its_limit_until_the_window_ends() {
        let failures = limited(2, &[]);
        let (client, other) = ("203.0.113.7".parse().unwrap(), "203.0.113.8".parse().unwrap());
        let now = 1_000_040_000; // 20 s before its minute window ends
        failures.record(client, now);
        assert_eq!(failures.refused(client, now), None);
        failures.record(client, now);
        assert_eq!(failures.refused(client, now), Some(40));
        assert_eq!(failures.refused(other, now), None, "others are not affected");
        assert_eq!(failures.refused(client, now + 40_000), None, "a new window starts afresh");
        assert_eq!(FailedAuthentications::new(None, TrustedProxies::default()).refused(client, now), None);
    }

    #[test]
    fn the_client_is_the_peer_or_the_nearest_untrusted_forwarded_address() {
        let failures = limited(1, &["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.2".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.9:4000".parse().unwrap();
        // A client cannot choose its address by sending X-Forwarded-For itself.
        assert_eq!(failures.client(Some(stranger), &headers), Some("192.0.2.9".parse().unwrap()));
        // Through the trusted proxy, the nearest untrusted hop: 198.51.100.1 may be forged.
        assert_eq!(failures.client(Some(proxy), &headers), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(failures.client(Some(proxy), &HeaderMap::new()), Some("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_flood_of_new_addresses_stays_bounded() {
        let failures = limited(1, &[]);
        for n in 0..(SHARDS * MAX_PER_SHARD * 2) as u32 {
            failures.record(IpAddr::V4(n.into()), 1_000_000_000);
        }
        let tracked: usize = failures.shards.iter().map(|s| s.lock().unwrap().windows.len()).sum();
        assert!(tracked <= SHARDS * MAX_PER_SHARD);
    }
}
