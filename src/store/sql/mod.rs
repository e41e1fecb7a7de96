//! The SQL store: one implementation for SQLite (the embedded default) and PostgreSQL, on
//! sqlx's `Any` driver. Both schemas use only types `Any` carries (TEXT ids, BIGINT times,
//! JSON text for sets, a BLOB/BYTEA hash), and every statement is written with `$N`
//! placeholders in ascending order, which both engines accept. What differs is in [`Dialect`].
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so an acknowledged write survives a
//! crash, `kill -9` included; PostgreSQL is durable by default.
//!
//! Here: the pool and the `Store` methods. Beside it: `dialect`, `rows` (columns, decoding,
//! writes, and what [`SqlStore`]'s one read-modify-write edits), `feed` (recording changes),
//! `keys` (streaming every key) and `listen` (PostgreSQL's `LISTEN`).

mod audit;
mod bulk;
mod dialect;
mod feed;
mod keys;
#[cfg(feature = "postgres")]
mod listen;
mod rows;
mod secrets;
mod usage;
mod values;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};

use audit::{Entry, append, wire};
pub use dialect::Dialect;
use feed::record_change;
use rows::{
    KEY_COLUMNS, SERVED_KEY_COLUMNS, Stored, TENANT_COLUMNS, change_from_row, dynamic, insert_key_rows,
    insert_tenant_row, key_from_row, key_wire, tenant_from_row,
};

use crate::audit::{Audit, AuditEntry, AuditFilter};
use crate::config::{SQLITE_MEMORY, StoreUrl};
use crate::model::{ApiKey, KeyState, KeyWithTenant, Tenant};
use crate::model::{RolledSecret, SigningKeyView};
use crate::secret::SecretHash;
use crate::store::{
    ChangeKind, ChangeNotices, Edit, Feed, KeyAllowlist, NextBulk, Roll, Rolled, SigningKeyRecord, Store, StoreError,
    UsageBatch, UsageRow, UsageSelect,
};
use crate::time::Millis;

pub struct SqlStore {
    pool: AnyPool,
    /// Which engine (see [`SqlStore::dialect`]), and for PostgreSQL the URL of the notification
    /// connection, which lives outside the pool.
    url: StoreUrl,
    /// SQLite's writers of this process, queued: see [`SqlStore::begin_write`].
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction and, on SQLite, this process's turn to write (held until it is dropped,
/// after the transaction: bind it first, `let (_turn, mut tx) = …`).
type WriteTx = (Option<tokio::sync::OwnedMutexGuard<()>>, sqlx::Transaction<'static, sqlx::Any>);

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

/// SQLSTATE 3D000: the database named does not exist.
const INVALID_CATALOG_NAME: &str = "3D000";

/// Why PostgreSQL cannot be reached, said with the setting and the address (its password
/// redacted) and the cause: the pool's own error, "pool timed out while waiting for an open
/// connection", says none of them. A timed-out pool is asked once more, directly, for its cause.
async fn unreachable(url: &StoreUrl, connect_to: &str, error: sqlx::Error) -> StoreError {
    use sqlx::Connection;
    let cause = match error {
        sqlx::Error::PoolTimedOut => {
            match tokio::time::timeout(Duration::from_secs(2), sqlx::AnyConnection::connect(connect_to)).await {
                Ok(Err(cause)) => cause.to_string(),
                Ok(Ok(_)) => "it answered only after the pool gave up (2 s)".to_owned(),
                Err(_) => "no answer within 2 s".to_owned(),
            }
        }
        // The server's own words: its Display adds the line of PostgreSQL's C source it came
        // from ("… at line 948").
        sqlx::Error::Database(error) if error.code().as_deref() == Some(INVALID_CATALOG_NAME) => {
            format!("{} (create it, e.g. with `createdb`; keygate makes the tables)", error.message())
        }
        sqlx::Error::Database(error) => error.message().to_owned(),
        error => error.to_string(),
    };
    StoreError::Unavailable(format!("cannot connect to PostgreSQL at store.url = {}: {cause}", url.redacted().as_str()))
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

impl SqlStore {
    /// Connects to `url` (`sqlite://PATH`, created if missing, or `postgres://…`).
    pub async fn open(url: &StoreUrl) -> Result<Self, StoreError> {
        Self::connect(url, "rwc").await
    }

    /// Connects to a store that exists and is migrated; creates nothing (the CLI's `--store`).
    pub async fn open_existing(url: &StoreUrl) -> Result<Self, StoreError> {
        let store = Self::connect(url, "rw").await.map_err(|error| match error {
            StoreError::Unavailable(reason) if reason.contains("unable to open database file") => {
                StoreError::Unavailable(format!("{reason}: no such store (`keygate migrate` creates it)"))
            }
            error => error,
        })?;
        let latest = store.dialect().migrations().iter().map(|m| m.version).max().unwrap_or_default();
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
    async fn connect(url: &StoreUrl, sqlite_mode: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of(url);
        let connect_to = match url {
            StoreUrl::Postgres(url) => url.clone(),
            StoreUrl::Sqlite(url) => {
                if sqlite_mode == "rwc" {
                    create_private(url)?;
                }
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}mode={sqlite_mode}")
            }
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(2));
        options = match dialect {
            // Per-connection settings; WAL is a property of the file but is set here too.
            // An in-memory database is its connection's own: one connection, kept for ever.
            Dialect::Sqlite if url.as_str() == SQLITE_MEMORY => {
                options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None).after_connect(
                    |connection, _| {
                        Box::pin(async move {
                            connection.execute("PRAGMA foreign_keys = ON;").await?;
                            Ok(())
                        })
                    },
                )
            }
            // No ping before each use: the connection is a thread of this process on a local
            // file, it cannot have gone away, and the ping is one more round trip to that thread
            // on every acquire (an admin write acquires about six times).
            Dialect::Sqlite => options.max_connections(4).test_before_acquire(false).after_connect(|connection, _| {
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
        let pool = match options.connect(&connect_to).await {
            Ok(pool) => pool,
            Err(error) if url.is_postgres() => return Err(unreachable(url, &connect_to, error).await),
            Err(error) => return Err(error.into()),
        };
        Ok(Self { pool, url: url.clone(), write_gate: Arc::default() })
    }

    fn dialect(&self) -> Dialect {
        Dialect::of(&self.url)
    }

    /// A write transaction. On SQLite, one transaction of this process at a time asks for the
    /// file's write lock: the others queue here, in order, instead of in SQLite's busy handler,
    /// which retries after sleeps of 1 to 100 ms (8 connections writing 500 a second: a write
    /// waited up to 80 ms for a lock free most of the time, and the writes behind it up to
    /// 1.5 s; docs/performance.md). PostgreSQL queues writers on the revision row, no sleeps.
    async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let turn = match self.dialect() {
            Dialect::Sqlite => Some(self.write_gate.clone().lock_owned().await),
            Dialect::Postgres => None,
        };
        Ok((turn, self.pool.begin_with(self.dialect().begin_write()).await?))
    }

    /// The one read-modify-write: row `id` read under the write lock, changed by `edit`, written
    /// back and recorded in the change feed, in one transaction; `None` if there is no such row.
    /// Row `id`, if there is one.
    async fn get<T: Stored>(&self, id: &str) -> Result<Option<T>, StoreError> {
        let row = dynamic(T::select("")).bind(id.to_owned()).fetch_optional(&self.pool).await?;
        row.as_ref().map(T::decode).transpose()
    }

    async fn edit<T: Stored>(&self, id: &str, edit: Edit<'_, T>, audit: Audit<'_>) -> Result<Option<T>, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let row = dynamic(T::select(self.dialect().for_update())).bind(id.to_owned()).fetch_optional(&mut *tx).await?;
        let Some(row) = row else { return Ok(None) };
        let mut value = T::decode(&row)?;
        // An edit changes the row only: what else its entry shows is read once.
        let around = value.around(&mut tx).await?;
        let before = value.wire(&around)?;
        edit(&mut value);
        value.write(&mut tx).await?;
        let after = value.wire(&around)?;
        let revision = record_change(&mut tx, self.dialect(), T::KIND, id).await?;
        let entry = Entry {
            audit,
            tenant_id: Some(value.tenant_id()),
            target_id: id,
            before: Some(before),
            after: Some(after),
        };
        append(&mut tx, revision, entry).await?;
        tx.commit().await?;
        Ok(Some(value))
    }
}

#[async_trait]
impl Store for SqlStore {
    fn notifies(&self) -> bool {
        self.url.is_postgres()
    }

    async fn listen(&self) -> Result<Box<dyn ChangeNotices>, StoreError> {
        match &self.url {
            #[cfg(feature = "postgres")]
            StoreUrl::Postgres(url) => Ok(Box::new(listen::PgNotices::connect(url).await?)),
            // Refused at load (`crate::config`): never reached.
            #[cfg(not(feature = "postgres"))]
            StoreUrl::Postgres(_) => Err(StoreError::Unavailable("built without PostgreSQL".to_owned())),
            StoreUrl::Sqlite(_) => Err(StoreError::Unavailable("SQLite sends no change notices".to_owned())),
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = self.dialect().migrations();
        let mut tries = 0;
        loop {
            match migrator.run(&self.pool).await {
                Ok(()) => return Ok(()),
                // PostgreSQL's migrations run under an advisory lock; SQLite has none. Two
                // instances migrating one new file at once: the one that waited for the other's
                // write fails on a table it finds made, and its next run finds the work done.
                Err(_) if matches!(self.dialect(), Dialect::Sqlite) && tries < 5 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * tries)).await;
                }
                Err(e) => return Err(StoreError::Unavailable(format!("migration failed: {e}"))),
            }
        }
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
        // Each change must follow the one before without a gap: a missing first one was pruned
        // (or the store was replaced), one missing further on was never recorded (a bulk
        // insert). Either way this instance cannot know what changed.
        let mut expected = after + 1;
        let contiguous = revision > after
            && !changes.is_empty()
            && changes.iter().all(|change| {
                let follows = change.revision == expected;
                expected += 1;
                follows
            });
        Ok(if contiguous { Feed::Changes(changes) } else { Feed::Missed })
    }

    async fn insert_tenant(&self, tenant: &Tenant, audit: Audit<'_>) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        insert_tenant_row(&mut tx, tenant).await?;
        let revision = record_change(&mut tx, self.dialect(), ChangeKind::Tenant, &tenant.id).await?;
        let after = Some(wire(tenant)?);
        append(
            &mut tx,
            revision,
            Entry { audit, tenant_id: Some(&tenant.id), target_id: &tenant.id, before: None, after },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.get(id).await
    }

    async fn tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>, StoreError> {
        let rows = dynamic(format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE t.id > $1 ORDER BY t.id LIMIT $2"))
            .bind(after.unwrap_or("").to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    async fn update_tenant(
        &self,
        id: &str,
        edit: Edit<'_, Tenant>,
        audit: Audit<'_>,
    ) -> Result<Option<Tenant>, StoreError> {
        self.edit(id, edit, audit).await
    }

    async fn insert_key(&self, key: &ApiKey, hash: &SecretHash, audit: Audit<'_>) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        // An imported hash may be an earlier secret of some key (a current one is UNIQUE).
        let taken = sqlx::query("SELECT 1 AS taken FROM rolled_secrets WHERE secret_hash = $1")
            .bind(hash.to_vec())
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict);
        }
        insert_key_rows(&mut tx, &[(key.clone(), *hash)]).await?;
        let revision = record_change(&mut tx, self.dialect(), ChangeKind::Key, &key.id).await?;
        // A new key has no earlier secrets to read.
        let after = Some(audit::key_view_wire(key, Vec::new())?);
        append(
            &mut tx,
            revision,
            Entry { audit, tenant_id: Some(&key.tenant_id), target_id: &key.id, before: None, after },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_bulk(&self, next: &mut NextBulk<'_>) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        bulk::insert(&mut tx, self.dialect(), next).await?;
        tx.commit().await?;
        if let Some(truncate) = self.dialect().truncate_log() {
            // The load's transaction left as large a log as the file it wrote; a process that
            // opens the store next would read all of it through first (10,000,000 keys: an
            // 11 GB log, almost two minutes; `keygate serve` gave up on its pool meanwhile).
            sqlx::query(truncate).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        self.get(id).await
    }

    async fn keys(
        &self,
        tenant_id: &str,
        state: Option<(KeyState, Millis)>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        // `$4` is now; each state as `ApiKey::state_at` decides it (revocation wins).
        let in_state = match state.map(|(state, _)| state) {
            None => "",
            Some(KeyState::Usable) => " AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $4)",
            Some(KeyState::Revoked) => " AND k.revoked_at IS NOT NULL",
            Some(KeyState::Expired) => " AND k.revoked_at IS NULL AND k.expires_at <= $4",
        };
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys k WHERE k.tenant_id = $1 AND k.id > $2{in_state} ORDER BY k.id LIMIT $3"
        );
        let mut query =
            dynamic(sql).bind(tenant_id.to_owned()).bind(after.unwrap_or("").to_owned()).bind(i64::from(limit));
        if let Some((KeyState::Usable | KeyState::Expired, now)) = state {
            query = query.bind(now);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn keys_by_prefix(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<ApiKey>, StoreError> {
        self.by_prefix(prefix, after, limit).await
    }

    async fn update_key(
        &self,
        id: &str,
        edit: Edit<'_, ApiKey>,
        audit: Audit<'_>,
    ) -> Result<Option<ApiKey>, StoreError> {
        self.edit(id, edit, audit).await
    }

    async fn key_by_hash(&self, hash: &SecretHash) -> Result<Option<KeyWithTenant>, StoreError> {
        // One round trip, one primary-key probe of each table.
        let sql = format!(
            "SELECT {SERVED_KEY_COLUMNS}, {TENANT_COLUMNS}, NULL AS r_secret_hash, NULL AS r_expires_at FROM api_keys k \
             JOIN tenants t ON t.id = k.tenant_id WHERE k.secret_hash = $1 \
             UNION ALL SELECT {SERVED_KEY_COLUMNS}, {TENANT_COLUMNS}, r.secret_hash AS r_secret_hash, \
             r.expires_at AS r_expires_at FROM rolled_secrets r \
             JOIN api_keys k ON k.id = r.key_id JOIN tenants t ON t.id = k.tenant_id WHERE r.secret_hash = $1"
        );
        let row = dynamic(sql).bind(hash.to_vec()).fetch_optional(&self.pool).await?;
        row.map(|row| {
            Ok(KeyWithTenant::new(key_from_row(&row)?, tenant_from_row(&row)?, secrets::earlier_from_row(&row)?))
        })
        .transpose()
    }

    async fn roll_key(&self, id: &str, roll: &Roll, audit: Audit<'_>) -> Result<Rolled, StoreError> {
        self.roll(id, roll, audit).await
    }

    async fn rolled_secrets(&self, key_ids: &[String], now: Millis) -> Result<Vec<(String, RolledSecret)>, StoreError> {
        self.live_rolled(key_ids, now).await
    }

    async fn key_hashes(&self, id: &str) -> Result<Vec<SecretHash>, StoreError> {
        self.hashes_of(id).await
    }

    async fn delete_key(&self, id: &str, audit: Audit<'_>) -> Result<bool, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let row =
            dynamic(ApiKey::select(self.dialect().for_update())).bind(id.to_owned()).fetch_optional(&mut *tx).await?;
        let Some(row) = row else { return Ok(false) };
        let key = ApiKey::decode(&row)?;
        let before = Some(key_wire(&mut tx, &key).await?);
        // The change first, while the key's hash is there to record.
        let revision = record_change(&mut tx, self.dialect(), ChangeKind::Key, id).await?;
        sqlx::query("DELETE FROM rolled_secrets WHERE key_id = $1").bind(id.to_owned()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM api_keys WHERE id = $1").bind(id.to_owned()).execute(&mut *tx).await?;
        append(&mut tx, revision, Entry { audit, tenant_id: Some(&key.tenant_id), target_id: id, before, after: None })
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_tenant(&self, id: &str, audit: Audit<'_>) -> Result<Option<bool>, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let found =
            dynamic(Tenant::select(self.dialect().for_update())).bind(id.to_owned()).fetch_optional(&mut *tx).await?;
        let Some(found) = found else { return Ok(None) };
        let before = Some(wire(&Tenant::decode(&found)?)?);
        let keys = sqlx::query("SELECT id FROM api_keys WHERE tenant_id = $1 LIMIT 1")
            .bind(id.to_owned())
            .fetch_optional(&mut *tx)
            .await?;
        if keys.is_some() {
            return Ok(Some(false));
        }
        sqlx::query("DELETE FROM tenants WHERE id = $1").bind(id.to_owned()).execute(&mut *tx).await?;
        let revision = record_change(&mut tx, self.dialect(), ChangeKind::Tenant, id).await?;
        append(&mut tx, revision, Entry { audit, tenant_id: Some(id), target_id: id, before, after: None }).await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        usage::list_hours(&self.pool, batch).await?;
        let (_turn, mut tx) = self.begin_write().await?;
        if !usage::first_time(&mut tx, &batch.id).await? {
            // Written by an earlier try whose answer was lost.
            return Ok(());
        }
        usage::record(&mut tx, self.dialect(), batch).await?;
        tx.commit().await?;
        Ok(())
    }

    fn usage_write_lanes(&self) -> usize {
        match self.dialect() {
            Dialect::Sqlite => 1,
            // Two of the pool's eight connections for the ~300 ms a flush of 50,000 keys takes:
            // 1.6 times as fast as one on this project's 2-core machines, where four were no
            // faster (docs/performance.md); a tenant's keys and totals stay in one part.
            Dialect::Postgres => 2,
        }
    }

    async fn usage(&self, select: &UsageSelect) -> Result<Vec<UsageRow>, StoreError> {
        usage::read(&self.pool, self.dialect(), select).await
    }

    async fn prune_usage(&self, cutoff: Millis) -> Result<u64, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let pruned = usage::prune(&mut tx, cutoff).await?;
        tx.commit().await?;
        Ok(pruned)
    }

    async fn fold_last_uses(&self) -> Result<u64, StoreError> {
        usage::fold(self).await
    }

    async fn key_count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64 + self.rolled_count().await?)
    }

    async fn visit_key_hashes(&self, visit: &mut (dyn FnMut(SecretHash) + Send)) -> Result<(), StoreError> {
        keys::visit_hashes(&self.pool, self.dialect(), visit).await?;
        // Earlier secrets of rolled keys: each is found by its own hash.
        self.visit_rolled(visit).await
    }

    async fn visit_allowlists(&self, visit: &mut (dyn FnMut(KeyAllowlist) + Send)) -> Result<(), StoreError> {
        keys::visit_allowlists(&self.pool, self.dialect(), visit).await
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

    async fn insert_signing_key(&self, key: &SigningKeyRecord, audit: Audit<'_>) -> Result<(), StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let revision = record_change(&mut tx, self.dialect(), ChangeKind::SigningKey, &key.kid).await?;
        insert_signing_key_in(&mut tx, revision, key, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRecord, audit: Audit<'_>) -> Result<bool, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        // The revision's row is the write lock on PostgreSQL (SQLite's transaction holds it
        // from its start): a second instance waits here for the first to commit, and its
        // look below, a statement of its own, then sees the first's key.
        let revision = record_change(&mut tx, self.dialect(), ChangeKind::SigningKey, &key.kid).await?;
        let existing = sqlx::query("SELECT kid FROM signing_keys WHERE algorithm = $1 AND retired_at IS NULL LIMIT 1")
            .bind(&key.algorithm)
            .fetch_optional(&mut *tx)
            .await?;
        if existing.is_some() {
            // Rolled back: no revision, no audit entry.
            return Ok(false);
        }
        insert_signing_key_in(&mut tx, revision, key, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn retire_signing_key(&self, kid: &str, at: Millis, audit: Audit<'_>) -> Result<bool, StoreError> {
        let (_turn, mut tx) = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL \
             RETURNING algorithm, created_at",
        )
        .bind(at)
        .bind(kid)
        .fetch_optional(&mut *tx)
        .await?;
        // Nothing retired: nothing to record (the transaction is rolled back).
        let Some(row) = row else { return Ok(false) };
        let revision = record_change(&mut tx, self.dialect(), ChangeKind::SigningKey, kid).await?;
        // Only a key that no longer signs is retired (the admin checks first).
        let mut view = SigningKeyView {
            kid: kid.to_owned(),
            algorithm: row.try_get("algorithm")?,
            created_at: row.try_get("created_at")?,
            retired_at: None,
            signing: false,
        };
        let before = Some(wire(&view)?);
        view.retired_at = Some(at);
        let after = Some(wire(&view)?);
        append(&mut tx, revision, Entry { audit, tenant_id: None, target_id: kid, before, after }).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn audit_entries(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        audit::page(&self.pool, filter, before, limit).await
    }

    async fn prune_audit(&self, cutoff: Millis) -> Result<u64, StoreError> {
        audit::prune(&self.pool, cutoff).await
    }
}

/// Writes `key` and its audit entry under `revision`, in the caller's transaction.
async fn insert_signing_key_in(
    tx: &mut sqlx::AnyConnection,
    revision: i64,
    key: &SigningKeyRecord,
    audit: Audit<'_>,
) -> Result<(), StoreError> {
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
    // The newest key of its algorithm: the one that signs.
    let view = SigningKeyView {
        kid: key.kid.clone(),
        algorithm: key.algorithm.clone(),
        created_at: key.created_at,
        retired_at: key.retired_at,
        signing: key.retired_at.is_none(),
    };
    let after = Some(wire(&view)?);
    append(tx, revision, Entry { audit, tenant_id: None, target_id: &key.kid, before: None, after }).await
}

/// Opens the store named by the configuration and applies pending migrations.
pub async fn open(config: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let store = SqlStore::open(&config.store.url).await?;
    store.migrate().await?;
    Ok(std::sync::Arc::new(store))
}

/// Opens the store named by the configuration if it exists and is migrated; creates and
/// changes nothing on the way (SPEC §8: only `serve`, `migrate` and `quickstart` create a store).
pub async fn open_existing(config: &crate::config::Config) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    Ok(std::sync::Arc::new(SqlStore::open_existing(&config.store.url).await?))
}
