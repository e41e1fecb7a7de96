//! Keeping this instance's in-memory state in step with the store, by the change feed: after an
//! admin write here (at once), and after one on another instance sharing the store — at its
//! `NOTIFY` on PostgreSQL, within [`POLL_EVERY`] on SQLite.
//!
//! Like a Kubernetes informer: list once (at start), then apply each change after the
//! revision seen — a key leaves the cache by each of its hashes and its preflight entries are replaced
//! by its current ones (one store read), a tenant's keys leave the cache by the tenant index, a
//! signing key change reloads the (small) signing key set. When part of the feed is gone (this
//! instance fell further behind than the store keeps), or its PostgreSQL `LISTEN` connection
//! dropped, it resyncs in full, logs it and counts it in `keygate_feed_resyncs_total`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use crate::cache::{KeyCache, KnownKeys};
use crate::preflight::PreflightIndex;
use crate::session::Sessions;
use crate::store::{Change, ChangeKind, Feed, KeyAllowlist, Notice, Store, StoreError};

/// Well inside the contract's "within 1 second on every other instance".
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(400);

/// With PostgreSQL notifications, polling only guards against a notification that never came.
pub(crate) const POLL_WHILE_LISTENING: Duration = Duration::from_secs(5);

/// After a failure to listen, how long before trying again (polling goes on meanwhile).
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Unknown keys trigger a catch-up with the feed at most this often (see
/// [`StoreWatch::refresh_for_unknown_key`]).
const PROBE_SPACING: Duration = Duration::from_millis(5);

/// Changes read from the feed at a time.
const BATCH: u32 = 500;

/// Told of each key and tenant change the feed brings, once the caches have let it go: what
/// holds something judged earlier (an open WebSocket, SPEC §17) judges it again.
pub trait FeedListener: Send + Sync {
    fn key_changed(&self, key_id: &str);
    fn tenant_changed(&self, tenant_id: &str);
    /// Part of the feed was missed: anything may have changed.
    fn everything_changed(&self);
}

pub struct StoreWatch {
    store: Arc<dyn Store>,
    pub cache: Arc<KeyCache>,
    pub preflight: Arc<PreflightIndex>,
    sessions: Arc<Sessions>,
    /// The last revision applied. The lock also keeps two catch-ups from interleaving.
    seen: tokio::sync::Mutex<i64>,
    /// `seen`, readable without the lock.
    seen_now: AtomicI64,
    /// When the last catch-up for an unknown key began; the lock queues the requests waiting
    /// for the next one.
    last_probe: tokio::sync::Mutex<Option<Instant>>,
    /// Weak: the listener holds the pipeline, which holds this (a strong one would keep a whole
    /// keygate, store connections included, alive once dropped).
    listener: std::sync::OnceLock<std::sync::Weak<dyn FeedListener>>,
}

impl StoreWatch {
    /// Keeps `cache`, `preflight` and `sessions` current; [`load`](Self::load) them first.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<KeyCache>,
        preflight: Arc<PreflightIndex>,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self {
            store,
            cache,
            preflight,
            sessions,
            seen: tokio::sync::Mutex::new(0),
            seen_now: AtomicI64::new(0),
            last_probe: tokio::sync::Mutex::new(None),
            listener: std::sync::OnceLock::new(),
        }
    }

    /// Tells `listener` of every change from now on (one listener: the open WebSockets).
    pub fn set_listener(&self, listener: &Arc<dyn FeedListener>) {
        let _ = self.listener.set(Arc::downgrade(listener));
    }

    /// The listener, while it lives.
    fn listener(&self) -> Option<Arc<dyn FeedListener>> {
        self.listener.get().and_then(std::sync::Weak::upgrade)
    }

    /// Loads everything the feed keeps current, as of the store's revision now.
    pub async fn load(&self) -> Result<(), StoreError> {
        let mut seen = self.seen.lock().await;
        self.load_from_revision(&mut seen).await
    }

    async fn load_from_revision(&self, seen: &mut i64) -> Result<(), StoreError> {
        // Read first: a change made while loading is applied again by the next catch-up.
        let revision = self.store.revision().await?;
        self.rebuild_known().await?;
        self.sessions.reload(self.store.as_ref()).await?;
        self.advance(seen, revision);
        // Behind: requests are served meanwhile, preflights wait for the first fill.
        self.preflight.spawn_fill(Arc::clone(&self.store));
        Ok(())
    }

    fn advance(&self, seen: &mut i64, revision: i64) {
        *seen = revision;
        self.seen_now.store(revision, Ordering::Release);
    }

    /// For a key the filter ruled out: waits for a catch-up with the feed that began after the
    /// request arrived (the key may have been created a moment ago, by the CLI say). True when
    /// the feed moved, so the key is worth looking up again.
    ///
    /// Catch-ups for unknown keys are spaced [`PROBE_SPACING`] apart and shared by every
    /// request waiting for one: a flood of unknown keys, however large, costs one revision read
    /// per spacing, and each of its answers waits a few milliseconds at most.
    pub async fn refresh_for_unknown_key(&self) -> bool {
        let before = self.seen_now.load(Ordering::Acquire);
        let arrived = Instant::now();
        let mut last_probe = self.last_probe.lock().await;
        if last_probe.is_none_or(|began| began <= arrived) {
            if let Some(began) = *last_probe {
                tokio::time::sleep_until((began + PROBE_SPACING).into()).await;
            }
            *last_probe = Some(Instant::now());
            self.catch_up().await;
        }
        drop(last_probe);
        self.seen_now.load(Ordering::Acquire) != before
    }

    /// Streams every secret's hash once, into a new filter of known keys, then puts it in
    /// place. Hash by hash, never holding the whole set.
    async fn rebuild_known(&self) -> Result<(), StoreError> {
        let known = KnownKeys::with_room_for(self.store.key_count().await?);
        self.store.visit_key_hashes(&mut |hash| known.insert(&hash)).await?;
        self.cache.replace_known(known);
        Ok(())
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
                    self.advance(&mut seen, last);
                    if self.cache.known_is_full() {
                        // Changes after `seen` are applied again by later catch-ups: no gap.
                        tracing::info!("the filter of known keys is full: rebuilding it");
                        if let Err(error) = self.rebuild_known().await {
                            tracing::warn!(%error, "could not rebuild the filter of known keys");
                        }
                    }
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
                        self.cache.key_changed(hash);
                    }
                    // A rolled key is found by several hashes: each leaves the cache (and is
                    // known to exist). One small read per change, off the hot path. A
                    // deleted key has none left to read: it leaves by its id.
                    for hash in self.store.key_hashes(&change.subject).await? {
                        self.cache.key_changed(&hash);
                    }
                    self.cache.forget_key(&change.subject);
                    let key = self.store.key(&change.subject).await?;
                    let allowlist = key.as_ref().and_then(KeyAllowlist::of);
                    self.preflight.update_key(&change.subject, allowlist.as_ref());
                    if let Some(listener) = self.listener() {
                        listener.key_changed(&change.subject);
                    }
                }
                ChangeKind::Tenant => {
                    self.cache.forget_tenant(&change.subject);
                    if let Some(listener) = self.listener() {
                        listener.tenant_changed(&change.subject);
                    }
                }
                ChangeKind::SigningKey => signing_keys_changed = true,
            }
        }
        if signing_keys_changed {
            self.sessions.reload(self.store.as_ref()).await?;
        }
        Ok(())
    }

    async fn resync_now(&self) {
        let mut seen = self.seen.lock().await;
        self.resync(&mut seen).await;
    }

    /// Drops every cached key and reloads what the feed would have kept current.
    async fn resync(&self, seen: &mut i64) {
        crate::metrics::feed_resync();
        tracing::warn!(from = *seen, "missed part of the change feed: resyncing in full");
        self.cache.invalidate();
        if let Err(error) = self.load_from_revision(seen).await {
            // `seen` stays behind, so the next catch-up resyncs again.
            tracing::warn!(%error, "resync failed; retrying at the next poll");
        }
        if let Some(listener) = self.listener() {
            listener.everything_changed();
        }
    }

    /// Catches up until `shutdown` fires: every [`POLL_EVERY`]; or, when the store notifies
    /// (PostgreSQL), at every notice of a change (and every [`POLL_WHILE_LISTENING`] besides).
    pub fn spawn(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let every = if self.store.notifies() {
            tokio::spawn(Arc::clone(self).listen(shutdown.clone()));
            POLL_WHILE_LISTENING
        } else {
            POLL_EVERY
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

    /// Catches up at every notice. A dropped connection is made again, and the instance then
    /// resyncs in full: notices sent meanwhile are lost, and a connection that dropped may hide
    /// a longer outage (the project's rule; see docs/design.md).
    async fn listen(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut dropped = false;
        loop {
            let mut notices = tokio::select! {
                connected = self.store.listen() => match connected {
                    Ok(notices) => notices,
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
            if dropped {
                self.resync_now().await;
            } else {
                self.catch_up().await;
            }
            loop {
                tokio::select! {
                    notice = notices.next() => match notice {
                        Ok(Notice::Changed) => self.catch_up().await,
                        Ok(Notice::Reconnected) => {
                            tracing::warn!("the store notification connection dropped and was made again");
                            crate::metrics::notification_reconnect();
                            self.resync_now().await;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "the store notification connection failed; listening again");
                            crate::metrics::notification_reconnect();
                            dropped = true;
                            break;
                        }
                    },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
