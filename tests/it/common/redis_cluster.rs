//! A real three-node Redis Cluster for one test: three `redis-server --cluster-enabled`
//! processes on loopback ports in a temporary folder, joined by `redis-cli --cluster create`,
//! masters only. A node can be stopped and started again on its port with its own
//! `nodes.conf`, so it rejoins with its slots (and, like any restarted Redis here, empty).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisCluster {
    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub url: String,
    pub ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli").args(["-p", &port.to_string()]).args(args).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut cluster = Self { url: String::new(), ports: ports.clone(), nodes: vec![None, None, None], dir };
        for node in 0..3 {
            cluster.start_node(node);
        }
        let addresses: Vec<String> = ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs (scripts/test installs redis-tools)");
        assert!(created.success(), "redis-cli --cluster create");
        cluster.wait_until_ok();
        cluster.url = format!("redis+cluster://{}", addresses.join(","));
        cluster
    }

    /// Starts node `node` on its port, with its folder's `nodes.conf`.
    pub fn start_node(&mut self, node: usize) {
        let folder = self.dir.path().join(format!("node{node}"));
        std::fs::create_dir_all(&folder).unwrap();
        let port = self.ports[node].to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"])
            // The other nodes' slots stay served while one is down.
            .args(["--cluster-require-full-coverage", "no", "--save", "", "--appendonly", "no"])
            .current_dir(&folder)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        self.nodes[node] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while cli(self.ports[node], &["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "cluster node {node} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop_node(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until every node sees the cluster as served in full.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ports.iter().all(|port| cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")) {
            assert!(Instant::now() < deadline, "the cluster never reached cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node that serves hash tag `{tag}`: the one that answers a key of it itself, rather
    /// than with `MOVED`.
    pub fn node_of(&self, tag: &str) -> usize {
        let key = format!("{{{tag}}}probe");
        (0..3)
            .find(|node| !cli(self.ports[*node], &["GET", &key]).contains("MOVED"))
            .expect("some node serves every slot")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in 0..3 {
            self.stop_node(node);
        }
    }
}
