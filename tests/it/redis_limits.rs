//! The shared rate limiter on a real Redis: exact across instances, and the configured
//! behaviour when the backend fails. `scripts/test` runs these once more over TLS
//! (`TEST_REDIS_TLS`, see `common/redis.rs`).

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::redis::RedisServer;
use common::*;
use keygate::config::OnBackendError;

async fn instance(store: &Arc<TestStore>, redis: &RedisServer, policy: OnBackendError) -> TestApp {
    let (url, ca_file) = (redis.url.clone(), redis.ca_file.clone());
    spawn_in(Arc::clone(store), move |c| {
        c.rate_limit.url = url.parse().unwrap();
        c.rate_limit.ca_file = ca_file;
        c.rate_limit.on_backend_error = policy;
    })
    .await
}

/// An instance for counting exactly under concurrency: `deny`, so that a request let through
/// uncounted cannot hide, and a limiter timeout a loaded debug build will not reach (the
/// default 250 ms is for production's sub-millisecond answers); usage flushed each second.
async fn exact_instance(store: &Arc<TestStore>, redis: &RedisServer) -> TestApp {
    let (url, ca_file) = (redis.url.clone(), redis.ca_file.clone());
    spawn_in(Arc::clone(store), move |c| {
        c.rate_limit.url = url.parse().unwrap();
        c.rate_limit.ca_file = ca_file;
        c.rate_limit.on_backend_error = OnBackendError::Deny;
        c.rate_limit.timeout_ms = 5000;
        c.usage.flush_seconds = 1;
    })
    .await
}

#[tokio::test]
async fn headers_are_exact_and_a_raised_limit_applies_mid_window() {
    let redis = RedisServer::start();
    let app = instance(&TestStore::new().await, &redis, OnBackendError::Allow).await;
    app.create_tenant(serde_json::json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = app.limited_key("acme", &["sessions:create"], 2).await;
    let now = now_seconds();
    let reset = (now - now.rem_euclid(DAY as i64) + DAY as i64).to_string();
    for remaining in ["1", "0"] {
        let seen = app.mint(&secret, Some(ORIGIN)).await;
        assert_eq!(seen.status, 201);
        assert_eq!(seen.header("x-ratelimit-limit"), Some("2"));
        assert_eq!(seen.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(seen.header("x-ratelimit-reset"), Some(reset.as_str()));
    }
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    seen.assert_error(429, "RATE_LIMITED");
    assert!(seen.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    app.patch_key(
        key["id"].as_str().unwrap(),
        serde_json::json!({ "rateLimit": { "limit": 3, "windowSeconds": DAY } }),
    )
    .await;
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(seen.status, 201, "the 429 did not count");
    assert_eq!(seen.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(app.get("/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_redis_admit_exactly_the_limit() {
    let redis = RedisServer::start();
    let store = TestStore::new().await;
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(exact_instance(&store, &redis).await);
    }
    instances[0].create_tenant(serde_json::json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = instances[0].limited_key("acme", &["sessions:create"], 25).await;

    // Six clients side by side, two on each instance, 15 requests each: concurrent within and
    // across instances, without 90 requests landing at once on a debug build.
    let clients = (0..6).map(|client| {
        let app = &instances[client % 3];
        let secret = secret.clone();
        async move {
            let mut answers = Vec::new();
            for _ in 0..15 {
                answers.push(app.mint(&secret, Some(ORIGIN)).await);
            }
            answers
        }
    });
    let answers: Vec<_> = futures_util::future::join_all(clients).await.into_iter().flatten().collect();
    let admitted: Vec<_> = answers.iter().filter(|seen| seen.status == 201).collect();
    let limited = answers.iter().filter(|seen| seen.code() == "RATE_LIMITED").count();
    let others: Vec<_> = answers
        .iter()
        .filter(|seen| seen.status != 201 && seen.code() != "RATE_LIMITED")
        .map(|seen| (seen.status, seen.code().to_owned(), seen.body["error"]["message"].clone()))
        .collect();
    assert_eq!((admitted.len(), limited), (25, 65), "exactly the limit, across instances; other answers: {others:?}");
    let mut remaining: Vec<u64> =
        admitted.iter().map(|seen| seen.header("x-ratelimit-remaining").unwrap().parse().unwrap()).collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..25).collect::<Vec<u64>>(), "every admitted request saw its own count");
}

/// SPEC §13 on Redis: a tenant quota shared by 4 keys and 2 instances admits exactly its
/// limit, decided in one script with each key's window and quota; usage adds up exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_quota_across_four_keys_and_two_instances_admits_exactly_its_limit() {
    let redis = RedisServer::start();
    let store = TestStore::new().await;
    let mut instances = Vec::new();
    for _ in 0..2 {
        instances.push(exact_instance(&store, &redis).await);
    }
    let quota = serde_json::json!({ "limit": 300, "period": "month" });
    instances[0].create_tenant(serde_json::json!({ "id": "acme", "name": "Acme", "quota": quota })).await;
    let mut secrets = Vec::new();
    for limit in [1000, 1000, 1000, 40] {
        // The last key's own quota of 50 a day is tighter than its window of 40: the window refuses first.
        let body = serde_json::json!({
            "name": "k", "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN],
            "rateLimit": { "limit": limit, "windowSeconds": DAY },
            "quota": { "limit": 50, "period": "day" },
        });
        secrets.push(instances[0].create_key("acme", body).await.1);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let requests = (0..400).map(|i| {
        let (app, secret) = (&instances[i % 2], secrets[(i / 2) % 4].clone());
        async move { app.mint(&secret, Some(ORIGIN)).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    let admitted = answers.iter().filter(|seen| seen.status == 201).count();
    let limited = answers.iter().filter(|seen| seen.code() == "RATE_LIMITED").count();
    // Each key's quota of 50 a day caps it first (and the last key's window at 40): 190 in all.
    assert_eq!((admitted, limited), (190, 210), "exactly each budget, across instances");

    // Without the keys' quotas, the tenant's 300 a month is what binds: 110 more.
    for key in instances[0].admin_request(reqwest::Method::GET, "/admin/v1/tenants/acme/keys", None).await.body["data"]
        .as_array()
        .unwrap()
    {
        instances[0].patch_key(key["id"].as_str().unwrap(), serde_json::json!({ "quota": null })).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let requests = (0..300).map(|i| {
        let (app, secret) = (&instances[i % 2], secrets[(i / 2) % 3].clone());
        async move { app.mint(&secret, Some(ORIGIN)).await }
    });
    let answers = futures_util::future::join_all(requests).await;
    assert_eq!(answers.iter().filter(|seen| seen.status == 201).count(), 110, "the tenant quota of 300, exactly");
    let tenant = instances[1].admin_request(reqwest::Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(tenant.body["data"]["quota"]["used"], 300, "both instances read Redis's count");

    // Usage: each instance wrote what it counted; together, every request exactly once.
    let today = now_seconds() - now_seconds().rem_euclid(DAY as i64);
    let path = format!(
        "/admin/v1/tenants/acme/usage?from={}&to={}&granularity=day",
        rfc3339(today),
        rfc3339(today + DAY as i64)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let outcomes = loop {
        let seen = instances[0].admin_request(reqwest::Method::GET, &path, None).await;
        let outcomes = seen.body["data"][0]["outcomes"].clone();
        if seen.body["data"][0]["requests"] == 700 || std::time::Instant::now() > deadline {
            break outcomes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(outcomes, serde_json::json!({ "OK": 300, "RATE_LIMITED": 400 }), "700 requests, each counted once");
}

/// Redis lost its counts (restarted empty): the quota starts again from the store's usage
/// counts, not from zero.
#[tokio::test]
async fn a_quota_redis_forgot_is_seeded_from_the_usage_counts() {
    let mut redis = RedisServer::start();
    let (url, ca_file) = (redis.url.clone(), redis.ca_file.clone());
    let app = spawn_in(TestStore::new().await, move |c| {
        c.rate_limit.url = url.parse().unwrap();
        c.rate_limit.ca_file = ca_file;
        c.rate_limit.on_backend_error = OnBackendError::Deny;
        c.usage.flush_seconds = 1;
    })
    .await;
    app.create_tenant(serde_json::json!({ "id": "acme", "name": "Acme", "quota": { "limit": 10, "period": "day" } }))
        .await;
    let (_, secret) = app.limited_key("acme", &["sessions:create"], 100).await;
    for _ in 0..4 {
        assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    }
    // Written to the store, then Redis forgets everything.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    redis.stop();
    redis.start_again();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.get("/readyz").await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "keygate never reached the restarted Redis");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut admitted = 0;
    loop {
        let seen = app.mint(&secret, Some(ORIGIN)).await;
        match seen.status.as_u16() {
            201 => admitted += 1,
            // A serving thread whose connection has not yet found the restarted Redis.
            503 if std::time::Instant::now() < deadline => continue,
            _ => {
                seen.assert_error(429, "RATE_LIMITED");
                break;
            }
        }
    }
    assert_eq!(admitted, 6, "4 of the day's 10 were counted before Redis restarted");
}

#[tokio::test]
async fn a_failed_backend_is_allowed_through_when_so_configured() {
    let mut redis = RedisServer::start();
    let app = instance(&TestStore::new().await, &redis, OnBackendError::Allow).await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    redis.stop();
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(seen.status, 201, "{}", seen.body);
    assert!(seen.header("x-ratelimit-limit").is_none(), "uncounted, so no quota headers");
    app.mint("kg_forged", Some(ORIGIN)).await.assert_error(401, "API_KEY_INVALID");
    // Requests are served, so the instance stays in rotation, and says why it is degraded.
    let ready = app.get("/readyz").await;
    assert_eq!(
        (ready.status.as_u16(), &ready.body["data"]),
        (200, &serde_json::json!({ "status": "ready", "rateLimiter": "unreachable", "preflightIndex": "ready" }))
    );
}

#[tokio::test]
async fn a_failed_backend_falls_back_to_the_local_limiter_when_so_configured() {
    let mut redis = RedisServer::start();
    let app = instance(&TestStore::new().await, &redis, OnBackendError::Local).await;
    app.create_tenant(serde_json::json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &["sessions:create"], 2).await;
    redis.stop();
    let first = app.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"), "counted locally");
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    app.mint(&secret, Some(ORIGIN)).await.assert_error(429, "RATE_LIMITED");
    let ready = app.get("/readyz").await;
    assert_eq!(
        (ready.status.as_u16(), &ready.body["data"]),
        (200, &serde_json::json!({ "status": "ready", "rateLimiter": "unreachable", "preflightIndex": "ready" }))
    );
}

#[tokio::test]
async fn a_failed_backend_is_503_when_so_configured() {
    let mut redis = RedisServer::start();
    let app = instance(&TestStore::new().await, &redis, OnBackendError::Deny).await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    redis.stop();
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    seen.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(seen.header("retry-after").is_some());
    assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN), "the key was identified");
    app.mint("kg_forged", Some(ORIGIN)).await.assert_error(401, "API_KEY_INVALID");
    // Only here does the outage take the instance out of rotation.
    let ready = app.get("/readyz").await;
    ready.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(ready.body["error"]["message"].as_str().unwrap().contains("on_backend_error"), "{}", ready.body);
}

#[tokio::test]
async fn keygate_starts_while_redis_is_down() {
    let mut redis = RedisServer::start();
    redis.stop();
    let app = instance(&TestStore::new().await, &redis, OnBackendError::Deny).await;
    app.get("/readyz").await.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(app.get("/healthz").await.status, 200);
}

/// Mints with `secret` from 4 clients at once until `stop`: each answer's status, and whether
/// it carried quota headers.
fn steady_mints(app: &TestApp, secret: &str, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Vec<(u16, bool)>>> {
    (0..4)
        .map(|_| {
            let (client, url, secret, stop) =
                (app.client.clone(), format!("{}/api/v1/sessions", app.public), secret.to_owned(), Arc::clone(stop));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let response =
                        client.post(&url).bearer_auth(&secret).header("origin", ORIGIN).send().await.unwrap();
                    seen.push((response.status().as_u16(), response.headers().contains_key("x-ratelimit-limit")));
                }
                seen
            })
        })
        .collect()
}

// Multi-threaded: the load runs while the test stops and starts Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_started_under_load_holds_each_policy_then_counts_exactly_again() {
    for policy in [OnBackendError::Allow, OnBackendError::Local, OnBackendError::Deny] {
        let mut redis = RedisServer::start();
        let app = instance(&TestStore::new().await, &redis, policy).await;
        app.create_tenant(serde_json::json!({ "id": "acme", "name": "Acme" })).await;
        let (_, busy) = app.limited_key("acme", &["sessions:create"], 1_000_000).await;

        let stop = Arc::new(AtomicBool::new(false));
        let load = steady_mints(&app, &busy, &stop);
        tokio::time::sleep(Duration::from_millis(200)).await;
        redis.stop();
        tokio::time::sleep(Duration::from_millis(600)).await;
        redis.start_again();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        let mut answers = Vec::new();
        for worker in load {
            answers.extend(worker.await.unwrap());
        }

        // Every answer is the policy's: never a 500, never a 401 for a valid key.
        let outage: Vec<_> = answers.iter().filter(|(status, quota)| (*status, *quota) != (201, true)).collect();
        match policy {
            OnBackendError::Allow => assert!(
                outage.iter().all(|answer| **answer == (201, false)) && !outage.is_empty(),
                "allow: let through uncounted during the outage: {outage:?}"
            ),
            OnBackendError::Local => assert!(outage.is_empty(), "local: counted in process all along: {outage:?}"),
            OnBackendError::Deny => assert!(
                outage.iter().all(|(status, _)| *status == 503) && !outage.is_empty(),
                "deny: 503 during the outage: {outage:?}"
            ),
        }
        assert!(answers.len() > 20, "{policy:?}: steady load: {}", answers.len());

        // Redis is back and empty: a new key's window is counted exactly again.
        let (_, fresh) = app.limited_key("acme", &["sessions:create"], 5).await;
        let mut statuses = Vec::new();
        for _ in 0..8 {
            statuses.push(app.mint(&fresh, Some(ORIGIN)).await.status.as_u16());
        }
        assert_eq!(statuses, [201, 201, 201, 201, 201, 429, 429, 429], "{policy:?}");
    }
}

/// Two keygate processes whose wall clocks are 90 minutes apart (libfaketime) share one window
/// on Redis: the window is read off Redis's clock, so together they admit exactly the limit,
/// and every answer names the same reset and a `Retry-After` true to real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_whose_clocks_disagree_share_one_window() {
    use common::process;
    const HOUR: i64 = 3600;
    let redis = RedisServer::start();
    let upstream = upstream::Upstream::start().await;
    let store = TestStore::new().await;
    let ca_file = redis.ca_file.as_ref().map(|file| format!("ca_file = \"{file}\"\n")).unwrap_or_default();
    let config = format!(
        "[rate_limit]\nurl = \"{}\"\n{ca_file}on_backend_error = \"deny\"\n\
         [[routes]]\nprefix = \"/api/v1/orders\"\nmethods = [\"GET\"]\nupstream = \"{}\"\n",
        redis.url, upstream.url
    );
    let mut instances = [("behind", "-45m"), ("ahead", "+45m")].map(|(name, offset)| {
        process::serve(&process::write_config(&store, name, &config), &process::skewed_clock(offset))
    });
    let client = reqwest::Client::new();

    // The clocks do disagree: keygate's own answers are dated by its clock.
    let mut dates = Vec::new();
    for instance in &instances {
        let answer = client.get(format!("http://{}/healthz", instance.public)).send().await.unwrap();
        let date = answer.headers()["date"].to_str().unwrap();
        dates.push(chrono::DateTime::parse_from_rfc2822(date).unwrap().timestamp());
    }
    let apart = dates[1] - dates[0];
    assert!((5395..=5405).contains(&apart), "the instances' clocks are 90 minutes apart: {apart} s");

    let admin = |path: &str, body: serde_json::Value| {
        client.post(format!("http://{}{path}", instances[0].admin)).bearer_auth(ADMIN_TOKEN).json(&body).send()
    };
    let tenant = admin("/admin/v1/tenants", serde_json::json!({ "id": "acme", "name": "Acme" })).await.unwrap();
    assert_eq!(tenant.status(), 201);
    let rate = serde_json::json!({ "limit": 6, "windowSeconds": HOUR });
    let key = admin("/admin/v1/tenants/acme/keys", serde_json::json!({ "name": "k", "scopes": [], "rateLimit": rate }));
    let key: serde_json::Value = key.await.unwrap().json().await.unwrap();
    let secret = key["data"]["secret"].as_str().unwrap().to_owned();

    // Off the hour's last seconds, so that Redis's window does not end mid-test.
    if HOUR - now_seconds().rem_euclid(HOUR) < 20 {
        tokio::time::sleep(Duration::from_secs(21)).await;
    }
    let now = now_seconds();
    let reset = now - now.rem_euclid(HOUR) + HOUR;
    let mut answers = Vec::new();
    for turn in 0..10 {
        let instance = &instances[turn % 2];
        let answer = client.get(format!("http://{}/api/v1/orders", instance.public)).bearer_auth(&secret).send().await;
        answers.push(Seen::from(answer.unwrap()).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|seen| seen.status.as_u16()).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 429, 429, 429, 429],
        "exactly the limit, both instances together"
    );
    let remaining: Vec<&str> = answers.iter().map(|seen| seen.header("x-ratelimit-remaining").unwrap()).collect();
    assert_eq!(remaining, ["5", "4", "3", "2", "1", "0", "0", "0", "0", "0"], "one count");
    for seen in &answers {
        assert_eq!(seen.header("x-ratelimit-reset"), Some(reset.to_string().as_str()), "one window, by real time");
    }
    for seen in &answers[6..] {
        seen.assert_error(429, "RATE_LIMITED");
        let retry_after: i64 = seen.header("retry-after").unwrap().parse().unwrap();
        assert!((retry_after - (reset - now)).abs() <= 2, "Retry-After {retry_after} s, by real time");
    }
    assert_eq!(upstream.count(), 6, "only the admitted requests reached the upstream");
    for instance in &mut instances {
        instance.child.kill().unwrap();
        instance.child.wait().unwrap();
    }
}

/// The script's own calendar, used when an instance's bounds for a month do not hold Redis's
/// clock: every day from 1970 to 2100, against chrono.
#[test]
fn the_script_s_months_are_the_utc_calendar_s() {
    use chrono::{Datelike, NaiveDate};
    let script = include_str!("../../src/ratelimit/redis/budgets.lua");
    let calendar = script.split("-- calendar: end").next().unwrap();
    let probe = format!(
        "{calendar}\nlocal answer = {{}}\nfor days = tonumber(ARGV[1]), tonumber(ARGV[2]) - 1 do\n  \
         local s, e = month_of(days)\n  answer[#answer + 1] = s\n  answer[#answer + 1] = e\nend\nreturn answer"
    );
    let redis = RedisServer::start();
    let client = match &redis.ca_file {
        None => ::redis::Client::open(redis.url.as_str()).unwrap(),
        Some(file) => {
            let root_cert = Some(std::fs::read(file).unwrap());
            ::redis::Client::build_with_tls(
                redis.url.as_str(),
                ::redis::TlsCertificates { client_tls: None, root_cert },
            )
            .unwrap()
        }
    };
    let mut connection = client.get_connection().unwrap();
    let last = NaiveDate::from_ymd_opt(2100, 1, 1).unwrap().signed_duration_since(NaiveDate::default()).num_days();
    let bounds: Vec<i64> = ::redis::cmd("EVAL").arg(&probe).arg(0).arg(0).arg(last).query(&mut connection).unwrap();
    let seconds = |date: NaiveDate| date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    for days in 0..last {
        let date = NaiveDate::default() + chrono::Days::new(days as u64);
        let first = date.with_day(1).unwrap();
        let next = first.checked_add_months(chrono::Months::new(1)).unwrap();
        let i = 2 * days as usize;
        assert_eq!((bounds[i], bounds[i + 1]), (seconds(first), seconds(next)), "{date}");
    }
}
