//! Keeping this instance's in-memory state in step with the store, by the change feed: after an
//! admin write here (at once), and after one on another instance sharing the store — at its
//! `NOTIFY` on PostgreSQL, within [`POLL_EVERY`] on SQLite.
//!
//! Like a Kubernetes informer: list once (at start), then apply each change after the
//! revision seen — a key leaves the cache by its hash and its preflight entries are replaced
//! by its current ones (one store read), a tenant's keys leave the cache by the tenant index, a
//! signing key change reloads the (small) signing key set. When part of the feed is gone (this
//! instance fell further behind than the store keeps), it resyncs in full, logs it and counts
//! it in `keygate_feed_resyncs_total`.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::KeyCache;
use crate::preflight::PreflightIndex;
use crate::session::Sessions;
use crate::store::{CHANGES_CHANNEL, Change, ChangeKind, Feed, KeyAllowlist, Store, StoreError};

/// Well inside the contract's "within 1 second on every other instance".
pub const POLL_EVERY: Duration = Duration::from_millis(400);

/// With PostgreSQL notifications, polling only guards against a notification that never came.
pub const POLL_WHILE_LISTENING: Duration = Duration::from_secs(5);

/// After a failure to listen, how long before trying again (polling goes on meanwhile).
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Changes read from the feed at a time.
const BATCH: u32 = 500;

pub struct StoreWatch {
    store: Arc<dyn Store>,
    pub cache: Arc<KeyCache>,
    pub preflight: Arc<PreflightIndex>,
    sessions: Arc<Sessions>,
    /// The last revision applied. The lock also keeps two catch-ups from interleaving.
    seen: tokio::sync::Mutex<i64>,
}

impl StoreWatch {
    /// Keeps `cache`, `preflight` and `sessions` current from revision `since` on: the
    /// store's revision read before they were loaded.
    pub fn new(
        store: Arc<dyn Store>,
        since: i64,
        cache: Arc<KeyCache>,
        preflight: Arc<PreflightIndex>,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self { store, cache, preflight, sessions, seen: tokio::sync::Mutex::new(since) }
    }

    /// Applies every change recorded since the last call.
    pub async fn catch_up(&self) {
        let mut seen = self.seen.lock().await;
        loop {
            match self.store.changes_since(*seen, BATCH).await {
                Ok(Feed::Changes(changes)) => {
                    let Some(last) = changes.last().map(|change| change.revision) else { return };
                    if let Err(error) = self.apply(&changes).await {
                        // Applying is idempotent: the next catch-up starts over from `seen`.
                        tracing::warn!(%error, "could not apply the change feed");
                        return;
                    }
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

    async fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut signing_keys_changed = false;
        for change in changes {
            match change.kind {
                ChangeKind::Key => {
                    if let Some(hash) = &change.key_hash {
                        self.cache.forget_key(hash);
                    }
                    let key = self.store.key(&change.subject).await?;
                    let allowlist = key.as_ref().and_then(KeyAllowlist::of);
                    self.preflight.update_key(&change.subject, allowlist.as_ref());
                }
                ChangeKind::Tenant => self.cache.forget_tenant(&change.subject),
                ChangeKind::SigningKey => signing_keys_changed = true,
            }
        }
        if signing_keys_changed {
            self.sessions.reload(self.store.as_ref()).await?;
        }
        Ok(())
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
        let reloaded = match self.preflight.reload(self.store.as_ref()).await {
            Ok(()) => self.sessions.reload(self.store.as_ref()).await,
            Err(error) => Err(error),
        };
        match reloaded {
            Ok(()) => *seen = revision,
            // `seen` stays behind, so the next catch-up resyncs again.
            Err(error) => tracing::warn!(%error, "resync failed; retrying at the next poll"),
        }
    }

    /// Catches up until `shutdown` fires: every [`POLL_EVERY`]; or, given a PostgreSQL URL to
    /// listen on, at every `NOTIFY` of a change (and every [`POLL_WHILE_LISTENING`] besides).
    pub fn spawn(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>, listen_url: Option<String>) {
        let every = match listen_url {
            Some(url) => {
                tokio::spawn(Arc::clone(self).listen(url, shutdown.clone()));
                POLL_WHILE_LISTENING
            }
            None => POLL_EVERY,
        };
        let watch = Arc::clone(self);
        let mut shutdown = shutdown;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => watch.catch_up().await,
                    _ = shutdown.changed() => break,
                }
            }
        });
    }

    /// Catches up at every notification. A dropped connection is made again, and then caught
    /// up from the feed: notifications sent meanwhile are lost, the changes are not.
    async fn listen(self: Arc<Self>, url: String, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let connected = async {
                let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
                listener.listen(CHANGES_CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                connected = connected => match connected {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for store changes; polling meanwhile");
                        tokio::select! {
                            () = tokio::time::sleep(RELISTEN_AFTER) => continue,
                            _ = shutdown.changed() => return,
                        }
                    }
                },
                _ = shutdown.changed() => return,
            };
            self.catch_up().await;
            loop {
                tokio::select! {
                    received = listener.try_recv() => match received {
                        Ok(Some(_)) => self.catch_up().await,
                        Ok(None) => {
                            tracing::warn!("the store notification connection dropped; catching up from the feed");
                            crate::metrics::notification_reconnect();
                            self.catch_up().await;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "the store notification connection failed; listening again");
                            crate::metrics::notification_reconnect();
                            break;
                        }
                    },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}
