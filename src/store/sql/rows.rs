//! Tenants and keys as rows: the columns read, a row decoded, and the statements that write
//! one. A row found by its id, to read or to edit, is [`Stored`].

use async_trait::async_trait;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::values::{BULK_ROWS, placeholders};
use crate::model::{ApiKey, Meta, Period, QuotaPlan, RateLimit, RolledSecret, Subscription, Tenant, TenantStatus};
use crate::origin::OriginPattern;
use crate::scope::Scope;
use crate::secret::SecretHash;
use crate::store::{Change, ChangeKind, StoreError};
use crate::time::{Millis, now_millis};

// Every column is aliased with its table's letter, so a join of both reads unambiguously.
pub(super) const TENANT_COLUMNS: &str = "t.id AS t_id, t.name AS t_name, t.status AS t_status, t.subscription AS t_subscription, \
     t.modules AS t_modules, t.rate_limit AS t_rate_limit, t.rate_limit_window AS t_rate_limit_window, \
     t.quota_limit AS t_quota_limit, t.quota_period AS t_quota_period, t.created_at AS t_created_at, t.meta AS t_meta";
macro_rules! key_fields {
    () => {
        "k.id AS k_id, k.tenant_id AS k_tenant_id, k.name AS k_name, k.prefix AS k_prefix, \
         k.scopes AS k_scopes, k.allowed_origins AS k_allowed_origins, k.expires_at AS k_expires_at, \
         k.revoked_at AS k_revoked_at, k.rate_limit AS k_rate_limit, k.rate_limit_window AS k_rate_limit_window, \
         k.quota_limit AS k_quota_limit, k.quota_period AS k_quota_period, k.created_at AS k_created_at, k.meta AS k_meta"
    };
}
/// A key as the admin API shows it. Its `lastUsedAt` is the greatest of the column, which holds
/// its latest use of every folded hour (`usage::fold`), and its rows of the hours not folded
/// (some three: a probe of the primary key each; the hours are listed once a statement).
pub(super) const KEY_COLUMNS: &str = concat!(
    key_fields!(),
    ", (SELECT MAX(at) FROM (SELECT MAX(u.last_used_at) AS at FROM usage_counts u \
     WHERE u.hour_start IN (SELECT hour_start FROM usage_hours WHERE folded_at IS NULL OR folded_at = 0) \
     AND u.tenant_id = k.tenant_id AND u.key_id = k.id UNION ALL SELECT k.last_used_at) AS latest) AS k_last_used_at"
);
/// A key as the request path loads it (a lookup by hash, on a cache miss): nothing there reads
/// `lastUsedAt`, so its usage counts are not probed for it, and the column the folds keep stands
/// in.
pub(super) const SERVED_KEY_COLUMNS: &str = concat!(key_fields!(), ", k.last_used_at AS k_last_used_at");

/// A statement assembled from this module's constants (column lists, dialect words): never
/// from input.
pub(super) fn dynamic(sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
}

/// Binds a tenant's terms, in column order: name, status, subscription, modules, rate limit,
/// its window, meta, quota limit and its period. Creating and updating a tenant write them alike.
fn bind_tenant_terms<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    tenant: &Tenant,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(tenant.name.clone())
        .bind(tenant.status.as_str())
        .bind(tenant.subscription.as_str())
        .bind(json_list(&tenant.modules))
        .bind(tenant.rate_limit.map(|r| r.limit as i64))
        .bind(tenant.rate_limit.map(|r| r.window_seconds as i64))
        .bind(tenant.meta.as_ref().map(|meta| meta.as_str().to_owned()))
        .bind(tenant.quota.map(|q| q.limit as i64))
        .bind(tenant.quota.map(|q| q.period.as_str()))
}

/// Binds a key's terms, in column order: scopes, allowed origins, expiry, revocation, rate
/// limit, its window, meta, quota limit and its period. Creating and updating a key write them alike.
fn bind_key_terms<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    key: &ApiKey,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(json_list(&key.scopes))
        .bind(json_list(&key.allowed_origins))
        .bind(key.expires_at)
        .bind(key.revoked_at)
        .bind(key.rate_limit.map(|r| r.limit as i64))
        .bind(key.rate_limit.map(|r| r.window_seconds as i64))
        .bind(key.meta.as_ref().map(|meta| meta.as_str().to_owned()))
        .bind(key.quota.map(|q| q.limit as i64))
        .bind(key.quota.map(|q| q.period.as_str()))
}

/// A row found by its id: read ([`super::SqlStore`]'s `get`), or edited (its `edit`: read under
/// the write lock, decoded, changed, written back and recorded in the feed, in one
/// transaction).
#[async_trait]
pub(super) trait Stored: Sized + Send + Sync {
    const KIND: ChangeKind;
    /// The row with id `$1`, `lock` appended.
    fn select(lock: &str) -> String;
    fn decode(row: &AnyRow) -> Result<Self, StoreError>;
    async fn write(&self, tx: &mut sqlx::AnyConnection) -> Result<(), StoreError>;
    /// The tenant it belongs to, for its audit entries.
    fn tenant_id(&self) -> &str;
    /// What its audit entries show beside the row (a key's live earlier secrets), read in `tx`.
    type Around: Send + Sync;
    async fn around(&self, tx: &mut sqlx::AnyConnection) -> Result<Self::Around, StoreError>;
    /// The wire object its audit entries show.
    fn wire(&self, around: &Self::Around) -> Result<serde_json::Value, StoreError>;
}

#[async_trait]
impl Stored for Tenant {
    const KIND: ChangeKind = ChangeKind::Tenant;

    fn tenant_id(&self) -> &str {
        &self.id
    }

    type Around = ();

    async fn around(&self, _: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        Ok(())
    }

    fn wire(&self, _: &()) -> Result<serde_json::Value, StoreError> {
        super::audit::wire(self)
    }

    fn select(lock: &str) -> String {
        format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = $1{lock}")
    }

    fn decode(row: &AnyRow) -> Result<Self, StoreError> {
        tenant_from_row(row)
    }

    async fn write(&self, tx: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE tenants SET name = $1, status = $2, subscription = $3, modules = $4, rate_limit = $5, \
             rate_limit_window = $6, meta = $7, quota_limit = $8, quota_period = $9 WHERE id = $10",
        );
        bind_tenant_terms(query, self).bind(&self.id).execute(tx).await?;
        Ok(())
    }
}

#[async_trait]
impl Stored for ApiKey {
    const KIND: ChangeKind = ChangeKind::Key;

    fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    type Around = Vec<RolledSecret>;

    async fn around(&self, tx: &mut sqlx::AnyConnection) -> Result<Vec<RolledSecret>, StoreError> {
        let rolled = live_rolled_on(tx, std::slice::from_ref(&self.id), now_millis()).await?;
        Ok(rolled.into_iter().map(|(_, secret)| secret).collect())
    }

    fn wire(&self, rolled: &Vec<RolledSecret>) -> Result<serde_json::Value, StoreError> {
        super::audit::key_view_wire(self, rolled.clone())
    }

    fn select(lock: &str) -> String {
        format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = $1{lock}")
    }

    fn decode(row: &AnyRow) -> Result<Self, StoreError> {
        key_from_row(row)
    }

    async fn write(&self, tx: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE api_keys SET name = $1, scopes = $2, allowed_origins = $3, expires_at = $4, revoked_at = $5, \
             rate_limit = $6, rate_limit_window = $7, meta = $8, quota_limit = $9, quota_period = $10 WHERE id = $11",
        )
        .bind(&self.name);
        bind_key_terms(query, self).bind(&self.id).execute(tx).await?;
        Ok(())
    }
}

pub(super) async fn insert_tenant_row(tx: &mut sqlx::AnyConnection, tenant: &Tenant) -> Result<(), StoreError> {
    let query = sqlx::query(
        "INSERT INTO tenants (id, name, status, subscription, modules, rate_limit, rate_limit_window, meta, \
         quota_limit, quota_period, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    );
    bind_tenant_terms(query.bind(&tenant.id), tenant).bind(tenant.created_at).execute(tx).await?;
    Ok(())
}

/// Inserts `keys` with every column, many rows a statement.
pub(super) async fn insert_key_rows(
    tx: &mut sqlx::AnyConnection,
    keys: &[(ApiKey, SecretHash)],
) -> Result<(), StoreError> {
    const COLUMNS: usize = 15;
    for chunk in keys.chunks(BULK_ROWS) {
        let mut query = dynamic(format!(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, allowed_origins, expires_at, \
             revoked_at, rate_limit, rate_limit_window, meta, quota_limit, quota_period, created_at) VALUES {}",
            placeholders(chunk.len(), COLUMNS)
        ));
        for (key, hash) in chunk {
            query = query
                .bind(key.id.clone())
                .bind(key.tenant_id.clone())
                .bind(key.name.clone())
                .bind(key.prefix.clone())
                .bind(hash.to_vec());
            query = bind_key_terms(query, key).bind(key.created_at);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}

pub(super) fn json_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    serde_json::Value::from(items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>()).to_string()
}

pub(super) fn parse_list<T, E: std::fmt::Display>(
    json: &str,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Vec<T>, StoreError> {
    let raw: Vec<String> = serde_json::from_str(json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    raw.iter().map(|s| parse(s).map_err(|e| StoreError::Corrupt(format!("{s:?}: {e}")))).collect()
}

pub(super) fn rate_limit(limit: Option<i64>, window: Option<i64>) -> Option<RateLimit> {
    match (limit, window) {
        (Some(limit), Some(window)) if limit > 0 && window > 0 => {
            Some(RateLimit { limit: limit as u64, window_seconds: window as u64 })
        }
        _ => None,
    }
}

fn quota(limit: Option<i64>, period: Option<String>) -> Option<QuotaPlan> {
    match (limit, period.as_deref().and_then(Period::parse)) {
        (Some(limit), Some(period)) if limit > 0 => Some(QuotaPlan::new(limit as u64, period)),
        _ => None,
    }
}

pub(super) fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
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
        quota: quota(row.try_get("t_quota_limit")?, row.try_get("t_quota_period")?),
        created_at: row.try_get("t_created_at")?,
        meta: meta(row.try_get("t_meta")?)?,
    })
}

pub(super) fn decode_hex(text: &str) -> Option<SecretHash> {
    let bytes = text.as_bytes();
    let mut hash = [0u8; 32];
    if bytes.len() != 64 {
        return None;
    }
    for (i, byte) in hash.iter_mut().enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = (digit(bytes[2 * i])? * 16 + digit(bytes[2 * i + 1])?) as u8;
    }
    Some(hash)
}

pub(super) fn change_from_row(row: &AnyRow) -> Result<Change, StoreError> {
    let kind: String = row.try_get("kind")?;
    let key_hash: Option<Vec<u8>> = row.try_get("key_hash")?;
    Ok(Change {
        revision: row.try_get("revision")?,
        kind: ChangeKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("change kind {kind:?}")))?,
        subject: row.try_get("subject")?,
        key_hash: key_hash
            .map(|bytes| bytes.try_into().map_err(|_| StoreError::Corrupt("change key_hash length".to_owned())))
            .transpose()?,
    })
}

pub(super) fn key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
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
        quota: quota(row.try_get("k_quota_limit")?, row.try_get("k_quota_period")?),
        created_at: row.try_get("k_created_at")?,
        last_used_at: row.try_get("k_last_used_at")?,
        meta: meta(row.try_get("k_meta")?)?,
    })
}

fn meta(text: Option<String>) -> Result<Option<Meta>, StoreError> {
    text.map(|text| Meta::from_stored(&text).ok_or_else(|| StoreError::Corrupt("meta".to_owned()))).transpose()
}

/// The earlier secrets of `key_ids` still live after `now`, on `connection` (a write's
/// transaction reads them for its audit entry).
pub(super) async fn live_rolled_on(
    connection: &mut sqlx::AnyConnection,
    key_ids: &[String],
    now: Millis,
) -> Result<Vec<(String, RolledSecret)>, StoreError> {
    if key_ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (2..key_ids.len() + 2).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT key_id, prefix, expires_at, last_used_at FROM rolled_secrets \
         WHERE expires_at > $1 AND key_id IN ({}) ORDER BY expires_at, prefix",
        placeholders.join(", ")
    );
    let mut query = dynamic(sql).bind(now);
    for id in key_ids {
        query = query.bind(id.clone());
    }
    let rows = query.fetch_all(connection).await?;
    rows.iter().map(|row| Ok((row.try_get("key_id")?, rolled_from_row(row)?))).collect()
}

fn rolled_from_row(row: &AnyRow) -> Result<RolledSecret, StoreError> {
    Ok(RolledSecret {
        prefix: row.try_get("prefix")?,
        expires_at: row.try_get("expires_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

/// A key as `GET /admin/v1/keys/{keyId}` shows it, its live earlier secrets read on
/// `connection` (a write's transaction, for its audit entry).
pub(super) async fn key_wire(
    connection: &mut sqlx::AnyConnection,
    key: &ApiKey,
) -> Result<serde_json::Value, StoreError> {
    key.wire(&key.around(connection).await?)
}
