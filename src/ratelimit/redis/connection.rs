//! Connections to the shared limiter's Redis: one server (`redis://`, `rediss://`, `unix://`)
//! or a Redis Cluster (`redis+cluster://host1:7000,host2:7000`, `rediss+cluster://` over TLS).
//! Each serving thread makes its own, lazily, so keygate starts while Redis is down and a
//! thread's requests wait only on a connection that thread drives (docs/design.md, "Serving
//! connections"). A cluster connection learns the slots from the nodes given, follows `MOVED`
//! and reconnects to a node that restarted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[cfg(feature = "tls")]
use redis::TlsCertificates;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult, ScriptInvocation};

/// Where the limiter's counters live.
enum Target {
    Server { client: redis::Client, config: ConnectionManagerConfig },
    Cluster { client: ClusterClient, config: ClusterConfig },
}

pub(super) struct Connections {
    target: Target,
    /// Tells these connections from another limiter's (tests run many in one process).
    id: u64,
}

/// One thread's connection, to a server or to a cluster.
#[derive(Clone)]
pub(super) enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

thread_local! {
    /// Each thread's own connection of each limiter; a thread's connections end with it.
    static CONNECTIONS: RefCell<HashMap<u64, Connection>> = RefCell::new(HashMap::new());
}

/// The nodes of a `redis+cluster://` (or `rediss+cluster://`) URL as URLs of their own, each
/// with the first node's credentials; `None` for any other URL.
fn cluster_nodes(url: &str) -> Option<Result<Vec<String>, String>> {
    let (scheme, rest) = match url.split_once("://")? {
        ("redis+cluster", rest) => ("redis", rest),
        ("rediss+cluster", rest) => ("rediss", rest),
        _ => return None,
    };
    let (credentials, nodes) = match rest.split_once('@') {
        Some((credentials, nodes)) if !credentials.contains(',') => (format!("{credentials}@"), nodes),
        _ => (String::new(), rest),
    };
    let nodes: Vec<&str> = nodes.trim_end_matches('/').split(',').collect();
    if nodes.iter().any(|node| node.is_empty() || node.contains(['@', '/', '?'])) {
        return Some(Err("a cluster URL lists host:port nodes, credentials before the first only".to_owned()));
    }
    Some(Ok(nodes.iter().map(|node| format!("{scheme}://{credentials}{node}")).collect()))
}

/// The authorities `ca_file` names, trusted instead of the system's for `rediss://`.
#[cfg(feature = "tls")]
fn authorities(ca_file: Option<&str>) -> Result<Option<TlsCertificates>, String> {
    let Some(file) = ca_file else { return Ok(None) };
    let root_cert = std::fs::read(file).map_err(|e| format!("rate_limit.ca_file {file}: {e}"))?;
    Ok(Some(TlsCertificates { client_tls: None, root_cert: Some(root_cert) }))
}

impl Connections {
    /// `timeout` bounds connecting and each answer; `ca_file`, for TLS, the authorities to
    /// trust instead of the system's.
    pub(super) fn new(url: &str, ca_file: Option<&str>, timeout: Duration) -> Result<Self, String> {
        #[cfg(feature = "tls")]
        let certificates = authorities(ca_file)?;
        // Without TLS, `rate_limit.ca_file` and `rediss://` are refused at load (`crate::config`).
        #[cfg(not(feature = "tls"))]
        let _ = ca_file;
        let target = match cluster_nodes(url) {
            Some(nodes) => {
                let builder = ClusterClientBuilder::new(nodes?).retries(1);
                #[cfg(feature = "tls")]
                let builder = match certificates {
                    Some(certificates) => builder.certs(certificates),
                    None => builder,
                };
                let client = builder.build().map_err(|e| e.to_string())?;
                let config = ClusterConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
                Target::Cluster { client, config }
            }
            None => {
                #[cfg(feature = "tls")]
                let client = match certificates {
                    None => redis::Client::open(url),
                    Some(certificates) => redis::Client::build_with_tls(url, certificates),
                };
                #[cfg(not(feature = "tls"))]
                let client = redis::Client::open(url);
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                Target::Server { client: client.map_err(|e| e.to_string())?, config }
            }
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Ok(Self { target, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) })
    }

    /// This thread's connection, made (lazily: it connects on first use) if it has none.
    pub(super) fn get(&self) -> Result<Connection, String> {
        CONNECTIONS.with_borrow_mut(|connections| {
            if let Some(connection) = connections.get(&self.id) {
                return Ok(connection.clone());
            }
            let connection = match &self.target {
                Target::Server { client, config } => Connection::Server(
                    ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                        .map_err(|e| e.to_string())?,
                ),
                Target::Cluster { client, config } => {
                    Connection::Cluster(client.get_pending_async_connection_with_config(config.clone()))
                }
            };
            connections.insert(self.id, connection.clone());
            Ok(connection)
        })
    }
}

impl Connection {
    pub(super) async fn invoke<T: FromRedisValue>(&mut self, invocation: &ScriptInvocation<'_>) -> RedisResult<T> {
        match self {
            Self::Server(connection) => invocation.invoke_async(connection).await,
            Self::Cluster(connection) => invocation.invoke_async(connection).await,
        }
    }

    pub(super) async fn query<T: FromRedisValue>(&mut self, command: &Cmd) -> RedisResult<T> {
        match self {
            Self::Server(connection) => command.query_async(connection).await,
            Self::Cluster(connection) => command.query_async(connection).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_nodes;

    #[test]
    fn a_cluster_url_names_each_node_with_the_first_node_s_credentials() {
        let nodes = cluster_nodes("redis+cluster://:pw@h1:7000,h2:7001").unwrap().unwrap();
        assert_eq!(nodes, ["redis://:pw@h1:7000", "redis://:pw@h2:7001"]);
        let nodes = cluster_nodes("rediss+cluster://h1:7000").unwrap().unwrap();
        assert_eq!(nodes, ["rediss://h1:7000"]);
        assert!(cluster_nodes("redis://h1:6379").is_none());
        assert!(cluster_nodes("redis+cluster://h1:7000,u:p@h2:7001").unwrap().is_err());
        assert!(cluster_nodes("redis+cluster://h1:7000,,h2:7001").unwrap().is_err());
    }
}
