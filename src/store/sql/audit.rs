//! The audit log's rows (SPEC §12): appended by each admin write in its transaction, under the
//! revision its change was recorded with; listed newest first by `(made_at, seq)`, through the
//! index that leads with the filter given, so a page never scans the log.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{Audit, AuditEntry, AuditFilter, entry_id};
use crate::model::{ApiKey, KeyView, RolledSecret};
use crate::store::StoreError;
use crate::time::{Millis, now_millis};

/// What an entry says besides who and what: the target, its tenant, and the wire objects.
pub(super) struct Entry<'a> {
    pub(super) audit: Audit<'a>,
    pub(super) tenant_id: Option<&'a str>,
    pub(super) target_id: &'a str,
    pub(super) before: Option<serde_json::Value>,
    pub(super) after: Option<serde_json::Value>,
}

/// Appends `entry` as number `revision`: the revision its change was just recorded under.
pub(super) async fn append(tx: &mut sqlx::AnyConnection, revision: i64, entry: Entry<'_>) -> Result<(), StoreError> {
    let text = |value: Option<serde_json::Value>| value.map(|value| value.to_string());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )))
    .bind(revision)
    .bind(now_millis())
    .bind(entry.audit.actor.to_owned())
    .bind(entry.audit.action.as_str())
    .bind(entry.tenant_id.map(str::to_owned))
    .bind(entry.target_id.to_owned())
    .bind(text(entry.before))
    .bind(text(entry.after))
    .execute(tx)
    .await?;
    Ok(())
}

/// An object as the admin API shows it (a tenant, a signing key), for an entry.
pub(super) fn wire(value: &impl serde::Serialize) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// A key with its live earlier secrets, as `GET /admin/v1/keys/{keyId}` shows it.
pub(super) fn key_view_wire(key: &ApiKey, rolled_secrets: Vec<RolledSecret>) -> Result<serde_json::Value, StoreError> {
    wire(&KeyView { key: key.clone(), rolled_secrets })
}

pub(super) const COLUMNS: &str = "seq, made_at, actor, action, tenant_id, target_id, before_json, after_json";

/// A page of entries matching `filter`, newest first, below entry `before` if given.
pub(super) async fn page(
    pool: &sqlx::AnyPool,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM audit_log WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    // Equality on the first filter given picks its index; the time bounds and the cursor
    // are ranges on the index's next column.
    let mut texts = Vec::new();
    for (column, value) in [
        ("tenant_id", filter.tenant_id.as_deref()),
        ("target_id", filter.target_id.as_deref()),
        ("action", filter.action.map(|action| action.as_str())),
    ] {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ${}", next()));
            texts.push(value.to_owned());
        }
    }
    let mut times = Vec::new();
    if let Some(since) = filter.since {
        sql.push_str(&format!(" AND made_at >= ${}", next()));
        times.push(since);
    }
    if let Some(until) = filter.until {
        sql.push_str(&format!(" AND made_at <= ${}", next()));
        times.push(until);
    }
    if let Some(before) = before {
        let Some((at, seq)) = cursor_place(pool, before).await? else { return Ok(Vec::new()) };
        let (a, s) = (next(), next());
        sql.push_str(&format!(" AND made_at <= ${a} AND (made_at < ${a} OR seq < ${s})"));
        times.extend([at, seq]);
    }
    sql.push_str(&format!(" ORDER BY made_at DESC, seq DESC LIMIT ${}", next()));
    // Assembled from the constants above and numbered placeholders: never from input.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for text in texts {
        query = query.bind(text);
    }
    for time in times {
        query = query.bind(time);
    }
    let rows = query.bind(i64::from(limit)).fetch_all(pool).await?;
    rows.iter().map(entry_from_row).collect()
}

/// Where a page after entry `before` starts: that entry's time, and the numbers below it
/// at that time. An entry the retention removed continues from the next older one, as a
/// cursor made up from a number does.
async fn cursor_place(pool: &sqlx::AnyPool, before: i64) -> Result<Option<(Millis, i64)>, StoreError> {
    let row = sqlx::query("SELECT seq, made_at FROM audit_log WHERE seq <= $1 ORDER BY seq DESC LIMIT 1")
        .bind(before)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let (seq, at): (i64, Millis) = (row.try_get("seq")?, row.try_get("made_at")?);
    // The entry itself is on the previous page only if it is the cursor.
    Ok(Some((at, if seq == before { seq } else { seq + 1 })))
}

/// Deletes entries made before `cutoff`, a batch a statement so no write waits long.
pub(super) async fn prune(pool: &sqlx::AnyPool, cutoff: Millis) -> Result<u64, StoreError> {
    const BATCH: i64 = 10_000;
    let mut pruned = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM audit_log WHERE seq IN \
                 (SELECT seq FROM audit_log WHERE made_at < $1 ORDER BY made_at LIMIT $2)",
        )
        .bind(cutoff)
        .bind(BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        pruned += done;
        if done < BATCH as u64 {
            return Ok(pruned);
        }
    }
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let json = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|text| serde_json::from_str(&text).map_err(|error| StoreError::Corrupt(error.to_string()))).transpose()
    };
    Ok(AuditEntry {
        id: entry_id(row.try_get("seq")?),
        at: row.try_get("made_at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        tenant_id: row.try_get("tenant_id")?,
        target_id: row.try_get("target_id")?,
        before: json("before_json")?,
        after: json("after_json")?,
    })
}
