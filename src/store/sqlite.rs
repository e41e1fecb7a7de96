//! The embedded default store: one SQLite file in WAL mode with `synchronous = FULL`, so an
//! acknowledged write survives a crash, `kill -9` included.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlSafeStr, SqlitePool};

use super::{AllowlistEntry, Edit, SigningKeyRecord, Store, StoreError};
use crate::model::{ApiKey, KeyWithTenant, RateLimit, Subscription, Tenant, TenantStatus};
use crate::origin::OriginPattern;
use crate::scope::Scope;
use crate::secret::SecretHash;
use crate::time::Millis;

pub struct SqliteStore {
    pool: SqlitePool,
}

// Every column is aliased with its table's letter, so a join of both reads unambiguously.
const TENANT_COLUMNS: &str = "t.id AS t_id, t.name AS t_name, t.status AS t_status, t.subscription AS t_subscription, \
     t.modules AS t_modules, t.rate_limit AS t_rate_limit, t.rate_limit_window AS t_rate_limit_window, \
     t.created_at AS t_created_at";
const KEY_COLUMNS: &str = "k.id AS k_id, k.tenant_id AS k_tenant_id, k.name AS k_name, k.prefix AS k_prefix, \
     k.scopes AS k_scopes, k.allowed_origins AS k_allowed_origins, k.expires_at AS k_expires_at, \
     k.revoked_at AS k_revoked_at, k.rate_limit AS k_rate_limit, k.rate_limit_window AS k_rate_limit_window, \
     k.created_at AS k_created_at, k.last_used_at AS k_last_used_at";

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
                StoreError::Corrupt(error.to_string())
            }
            _ => StoreError::Unavailable(error.to_string()),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the SQLite file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    async fn bump_revision(tx: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
        sqlx::query("UPDATE keygate_meta SET value = value + 1 WHERE name = 'revision'").execute(tx).await?;
        Ok(())
    }

    async fn write_key(tx: &mut sqlx::SqliteConnection, key: &ApiKey) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET name = ?, scopes = ?, allowed_origins = ?, expires_at = ?, revoked_at = ?, \
             rate_limit = ?, rate_limit_window = ? WHERE id = ?",
        )
        .bind(&key.name)
        .bind(json_list(&key.scopes))
        .bind(json_list(&key.allowed_origins))
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.rate_limit.map(|r| r.limit as i64))
        .bind(key.rate_limit.map(|r| r.window_seconds as i64))
        .bind(&key.id)
        .execute(tx)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        let init = Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        );
        Migrator::with_migrations(vec![init])
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn revision(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM keygate_meta WHERE name = 'revision'").fetch_one(&self.pool).await?)
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, status, subscription, modules, rate_limit, rate_limit_window, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(tenant.status.as_str())
        .bind(tenant.subscription.as_str())
        .bind(json_list(&tenant.modules))
        .bind(tenant.rate_limit.map(|r| r.limit as i64))
        .bind(tenant.rate_limit.map(|r| r.window_seconds as i64))
        .bind(tenant.created_at)
        .execute(&mut *tx)
        .await?;
        Self::bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id > ? ORDER BY t.id LIMIT ?");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_tenant(&self, id: &str, edit: Edit<'_, Tenant>) -> Result<Option<Tenant>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = ?");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let mut tenant = tenant_from_row(&row)?;
        edit(&mut tenant);
        sqlx::query(
            "UPDATE tenants SET name = ?, status = ?, subscription = ?, modules = ?, rate_limit = ?, \
             rate_limit_window = ? WHERE id = ?",
        )
        .bind(&tenant.name)
        .bind(tenant.status.as_str())
        .bind(tenant.subscription.as_str())
        .bind(json_list(&tenant.modules))
        .bind(tenant.rate_limit.map(|r| r.limit as i64))
        .bind(tenant.rate_limit.map(|r| r.window_seconds as i64))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Self::bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(tenant))
    }

    async fn insert_key(&self, key: &ApiKey, hash: &SecretHash) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, allowed_origins, expires_at, \
             revoked_at, rate_limit, rate_limit_window, created_at, last_used_at) \
             VALUES (?, ?, ?, ?, ?, '[]', '[]', NULL, NULL, NULL, NULL, ?, NULL)",
        )
        .bind(&key.id)
        .bind(&key.tenant_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&hash[..])
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        Self::write_key(&mut tx, key).await?;
        Self::bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn keys(&self, tenant_id: &str, after: Option<&str>, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        let sql =
            format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.tenant_id = ? AND k.id > ? ORDER BY k.id LIMIT ?");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn update_key(&self, id: &str, edit: Edit<'_, ApiKey>) -> Result<Option<ApiKey>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = ?");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        let mut key = key_from_row(&row)?;
        edit(&mut key);
        Self::write_key(&mut tx, &key).await?;
        Self::bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(key))
    }

    async fn key_by_hash(&self, hash: &SecretHash) -> Result<Option<KeyWithTenant>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, {TENANT_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.secret_hash = ?"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&hash[..]).fetch_optional(&self.pool).await?;
        row.map(|row| Ok(KeyWithTenant { key: key_from_row(&row)?, tenant: tenant_from_row(&row)? })).transpose()
    }

    async fn record_usage(&self, uses: &[(String, Millis)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (id, at) in uses {
            sqlx::query("UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn allowlists(&self) -> Result<Vec<AllowlistEntry>, StoreError> {
        let rows = sqlx::query("SELECT allowed_origins, expires_at FROM api_keys WHERE revoked_at IS NULL")
            .fetch_all(&self.pool)
            .await?;
        let mut entries = Vec::new();
        for row in rows {
            let expires_at: Option<i64> = row.try_get("expires_at")?;
            for pattern in parse_list(&row.try_get::<String, _>("allowed_origins")?, OriginPattern::parse)? {
                entries.push((pattern, expires_at));
            }
        }
        Ok(entries)
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, algorithm, private_key, public_key, created_at, retired_at FROM signing_keys ORDER BY created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SigningKeyRecord {
                    kid: row.try_get("kid")?,
                    algorithm: row.try_get("algorithm")?,
                    private_key: row.try_get("private_key")?,
                    public_key: row.try_get("public_key")?,
                    created_at: row.try_get("created_at")?,
                    retired_at: row.try_get("retired_at")?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.private_key)
        .bind(&key.public_key)
        .bind(key.created_at)
        .bind(key.retired_at)
        .execute(&mut *tx)
        .await?;
        Self::bump_revision(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

fn json_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    serde_json::Value::from(items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string()
}

fn parse_list<T, E: std::fmt::Display>(json: &str, parse: impl Fn(&str) -> Result<T, E>) -> Result<Vec<T>, StoreError> {
    let raw: Vec<String> = serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    raw.iter().map(|s| parse(s).map_err(|e| StoreError::Corrupt(format!("{s:?}: {e}")))).collect()
}

fn rate_limit(limit: Option<i64>, window: Option<i64>) -> Option<RateLimit> {
    match (limit, window) {
        (Some(limit), Some(window)) if limit > 0 && window > 0 => {
            Some(RateLimit { limit: limit as u64, window_seconds: window as u64 })
        }
        _ => None,
    }
}

fn tenant_from_row(row: &SqliteRow) -> Result<Tenant, StoreError> {
    let status: String = row.try_get("t_status")?;
    let subscription: String = row.try_get("t_subscription")?;
    Ok(Tenant {
        id: row.try_get("t_id")?,
        name: row.try_get("t_name")?,
        status: TenantStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
        subscription: Subscription::parse(&subscription)
            .ok_or_else(|| StoreError::Corrupt(format!("subscription {subscription:?}")))?,
        modules: parse_list(&row.try_get::<String, _>("t_modules")?, |s| Ok::<_, String>(s.to_owned()))?
            .into_iter()
            .collect(),
        rate_limit: rate_limit(row.try_get("t_rate_limit")?, row.try_get("t_rate_limit_window")?),
        created_at: row.try_get("t_created_at")?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: row.try_get("k_id")?,
        tenant_id: row.try_get("k_tenant_id")?,
        name: row.try_get("k_name")?,
        prefix: row.try_get("k_prefix")?,
        scopes: parse_list(&row.try_get::<String, _>("k_scopes")?, Scope::parse)?,
        allowed_origins: parse_list(&row.try_get::<String, _>("k_allowed_origins")?, OriginPattern::parse)?,
        expires_at: row.try_get("k_expires_at")?,
        revoked_at: row.try_get("k_revoked_at")?,
        rate_limit: rate_limit(row.try_get("k_rate_limit")?, row.try_get("k_rate_limit_window")?),
        created_at: row.try_get("k_created_at")?,
        last_used_at: row.try_get("k_last_used_at")?,
    })
}
