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
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let chain = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let hops: Vec<IpAddr> = chain.flat_map(|v| v.split(',')).filter_map(|hop| hop.trim().parse().ok()).collect();
        hops.iter().rev().copied().find(|hop| !self.contains(*hop)).or(hops.first().copied()).unwrap_or(peer)
    }
}
