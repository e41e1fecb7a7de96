//! The SQL store: one implementation for SQLite (the embedded default) and PostgreSQL, on
//! sqlx's `Any` driver. Both schemas use only types `Any` carries (TEXT ids, BIGINT times,
//! JSON text for sets, a BLOB/BYTEA hash), and every statement is written with `$N`
//! placeholders in ascending order, which both engines accept. What differs is in [`Dialect`].
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so an acknowledged write survives a
//! crash, `kill -9` included; PostgreSQL is durable by default.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, Row, SqlSafeStr};

use super::{
    CHANGES_CHANNEL, Change, ChangeKind, Edit, FEED_RETENTION, Feed, KeyAllowlist, KeySketch, KeyVisitor,
    SigningKeyRecord, Store, StoreError,
};
use crate::model::{ApiKey, KeyWithTenant, RateLimit, Subscription, Tenant, TenantStatus};
use crate::origin::OriginPattern;
use crate::scope::Scope;
use crate::secret::SecretHash;
use crate::time::Millis;

/// What differs between the engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Starts a transaction that will write: SQLite takes the write lock up front, so a
    /// read-then-write never fails to upgrade its lock.
    fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// Locks the rows a read-modify-write reads (SQLite's write lock already covers them).
    fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// Wakes the instances listening for changes (PostgreSQL `NOTIFY`, sent at commit); SQLite
    /// instances poll.
    fn notify(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("SELECT pg_notify($1, $2)"),
        }
    }

    /// A key as one line of text, built by the engine: `hash-hex id expires-at
    /// allowed-origins`, the origins `[]` once revoked. No field holds a space or a newline:
    /// ids are `key_` and base62, origins are validated when saved.
    fn key_line(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "hex(secret_hash) || ' ' || id || ' ' || COALESCE(expires_at, '') || ' ' || \
                 CASE WHEN revoked_at IS NULL THEN allowed_origins ELSE '[]' END"
            }
            Self::Postgres => {
                "encode(secret_hash, 'hex') || ' ' || id || ' ' || COALESCE(expires_at::text, '') || ' ' || \
                 CASE WHEN revoked_at IS NULL THEN allowed_origins ELSE '[]' END"
            }
        }
    }

    fn greatest(self) -> &'static str {
        match self {
            Self::Sqlite => "MAX",
            Self::Postgres => "GREATEST",
        }
    }

    fn migrations(self) -> Migrator {
        let scripts = match self {
            Self::Sqlite => [
                ("init", include_str!("../../migrations/sqlite/0001_init.sql")),
                ("changes", include_str!("../../migrations/sqlite/0002_changes.sql")),
            ],
            Self::Postgres => [
                ("init", include_str!("../../migrations/postgres/0001_init.sql")),
                ("changes", include_str!("../../migrations/postgres/0002_changes.sql")),
            ],
        };
        let migrations = scripts.into_iter().zip(1..).map(|((name, sql), version)| {
            Migration::new(version, name.into(), MigrationType::Simple, sql.into_sql_str(), false)
        });
        Migrator::with_migrations(migrations.collect())
    }
}

pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
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

/// Binds a key's terms, in column order: scopes, allowed origins, expiry, revocation, rate
/// limit and its window. Creating and updating a key write them alike.
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
}

/// Creates a missing SQLite file readable by its owner only (0600, SPEC §17): it holds the
/// session signing keys. SQLite gives the `-wal` and `-shm` files the database file's mode.
fn create_private(url: &str) -> Result<(), StoreError> {
    let Some(path) = url.strip_prefix("sqlite://").and_then(|rest| rest.split('?').next()) else { return Ok(()) };
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A missing folder and the like: SQLite's own error says it as well.
        Err(error) => Err(StoreError::Unavailable(format!("cannot create {path}: {error}"))),
    }
}

/// A statement assembled from this module's constants (column lists, dialect words): never
/// from input.
fn dynamic(sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
}

impl SqlStore {
    /// Connects to `url` (`sqlite://PATH`, created if missing, or `postgres://…`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::connect(url, "rwc").await
    }

    /// Connects to a store that exists and is migrated; creates nothing (the CLI's `--store`).
    pub async fn open_existing(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url, "rw").await.map_err(|error| match error {
            StoreError::Unavailable(reason) if reason.contains("unable to open database file") => {
                StoreError::Unavailable(format!("{reason}: no such store (`keygate migrate` creates it)"))
            }
            error => error,
        })?;
        let latest = store.dialect.migrations().iter().map(|m| m.version).max().unwrap_or_default();
        let applied = sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&store.pool)
            .await;
        let applied = match applied {
            Ok(version) => version.unwrap_or_default(),
            // No table of migrations: a database keygate never migrated.
            Err(sqlx::Error::Database(_)) => 0,
            Err(error) => return Err(error.into()),
        };
        if applied < latest {
            return Err(StoreError::Unavailable(
                "the store is not migrated to this version of keygate: run `keygate migrate`".to_owned(),
            ));
        }
        Ok(store)
    }

    /// `sqlite_mode`: `rwc` creates a missing SQLite file, `rw` does not.
    async fn connect(url: &str, sqlite_mode: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Dialect::Postgres, url.to_owned())
        } else if url.starts_with("sqlite:") {
            if sqlite_mode == "rwc" {
                create_private(url)?;
            }
            let separator = if url.contains('?') { '&' } else { '?' };
            (Dialect::Sqlite, format!("{url}{separator}mode={sqlite_mode}"))
        } else {
            return Err(StoreError::Unavailable("store.url must be sqlite://… or postgres://…".to_owned()));
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(2));
        options = match dialect {
            // Per-connection settings; WAL is a property of the file but is set here too.
            Dialect::Sqlite => options.max_connections(4).after_connect(|connection, _| {
                Box::pin(async move {
                    connection
                        .execute(
                            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    Ok(())
                })
            }),
            Dialect::Postgres => options.max_connections(8),
        };
        let pool = options.connect(&url).await?;
        Ok(Self { pool, dialect })
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(self.pool.begin_with(self.dialect.begin_write()).await?)
    }

    /// Bumps the revision and records `kind`/`subject` under it in the change feed, dropping
    /// the change that falls out of the retention. The revision row stays locked until the
    /// transaction commits, so revisions become visible in order, without gaps.
    async fn record_change(
        &self,
        tx: &mut sqlx::AnyConnection,
        kind: ChangeKind,
        subject: &str,
    ) -> Result<(), StoreError> {
        let row = sqlx::query("UPDATE keygate_meta SET value = value + 1 WHERE name = 'revision' RETURNING value")
            .fetch_one(&mut *tx)
            .await?;
        let revision: i64 = row.try_get("value")?;
        let insert = match kind {
            // The key's hash comes along, so caches can drop the key by hash.
            ChangeKind::Key => {
                "INSERT INTO changes (revision, kind, subject, key_hash) SELECT $1, $2, id, secret_hash FROM api_keys \
                 WHERE id = $3"
            }
            ChangeKind::Tenant | ChangeKind::SigningKey => {
                "INSERT INTO changes (revision, kind, subject) VALUES ($1, $2, $3)"
            }
        };
        sqlx::query(insert).bind(revision).bind(kind.as_str()).bind(subject).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM changes WHERE revision <= $1")
            .bind(revision - FEED_RETENTION)
            .execute(&mut *tx)
            .await?;
        if let Some(notify) = self.dialect.notify() {
            sqlx::query(notify).bind(CHANGES_CHANNEL).bind(revision.to_string()).execute(&mut *tx).await?;
        }
        Ok(())
    }

    async fn insert_tenant_row(tx: &mut sqlx::AnyConnection, tenant: &Tenant) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tenants (id, name, status, subscription, modules, rate_limit, rate_limit_window, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(tenant.status.as_str())
        .bind(tenant.subscription.as_str())
        .bind(json_list(&tenant.modules))
        .bind(tenant.rate_limit.map(|r| r.limit as i64))
        .bind(tenant.rate_limit.map(|r| r.window_seconds as i64))
        .bind(tenant.created_at)
        .execute(tx)
        .await?;
        Ok(())
    }

    /// Inserts `keys` with every column, many rows a statement.
    async fn insert_key_rows(tx: &mut sqlx::AnyConnection, keys: &[(ApiKey, SecretHash)]) -> Result<(), StoreError> {
        const COLUMNS: usize = 12;
        // 10 rows a statement. More is slower on SQLite: sqlx looks each bound value's name up
        // with `sqlite3_bind_parameter_name`, a scan, so a statement costs the square of its
        // values (measured: 100,000 keys in 2.7 s at 10 rows, 2.8 s at 40, 10 s at 500).
        for chunk in keys.chunks(10) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|row| {
                    let values: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", row * COLUMNS + c)).collect();
                    format!("({})", values.join(", "))
                })
                .collect();
            let mut query = dynamic(format!(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, allowed_origins, expires_at, \
                 revoked_at, rate_limit, rate_limit_window, created_at) VALUES {}",
                rows.join(", ")
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

    /// SQLite: pages of keys, each packed by SQLite into one text of a line per key (see
    /// `Dialect::key_line`), the next page read while this one is visited. Row by row, SQLite's driver
    /// hands every row from its thread to ours (measured: 13 s for 1,000,000 keys; paged: 1.2 s).
    /// Pages follow rowid, the table's own order: its `id` index would make every row a
    /// random read.
    async fn visit_key_pages(&self, visit: KeyVisitor<'_>) -> Result<(), StoreError> {
        const PAGE: i64 = 5_000;
        let sql = format!(
            "SELECT MAX(rowid) AS last, COUNT(*) AS keys, group_concat({}, char(10)) AS page \
             FROM (SELECT rowid, * FROM api_keys WHERE rowid > $1 ORDER BY rowid LIMIT $2)",
            self.dialect.key_line()
        );
        let fetch = |after: i64| {
            let (pool, sql) = (self.pool.clone(), sql.clone());
            tokio::spawn(async move { dynamic(sql).bind(after).bind(PAGE).fetch_one(&pool).await })
        };
        let mut next = Some(fetch(0));
        while let Some(pending) = next.take() {
            let row = pending.await.map_err(|e| StoreError::Unavailable(e.to_string()))??;
            let keys: i64 = row.try_get("keys")?;
            if keys == 0 {
                break;
            }
            if keys == PAGE {
                next = Some(fetch(row.try_get("last")?));
            }
            for line in row.try_get::<String, _>("page")?.lines() {
                visit(key_sketch(line)?);
            }
        }
        Ok(())
    }

    /// PostgreSQL: one query, streamed in the table's physical order, a line per key. Pages
    /// in key order would read the heap at random (measured: 3.2 s for 1,000,000 keys against
    /// 1.6 s streamed).
    async fn visit_key_stream(&self, visit: KeyVisitor<'_>) -> Result<(), StoreError> {
        use futures_util::TryStreamExt;
        let sql = format!("SELECT {} AS line FROM api_keys", self.dialect.key_line());
        let mut rows = dynamic(sql).fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            visit(key_sketch(&row.try_get::<String, _>("line")?)?);
        }
        Ok(())
    }

    async fn write_key(tx: &mut sqlx::AnyConnection, key: &ApiKey) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE api_keys SET name = $1, scopes = $2, allowed_origins = $3, expires_at = $4, revoked_at = $5, \
             rate_limit = $6, rate_limit_window = $7 WHERE id = $8",
        )
        .bind(&key.name);
        bind_key_terms(query, key).bind(&key.id).execute(tx).await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.dialect
            .migrations()
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
        let row = sqlx::query("SELECT value FROM keygate_meta WHERE name = 'revision'").fetch_one(&self.pool).await?;
        Ok(row.try_get("value")?)
    }

    async fn changes_since(&self, after: i64, limit: u32) -> Result<Feed, StoreError> {
        // The revision first: a change committed after it is found by the next read.
        let revision = self.revision().await?;
        if revision == after {
            return Ok(Feed::Changes(Vec::new()));
        }
        let rows = sqlx::query(
            "SELECT revision, kind, subject, key_hash FROM changes WHERE revision > $1 ORDER BY revision LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let changes = rows.iter().map(change_from_row).collect::<Result<Vec<_>, _>>()?;
        // The next change must be there: otherwise it was pruned (or the store was replaced).
        let contiguous = revision > after && changes.first().is_some_and(|first| first.revision == after + 1);
        Ok(if contiguous { Feed::Changes(changes) } else { Feed::Missed })
    }

    async fn insert_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        Self::insert_tenant_row(&mut tx, tenant).await?;
        self.record_change(&mut tx, ChangeKind::Tenant, &tenant.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let row = dynamic(format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = $1"))
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    async fn tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>, StoreError> {
        let rows = dynamic(format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id > $1 ORDER BY t.id LIMIT $2"))
            .bind(after.unwrap_or("").to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_tenant(&self, id: &str, edit: Edit<'_, Tenant>) -> Result<Option<Tenant>, StoreError> {
        let mut tx = self.begin_write().await?;
        let lock = self.dialect.for_update();
        let row = dynamic(format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id = $1{lock}"))
            .bind(id.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut tenant = tenant_from_row(&row)?;
        edit(&mut tenant);
        sqlx::query(
            "UPDATE tenants SET name = $1, status = $2, subscription = $3, modules = $4, rate_limit = $5, \
             rate_limit_window = $6 WHERE id = $7",
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
        self.record_change(&mut tx, ChangeKind::Tenant, id).await?;
        tx.commit().await?;
        Ok(Some(tenant))
    }

    async fn insert_key(&self, key: &ApiKey, hash: &SecretHash) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        Self::insert_key_rows(&mut tx, &[(key.clone(), *hash)]).await?;
        self.record_change(&mut tx, ChangeKind::Key, &key.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_bulk(&self, tenants: &[Tenant], keys: &[(ApiKey, SecretHash)]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for tenant in tenants {
            Self::insert_tenant_row(&mut tx, tenant).await?;
        }
        Self::insert_key_rows(&mut tx, keys).await?;
        // A revision with no change recorded: instances see a gap in the feed and resync.
        sqlx::query("UPDATE keygate_meta SET value = value + 1 WHERE name = 'revision'").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let row = dynamic(format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = $1"))
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn keys(&self, tenant_id: &str, after: Option<&str>, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        let sql =
            format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.tenant_id = $1 AND k.id > $2 ORDER BY k.id LIMIT $3");
        let rows = dynamic(sql)
            .bind(tenant_id.to_owned())
            .bind(after.unwrap_or("").to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn update_key(&self, id: &str, edit: Edit<'_, ApiKey>) -> Result<Option<ApiKey>, StoreError> {
        let mut tx = self.begin_write().await?;
        let lock = self.dialect.for_update();
        let row = dynamic(format!("SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.id = $1{lock}"))
            .bind(id.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut key = key_from_row(&row)?;
        edit(&mut key);
        Self::write_key(&mut tx, &key).await?;
        self.record_change(&mut tx, ChangeKind::Key, id).await?;
        tx.commit().await?;
        Ok(Some(key))
    }

    async fn key_by_hash(&self, hash: &SecretHash) -> Result<Option<KeyWithTenant>, StoreError> {
        let sql = format!(
            "SELECT {KEY_COLUMNS}, {TENANT_COLUMNS} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.secret_hash = $1"
        );
        let row = dynamic(sql).bind(hash.to_vec()).fetch_optional(&self.pool).await?;
        row.map(|row| Ok(KeyWithTenant { key: key_from_row(&row)?, tenant: tenant_from_row(&row)? })).transpose()
    }

    async fn record_usage(&self, uses: &[(String, Millis)]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let greatest = self.dialect.greatest();
        for (id, at) in uses {
            dynamic(format!(
                "UPDATE api_keys SET last_used_at = {greatest}(COALESCE(last_used_at, 0), $1) WHERE id = $2"
            ))
            .bind(*at)
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn key_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    async fn visit_keys(&self, visit: KeyVisitor<'_>) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => self.visit_key_pages(visit).await,
            Dialect::Postgres => self.visit_key_stream(visit).await,
        }
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
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at, retired_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.private_key)
        .bind(&key.public_key)
        .bind(key.created_at)
        .bind(key.retired_at)
        .execute(&mut *tx)
        .await?;
        self.record_change(&mut tx, ChangeKind::SigningKey, &key.kid).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn retire_signing_key(&self, kid: &str, at: Millis) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL")
            .bind(at)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        self.record_change(&mut tx, ChangeKind::SigningKey, kid).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
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

fn tenant_from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
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

/// One line of `Dialect::key_line`.
fn key_sketch(line: &str) -> Result<KeySketch, StoreError> {
    let corrupt = || StoreError::Corrupt("a key page line".to_owned());
    let mut fields = line.splitn(4, ' ');
    let (Some(hash), Some(id), Some(expires_at), Some(origins)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(corrupt());
    };
    let hash = decode_hex(hash).ok_or_else(corrupt)?;
    let allowlist = match origins {
        "[]" => None,
        _ => Some(KeyAllowlist {
            key_id: id.to_owned(),
            patterns: serde_json::from_str(origins).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            expires_at: match expires_at {
                "" => None,
                at => Some(at.parse().map_err(|_| corrupt())?),
            },
        }),
    };
    Ok(KeySketch { hash, allowlist })
}

fn decode_hex(text: &str) -> Option<SecretHash> {
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

fn change_from_row(row: &AnyRow) -> Result<Change, StoreError> {
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

fn key_from_row(row: &AnyRow) -> Result<ApiKey, StoreError> {
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
