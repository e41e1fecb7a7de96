//! Quotas (SPEC §13) against a real keygate: tenant and key quotas by UTC day and month in
//! step 4, decided together with the key's window; the headers of the tightest budget; the
//! quota shown with what it used; bad quotas refused with nothing written; counts that survive
//! a restart and lose at most one flush interval to a `kill -9`.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate};
use common::*;
use keygate::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

const DAY_SECONDS: i64 = 86_400;

/// Unix seconds at which today (UTC) ends.
fn day_end() -> i64 {
    let now = now_seconds();
    now - now.rem_euclid(DAY_SECONDS) + DAY_SECONDS
}

/// The UTC calendar month holding now, as Unix seconds `[start, end)`.
fn month() -> (i64, i64) {
    let today = chrono::Utc::now().date_naive();
    let first = today.with_day(1).unwrap();
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    let seconds = |date: NaiveDate| date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp();
    (seconds(first), seconds(next.unwrap()))
}

fn counting(config: &mut Config) {
    config.usage.flush_seconds = 1;
}

/// A key of `tenant` on the open route, `limit` requests a minute.
async fn key(app: &TestApp, tenant: &str, limit: u64, extra: Value) -> (String, String) {
    let mut body = json!({ "name": "k", "scopes": [], "rateLimit": { "limit": limit, "windowSeconds": 60 } });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (key, secret) = app.create_key(tenant, body).await;
    (key["id"].as_str().unwrap().to_owned(), secret)
}

async fn open(app: &TestApp, secret: &str) -> Seen {
    app.request("GET", "/api/v1/open").key(secret).send().await
}

#[tokio::test]
async fn a_bad_quota_is_refused_with_details_and_nothing_written() {
    let (app, _upstream) = spawn_gateway(|_| {}).await;
    let cases = [
        (json!({ "limit": 10, "period": "week" }), "quota.period"),
        (json!({ "limit": 0, "period": "day" }), "quota.limit"),
        (json!({ "limit": 1.5, "period": "day" }), "quota.limit"),
        (json!({ "limit": -3, "period": "month" }), "quota.limit"),
        (json!({ "period": "month" }), "quota.limit"),
        (json!({ "limit": 10, "period": "day", "used": 0 }), "quota.used"),
        (json!({ "limit": 10, "period": "day", "resetsAt": "2026-01-01T00:00:00Z" }), "quota.resetsAt"),
        (json!("10/day"), "quota"),
    ];
    for (quota, path) in &cases {
        let body = json!({ "id": "acme", "name": "Acme", "quota": quota });
        let seen = app.admin_request(Method::POST, "/admin/v1/tenants", Some(body)).await;
        seen.assert_error(400, "VALIDATION_ERROR");
        let paths: Vec<&str> =
            seen.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
        assert_eq!(paths, [*path], "{quota}: {}", seen.body);
    }
    assert_eq!(app.admin_request(Method::GET, "/admin/v1/tenants/acme", None).await.status, 404, "nothing written");

    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key_id, _) = key(&app, "acme", 10, json!({})).await;
    for (quota, path) in &cases {
        for target in ["/admin/v1/tenants/acme".to_owned(), format!("/admin/v1/keys/{key_id}")] {
            let seen = app.admin_request(Method::PATCH, &target, Some(json!({ "quota": quota }))).await;
            seen.assert_error(400, "VALIDATION_ERROR");
            assert_eq!(seen.body["error"]["details"][0]["path"], *path, "{target} {quota}");
            let unchanged = app.admin_request(Method::GET, &target, None).await;
            assert_eq!(unchanged.body["data"]["quota"], Value::Null, "{target}: nothing written");
        }
    }
}

#[tokio::test]
async fn a_quota_is_shown_with_its_use_and_reset_and_removed_with_null() {
    let (app, _upstream) = spawn_gateway(|_| {}).await;
    let tenant =
        app.create_tenant(json!({ "id": "acme", "name": "Acme", "quota": { "limit": 1000, "period": "month" } })).await;
    let (_, month_end) = month();
    assert_eq!(tenant["quota"], json!({ "limit": 1000, "period": "month", "used": 0, "resetsAt": rfc3339(month_end) }));
    let (key_id, secret) = key(&app, "acme", 100, json!({ "quota": { "limit": 50, "period": "day" } })).await;
    for _ in 0..3 {
        assert_eq!(open(&app, &secret).await.status, 200);
    }
    let shown = app.admin_request(Method::GET, &format!("/admin/v1/keys/{key_id}"), None).await;
    assert_eq!(
        shown.body["data"]["quota"],
        json!({ "limit": 50, "period": "day", "used": 3, "resetsAt": rfc3339(day_end()) })
    );
    let listed = app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    assert_eq!(listed.body["data"][0]["quota"]["used"], 3);
    let tenant = app.admin_request(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(tenant.body["data"]["quota"]["used"], 3);
    let tenants = app.admin_request(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(tenants.body["data"][0]["quota"]["used"], 3);

    // A write that sends back what it read is refused: used and resetsAt are keygate's.
    let read_back = json!({ "quota": shown.body["data"]["quota"] });
    let seen = app.admin_request(Method::PATCH, &format!("/admin/v1/keys/{key_id}"), Some(read_back)).await;
    seen.assert_error(400, "VALIDATION_ERROR");

    let patched = app.patch_key(&key_id, json!({ "quota": null })).await;
    assert_eq!(patched["quota"], Value::Null);
    let patched = app.patch_tenant("acme", json!({ "quota": null })).await;
    assert_eq!(patched["quota"], Value::Null);
    let seen = open(&app, &secret).await;
    assert_eq!(seen.header("x-ratelimit-limit"), Some("100"), "only the window is left");
    // The audit log records the quota as written, without its use.
    let audit = app.admin_request(Method::GET, "/admin/v1/audit?action=tenant.update", None).await;
    assert_eq!(audit.body["data"][0]["before"]["quota"], json!({ "limit": 1000, "period": "month" }));
}

#[tokio::test]
async fn a_tenant_quota_is_shared_by_its_keys_and_a_refused_request_counts_in_no_budget() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme", "quota": { "limit": 5, "period": "day" } })).await;
    let (_, first) = key(&app, "acme", 100, json!({})).await;
    let (_, second) = key(&app, "acme", 2, json!({})).await;
    let day_end = day_end().to_string();
    // The second key's window of 2 refuses its third request: that one uses no tenant quota.
    // The headers describe whichever budget has the fewest left.
    let mut seen = Vec::new();
    for secret in [&first, &second, &second, &second, &first, &first] {
        let answer = open(&app, secret).await;
        let header = |name: &str| answer.header(name).unwrap().to_owned();
        seen.push((answer.status.as_u16(), header("x-ratelimit-limit"), header("x-ratelimit-remaining")));
        if answer.header("x-ratelimit-limit") == Some("5") {
            assert_eq!(
                answer.header("x-ratelimit-reset"),
                Some(day_end.as_str()),
                "the tenant's day ends at midnight UTC"
            );
        }
    }
    let expected =
        [(200, "5", "4"), (200, "2", "1"), (200, "2", "0"), (429, "2", "0"), (200, "5", "1"), (200, "5", "0")];
    let seen: Vec<(u16, &str, &str)> = seen.iter().map(|(s, l, r)| (*s, l.as_str(), r.as_str())).collect();
    assert_eq!(seen, expected);

    let refused = open(&app, &first).await;
    refused.assert_error(429, "RATE_LIMITED");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("tenant's quota"), "{}", refused.body);
    let retry_after: i64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((retry_after - (day_end.parse::<i64>().unwrap() - now_seconds())).abs() <= 2, "until midnight UTC");
    assert_eq!(upstream.count(), 5, "exactly the quota reached the upstream");
    let tenant = app.admin_request(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(tenant.body["data"]["quota"]["used"], 5);

    // A quota raised mid-period applies at once, counting what the period used.
    app.patch_tenant("acme", json!({ "quota": { "limit": 6, "period": "day" } })).await;
    let seen = open(&app, &first).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("x-ratelimit-remaining"), Some("0"));
    open(&app, &first).await.assert_error(429, "RATE_LIMITED");
}

#[tokio::test]
async fn a_request_admitted_at_step_four_uses_its_quota_whatever_a_later_step_says() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme", "modules": ["orders"] })).await;
    let (key_id, secret) = key(&app, "acme", 100, json!({ "quota": { "limit": 3, "period": "month" } })).await;
    app.request("GET", "/api/v1/orders").key(&secret).send().await.assert_error(403, "SCOPE_NOT_GRANTED");
    assert_eq!(open(&app, &secret).await.status, 200);
    let last = open(&app, &secret).await;
    assert_eq!(last.status, 200);
    let (_, month_end) = month();
    assert_eq!(last.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(last.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(last.header("x-ratelimit-reset"), Some(month_end.to_string().as_str()));
    let refused = open(&app, &secret).await;
    refused.assert_error(429, "RATE_LIMITED");
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("key's quota"), "{}", refused.body);
    assert_eq!(upstream.count(), 2);
    let shown = app.admin_request(Method::GET, &format!("/admin/v1/keys/{key_id}"), None).await;
    assert_eq!(shown.body["data"]["quota"]["used"], 3);
}

#[tokio::test]
async fn the_ietf_headers_name_every_budget_when_asked_for() {
    let (app, _upstream) = spawn_gateway(|c| c.rate_limit.ietf_headers = true).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme", "quota": { "limit": 10000, "period": "day" } })).await;
    let (_, secret) = key(&app, "acme", 600, json!({ "quota": { "limit": 700, "period": "month" } })).await;
    let seen = open(&app, &secret).await;
    assert_eq!(seen.status, 200);
    let (month_start, month_end) = month();
    assert_eq!(
        seen.header("ratelimit-policy"),
        Some(
            format!(
                "\"window\";q=600;w=60, \"key-quota\";q=700;w={}, \"tenant-quota\";q=10000;w=86400",
                month_end - month_start
            )
            .as_str()
        )
    );
    let left = seen.header("ratelimit").unwrap();
    let items: Vec<&str> = left.split(", ").collect();
    assert_eq!(items.len(), 3, "{left}");
    assert!(items[0].starts_with("\"window\";r=599;t="), "{left}");
    assert!(items[1].starts_with("\"key-quota\";r=699;t="), "{left}");
    assert!(items[2].starts_with("\"tenant-quota\";r=9999;t="), "{left}");
    let t = |item: &str| item.rsplit("t=").next().unwrap().parse::<i64>().unwrap();
    assert!((1..=60).contains(&t(items[0])));
    assert!((t(items[2]) - (day_end() - now_seconds())).abs() <= 2);
    assert_eq!(seen.header("x-ratelimit-limit"), Some("600"), "X-RateLimit-* still describe the tightest");
}

#[tokio::test]
async fn without_the_setting_no_ietf_headers_are_sent() {
    let (app, _upstream) = spawn_gateway(|_| {}).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme", "quota": { "limit": 10, "period": "day" } })).await;
    let (_, secret) = key(&app, "acme", 600, json!({})).await;
    let seen = open(&app, &secret).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("ratelimit-policy"), None);
    assert_eq!(seen.header("ratelimit"), None);
}

/// Today and tomorrow, by day.
fn usage_range() -> String {
    let today = day_end() - DAY_SECONDS;
    format!("from={}&to={}&granularity=day", rfc3339(today), rfc3339(today + 2 * DAY_SECONDS))
}

#[tokio::test]
async fn quota_counts_survive_a_restart_of_the_embedded_default() {
    let store = TestStore::new().await;
    let upstream = upstream::Upstream::start().await;
    let routed = |config: &mut Config| {
        config.routes = gateway_routes(&upstream.url);
        counting(config);
    };
    let first = spawn_in(Arc::clone(&store), routed).await;
    first.create_tenant(json!({ "id": "acme", "name": "Acme", "quota": { "limit": 5, "period": "day" } })).await;
    let (key_id, secret) = key(&first, "acme", 100, json!({ "quota": { "limit": 4, "period": "month" } })).await;
    for _ in 0..3 {
        assert_eq!(open(&first, &secret).await.status, 200);
    }
    // Graceful: the counts are written at shutdown, whatever the interval.
    first.stop().await;

    let second = spawn_in(store, routed).await;
    let shown = second.admin_request(Method::GET, &format!("/admin/v1/keys/{key_id}"), None).await;
    assert_eq!(shown.body["data"]["quota"]["used"], 3, "recovered from the usage counts");
    let seen = open(&second, &secret).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.header("x-ratelimit-remaining"), Some("0"), "the key's quota of 4 is used up");
    open(&second, &secret).await.assert_error(429, "RATE_LIMITED");
    let tenant = second.admin_request(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(tenant.body["data"]["quota"]["used"], 4, "the refusal counted nowhere");
}

/// `kill -9` loses what was counted since the last flush, and nothing else: those requests
/// are admitted a second time after the restart, and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_costs_at_most_the_counts_of_one_flush_interval() {
    let store = TestStore::new().await;
    let client = reqwest::Client::new();
    let admin = |served: &process::Served, path: &str| format!("http://{}{path}", served.admin);
    let call = |served: &process::Served, secret: &str| {
        client.get(format!("http://{}/api/v1/open", served.public)).bearer_auth(secret.to_owned()).send()
    };
    // First life: counts flushed every second, then killed once they are written.
    let upstream = upstream::Upstream::start().await;
    let routes = format!(
        "[usage]\nflush_seconds = 1\n[[routes]]\nprefix = \"/api/v1/open\"\nmethods = [\"GET\"]\nupstream = \"{}\"\n",
        upstream.url
    );
    let config = process::write_config(&store, "flushing", &routes);
    let mut served = process::serve(&config, &[]);
    let secret = process::tenant_with_key(&client, &served.admin).await;
    let quota = json!({ "quota": { "limit": 10, "period": "day" } });
    let patched = client
        .patch(admin(&served, "/admin/v1/tenants/acme"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&quota)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    for _ in 0..4 {
        assert_eq!(call(&served, &secret).await.unwrap().status(), 200);
    }
    wait_for_usage(&client, &served, 4).await;
    served.child.kill().unwrap();
    served.child.wait().unwrap();

    // Second life: nothing was lost, so 6 are left. This one never flushes on its own.
    let config = process::write_config(&store, "holding", &routes.replace("flush_seconds = 1", "flush_seconds = 3600"));
    let mut served = process::serve(&config, &[]);
    let mut admitted = 0;
    while call(&served, &secret).await.unwrap().status() == 200 {
        admitted += 1;
    }
    assert_eq!(admitted, 6, "the flushed counts were recovered");
    served.child.kill().unwrap();
    served.child.wait().unwrap();

    // Third life: the second's 6 admitted requests were never written, and only they are
    // admitted again — the bound of one flush interval.
    let mut served = process::serve(&config, &[]);
    let mut again = 0;
    while call(&served, &secret).await.unwrap().status() == 200 {
        again += 1;
    }
    assert_eq!(again, 6);
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    assert_eq!(upstream.count(), 4 + 6 + 6);
}

async fn wait_for_usage(client: &reqwest::Client, served: &process::Served, expected: u64) {
    let url = format!("http://{}/admin/v1/tenants/acme/usage?{}", served.admin, usage_range());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body: Value = client.get(&url).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
        let total: u64 = body["data"].as_array().unwrap().iter().map(|b| b["requests"].as_u64().unwrap()).sum();
        if total >= expected {
            return;
        }
        assert!(Instant::now() < deadline, "usage never reached {expected}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_shows_and_clears_a_quota_naming_its_flags_in_errors() {
    use common::cli::Via;
    let (app, _upstream) = spawn_gateway(|_| {}).await;
    let cli = Via::Api(&app);
    let tenant =
        cli.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--quota", "10000", "--quota-period", "month"]);
    assert_eq!((tenant["quota"]["limit"].as_u64(), tenant["quota"]["used"].as_u64()), (Some(10000), Some(0)));
    let key = cli.ok(&["key", "create", "acme", "--name", "k", "--quota", "50", "--quota-period", "day"]);
    let key_id = key["id"].as_str().unwrap();
    assert_eq!(key["quota"]["period"], "day");

    let ran = cli.run(&["tenant", "update", "acme", "--quota", "0", "--quota-period", "week"]);
    assert_eq!(ran.code, 1);
    let envelope: Value = serde_json::from_str(&ran.stderr).expect("an error envelope on stderr");
    let flags: Vec<&str> =
        envelope["error"]["details"].as_array().unwrap().iter().filter_map(|d| d["flag"].as_str()).collect();
    assert_eq!(flags, ["--quota", "--quota-period"]);
    assert_eq!(cli.run(&["tenant", "update", "acme", "--quota", "10"]).code, 2, "--quota needs --quota-period");

    assert_eq!(cli.ok(&["tenant", "update", "acme", "--clear-quota"])["quota"], Value::Null);
    assert_eq!(cli.ok(&["key", "update", key_id, "--clear-quota"])["quota"], Value::Null);
}
