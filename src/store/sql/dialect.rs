//! What differs between the engines: transaction starts, row locks, `NOTIFY`, the one-line
//! key sketch, and the migrations.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::config::StoreUrl;

/// The type of a column unpacked from JSON ([`Dialect::json_rows`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum JsonColumn {
    Text,
    Integer,
}

/// What differs between the engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub(super) fn of(url: &StoreUrl) -> Self {
        match url {
            StoreUrl::Sqlite(_) => Self::Sqlite,
            StoreUrl::Postgres(_) => Self::Postgres,
        }
    }

    /// Starts a transaction that will write: SQLite takes the write lock up front, so a
    /// read-then-write never fails to upgrade its lock.
    pub(super) fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// Empties SQLite's write-ahead log into the file and truncates it (after a bulk load).
    pub(super) fn truncate_log(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => Some("PRAGMA wal_checkpoint(TRUNCATE)"),
            Self::Postgres => None,
        }
    }

    /// Reads an index's `CREATE INDEX` statement (as `definition`) by its name (`$1`).
    pub(super) fn index_definition(self) -> &'static str {
        match self {
            Self::Sqlite => "SELECT sql AS definition FROM sqlite_master WHERE type = 'index' AND name = $1",
            Self::Postgres => {
                "SELECT indexdef AS definition FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1"
            }
        }
    }

    /// Byte order for a text comparison, so that a range of display prefixes is a range of
    /// the index (PostgreSQL compares by the database's locale otherwise).
    pub(super) fn bytewise(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => r#" COLLATE "C""#,
        }
    }

    /// Locks the rows a read-modify-write reads (SQLite's write lock already covers them).
    pub(super) fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// Wakes the instances listening for changes (PostgreSQL `NOTIFY`, sent at commit); SQLite
    /// instances poll.
    pub(super) fn notify(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("SELECT pg_notify($1, $2)"),
        }
    }

    pub(super) fn greatest(self) -> &'static str {
        match self {
            Self::Sqlite => "MAX",
            Self::Postgres => "GREATEST",
        }
    }

    /// A `SELECT` of the rows of a JSON array of arrays bound as `$1`, the inner arrays'
    /// elements named `columns` in order: how one statement takes a whole batch.
    pub(super) fn json_rows(self, columns: &[(&str, JsonColumn)]) -> String {
        let picked: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(at, (name, kind))| match (self, kind) {
                (Self::Sqlite, _) => format!("value ->> {at} AS {name}"),
                (Self::Postgres, JsonColumn::Text) => format!("e ->> {at} AS {name}"),
                (Self::Postgres, JsonColumn::Integer) => format!("(e ->> {at})::bigint AS {name}"),
            })
            .collect();
        match self {
            // `jsonb_each`: each inner array comes as JSONB, which `->>` reads as it is; from
            // `json_each` it would come as text, to be parsed again for each of its elements.
            Self::Sqlite => format!("SELECT {} FROM jsonb_each($1)", picked.join(", ")),
            Self::Postgres => format!("SELECT {} FROM jsonb_array_elements($1::jsonb) AS e", picked.join(", ")),
        }
    }

    pub(super) fn migrations(self) -> Migrator {
        let scripts = match self {
            Self::Sqlite => [
                ("init", include_str!("../../../migrations/sqlite/0001_init.sql")),
                ("changes", include_str!("../../../migrations/sqlite/0002_changes.sql")),
                ("key_lifecycle", include_str!("../../../migrations/sqlite/0003_key_lifecycle.sql")),
                ("quotas_and_usage", include_str!("../../../migrations/sqlite/0004_quotas_and_usage.sql")),
                ("usage_flushes", include_str!("../../../migrations/sqlite/0005_usage_flushes.sql")),
            ],
            Self::Postgres => [
                ("init", include_str!("../../../migrations/postgres/0001_init.sql")),
                ("changes", include_str!("../../../migrations/postgres/0002_changes.sql")),
                ("key_lifecycle", include_str!("../../../migrations/postgres/0003_key_lifecycle.sql")),
                ("quotas_and_usage", include_str!("../../../migrations/postgres/0004_quotas_and_usage.sql")),
                ("usage_flushes", include_str!("../../../migrations/postgres/0005_usage_flushes.sql")),
            ],
        };
        let migrations = scripts.into_iter().zip(1..).map(|((name, sql), version)| {
            Migration::new(version, name.into(), MigrationType::Simple, sql.into_sql_str(), false)
        });
        Migrator::with_migrations(migrations.collect())
    }
}
