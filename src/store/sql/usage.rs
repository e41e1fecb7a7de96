//! Usage write-behind and reads (SPEC §13): `lastUsedAt` and request counts per key, hour and
//! outcome. A flush is a few statements whatever its size: each takes its rows as one JSON
//! array bound as a single value, which the engine unpacks (`json_each`, or
//! `jsonb_array_elements`), so the cost is the rows, never a statement per row.

use serde_json::{Value, json};
use sqlx::Row;

use super::dialect::{Dialect, JsonColumn};
use super::rows::dynamic;
use crate::store::{StoreError, UsageBatch, UsageOf, UsageRow, UsageSelect};
use crate::time::Millis;

/// Rows a statement: bounds the JSON text a statement carries (about 100 bytes a row).
const ROWS_A_STATEMENT: usize = 10_000;

pub(super) async fn record(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    batch: &UsageBatch,
) -> Result<(), StoreError> {
    let greatest = dialect.greatest();
    let uses = dialect.json_rows(&[("id", JsonColumn::Text), ("at", JsonColumn::Integer)]);
    let sql = format!(
        "UPDATE api_keys SET last_used_at = {greatest}(COALESCE(last_used_at, 0), u.at) FROM ({uses}) AS u \
         WHERE api_keys.id = u.id"
    );
    for chunk in batch.last_used.chunks(ROWS_A_STATEMENT) {
        let rows: Vec<Value> = chunk.iter().map(|(id, at)| json!([id, at])).collect();
        dynamic(sql.clone()).bind(Value::Array(rows).to_string()).execute(&mut *tx).await?;
    }
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
    let counts = dialect.json_rows(&[
        ("key_id", JsonColumn::Text),
        ("hour_start", JsonColumn::Integer),
        ("outcome", JsonColumn::Text),
        ("tenant_id", JsonColumn::Text),
        ("requests", JsonColumn::Integer),
    ]);
    // `WHERE true`: SQLite's parser needs it between a SELECT and ON CONFLICT.
    let sql = format!(
        "INSERT INTO usage_counts (key_id, hour_start, outcome, tenant_id, requests) \
         SELECT key_id, hour_start, outcome, tenant_id, requests FROM ({counts}) AS u WHERE true \
         ON CONFLICT (key_id, hour_start, outcome) DO UPDATE SET requests = usage_counts.requests + excluded.requests"
    );
    for chunk in batch.counts.chunks(ROWS_A_STATEMENT) {
        let rows: Vec<Value> =
            chunk.iter().map(|c| json!([c.key_id, c.hour_start, c.outcome, c.tenant_id, c.requests])).collect();
        dynamic(sql.clone()).bind(Value::Array(rows).to_string()).execute(&mut *tx).await?;
    }
    Ok(())
}

/// Summed by bucket (and key) and outcome, through the primary key (one key) or the tenant
/// index: the rows read are the hours asked for, of the keys asked for.
pub(super) async fn read(
    pool: &sqlx::AnyPool,
    dialect: Dialect,
    select: &UsageSelect,
) -> Result<Vec<UsageRow>, StoreError> {
    let (column, id) = match &select.of {
        UsageOf::Key(id) => ("key_id", id),
        UsageOf::Tenant(id) => ("tenant_id", id),
    };
    let bucket = select.bucket.max(1);
    let (key, by_key) = match select.by_key {
        true => (", key_id", format!(", key_id{}", dialect.bytewise())),
        false => ("", String::new()),
    };
    let sql = format!(
        "SELECT (hour_start / {bucket}) * {bucket} AS start{key}, outcome, CAST(SUM(requests) AS BIGINT) AS n \
         FROM usage_counts WHERE {column} = $1 AND hour_start >= $2 AND hour_start < $3 \
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

pub(super) async fn prune(pool: &sqlx::AnyPool, cutoff: Millis) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM usage_counts WHERE hour_start < $1").bind(cutoff).execute(pool).await?;
    Ok(done.rows_affected())
}
