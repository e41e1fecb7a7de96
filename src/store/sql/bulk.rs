//! `Store::insert_bulk`: a load test's fixture (`keygate seed`) in one transaction — tenants,
//! keys, earlier secrets and audit entries, a few rows a statement.
//!
//! What keeps its cost in proportion to the rows: every index the load writes entry by entry
//! must take them in its own order, so that each of its pages is written once, full, instead of
//! once for every batch that lands on it. At 1,000,000 keys, entries in no order (random ids
//! and hashes) had SQLite write 23 GB for a 1.1 GB file, and the writes grew faster than the
//! keys (docs/performance.md, "Seeding in order"). The seed gives the keys in the order of their
//! secret's hash, ids rising, a tenant's keys together; the display prefixes are random
//! whatever the order, so their indexes are dropped for the load and built after it, from the
//! definitions the migrations left, in the same transaction (a failed load leaves them as they
//! were).

use sqlx::Row;

use super::audit::COLUMNS as AUDIT_COLUMNS;
use super::dialect::Dialect;
use super::rows::{dynamic, insert_key_rows, insert_tenant_row};
use super::values::{BULK_ROWS, placeholders};
use crate::store::{Bulk, BulkEarlier, BulkEntry, NextBulk, StoreError};

/// The indexes built after the load: by display prefix, random in any order of the keys.
const BUILT_AFTER: [&str; 2] = ["api_keys_by_prefix", "rolled_secrets_by_prefix"];

pub(super) async fn insert(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    next: &mut NextBulk<'_>,
) -> Result<(), StoreError> {
    let mut definitions = Vec::new();
    for name in BUILT_AFTER {
        if let Some(definition) = definition(&mut *tx, dialect, name).await? {
            dynamic(format!("DROP INDEX {name}")).execute(&mut *tx).await?;
            definitions.push(definition);
        }
    }
    while let Some(bulk) = next()? {
        insert_batch(&mut *tx, &bulk).await?;
    }
    for definition in definitions {
        dynamic(definition).execute(&mut *tx).await?;
    }
    Ok(())
}

/// The `CREATE INDEX` statement of index `name`, if the store has it.
async fn definition<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    dialect: Dialect,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(dialect.index_definition()).bind(name).fetch_optional(executor).await?;
    Ok(row.map(|row| row.try_get::<String, _>("definition")).transpose()?)
}

async fn insert_batch(tx: &mut sqlx::AnyConnection, bulk: &Bulk) -> Result<(), StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sql::SqlStore;
    use crate::store::testing::memory_config;

    async fn definitions(store: &SqlStore) -> Vec<Option<String>> {
        let mut found = Vec::new();
        for name in BUILT_AFTER {
            found.push(definition(&store.pool, Dialect::Sqlite, name).await.unwrap());
        }
        found
    }

    fn tenant(id: &str) -> Bulk {
        let tenant = crate::model::Tenant {
            id: id.to_owned(),
            name: id.to_owned(),
            status: crate::model::TenantStatus::Active,
            subscription: crate::model::Subscription::Active,
            modules: Default::default(),
            rate_limit: None,
            quota: None,
            created_at: 0,
            meta: None,
        };
        Bulk { tenants: vec![tenant], ..Bulk::default() }
    }

    #[tokio::test]
    async fn the_indexes_built_after_the_load_are_built_again_and_a_failed_load_leaves_them_and_writes_nothing() {
        let store = SqlStore::open(&memory_config().store.url).await.unwrap();
        store.migrate().await.unwrap();
        let before = definitions(&store).await;
        assert!(before.iter().all(Option::is_some), "{before:?}");

        // The second batch fails: the first is not kept, and neither index is dropped.
        let mut batches = vec![Err(StoreError::Corrupt("made up".to_owned())), Ok(Some(tenant("lost")))];
        let failed = store.insert_bulk(&mut || batches.pop().unwrap_or(Ok(None))).await;
        assert!(matches!(failed, Err(StoreError::Corrupt(_))), "{failed:?}");
        assert_eq!(definitions(&store).await, before);
        assert!(store.tenant("lost").await.unwrap().is_none());

        let mut batches = vec![tenant("kept")];
        store.insert_bulk(&mut || Ok(batches.pop())).await.unwrap();
        assert_eq!(definitions(&store).await, before);
        assert!(store.tenant("kept").await.unwrap().is_some());
    }
}
