//! Keeping this instance's in-memory state in step with the store, by the change feed: after an
//! admin write here (at once) and after one on another instance sharing the store (within
//! [`POLL_EVERY`]).
//!
//! Like a Kubernetes informer: list once (at start), then apply each change after the
//! revision seen — a key leaves the cache by its hash, a tenant's keys by the tenant index, a
//! signing key change reloads the (small) signing key set. When part of the feed is gone (this
//! instance fell further behind than the store keeps), it resyncs in full, logs it and counts
//! it in `keygate_feed_resyncs_total`.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Allowlists, KeyCache};
use crate::session::Sessions;
use crate::store::{Change, ChangeKind, Feed, Store};

/// Well inside the contract's "within 1 second on every other instance".
pub const POLL_EVERY: Duration = Duration::from_millis(400);

/// Changes read from the feed at a time.
const BATCH: u32 = 500;

pub struct StoreWatch {
    store: Arc<dyn Store>,
    pub cache: Arc<KeyCache>,
    pub allowlists: Arc<Allowlists>,
    sessions: Arc<Sessions>,
    /// The last revision applied. The lock also keeps two catch-ups from interleaving.
    seen: tokio::sync::Mutex<i64>,
}

impl StoreWatch {
    /// Keeps `cache`, `allowlists` and `sessions` current from revision `since` on: the
    /// store's revision read before they were loaded.
    pub fn new(
        store: Arc<dyn Store>,
        since: i64,
        cache: Arc<KeyCache>,
        allowlists: Arc<Allowlists>,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self { store, cache, allowlists, sessions, seen: tokio::sync::Mutex::new(since) }
    }

    /// Applies every change recorded since the last call.
    pub async fn catch_up(&self) {
        let mut seen = self.seen.lock().await;
        loop {
            match self.store.changes_since(*seen, BATCH).await {
                Ok(Feed::Changes(changes)) => {
                    let Some(last) = changes.last().map(|change| change.revision) else { return };
                    self.apply(&changes).await;
                    *seen = last;
                    if changes.len() < BATCH as usize {
                        return;
                    }
                }
                Ok(Feed::Missed) => {
                    self.resync(&mut seen).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "could not read the change feed");
                    return;
                }
            }
        }
    }

    async fn apply(&self, changes: &[Change]) {
        let (mut keys_changed, mut signing_keys_changed) = (false, false);
        for change in changes {
            match change.kind {
                ChangeKind::Key => {
                    keys_changed = true;
                    if let Some(hash) = &change.key_hash {
                        self.cache.forget_key(hash);
                    }
                }
                ChangeKind::Tenant => self.cache.forget_tenant(&change.subject),
                ChangeKind::SigningKey => signing_keys_changed = true,
            }
        }
        if keys_changed && let Err(error) = self.allowlists.reload(self.store.as_ref()).await {
            tracing::warn!(%error, "could not reload origin allowlists");
        }
        if signing_keys_changed && let Err(error) = self.sessions.reload(self.store.as_ref()).await {
            tracing::warn!(%error, "could not reload session signing keys");
        }
    }

    /// Drops every cached key and reloads what the feed would have kept current.
    async fn resync(&self, seen: &mut i64) {
        crate::metrics::feed_resync();

        let revision = match self.store.revision().await {
            Ok(revision) => revision,
            Err(error) => {
                tracing::warn!(%error, "could not read the store revision to resync");
                return;
            }
        };
        tracing::warn!(from = *seen, to = revision, "missed part of the change feed: resyncing in full");
        self.cache.invalidate();
        let reloaded = match self.allowlists.reload(self.store.as_ref()).await {
            Ok(()) => self.sessions.reload(self.store.as_ref()).await,
            Err(error) => Err(error),
        };
        match reloaded {
            Ok(()) => *seen = revision,
            // `seen` stays behind, so the next catch-up resyncs again.
            Err(error) => tracing::warn!(%error, "resync failed; retrying at the next poll"),
        }
    }

    /// Catches up every [`POLL_EVERY`] until `shutdown` fires.
    pub fn spawn(self: &Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let watch = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => watch.catch_up().await,
                    _ = shutdown.changed() => break,
                }
            }
        });
    }
}
