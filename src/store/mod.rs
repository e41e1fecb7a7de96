//! Persistence behind one narrow trait, implemented once for SQLite (the embedded default) and
//! PostgreSQL (scale-out). SQL lives only in `sql/`: the store (`mod.rs`), what differs between
//! the engines (`dialect.rs`), rows read and written (`rows.rs`, with the one read-modify-write's
//! private trait), the feed's writes (`feed.rs`), the key streams (`keys.rs`) and
//! PostgreSQL's change notices (`listen.rs`), which reach the change feed through
//! [`Store::listen`].
//!
//! Every admin write bumps a store-wide `revision` and records what it changed under that
//! revision (the change feed), in the same transaction. Instances sharing the store read the
//! feed and apply exactly those changes to their caches (see `feed.rs`).

mod sql;
#[cfg(test)]
pub(crate) mod testing;

use async_trait::async_trait;

use crate::audit::{Audit, AuditEntry, AuditFilter};
use crate::model::{ApiKey, KeyState, KeyWithTenant, RolledSecret, Tenant};
use crate::secret::SecretHash;
use crate::time::Millis;

pub use sql::{Dialect, SqlStore, open, open_existing};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint held: e.g. a tenant id that is taken.
    #[error("already exists")]
    Conflict,
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value that no longer parses: a bug or manual tampering.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A session signing key as stored.
#[derive(Clone)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub algorithm: String,
    /// HS256: the shared secret; EdDSA: a PKCS#8 document.
    pub private_key: Vec<u8>,
    /// EdDSA: the raw 32-byte public key; HS256: empty.
    pub public_key: Vec<u8>,
    pub created_at: Millis,
    pub retired_at: Option<Millis>,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The allowlist of a key that is not revoked, with the key's expiry: preflight answers from
/// the union of these.
#[derive(Debug, Clone)]
pub struct KeyAllowlist {
    pub key_id: String,
    /// The entries in their normal form, as stored (`OriginPattern`'s `Display`): entries are
    /// validated and normalised when saved, so loading need not parse them again.
    pub patterns: Vec<String>,
    pub expires_at: Option<Millis>,
}

impl KeyAllowlist {
    /// What a key contributes to preflights: nothing once revoked.
    pub fn of(key: &ApiKey) -> Option<Self> {
        let usable = key.revoked_at.is_none() && !key.allowed_origins.is_empty();
        usable.then(|| Self {
            key_id: key.id.clone(),
            patterns: key.allowed_origins.iter().map(ToString::to_string).collect(),
            expires_at: key.expires_at,
        })
    }
}

/// What an admin write changed, as recorded in the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Key,
    Tenant,
    SigningKey,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Tenant => "tenant",
            Self::SigningKey => "signing_key",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Key, Self::Tenant, Self::SigningKey].into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: i64,
    pub kind: ChangeKind,
    /// The id of the key, tenant or signing key.
    pub subject: String,
    /// For a key: its secret hash, so caches can drop it (or its "unknown" entry) by hash.
    pub key_hash: Option<SecretHash>,
}

/// The feed after a revision.
#[derive(Debug)]
pub enum Feed {
    /// Every change after it, oldest first, at most the number asked for.
    Changes(Vec<Change>),
    /// Some of the changes after it are no longer kept: the reader must resync in full.
    Missed,
}

/// The PostgreSQL channel on which every change's revision is announced at commit.
pub const CHANGES_CHANNEL: &str = "keygate_changes";

/// How many recent changes the feed keeps at least. An instance that falls further behind resyncs.
pub const FEED_RETENTION: i64 = 10_000;

pub type Edit<'a, T> = &'a (dyn Fn(&mut T) + Send + Sync);

/// A new current secret for a key, and when its earlier secrets end at the latest.
#[derive(Debug, Clone)]
pub struct Roll {
    pub hash: SecretHash,
    pub prefix: String,
    pub ends_at: Millis,
}

/// What a roll did.
#[derive(Debug)]
pub enum Rolled {
    /// The key, with its new prefix.
    Done(Box<ApiKey>),
    /// A revoked key is not rolled.
    Revoked,
    Missing,
}

/// One batch of what `Store::insert_bulk` writes: a load test's fixture (`keygate seed`).
#[derive(Debug, Default)]
pub struct Bulk {
    pub tenants: Vec<Tenant>,
    pub keys: Vec<(ApiKey, SecretHash)>,
    /// Earlier secrets of keys in `keys` (or stored before), as a roll leaves them.
    pub earlier: Vec<BulkEarlier>,
    /// Audit entries, numbered in this order after the store's revision.
    pub audit: Vec<BulkEntry>,
}

/// Gives `Store::insert_bulk` its batches, one a call, then `None`.
pub type NextBulk<'a> = dyn FnMut() -> Result<Option<Bulk>, StoreError> + Send + 'a;

/// An earlier secret of key `key_id`, live until `expires_at`.
#[derive(Debug)]
pub struct BulkEarlier {
    pub key_id: String,
    pub hash: SecretHash,
    pub prefix: String,
    pub expires_at: Millis,
}

/// An audit entry as a bulk load writes it, at the time it says.
#[derive(Debug)]
pub struct BulkEntry {
    pub at: Millis,
    pub audit: Audit<'static>,
    pub tenant_id: Option<String>,
    pub target_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// What an instance counted since its last flush, written in one transaction: requests per
/// key, hour and outcome, added to what is stored (with their latest, which is how a key's
/// `lastUsedAt` is kept), and the `lastUsedAt` of earlier secrets (by hash).
#[derive(Debug, Default)]
pub struct UsageBatch {
    /// Drawn by the instance for this part of a flush and kept for its retries: the store
    /// writes a batch of one id once, however often it is sent (a retry after a lost answer).
    pub id: String,
    pub earlier: Vec<(SecretHash, Millis)>,
    /// One per key, hour and outcome.
    pub counts: Vec<UsageCount>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub key_id: String,
    pub tenant_id: String,
    /// The UTC hour, as the Unix millisecond it starts at.
    pub hour_start: Millis,
    pub outcome: &'static str,
    pub requests: u64,
    /// The latest of these requests.
    pub last_used_at: Millis,
}

/// Which usage to read: one key's or one tenant's, over `[from, to)` (aligned to `bucket`), in
/// buckets of `bucket` milliseconds (an hour or a day), split by key if `by_key`.
#[derive(Debug, Clone)]
pub struct UsageSelect {
    pub of: UsageOf,
    pub from: Millis,
    pub to: Millis,
    pub bucket: Millis,
    pub by_key: bool,
}

#[derive(Debug, Clone)]
pub enum UsageOf {
    Key(String),
    Tenant(String),
}

/// Requests of one bucket and outcome (and key, when split by key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub start: Millis,
    pub key_id: Option<String>,
    pub outcome: String,
    pub requests: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Whether this store tells of its changes as they are made ([`Store::listen`]); if not,
    /// its change feed is polled.
    fn notifies(&self) -> bool;
    /// A connection that waits for change notices; for a store that [`Store::notifies`].
    async fn listen(&self) -> Result<Box<dyn ChangeNotices>, StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the connections; every later call fails as unavailable.
    async fn close(&self);
    /// A number that grows with every change to tenants, keys or signing keys.
    async fn revision(&self) -> Result<i64, StoreError>;
    /// The changes after revision `after`, oldest first, at most `limit` of them.
    async fn changes_since(&self, after: i64, limit: u32) -> Result<Feed, StoreError>;

    // Every write below appends its [`Audit`] entry in its own transaction (SPEC §12).

    async fn insert_tenant(&self, tenant: &Tenant, audit: Audit<'_>) -> Result<(), StoreError>;
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError>;
    /// Tenants ordered by id, those after `after`.
    async fn tenants(&self, after: Option<&str>, limit: u32) -> Result<Vec<Tenant>, StoreError>;
    /// Reads, edits and writes a tenant in one transaction.
    async fn update_tenant(
        &self,
        id: &str,
        edit: Edit<'_, Tenant>,
        audit: Audit<'_>,
    ) -> Result<Option<Tenant>, StoreError>;

    async fn insert_key(&self, key: &ApiKey, hash: &SecretHash, audit: Audit<'_>) -> Result<(), StoreError>;
    /// Many tenants, keys, earlier secrets and audit entries (`keygate seed`, a load test's
    /// fixture): the batches `next` gives until it gives `None`, all in one transaction. The
    /// indexes by display prefix are built once after the load, not entry by entry (see
    /// `sql::bulk`). The feed records no change for them, so running instances see a gap and
    /// resync in full; the audit log holds only the entries given.
    async fn insert_bulk(&self, next: &mut NextBulk<'_>) -> Result<(), StoreError>;
    async fn key(&self, id: &str) -> Result<Option<ApiKey>, StoreError>;
    /// A tenant's keys ordered by id, those after `after`; only those in `state` at `now` if given.
    async fn keys(
        &self,
        tenant_id: &str,
        state: Option<(KeyState, Millis)>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError>;
    /// Keys of every tenant whose current or any earlier secret's display prefix starts with
    /// `prefix`, ordered by id, those after `after`.
    async fn keys_by_prefix(&self, prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<ApiKey>, StoreError>;
    /// Reads, edits and writes a key in one transaction.
    async fn update_key(
        &self,
        id: &str,
        edit: Edit<'_, ApiKey>,
        audit: Audit<'_>,
    ) -> Result<Option<ApiKey>, StoreError>;
    /// The hot path's only query, on a cache miss: the key whose current secret, or one of
    /// whose earlier secrets (with its end), has this hash.
    async fn key_by_hash(&self, hash: &SecretHash) -> Result<Option<KeyWithTenant>, StoreError>;
    /// Rolls key `id` (SPEC §11) in one transaction with its change: `roll`'s secret becomes the
    /// current one, the one it replaces becomes an earlier secret, and every earlier secret
    /// ends at the latest at `roll.ends_at`.
    async fn roll_key(&self, id: &str, roll: &Roll, audit: Audit<'_>) -> Result<Rolled, StoreError>;
    /// The earlier secrets of `key_ids` still live after `now`, by key id, soonest end first.
    async fn rolled_secrets(&self, key_ids: &[String], now: Millis) -> Result<Vec<(String, RolledSecret)>, StoreError>;
    /// Deletes key `id` and its earlier secrets, in one transaction with its change; false when
    /// there is no such key.
    async fn delete_key(&self, id: &str, audit: Audit<'_>) -> Result<bool, StoreError>;
    /// Deletes tenant `id` if it has no keys: `Ok(None)` when there is no such tenant,
    /// `Ok(Some(false))` when it still has keys.
    async fn delete_tenant(&self, id: &str, audit: Audit<'_>) -> Result<Option<bool>, StoreError>;
    /// Every hash key `id` can be presented with, ended earlier secrets included.
    async fn key_hashes(&self, id: &str) -> Result<Vec<SecretHash>, StoreError>;
    /// Write-behind of what an instance counted (SPEC §13), in one transaction: `lastUsedAt`
    /// never moves back; request counts add to the stored ones, once for a batch's id however
    /// often it is sent. Costs in proportion to the batch, never to the keys stored.
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError>;
    /// How many [`Store::record_usage`] writes a flush runs side by side, each with a part of
    /// its batch: 1 where one writer at a time is all there can be.
    fn usage_write_lanes(&self) -> usize;
    /// Requests by bucket and outcome (and key), oldest bucket first, then by key and outcome.
    async fn usage(&self, select: &UsageSelect) -> Result<Vec<UsageRow>, StoreError>;
    /// Keeps each key's latest use of every hour that has closed (before the last one began) in
    /// its row, so that reading `lastUsedAt` probes only the hours since; how many keys' uses
    /// were kept. Costs in proportion to the keys used in those hours.
    async fn fold_last_uses(&self) -> Result<u64, StoreError>;
    /// Deletes the counts of hours that started before `cutoff` (the retention) and are folded;
    /// how many rows went.
    async fn prune_usage(&self, cutoff: Millis) -> Result<u64, StoreError>;
    /// How many secrets there are to know: every key, revoked ones included, and every earlier
    /// secret of a rolled key.
    async fn key_count(&self) -> Result<u64, StoreError>;
    /// Streams the hash of every secret there is to know (see [`key_count`](Self::key_count)),
    /// one at a time: the whole set is never held at once.
    async fn visit_key_hashes(&self, visit: &mut (dyn FnMut(SecretHash) + Send)) -> Result<(), StoreError>;
    /// Streams the allowlist of every key that is not revoked and allows some origin.
    async fn visit_allowlists(&self, visit: &mut (dyn FnMut(KeyAllowlist) + Send)) -> Result<(), StoreError>;

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    async fn insert_signing_key(&self, key: &SigningKeyRecord, audit: Audit<'_>) -> Result<(), StoreError>;
    /// Inserts `key` only if no unretired key of its algorithm is stored, decided under the
    /// store's write lock: instances starting together on a fresh store make one first key
    /// between them. False when there was one.
    async fn insert_first_signing_key(&self, key: &SigningKeyRecord, audit: Audit<'_>) -> Result<bool, StoreError>;
    /// Marks a key retired (it no longer verifies); false when no unretired key has that id.
    async fn retire_signing_key(&self, kid: &str, at: Millis, audit: Audit<'_>) -> Result<bool, StoreError>;

    /// Audit entries matching `filter`, newest first, those older than the entry numbered
    /// `before` if given.
    async fn audit_entries(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// Deletes the entries made before `cutoff` (the retention); how many went.
    async fn prune_audit(&self, cutoff: Millis) -> Result<u64, StoreError>;
}

// How a store tells the instances that it changed, as it changes: a wake-up, never the change
// itself (the change feed says what changed, and what a missed wake-up would have said). A
// store that cannot tell is polled ([`crate::feed`]).

/// What a notification connection heard.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// Something changed: catch up.
    Changed,
    /// The connection dropped and was made again by itself: notices sent meanwhile are lost.
    Reconnected,
}

/// One connection that waits for the store's change notices.
#[async_trait]
pub trait ChangeNotices: Send {
    /// The next notice; an error ends this connection (listen again for a new one).
    async fn next(&mut self) -> Result<Notice, StoreError>;
}
