//! A key's secrets after a roll (SPEC §11): the current one is `api_keys.secret_hash`, the
//! earlier ones rows of `rolled_secrets`, each with its end.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::audit::{Entry, append};
use super::feed::record_change;
use super::rows::{KEY_COLUMNS, dynamic, key_from_row, key_wire, live_rolled_on};
use crate::audit::Audit;
use crate::model::{ApiKey, EarlierSecret, RolledSecret};
use crate::secret::SecretHash;
use crate::store::{ChangeKind, Roll, Rolled, StoreError};
use crate::time::Millis;

impl SqlStore {
    pub(super) async fn roll(&self, id: &str, roll: &Roll, audit: Audit<'_>) -> Result<Rolled, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let select = format!(
            "SELECT {KEY_COLUMNS}, k.secret_hash AS k_secret_hash FROM api_keys k WHERE k.id = $1{}",
            self.dialect().for_update()
        );
        let Some(row) = dynamic(select).bind(id.to_owned()).fetch_optional(&mut *tx).await? else {
            return Ok(Rolled::Missing);
        };
        let mut key = key_from_row(&row)?;
        if key.revoked_at.is_some() {
            return Ok(Rolled::Revoked);
        }
        let replaced: Vec<u8> = row.try_get("k_secret_hash")?;
        let before = Some(key_wire(&mut tx, &key).await?);
        sqlx::query("UPDATE rolled_secrets SET expires_at = $1 WHERE key_id = $2 AND expires_at > $1")
            .bind(roll.ends_at)
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        // The replaced secret ends with the overlap, or with the key if that is sooner. Its
        // `lastUsedAt` counts uses from now on, as an earlier secret.
        let ends_at = key.expires_at.map_or(roll.ends_at, |at| at.min(roll.ends_at));
        sqlx::query(
            "INSERT INTO rolled_secrets (secret_hash, key_id, prefix, expires_at, last_used_at) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .bind(replaced)
        .bind(id.to_owned())
        .bind(key.prefix.clone())
        .bind(ends_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE api_keys SET secret_hash = $1, prefix = $2 WHERE id = $3")
            .bind(roll.hash.to_vec())
            .bind(roll.prefix.clone())
            .bind(id.to_owned())
            .execute(&mut *tx)
            .await?;
        let revision = record_change(&mut tx, self.dialect(), ChangeKind::Key, id).await?;
        key.prefix = roll.prefix.clone();
        let after = Some(key_wire(&mut tx, &key).await?);
        append(&mut tx, revision, Entry { audit, tenant_id: Some(&key.tenant_id), target_id: id, before, after })
            .await?;
        tx.commit().await?;
        Ok(Rolled::Done(Box::new(key)))
    }

    pub(super) async fn live_rolled(
        &self,
        key_ids: &[String],
        now: Millis,
    ) -> Result<Vec<(String, RolledSecret)>, StoreError> {
        let mut connection = self.pool.acquire().await?;
        live_rolled_on(&mut connection, key_ids, now).await
    }

    pub(super) async fn hashes_of(&self, id: &str) -> Result<Vec<SecretHash>, StoreError> {
        let rows = sqlx::query(
            "SELECT secret_hash FROM api_keys WHERE id = $1 UNION ALL SELECT secret_hash FROM rolled_secrets \
             WHERE key_id = $1",
        )
        .bind(id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| hash_of(row.try_get("secret_hash")?)).collect()
    }

    /// How many earlier secrets there are, ended ones included (each is in the filter).
    pub(super) async fn rolled_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM rolled_secrets").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// Every earlier secret's hash, streamed: an ended one must still be found, to answer
    /// `API_KEY_EXPIRED`.
    pub(super) async fn visit_rolled(&self, visit: &mut (dyn FnMut(SecretHash) + Send)) -> Result<(), StoreError> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query("SELECT secret_hash FROM rolled_secrets").fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            visit(hash_of(row.try_get("secret_hash")?)?);
        }
        Ok(())
    }
}

impl SqlStore {
    /// Keys whose current or any earlier display prefix starts with `prefix`: two index
    /// ranges (`api_keys_by_prefix`, `rolled_secrets_by_prefix`), bytewise.
    pub(super) async fn by_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let c = self.dialect().bytewise();
        // Every display prefix is visible ASCII, so each one starting with `prefix` sorts
        // before `prefix` + DEL.
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id > $3 AND (\
             (k.prefix{c} >= $1 AND k.prefix{c} < $2) OR k.id IN (SELECT r.key_id FROM rolled_secrets r \
             WHERE r.prefix{c} >= $1 AND r.prefix{c} < $2)) ORDER BY k.id LIMIT $4"
        );
        let rows = dynamic(sql)
            .bind(prefix.to_owned())
            .bind(format!("{prefix}\u{7f}"))
            .bind(after.unwrap_or("").to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }
}

fn hash_of(bytes: Vec<u8>) -> Result<SecretHash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("secret hash length".to_owned()))
}

/// The earlier secret a lookup by hash went through, if it did (`r_secret_hash`, `r_expires_at`).
pub(super) fn earlier_from_row(row: &AnyRow) -> Result<Option<EarlierSecret>, StoreError> {
    let hash: Option<Vec<u8>> = row.try_get("r_secret_hash")?;
    let ends: Option<Millis> = row.try_get("r_expires_at")?;
    match (hash, ends) {
        (Some(hash), Some(ends)) => Ok(Some(EarlierSecret { hash: hash_of(hash)?, ends })),
        _ => Ok(None),
    }
}
