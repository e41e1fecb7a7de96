//! Usage write-behind and reads (SPEC §13): request counts per key, hour and outcome (with the
//! latest request of each, which is how `lastUsedAt` is kept), and per tenant, hour and
//! outcome. A flush is a few statements whatever its size: each takes its rows as one JSON
//! array bound as a single value, which the engine unpacks (`json_each`, or
//! `jsonb_array_elements`), so the cost is the rows, never a statement per row.

use sqlx::Row;

use super::dialect::{Dialect, JsonColumn};
use super::rows::dynamic;
use crate::store::{StoreError, UsageBatch, UsageCount, UsageOf, UsageRow, UsageSelect};
use crate::time::Millis;

/// Rows a statement: bounds the JSON text a statement carries (about 100 bytes a row).
const ROWS_A_STATEMENT: usize = 10_000;

pub(super) async fn record(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    batch: &UsageBatch,
) -> Result<(), StoreError> {
    let greatest = dialect.greatest();
    // Earlier secrets in use are few (a roll's overlap): a statement each.
    for (hash, at) in &batch.earlier {
        dynamic(format!(
            "UPDATE rolled_secrets SET last_used_at = {greatest}(COALESCE(last_used_at, 0), $1) WHERE secret_hash = $2"
        ))
        .bind(*at)
        .bind(hash.to_vec())
        .execute(&mut *tx)
        .await?;
    }
    // In the primary key's order, so that the upsert walks the B-tree from one end to the other
    // instead of at random (measured on SQLite: half the time, at 50,000 rows).
    let mut counts: Vec<&UsageCount> = batch.counts.iter().collect();
    counts.sort_unstable_by(|a, b| primary_key(a).cmp(&primary_key(b)));
    let columns = dialect.json_rows(&[
        ("tenant_id", JsonColumn::Text),
        ("key_id", JsonColumn::Text),
        ("hour_start", JsonColumn::Integer),
        ("outcome", JsonColumn::Text),
        ("requests", JsonColumn::Integer),
        ("last_used_at", JsonColumn::Integer),
    ]);
    // `WHERE true`: SQLite's parser needs it between a SELECT and ON CONFLICT.
    let sql = format!(
        "INSERT INTO usage_counts (tenant_id, key_id, hour_start, outcome, requests, last_used_at) \
         SELECT tenant_id, key_id, hour_start, outcome, requests, last_used_at FROM ({columns}) AS u WHERE true \
         ON CONFLICT (tenant_id, key_id, hour_start, outcome) DO UPDATE SET \
         requests = usage_counts.requests + excluded.requests, \
         last_used_at = {greatest}(usage_counts.last_used_at, excluded.last_used_at)"
    );
    let rows: Vec<_> =
        counts.iter().map(|c| (&c.tenant_id, &c.key_id, c.hour_start, c.outcome, c.requests, c.last_used_at)).collect();
    execute_in_chunks(tx, &sql, &rows).await?;
    let columns = dialect.json_rows(&[
        ("tenant_id", JsonColumn::Text),
        ("hour_start", JsonColumn::Integer),
        ("outcome", JsonColumn::Text),
        ("requests", JsonColumn::Integer),
    ]);
    let sql = format!(
        "INSERT INTO tenant_usage_counts (tenant_id, hour_start, outcome, requests) \
         SELECT tenant_id, hour_start, outcome, requests FROM ({columns}) AS u WHERE true \
         ON CONFLICT (tenant_id, hour_start, outcome) DO UPDATE SET requests = tenant_usage_counts.requests + excluded.requests"
    );
    execute_in_chunks(tx, &sql, &tenant_totals(&counts)).await
}

/// `sql` run once per `ROWS_A_STATEMENT` of `rows`, each chunk bound as `$1`: the JSON array of
/// arrays the statement unpacks, serialised straight from the tuples.
async fn execute_in_chunks<T: serde::Serialize>(
    tx: &mut sqlx::AnyConnection,
    sql: &str,
    rows: &[T],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_A_STATEMENT) {
        let text =
            serde_json::to_string(chunk).map_err(|error| StoreError::Unavailable(format!("usage rows: {error}")))?;
        dynamic(sql.to_owned()).bind(text).execute(&mut *tx).await?;
    }
    Ok(())
}

/// (tenant, hour, outcome, requests): the counts summed over each tenant's keys. `sorted` is
/// in the primary key's order, tenant first, so a tenant's counts are one run, and a run
/// holds a handful of hours and outcomes.
fn tenant_totals<'a>(sorted: &[&'a UsageCount]) -> Vec<(&'a str, Millis, &'static str, u64)> {
    let mut totals: Vec<(&str, Millis, &str, u64)> = Vec::new();
    let mut run_start = 0;
    for count in sorted {
        let tenant = count.tenant_id.as_str();
        if totals.last().is_some_and(|last| last.0 != tenant) {
            run_start = totals.len();
        }
        match totals[run_start..].iter_mut().find(|t| t.1 == count.hour_start && t.2 == count.outcome) {
            Some(total) => total.3 += count.requests,
            None => totals.push((tenant, count.hour_start, count.outcome, count.requests)),
        }
    }
    totals
}

fn primary_key(count: &UsageCount) -> (&str, &str, Millis, &str) {
    (&count.tenant_id, &count.key_id, count.hour_start, count.outcome)
}

/// Summed by bucket (and key) and outcome. A key's rows and a tenant's rows by key are ranges
/// of `usage_counts`' primary key (a key's tenant is read from its row); a tenant's totals are
/// `tenant_usage_counts`' rows: the rows read are the hours asked for, of the keys asked for.
pub(super) async fn read(
    pool: &sqlx::AnyPool,
    dialect: Dialect,
    select: &UsageSelect,
) -> Result<Vec<UsageRow>, StoreError> {
    let (table, of, id) = match (&select.of, select.by_key) {
        (UsageOf::Key(id), _) => {
            ("usage_counts", "tenant_id = (SELECT tenant_id FROM api_keys WHERE id = $1) AND key_id = $1", id)
        }
        (UsageOf::Tenant(id), true) => ("usage_counts", "tenant_id = $1", id),
        (UsageOf::Tenant(id), false) => ("tenant_usage_counts", "tenant_id = $1", id),
    };
    let bucket = select.bucket.max(1);
    let (key, by_key) = match select.by_key {
        true => (", key_id", format!(", key_id{}", dialect.bytewise())),
        false => ("", String::new()),
    };
    let sql = format!(
        "SELECT (hour_start / {bucket}) * {bucket} AS start{key}, outcome, CAST(SUM(requests) AS BIGINT) AS n \
         FROM {table} WHERE {of} AND hour_start >= $2 AND hour_start < $3 \
         GROUP BY 1{key}, outcome ORDER BY 1{by_key}, outcome"
    );
    let rows = dynamic(sql).bind(id.clone()).bind(select.from).bind(select.to).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(UsageRow {
                start: row.try_get::<i64, _>("start")?,
                key_id: if select.by_key { Some(row.try_get("key_id")?) } else { None },
                outcome: row.try_get("outcome")?,
                requests: row.try_get::<i64, _>("n")?.max(0) as u64,
            })
        })
        .collect()
}

/// Hours before `cutoff`, of keys and of tenants. A key whose rows all go keeps its latest use in
/// `api_keys.last_used_at`, which `lastUsedAt` falls back to.
pub(super) async fn prune(tx: &mut sqlx::AnyConnection, dialect: Dialect, cutoff: Millis) -> Result<u64, StoreError> {
    let greatest = dialect.greatest();
    dynamic(format!(
        "UPDATE api_keys SET last_used_at = {greatest}(COALESCE(api_keys.last_used_at, 0), u.at) \
         FROM (SELECT key_id, MAX(last_used_at) AS at FROM usage_counts WHERE hour_start < $1 GROUP BY key_id) AS u \
         WHERE api_keys.id = u.key_id"
    ))
    .bind(cutoff)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query("DELETE FROM usage_counts WHERE hour_start < $1").bind(cutoff).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM tenant_usage_counts WHERE hour_start < $1").bind(cutoff).execute(&mut *tx).await?;
    Ok(done.rows_affected())
}
