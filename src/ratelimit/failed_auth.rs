//! Failed authentications per client address (`rate_limit.failed_auth_limit` per
//! `failed_auth_window_seconds`). A client that presented that many invalid, revoked or expired
//! keys in a window gets 429 for the rest of it, before its key is even parsed: guessing keys
//! costs the guesser, not the store or the other clients.
//!
//! Counted per instance, in memory: an attacker spread over N instances gets N times the
//! limit, which bounds guessing as well. Off by default: behind a load balancer that is not in
//! `proxy.trusted_proxies`, every client has the balancer's address.
//!
//! An IPv6 client is counted by its /64 (SPEC §17): one host is routinely given a whole /64,
//! and rotating through it is free. A full table evicts its oldest entries rather than stop
//! counting, so a flood of new addresses cannot buy the next address a free pass.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use http::HeaderMap;

use crate::model::RateLimit;
use crate::ratelimit::window_end;
use crate::time::Millis;
use crate::trusted::TrustedProxies;

const SHARDS: usize = 16;

/// Clients tracked at most per shard: a flood from ever new addresses cannot grow memory without
/// bound. When a shard is full, ended windows are dropped (once a window, so a flood cannot make
/// every failure a scan); if it is still full, the oldest client tracked makes room.
const MAX_PER_SHARD: usize = 4096;

/// Who is counted: an IPv4 address, or an IPv6 address's /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(u32),
    V6Prefix(u64),
}

impl Client {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            // An IPv4-mapped address is the IPv4 client it maps.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

pub struct FailedAuthentications {
    rate: Option<RateLimit>,
    trusted: TrustedProxies,
    shards: [Mutex<Shard>; SHARDS],
}

#[derive(Default)]
struct Shard {
    windows: HashMap<Client, Window>,
    /// The clients of `windows`, oldest first.
    order: VecDeque<Client>,
    /// The window in which ended windows were last dropped.
    swept_for: i64,
}

impl Shard {
    /// Makes room for one more client: ended windows go first, then the oldest clients.
    fn make_room(&mut self, end: i64) {
        if self.swept_for != end {
            self.swept_for = end;
            self.windows.retain(|_, window| window.end == end);
            let windows = &self.windows;
            self.order.retain(|client| windows.contains_key(client));
        }
        while self.windows.len() >= MAX_PER_SHARD {
            let Some(oldest) = self.order.pop_front() else { break };
            self.windows.remove(&oldest);
        }
    }
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
        let client = Client::of(client);
        let shard = self.shard(client).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = shard.windows.get(&client).filter(|w| w.end == end && w.count >= rate.limit)?;
        Some((window.end - now.div_euclid(1000)).max(1) as u64)
    }

    /// Counts one failed authentication of `client`.
    pub fn record(&self, client: IpAddr, now: Millis) {
        let Some(rate) = self.rate else { return };
        let end = window_end(rate, now);
        let client = Client::of(client);
        let mut shard = self.shard(client).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !shard.windows.contains_key(&client) {
            if shard.windows.len() >= MAX_PER_SHARD {
                shard.make_room(end);
            }
            shard.order.push_back(client);
        }
        let window = shard.windows.entry(client).or_insert(Window { end, count: 0 });
        if window.end != end {
            *window = Window { end, count: 0 };
        }
        window.count += 1;
    }

    fn shard(&self, client: Client) -> &Mutex<Shard> {
        let index = match client {
            Client::V4(v4) => v4 as usize,
            Client::V6Prefix(prefix) => prefix as usize,
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
    fn an_ipv6_client_is_counted_by_its_64() {
        let failures = limited(2, &[]);
        let now = 1_000_040_000;
        failures.record("2001:db8:0:7::1".parse().unwrap(), now);
        failures.record("2001:db8:0:7:ffff::2".parse().unwrap(), now);
        assert!(failures.refused("2001:db8:0:7::3".parse().unwrap(), now).is_some(), "one /64, one client");
        assert_eq!(failures.refused("2001:db8:0:8::1".parse().unwrap(), now), None, "another /64");
        failures.record("::ffff:203.0.113.7".parse().unwrap(), now);
        failures.record("203.0.113.7".parse().unwrap(), now);
        assert!(failures.refused("203.0.113.7".parse().unwrap(), now).is_some(), "a mapped address is its IPv4");
    }

    #[test]
    fn a_full_table_still_counts_a_new_client() {
        let failures = limited(2, &[]);
        let now = 1_000_040_000;
        // Fill every shard, in this window.
        for n in 0..(SHARDS * MAX_PER_SHARD) as u32 {
            failures.record(IpAddr::V4((n + 1).into()), now);
        }
        let guesser: IpAddr = "203.0.113.7".parse().unwrap();
        failures.record(guesser, now);
        failures.record(guesser, now);
        assert!(failures.refused(guesser, now).is_some(), "counted although its shard was full");
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
