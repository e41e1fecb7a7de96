//! The shared limiter on a three-node Redis Cluster (SPEC §13, `redis+cluster://`): every
//! budget of a request under its tenant's hash tag, so one script decides them in one slot;
//! exact across two instances; and a node restarted mid-run handled by `on_backend_error`.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_cluster::RedisCluster;
use common::*;
use keygate::config::OnBackendError;
use serde_json::json;

async fn instance(store: &Arc<TestStore>, cluster: &RedisCluster) -> TestApp {
    let url = cluster.url.clone();
    spawn_in(Arc::clone(store), move |c| {
        c.rate_limit.url = url.parse().unwrap();
        c.rate_limit.on_backend_error = OnBackendError::Deny;
        c.usage.flush_seconds = 1;
    })
    .await
}

/// A tenant with a quota of `quota` a day and two keys that may mint sessions; returns the
/// keys' secrets.
async fn tenant(app: &TestApp, id: &str, quota: u64, window: u64) -> Vec<String> {
    app.create_tenant(json!({ "id": id, "name": id, "quota": { "limit": quota, "period": "day" } })).await;
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let body = json!({
            "name": "k", "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN],
            "rateLimit": { "limit": window, "windowSeconds": DAY },
        });
        secrets.push(app.create_key(id, body).await.1);
    }
    secrets
}

/// `count` mints spread over `instances` and `secrets`, all at once: the statuses.
async fn mints(instances: &[TestApp], secrets: &[String], count: usize) -> Vec<u16> {
    let requests = (0..count).map(|i| {
        let (app, secret) = (&instances[i % instances.len()], secrets[(i / 2) % secrets.len()].clone());
        async move { app.mint(&secret, Some(ORIGIN)).await.status.as_u16() }
    });
    futures_util::future::join_all(requests).await
}

fn admitted(statuses: &[u16]) -> usize {
    statuses.iter().filter(|status| **status == 201).count()
}

/// Tenant ids on three different nodes of `cluster`.
fn spread_tenants(cluster: &RedisCluster) -> Vec<String> {
    let mut chosen: Vec<(usize, String)> = Vec::new();
    for i in 0.. {
        let id = format!("tenant{i}");
        let node = cluster.node_of(&id);
        if chosen.iter().all(|(taken, _)| *taken != node) {
            chosen.push((node, id));
        }
        if chosen.len() == 3 {
            break;
        }
    }
    chosen.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_two_instances_admit_exactly_every_budget_and_ride_out_a_node_restart() {
    let mut cluster = RedisCluster::start();
    let store = TestStore::new().await;
    let instances = [instance(&store, &cluster).await, instance(&store, &cluster).await];
    let tenants = spread_tenants(&cluster);
    let mut secrets = Vec::new();
    for id in &tenants {
        secrets.push(tenant(&instances[0], id, 60, 1000).await);
    }
    // A window of 20 a day on one more key of the first tenant: its window binds first.
    let body = json!({
        "name": "narrow", "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN],
        "rateLimit": { "limit": 20, "windowSeconds": DAY },
    });
    let narrow = instances[0].create_key(&tenants[0], body).await.1;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Every tenant's quota and the narrow key's window, exact across both instances.
    assert_eq!(admitted(&mints(&instances, std::slice::from_ref(&narrow), 50).await), 20, "the window of 20");
    for (id, keys) in tenants.iter().zip(&secrets) {
        let first = admitted(&mints(&instances, keys, 30).await);
        assert_eq!(first, 30, "{id}: within its quota");
    }
    let last = admitted(&mints(&instances, &secrets[0], 30).await);
    assert_eq!(last, 10, "the first tenant's quota of 60 (20 + 30 used): 10 more, exactly");

    // The second tenant's node goes down. Under `deny` its requests are refused with 503; the
    // other tenants, on other nodes, are served as before.
    let down = cluster.node_of(&tenants[1]);
    cluster.stop_node(down);
    let statuses = mints(&instances, &secrets[1], 10).await;
    assert!(statuses.iter().all(|status| *status == 503), "refused while its node is down: {statuses:?}");
    assert_eq!(admitted(&mints(&instances, &secrets[2], 10).await), 10, "another node's tenant is served");
    // Wait past a flush, so the store holds every count the lost node had.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cluster.start_node(down);
    cluster.wait_until_ok();

    // The restarted node is empty: the quota is seeded from the usage counts (30 admitted; the
    // 503s were refused at step 4 and count in no quota), so exactly 30 more are admitted.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut more = 0;
    loop {
        let statuses = mints(&instances, &secrets[1], 10).await;
        more += admitted(&statuses);
        if statuses.contains(&429) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node never answered: {statuses:?}");
        if !statuses.contains(&201) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(more, 30, "the quota of 60, exactly, across the restart");
    let shown =
        instances[1].admin_request(reqwest::Method::GET, &format!("/admin/v1/tenants/{}", tenants[1]), None).await;
    assert_eq!(shown.body["data"]["quota"]["used"], 60);
}
