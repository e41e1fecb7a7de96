//! `lastUsedAt`, written behind: the hot path only notes the time in memory; a background
//! task writes all noted keys in one transaction every few seconds, and once more on shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::secret::SecretHash;
use crate::store::Store;
use crate::time::Millis;

pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Keyed by key ids of authenticated requests (server-generated), and by hashes of earlier
/// secrets that were found (SHA-256: uniform already), so foldhash is safe here.
#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    keys: HashMap<String, Millis, foldhash::fast::RandomState>,
    /// Uses of earlier secrets of rolled keys, for their own `lastUsedAt`.
    earlier: HashMap<SecretHash, Millis, foldhash::fast::RandomState>,
}

impl UsageRecorder {
    /// A use of key `key_id` at `at`, by the earlier secret `earlier` if it was one.
    pub fn record(&self, key_id: &str, earlier: Option<&SecretHash>, at: Millis) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.keys.get_mut(key_id) {
            Some(last) => *last = (*last).max(at),
            None => {
                pending.keys.insert(key_id.to_owned(), at);
            }
        }
        if let Some(hash) = earlier {
            let last = pending.earlier.entry(*hash).or_insert(at);
            *last = (*last).max(at);
        }
    }

    /// Writes what is pending. On a store error the times are kept for the next try.
    pub async fn flush(&self, store: &dyn Store) {
        let (keys, earlier) = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<(String, Millis)> = pending.keys.drain().collect();
            let earlier: Vec<(SecretHash, Millis)> = pending.earlier.drain().collect();
            (keys, earlier)
        };
        if keys.is_empty() {
            return;
        }
        if let Err(error) = store.record_usage(&keys, &earlier).await {
            tracing::warn!(%error, keys = keys.len(), "could not write lastUsedAt; will retry");
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            for (id, at) in keys {
                let last = pending.keys.entry(id).or_insert(at);
                *last = (*last).max(at);
            }
            for (hash, at) in earlier {
                let last = pending.earlier.entry(hash).or_insert(at);
                *last = (*last).max(at);
            }
        }
    }

    /// Flushes every [`FLUSH_EVERY`] until `shutdown` fires, then once more.
    pub fn spawn_flusher(
        &self,
        store: Arc<dyn Store>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let recorder = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => recorder.flush(store.as_ref()).await,
                    _ = shutdown.changed() => break,
                }
            }
            recorder.flush(store.as_ref()).await;
        })
    }
}
