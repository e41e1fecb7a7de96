//! Usage counts (SPEC §13) against a real keygate: every request that passed steps 1–3 is
//! counted for its key, per UTC hour, by outcome; written behind in one batched write per
//! `usage.flush_seconds` and at shutdown; read back by key, by tenant (summed or split by key),
//! by hour or day, as JSON or CSV. Two instances add up exactly.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use keygate::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

const HOUR: i64 = 3600;

fn counting(config: &mut Config) {
    config.usage.flush_seconds = 1;
}

/// `?from=&to=` covering the hour before this one to two after (or the day before to the day
/// after): the requests of a test all fall inside, whatever hour it runs in.
fn around_now(granularity: &str) -> String {
    let unit = if granularity == "day" { 24 * HOUR } else { HOUR };
    let this = now_seconds() - now_seconds().rem_euclid(unit);
    format!("from={}&to={}&granularity={granularity}", rfc3339(this - unit), rfc3339(this + 2 * unit))
}

fn total(answer: &Value) -> u64 {
    answer["data"].as_array().unwrap().iter().map(|bucket| bucket["requests"].as_u64().unwrap()).sum()
}

/// Outcomes summed over every bucket (and key) of an answer.
fn outcomes(answer: &Value) -> Value {
    let mut sums = serde_json::Map::new();
    for bucket in answer["data"].as_array().unwrap() {
        for (outcome, n) in bucket["outcomes"].as_object().unwrap() {
            let before = sums.get(outcome).and_then(Value::as_u64).unwrap_or(0);
            sums.insert(outcome.clone(), json!(before + n.as_u64().unwrap()));
        }
    }
    Value::Object(sums)
}

/// The usage at `path` once it holds `expected` requests (written behind, so polled), and
/// then read once more after a further flush: nothing is counted twice.
async fn settled(app: &TestApp, path: &str, expected: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = app.admin_request(Method::GET, path, None).await;
        assert_eq!(seen.status, 200, "{path}: {}", seen.body);
        if total(&seen.body) >= expected || Instant::now() > deadline {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let again = app.admin_request(Method::GET, path, None).await;
            assert_eq!(total(&again.body), expected, "{path}: {}", again.body);
            return again.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn every_request_past_step_3_is_counted_once_by_its_outcome_and_read_by_key_tenant_hour_and_day() {
    let (app, _upstream) = spawn_gateway(counting).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme", "modules": ["orders"] })).await;
    let (key, secret) = app.limited_key("acme", &["orders:read", "sessions:create"], 7).await;
    let (other, other_secret) = app.limited_key("acme", &[], 100).await;
    let (revoked, revoked_secret) = app.limited_key("acme", &["orders:read"], 100).await;
    let revoked_id = revoked["id"].as_str().unwrap();
    app.admin_request(Method::POST, &format!("/admin/v1/keys/{revoked_id}/revoke"), None).await;

    let get = |path: &str| app.request("GET", path).key(&secret);
    assert_eq!(get("/api/v1/orders").send().await.status, 200);
    assert_eq!(get("/api/v1/orders").send().await.status, 200);
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    assert_eq!(get("/api/v1/open?status=404").send().await.status, 404);
    assert_eq!(get("/api/v1/open?status=503").send().await.status, 503);
    app.request("POST", "/api/v1/orders").key(&secret).send().await.assert_error(403, "SCOPE_NOT_GRANTED");
    get("/api/v1/orders").origin("https://elsewhere.example").send().await.assert_error(403, "ORIGIN_NOT_ALLOWED");
    // The limit of 7 is used up: refused at step 4, and counted as such.
    get("/api/v1/orders").send().await.assert_error(429, "RATE_LIMITED");
    get("/api/v1/orders").send().await.assert_error(429, "RATE_LIMITED");
    assert_eq!(app.request("GET", "/api/v1/open").key(&other_secret).send().await.status, 200);
    // Not past step 3: never counted, for no key.
    app.request("GET", "/api/v1/orders").key(&revoked_secret).send().await.assert_error(401, "API_KEY_REVOKED");
    app.request("GET", "/api/v1/orders").key("kg_unknown").send().await.assert_error(401, "API_KEY_INVALID");
    app.request("GET", "/api/v1/orders").send().await.assert_error(401, "API_KEY_REQUIRED");

    let key_id = key["id"].as_str().unwrap();
    let by_key = settled(&app, &format!("/admin/v1/keys/{key_id}/usage?{}", around_now("hour")), 9).await;
    let expected = json!({
        "OK": 3, "UPSTREAM_4XX": 1, "UPSTREAM_5XX": 1, "SCOPE_NOT_GRANTED": 1, "ORIGIN_NOT_ALLOWED": 1,
        "RATE_LIMITED": 2,
    });
    assert_eq!(outcomes(&by_key), expected);
    let bucket = &by_key["data"][0];
    let start = bucket["start"].as_str().unwrap();
    assert!(start.ends_with(":00:00Z"), "buckets start on the hour: {start}");
    assert!(bucket.get("keyId").is_none());
    let revoked_usage = app
        .admin_request(Method::GET, &format!("/admin/v1/keys/{revoked_id}/usage?{}", around_now("hour")), None)
        .await;
    assert_eq!(revoked_usage.body, json!({ "data": [] }), "a request refused at step 3 is not counted");

    let tenant = settled(&app, &format!("/admin/v1/tenants/acme/usage?{}", around_now("day")), 10).await;
    let mut with_other = expected.clone();
    with_other["OK"] = json!(4);
    assert_eq!(outcomes(&tenant), with_other);
    assert!(tenant["data"][0]["start"].as_str().unwrap().ends_with("T00:00:00Z"), "days start at midnight UTC");

    let split = settled(&app, &format!("/admin/v1/tenants/acme/usage?groupBy=key&{}", around_now("hour")), 10).await;
    let other_id = other["id"].as_str().unwrap();
    let of = |id: &str| -> u64 {
        split["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["keyId"] == id)
            .map(|b| b["requests"].as_u64().unwrap())
            .sum()
    };
    assert_eq!((of(key_id), of(other_id), of(revoked_id)), (9, 1, 0));

    // The same rows as CSV, with a header line.
    let csv = app
        .client
        .get(format!("{}/admin/v1/tenants/acme/usage?groupBy=key&{}", app.admin, around_now("hour")))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[..6], ["start", "keyId", "requests", "OK", "UPSTREAM_4XX", "UPSTREAM_5XX"]);
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let sum = |key: &str, name: &str| -> u64 {
        rows.iter().filter(|row| row[1] == key).map(|row| row[column(name)].parse::<u64>().unwrap()).sum()
    };
    assert_eq!((sum(key_id, "requests"), sum(key_id, "OK"), sum(key_id, "RATE_LIMITED")), (9, 3, 2));
    assert_eq!(sum(other_id, "requests"), 1);
}

#[tokio::test]
async fn a_usage_query_that_is_not_aligned_ordered_or_bounded_is_refused_with_details() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, _) = app.limited_key("acme", &[], 10).await;
    let id = key["id"].as_str().unwrap();
    let refused = [
        ("", vec!["from", "to"]),
        ("from=2026-12-01T00:00:00Z", vec!["to"]),
        ("from=2026-12-01T00:30:00Z&to=2026-12-01T02:00:00Z", vec!["from"]),
        ("from=2026-12-01T00:00:00Z&to=2026-12-01T02:00:00Z&granularity=day", vec!["to"]),
        ("from=2026-12-02T00:00:00Z&to=2026-12-01T00:00:00Z&granularity=day", vec!["to"]),
        ("from=2026-12-01T00:00:00Z&to=2026-12-01T00:00:00Z", vec!["to"]),
        ("from=2026-12-01T00:00:00Z&to=2027-01-01T01:00:00Z", vec!["to"]),
        ("from=2026-01-01T00:00:00Z&to=2027-02-06T00:00:00Z&granularity=day", vec!["to"]),
        ("from=yesterday&to=2026-12-01T00:00:00Z&granularity=week", vec!["granularity", "from"]),
        ("from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z&groupBy=key", vec!["groupBy"]),
    ];
    for (query, paths) in refused {
        let seen = app.admin_request(Method::GET, &format!("/admin/v1/keys/{id}/usage?{query}"), None).await;
        seen.assert_error(400, "VALIDATION_ERROR");
        let named: Vec<&str> =
            seen.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert_eq!(named, paths, "{query}: {}", seen.body);
    }
    let month = "from=2026-12-01T00:00:00Z&to=2027-01-01T00:00:00Z";
    let seen =
        app.admin_request(Method::GET, &format!("/admin/v1/tenants/acme/usage?{month}&groupBy=owner"), None).await;
    seen.assert_error(400, "VALIDATION_ERROR");
    for path in [format!("/admin/v1/keys/key_nothere/usage?{month}"), format!("/admin/v1/tenants/nobody/usage?{month}")]
    {
        app.admin_request(Method::GET, &path, None).await.assert_error(404, "NOT_FOUND");
    }
    // A whole month of hours, and a year of days, with nothing in them.
    let seen = app.admin_request(Method::GET, &format!("/admin/v1/keys/{id}/usage?{month}"), None).await;
    assert_eq!((seen.status.as_u16(), seen.body.clone()), (200, json!({ "data": [] })));
    let year = "from=2026-01-01T00:00:00Z&to=2027-02-05T00:00:00Z&granularity=day";
    assert_eq!(app.admin_request(Method::GET, &format!("/admin/v1/tenants/acme/usage?{year}"), None).await.status, 200);
}

#[tokio::test]
async fn two_instances_add_up_exactly_and_a_graceful_stop_writes_what_was_counted() {
    // Flushed only at shutdown: what reaches the store was written by the stop.
    let hourly = |config: &mut Config| config.usage.flush_seconds = 3600;
    let store = TestStore::new().await;
    let (first, _upstream) = spawn_gateway_in(std::sync::Arc::clone(&store), hourly).await;
    first.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = first.limited_key("acme", &[], 1000).await;
    let routes = first.config.routes.clone();
    let second = spawn_in(std::sync::Arc::clone(&store), |config| {
        config.routes = routes;
        hourly(config);
    })
    .await;
    let mut sent = Vec::new();
    for (app, n) in [(&first, 5), (&second, 7)] {
        for _ in 0..n {
            sent.push(app.request("GET", "/api/v1/open").key(&secret).send());
        }
    }
    for seen in futures_util::future::join_all(sent).await {
        assert_eq!(seen.status, 200);
    }
    let id = key["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/v1/keys/{id}/usage?{}", around_now("hour"));
    assert_eq!(total(&first.admin_request(Method::GET, &path, None).await.body), 0, "nothing flushed yet");
    first.stop().await;
    second.stop().await;
    let third = spawn_in(store, |_| {}).await;
    let answer = third.admin_request(Method::GET, &path, None).await.body;
    assert_eq!((total(&answer), outcomes(&answer)), (12, json!({ "OK": 12 })), "{answer}");
    let seen = third.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await;
    assert!(seen.body["data"]["lastUsedAt"].is_string(), "lastUsedAt is written with the counts");
}

/// A part of a flush sent again under its id — its first answer lost after its commit, as when
/// a connection breaks at shutdown — is written once; a part of another id adds.
#[tokio::test]
async fn a_flush_part_sent_again_under_its_id_is_counted_once() {
    let (app, _upstream) = spawn_gateway(counting).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, _) = app.limited_key("acme", &[], 100).await;
    let id = key["id"].as_str().unwrap().to_owned();
    let now = now_seconds() * 1000;
    let count = keygate::store::UsageCount {
        key_id: id.clone(),
        tenant_id: "acme".into(),
        hour_start: now - now.rem_euclid(HOUR * 1000),
        outcome: "OK",
        requests: 3,
        last_used_at: now,
    };
    let part = keygate::store::UsageBatch { id: "part-1".into(), earlier: Vec::new(), counts: vec![count] };
    for _ in 0..3 {
        app.store.record_usage(&part).await.unwrap();
    }
    let path = format!("/admin/v1/keys/{id}/usage?{}", around_now("hour"));
    assert_eq!(total(&app.admin_request(Method::GET, &path, None).await.body), 3, "the part, once");
    let tenant = format!("/admin/v1/tenants/acme/usage?{}", around_now("hour"));
    assert_eq!(total(&app.admin_request(Method::GET, &tenant, None).await.body), 3, "and once in the tenant's");
    app.store.record_usage(&keygate::store::UsageBatch { id: "part-2".into(), ..part }).await.unwrap();
    assert_eq!(total(&app.admin_request(Method::GET, &path, None).await.body), 6, "another part adds");
}

#[tokio::test]
async fn a_deleted_key_s_usage_stays_in_its_tenant_s() {
    let (app, _upstream) = spawn_gateway(counting).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = app.limited_key("acme", &[], 100).await;
    for _ in 0..3 {
        assert_eq!(app.request("GET", "/api/v1/open").key(&secret).send().await.status, 200);
    }
    let tenant = format!("/admin/v1/tenants/acme/usage?{}", around_now("hour"));
    settled(&app, &tenant, 3).await;
    let id = key["id"].as_str().unwrap();
    assert_eq!(app.admin_request(Method::DELETE, &format!("/admin/v1/keys/{id}"), None).await.status, 204);
    let path = format!("/admin/v1/keys/{id}/usage?{}", around_now("hour"));
    app.admin_request(Method::GET, &path, None).await.assert_error(404, "NOT_FOUND");
    assert_eq!(total(&app.admin_request(Method::GET, &tenant, None).await.body), 3);
}

#[tokio::test]
async fn a_request_whose_client_leaves_before_the_answer_is_still_counted() {
    let (app, upstream) = spawn_gateway(counting).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = app.limited_key("acme", &[], 100).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    let gone = impatient.get(format!("{}/api/v1/slow", app.public)).bearer_auth(&secret).send().await;
    assert!(gone.is_err(), "the client gave up");
    let id = key["id"].as_str().unwrap();
    let answer = settled(&app, &format!("/admin/v1/keys/{id}/usage?{}", around_now("hour")), 1).await;
    assert_eq!(upstream.count(), 1, "it reached the upstream");
    assert_eq!(outcomes(&answer), json!({ "CLIENT_CLOSED": 1 }), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_usage_through_the_api_and_on_the_store() {
    let (app, _upstream) = spawn_gateway(counting).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = app.limited_key("acme", &[], 100).await;
    for _ in 0..2 {
        assert_eq!(app.request("GET", "/api/v1/open").key(&secret).send().await.status, 200);
    }
    let id = key["id"].as_str().unwrap();
    settled(&app, &format!("/admin/v1/keys/{id}/usage?{}", around_now("hour")), 2).await;
    let this_hour = now_seconds() - now_seconds().rem_euclid(HOUR);
    let (from, to) = (rfc3339(this_hour - HOUR), rfc3339(this_hour + 2 * HOUR));
    let range = ["--from", from.as_str(), "--to", to.as_str()];
    let over_api = common::cli::Via::Api(&app).ok(&[&["usage", "key", id][..], &range].concat());
    assert_eq!(total(&json!({ "data": over_api })), 2);
    let store = common::cli::Via::Store(&app.test_store);
    let split = store.ok(&[&["usage", "tenant", "acme", "--group-by", "key"][..], &range].concat());
    assert_eq!((split[0]["keyId"].as_str(), split[0]["outcomes"]["OK"].as_u64()), (Some(id), Some(2)));
    let bad = store.run(&["usage", "key", id, "--from", "2026-12-01T00:30:00Z", "--to", to.as_str()]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("--from") && bad.stderr.contains("aligned"), "{}", bad.stderr);
}

/// Moves the one hour of counts (one key, one outcome) `back` milliseconds into the past, in
/// the store under a stopped keygate: its rows, its tenant's, and the hour's listing.
async fn date_back(store: &TestStore, back: i64) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&store.url).await.unwrap();
    for table in ["usage_counts", "tenant_usage_counts", "usage_hours"] {
        let sql = match table {
            "usage_counts" => "UPDATE usage_counts SET hour_start = hour_start - $1, last_used_at = last_used_at - $1",
            "tenant_usage_counts" => "UPDATE tenant_usage_counts SET hour_start = hour_start - $1",
            _ => "UPDATE usage_hours SET hour_start = hour_start - $1",
        };
        let dated = sqlx::query(sql).bind(back).execute(&pool).await.unwrap();
        assert_eq!(dated.rows_affected(), 1, "{table}: one hour, one outcome");
    }
    pool.close().await;
}

/// When the hour is folded (`usage_hours.folded_at`), or `None` while it is open.
async fn folded_at(store: &TestStore, hour_ms: i64) -> Option<i64> {
    let pool = sqlx::AnyPool::connect(&store.url).await.unwrap();
    let row = sqlx::query("SELECT folded_at FROM usage_hours WHERE hour_start = $1")
        .bind(hour_ms)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    sqlx::Row::try_get::<Option<i64>, _>(&row, "folded_at").unwrap()
}

fn last_used(key: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(key["data"]["lastUsedAt"].as_str().unwrap()).unwrap()
}

/// A keygate on `store` counts three requests of a new key of tenant `acme` in this hour, and
/// stops: the key's id and `lastUsedAt`.
async fn three_requests_counted(store: &std::sync::Arc<TestStore>) -> (String, chrono::DateTime<chrono::FixedOffset>) {
    let (first, _upstream) = spawn_gateway_in(std::sync::Arc::clone(store), counting).await;
    first.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = first.limited_key("acme", &[], 100).await;
    for _ in 0..3 {
        assert_eq!(first.request("GET", "/api/v1/open").key(&secret).send().await.status, 200);
    }
    let id = key["id"].as_str().unwrap().to_owned();
    settled(&first, &format!("/admin/v1/keys/{id}/usage?{}", around_now("hour")), 3).await;
    let used = last_used(&first.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await.body);
    first.stop().await;
    (id, used)
}

/// An hour that has closed is folded at start (and hourly): the key's `lastUsedAt` moves into
/// its row and stays what it was, and the hour's counts read as before. A count that arrives
/// late for a folded hour (an instance cut off from the store) opens it again, and the key's
/// `lastUsedAt` is that count's.
#[tokio::test]
async fn a_closed_hour_is_folded_and_a_late_count_for_it_opens_it_again() {
    let store = TestStore::new().await;
    let (id, used) = three_requests_counted(&store).await;
    date_back(&store, 3 * HOUR * 1000).await;

    let (second, _upstream) = spawn_gateway_in(std::sync::Arc::clone(&store), counting).await;
    let hour = used.timestamp() - used.timestamp().rem_euclid(HOUR) - 3 * HOUR;
    let (mut folded, deadline) = (None, Instant::now() + Duration::from_secs(10));
    while folded.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        folded = folded_at(&store, hour * 1000).await;
    }
    assert!(folded.is_some_and(|at| at > 0), "the hour three hours back is folded at start: {folded:?}");
    let seen = second.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await.body;
    assert_eq!(last_used(&seen), used - chrono::Duration::hours(3), "lastUsedAt, now kept in the key's row");
    let range = format!("from={}&to={}&granularity=hour", rfc3339(hour), rfc3339(hour + HOUR));
    let counted = second.admin_request(Method::GET, &format!("/admin/v1/keys/{id}/usage?{range}"), None).await.body;
    assert_eq!(total(&counted), 3, "{counted}");

    let late = used.timestamp_millis() - 3 * HOUR * 1000 + 1000;
    let count = keygate::store::UsageCount {
        key_id: id.clone(),
        tenant_id: "acme".into(),
        hour_start: hour * 1000,
        outcome: "OK",
        requests: 2,
        last_used_at: late,
    };
    let batch = keygate::store::UsageBatch { id: "late".into(), earlier: Vec::new(), counts: vec![count] };
    second.store.record_usage(&batch).await.unwrap();
    assert_eq!(folded_at(&store, hour * 1000).await, None, "the late count opens the hour");
    let seen = second.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await.body;
    assert_eq!(last_used(&seen).timestamp_millis(), late, "lastUsedAt is the late count's");
    let counted = second.admin_request(Method::GET, &format!("/admin/v1/keys/{id}/usage?{range}"), None).await.body;
    assert_eq!(total(&counted), 5, "{counted}");
}

/// Hours older than `usage.retention_days` are pruned, of the key's counts and of its
/// tenant's totals; a key whose every hour went keeps its `lastUsedAt`. The counts are made by
/// one keygate and dated 40 days back in the store (as the audit log's retention test does),
/// then a second keygate with a retention of 32 days starts on the store.
#[tokio::test]
async fn the_retention_prunes_hours_older_than_its_days_and_a_key_keeps_its_last_use() {
    const DAYS_BACK: i64 = 40;
    let store = TestStore::new().await;
    let (id, used) = three_requests_counted(&store).await;
    date_back(&store, DAYS_BACK * 24 * HOUR * 1000).await;

    let second = spawn_in(std::sync::Arc::clone(&store), |config| config.usage.retention_days = 32).await;
    let today = now_seconds() - now_seconds().rem_euclid(24 * HOUR);
    let then = today - DAYS_BACK * 24 * HOUR;
    let range = format!("from={}&to={}&granularity=day", rfc3339(then - 24 * HOUR), rfc3339(then + 24 * HOUR));
    let key_usage = format!("/admin/v1/keys/{id}/usage?{range}");
    let tenant_usage = format!("/admin/v1/tenants/acme/usage?{range}");
    let mut left = (u64::MAX, u64::MAX);
    for _ in 0..50 {
        let key = total(&second.admin_request(Method::GET, &key_usage, None).await.body);
        let tenant = total(&second.admin_request(Method::GET, &tenant_usage, None).await.body);
        left = (key, tenant);
        if left == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, (0, 0), "the key's and the tenant's hours 40 days back are pruned");
    let seen = second.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await.body;
    let kept = last_used(&seen);
    assert_eq!(kept, used - chrono::Duration::days(DAYS_BACK), "the key's last use outlives its counts");
}
