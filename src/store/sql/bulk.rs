//! `Store::insert_bulk`: a load test's fixture (`keygate seed`) in one transaction — tenants,
//! keys, earlier secrets and audit entries, a few rows a statement.

use sqlx::Row;

use super::audit::COLUMNS as AUDIT_COLUMNS;
use super::rows::{dynamic, insert_key_rows, insert_tenant_row};
use super::values::{BULK_ROWS, placeholders};
use crate::store::{Bulk, BulkEarlier, BulkEntry, StoreError};

pub(super) async fn insert(tx: &mut sqlx::AnyConnection, bulk: &Bulk) -> Result<(), StoreError> {
    for tenant in &bulk.tenants {
        insert_tenant_row(&mut *tx, tenant).await?;
    }
    insert_key_rows(&mut *tx, &bulk.keys).await?;
    insert_earlier(&mut *tx, &bulk.earlier).await?;
    // The entries take the numbers after the revision; at least one revision passes with no
    // change recorded, so instances see a gap in the feed and resync.
    let taken = bulk.audit.len().max(1) as i64;
    let row = sqlx::query("UPDATE keygate_meta SET value = value + $1 WHERE name = 'revision' RETURNING value")
        .bind(taken)
        .fetch_one(&mut *tx)
        .await?;
    let last: i64 = row.try_get("value")?;
    insert_entries(tx, last - taken + 1, &bulk.audit).await
}

async fn insert_earlier(tx: &mut sqlx::AnyConnection, earlier: &[BulkEarlier]) -> Result<(), StoreError> {
    for chunk in earlier.chunks(BULK_ROWS) {
        let sql = format!(
            "INSERT INTO rolled_secrets (secret_hash, key_id, prefix, expires_at) VALUES {}",
            placeholders(chunk.len(), 4)
        );
        let mut query = dynamic(sql);
        for secret in chunk {
            query = query
                .bind(secret.hash.to_vec())
                .bind(secret.key_id.clone())
                .bind(secret.prefix.clone())
                .bind(secret.expires_at);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Entries numbered `first`, `first + 1`, … in order.
async fn insert_entries(tx: &mut sqlx::AnyConnection, first: i64, entries: &[BulkEntry]) -> Result<(), StoreError> {
    let text = |value: &Option<serde_json::Value>| value.as_ref().map(|value| value.to_string());
    let mut seq = first;
    for chunk in entries.chunks(BULK_ROWS) {
        let sql = format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES {}", placeholders(chunk.len(), 8));
        let mut query = dynamic(sql);
        for entry in chunk {
            query = query
                .bind(seq)
                .bind(entry.at)
                .bind(entry.audit.actor)
                .bind(entry.audit.action.as_str())
                .bind(entry.tenant_id.clone())
                .bind(entry.target_id.clone())
                .bind(text(&entry.before))
                .bind(text(&entry.after));
            seq += 1;
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}
