//! Writing the change feed: every admin write records what it changed, under a new revision,
//! in its own transaction.

use sqlx::Row;

use super::dialect::Dialect;
use crate::store::{CHANGES_CHANNEL, ChangeKind, FEED_RETENTION, StoreError};

/// How often a change trims the feed (see [`record_change`]).
const TRIM_EVERY: i64 = 64;

/// Bumps the revision and records `kind`/`subject` under it in the change feed, dropping
/// (every [`TRIM_EVERY`] revisions) the changes that fell out of the retention; returns the
/// revision. The revision row stays locked until the transaction commits, so revisions become
/// visible in order, without gaps.
pub(super) async fn record_change(
    tx: &mut sqlx::AnyConnection,
    dialect: Dialect,
    kind: ChangeKind,
    subject: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query("UPDATE keygate_meta SET value = value + 1 WHERE name = 'revision' RETURNING value")
        .fetch_one(&mut *tx)
        .await?;
    let revision: i64 = row.try_get("value")?;
    let insert = match kind {
        // The key's hash comes along, so caches can drop the key by hash.
        // A subquery, not a join: the change is recorded even when the key is gone (a delete
        // records it first, but a hole in the revisions would make every instance resync).
        ChangeKind::Key => {
            "INSERT INTO changes (revision, kind, subject, key_hash) VALUES ($1, $2, $3, \
             (SELECT secret_hash FROM api_keys WHERE id = $3))"
        }
        ChangeKind::Tenant | ChangeKind::SigningKey => {
            "INSERT INTO changes (revision, kind, subject) VALUES ($1, $2, $3)"
        }
    };
    sqlx::query(insert).bind(revision).bind(kind.as_str()).bind(subject).execute(&mut *tx).await?;
    // Trimmed every TRIM_EVERY revisions rather than at each: the feed keeps at least
    // FEED_RETENTION, and a write saves a statement (a round trip, on SQLite a thread hop).
    if revision % TRIM_EVERY == 0 {
        sqlx::query("DELETE FROM changes WHERE revision <= $1")
            .bind(revision - FEED_RETENTION)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(notify) = dialect.notify() {
        sqlx::query(notify).bind(CHANGES_CHANNEL).bind(revision.to_string()).execute(&mut *tx).await?;
    }
    Ok(revision)
}
