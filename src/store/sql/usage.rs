//! Usage write-behind and reads (SPEC §13): request counts per hour, key and outcome (with the
//! latest request of each), and per hour, tenant and outcome. A flush is a few statements
//! whatever its size: each takes its rows as one JSON array bound as a single value, which the
//! engine unpacks (`jsonb_each`, or `jsonb_array_elements`), so the cost is the rows, never a
//! statement per row. The hour leads both tables' primary keys (the migration says why), and
//! `usage_hours` lists the hours there are: a read over a range probes each of them.
//!
//! A key's `lastUsedAt` is the greatest of `api_keys.last_used_at` and its rows in the hours
//! not yet folded into that column ([`fold`], hourly, for hours that have closed): a few
//! probes of the primary key, however long ago the key was used.

use sqlx::Row;

use super::dialect::{Dialect, JsonColumn};
use super::rows::dynamic;
use crate::store::{StoreError, UsageBatch, UsageCount, UsageOf, UsageRow, UsageSelect};
use crate::time::{Millis, now_millis};

/// Rows a statement: bounds the JSON text a statement carries (about 100 bytes a row).
const ROWS_A_STATEMENT: usize = 10_000;
/// Keys whose last use a fold's transaction writes: each holds the write lock (on SQLite) for
/// some tens of milliseconds, so that flushes and admin writes wait no longer than that.
const KEYS_A_FOLD: usize = 5_000;
const HOUR: Millis = 3_600_000;
/// `usage_hours.folded_at` of an hour being folded: a late flush into it sets NULL, so the
/// fold that finds its mark gone at the end leaves the hour to the next.
const FOLDING: Millis = 0;

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
    let mut hours: Vec<Millis> = counts.iter().map(|c| c.hour_start).collect();
    hours.dedup();
    reopen_hours(tx, &hours).await?;
    let columns = dialect.json_rows(&[
        ("hour_start", JsonColumn::Integer),
        ("tenant_id", JsonColumn::Text),
        ("key_id", JsonColumn::Text),
        ("outcome", JsonColumn::Text),
        ("requests", JsonColumn::Integer),
        ("last_used_at", JsonColumn::Integer),
    ]);
    // `WHERE true`: SQLite's parser needs it between a SELECT and ON CONFLICT.
    let sql = format!(
        "INSERT INTO usage_counts (hour_start, tenant_id, key_id, outcome, requests, last_used_at) \
         SELECT hour_start, tenant_id, key_id, outcome, requests, last_used_at FROM ({columns}) AS u WHERE true \
         ON CONFLICT (hour_start, tenant_id, key_id, outcome) DO UPDATE SET \
         requests = usage_counts.requests + excluded.requests, \
         last_used_at = {greatest}(usage_counts.last_used_at, excluded.last_used_at)"
    );
    let rows: Vec<_> =
        counts.iter().map(|c| (c.hour_start, &c.tenant_id, &c.key_id, c.outcome, c.requests, c.last_used_at)).collect();
    execute_in_chunks(tx, &sql, &rows).await?;
    let columns = dialect.json_rows(&[
        ("hour_start", JsonColumn::Integer),
        ("tenant_id", JsonColumn::Text),
        ("outcome", JsonColumn::Text),
        ("requests", JsonColumn::Integer),
    ]);
    let sql = format!(
        "INSERT INTO tenant_usage_counts (hour_start, tenant_id, outcome, requests) \
         SELECT hour_start, tenant_id, outcome, requests FROM ({columns}) AS u WHERE true \
         ON CONFLICT (hour_start, tenant_id, outcome) DO UPDATE SET requests = tenant_usage_counts.requests + excluded.requests"
    );
    execute_in_chunks(tx, &sql, &tenant_totals(&counts)).await
}

/// How long a flush's id is kept: its retries come within seconds.
const FLUSH_IDS_KEPT: Millis = 2 * 24 * HOUR;

/// Records flush part `id` in `tx`; false when `id` was recorded already (its counts are
/// written). On PostgreSQL a try still in flight holds the id's index entry, so this waits for
/// it to end and then answers as it did.
pub(super) async fn first_time(tx: &mut sqlx::AnyConnection, id: &str) -> Result<bool, StoreError> {
    let recorded =
        sqlx::query("INSERT INTO usage_flushes (id, written_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
    Ok(recorded.rows_affected() > 0)
}

/// Drops the flush ids past [`FLUSH_IDS_KEPT`]. Hourly, with the fold, rather than in each
/// flush: the parts of a flush written side by side would delete the same old ids, and each
/// would wait for the one before it to commit.
async fn forget_old_flushes(store: &super::SqlStore) -> Result<(), StoreError> {
    let (_turn, mut tx) = store.begin_write().await?;
    sqlx::query("DELETE FROM usage_flushes WHERE written_at < $1")
        .bind(now_millis() - FLUSH_IDS_KEPT)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Lists the batch's hours in `usage_hours` (one or two: this hour, and the last at its turn),
/// each in a statement of its own before the flush's transaction: the flushes of every
/// instance, and the parts of one flush written side by side, insert the same hour's row, and
/// inside their transactions each would wait for the first to commit. An hour listed by a
/// flush that then fails has no counts, which a read finds nothing in.
pub(super) async fn list_hours(pool: &sqlx::AnyPool, batch: &UsageBatch) -> Result<(), StoreError> {
    let hours: std::collections::BTreeSet<Millis> = batch.counts.iter().map(|c| c.hour_start).collect();
    for hour in hours {
        sqlx::query("INSERT INTO usage_hours (hour_start) VALUES ($1) ON CONFLICT (hour_start) DO NOTHING")
            .bind(hour)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Opens again, in the flush's transaction, any of its hours before this one: a fold may have
/// taken it already, or be taking it. On PostgreSQL the hour's row then stays locked until the
/// flush commits, so a fold under way either waits and reads this flush's rows or finds its
/// mark gone at its end; the next fold takes the hour again.
async fn reopen_hours(tx: &mut sqlx::AnyConnection, hours: &[Millis]) -> Result<(), StoreError> {
    let this_hour = now_millis() - now_millis().rem_euclid(HOUR);
    for &hour in hours.iter().filter(|&&hour| hour < this_hour) {
        sqlx::query("UPDATE usage_hours SET folded_at = NULL WHERE hour_start = $1")
            .bind(hour)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
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

/// (hour, tenant, outcome, requests): the counts summed over each tenant's keys. `sorted` is in
/// the primary key's order, hour then tenant, so an hour's counts of a tenant are one run, and
/// a run holds a handful of outcomes.
fn tenant_totals<'a>(sorted: &[&'a UsageCount]) -> Vec<(Millis, &'a str, &'static str, u64)> {
    let mut totals: Vec<(Millis, &str, &str, u64)> = Vec::new();
    let mut run_start = 0;
    for count in sorted {
        let run = (count.hour_start, count.tenant_id.as_str());
        if totals.last().is_some_and(|last| (last.0, last.1) != run) {
            run_start = totals.len();
        }
        match totals[run_start..].iter_mut().find(|t| t.2 == count.outcome) {
            Some(total) => total.3 += count.requests,
            None => totals.push((run.0, run.1, count.outcome, count.requests)),
        }
    }
    totals
}

fn primary_key(count: &UsageCount) -> (Millis, &str, &str, &str) {
    (count.hour_start, &count.tenant_id, &count.key_id, count.outcome)
}

/// Summed by bucket (and key) and outcome. Each hour of the range there are counts of is one
/// probe of the primary key, under the tenant (a key's tenant is read from its row) and the key
/// if one is asked for; a tenant's totals are `tenant_usage_counts`' rows: the rows read are
/// the hours asked for, of the keys asked for.
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
         FROM {table} WHERE hour_start IN (SELECT hour_start FROM usage_hours WHERE hour_start >= $2 AND hour_start < $3) \
         AND {of} \
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

/// Keeps, in `api_keys.last_used_at`, the latest use of each key in every hour that closed
/// before the last one began and is not folded yet, oldest first; how many keys' uses were
/// kept. An hour is marked, its keys' latest uses read and written some thousands a
/// transaction, and the mark made `folded_at` if no late flush took it off meanwhile. Every
/// instance folds: a second fold of an hour writes what the first did (the greatest wins).
pub(super) async fn fold(store: &super::SqlStore) -> Result<u64, StoreError> {
    forget_old_flushes(store).await?;
    let (pool, dialect) = (&store.pool, store.dialect());
    let this_hour = now_millis() - now_millis().rem_euclid(HOUR);
    // Marked and not finished: a fold that stopped halfway (its writes are repeated harmlessly).
    let open = "(folded_at IS NULL OR folded_at = 0)";
    let hours =
        dynamic(format!("SELECT hour_start FROM usage_hours WHERE hour_start < $1 AND {open} ORDER BY hour_start"))
            .bind(this_hour - HOUR)
            .fetch_all(pool)
            .await?;
    let greatest = dialect.greatest();
    let sql = format!(
        "UPDATE api_keys SET last_used_at = {greatest}(COALESCE(api_keys.last_used_at, 0), u.at) \
         FROM ({}) AS u WHERE api_keys.id = u.key_id",
        dialect.json_rows(&[("key_id", JsonColumn::Text), ("at", JsonColumn::Integer)])
    );
    let mut kept = 0;
    for hour in hours {
        let hour: Millis = hour.try_get("hour_start")?;
        let marked = dynamic(format!("UPDATE usage_hours SET folded_at = $1 WHERE hour_start = $2 AND {open}"))
            .bind(FOLDING)
            .bind(hour)
            .execute(pool)
            .await?;
        if marked.rows_affected() == 0 {
            continue;
        }
        let latest: Vec<(String, Millis)> = sqlx::query(
            "SELECT key_id, MAX(last_used_at) AS at FROM usage_counts WHERE hour_start = $1 GROUP BY tenant_id, key_id",
        )
        .bind(hour)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("key_id")?, row.try_get("at")?)))
        .collect::<Result<_, StoreError>>()?;
        for chunk in latest.chunks(KEYS_A_FOLD) {
            let text =
                serde_json::to_string(chunk).map_err(|error| StoreError::Unavailable(format!("last uses: {error}")))?;
            let (_turn, mut tx) = store.begin_write().await?;
            dynamic(sql.clone()).bind(text).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        sqlx::query("UPDATE usage_hours SET folded_at = $1 WHERE hour_start = $2 AND folded_at = $3")
            .bind(now_millis())
            .bind(hour)
            .bind(FOLDING)
            .execute(pool)
            .await?;
        kept += latest.len() as u64;
    }
    Ok(kept)
}

/// The hours before `cutoff` that are folded (their last uses kept in `api_keys`), of keys and
/// of tenants: each a range of the primary keys.
pub(super) async fn prune(tx: &mut sqlx::AnyConnection, cutoff: Millis) -> Result<u64, StoreError> {
    let hours = "SELECT hour_start FROM usage_hours WHERE hour_start < $1 AND folded_at > 0";
    let done = dynamic(format!("DELETE FROM usage_counts WHERE hour_start IN ({hours})"))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    dynamic(format!("DELETE FROM tenant_usage_counts WHERE hour_start IN ({hours})"))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM usage_hours WHERE hour_start < $1 AND folded_at > 0")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected())
}
