//! Trusted proxies (`proxy.trusted_proxies`): the peers whose `X-Forwarded-*` headers keygate
//! believes. Whatever needs the client's address asks here: the failed-authentication limit,
//! the request log, and the proxy's own `X-Forwarded-For`.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

/// Shared, not copied: the request log clones it for every request.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks.into())
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address: the socket peer, or, when the peer is a trusted proxy, the
    /// nearest address in `X-Forwarded-For` that is not one (the farthest, when all are).
    ///
    /// The chain is walked from the nearest hop. A hop that does not parse (`ip`, `ip:port` and
    /// `[v6]:port` do) ends the walk (SPEC §17): everything left of it was written by someone
    /// keygate cannot vouch for, so the client is the last hop that parsed, never one further
    /// left.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let chain = headers.get_all("x-forwarded-for").iter().map(|v| v.to_str().unwrap_or(""));
        let hops: Vec<&str> = chain.flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(address) = parse_hop(hop) else { break };
            client = address;
            if !self.contains(address) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` hop: an address, `ipv4:port` or `[ipv6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|socket| socket.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(chain: &str) -> String {
        let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", chain.parse().unwrap());
        trusted.client("10.0.0.1".parse().unwrap(), &headers).to_string()
    }

    #[test]
    fn the_walk_ends_at_a_hop_that_does_not_parse() {
        assert_eq!(client("198.51.100.1, 203.0.113.7"), "203.0.113.7");
        assert_eq!(client("198.51.100.1, 203.0.113.7:4711"), "203.0.113.7", "ip:port parses");
        assert_eq!(client("198.51.100.1, [2001:db8::7]:4711"), "2001:db8::7", "[v6]:port parses");
        // Before, the unparsable hop was skipped and the client was the one the sender wrote.
        assert_eq!(client("198.51.100.1, garbage, 10.0.0.2"), "10.0.0.2", "the last hop that parsed");
        assert_eq!(client("198.51.100.1, not-an-address"), "10.0.0.1", "no hop parsed: the peer");
        assert_eq!(client("10.0.0.3, 10.0.0.2"), "10.0.0.3", "all trusted: the farthest");
    }
}
