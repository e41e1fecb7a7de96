//! `lastUsedAt`, written behind: the hot path only notes the time in memory; a background
//! task writes all noted keys in one transaction every few seconds, and once more on shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::Store;
use crate::time::Millis;

pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Keyed by key ids of authenticated requests (server-generated), so foldhash is safe here.
#[derive(Clone, Default)]
pub struct UsageRecorder {
    pending: Arc<Mutex<HashMap<String, Millis, foldhash::fast::RandomState>>>,
}

impl UsageRecorder {
    pub fn record(&self, key_id: &str, at: Millis) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get_mut(key_id) {
            Some(last) => *last = (*last).max(at),
            None => {
                pending.insert(key_id.to_owned(), at);
            }
        }
    }

    /// Writes what is pending. On a store error the times are kept for the next try.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<(String, Millis)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.drain().collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(error) = store.record_usage(&batch).await {
            tracing::warn!(%error, keys = batch.len(), "could not write lastUsedAt; will retry");
            for (id, at) in batch {
                self.record(&id, at);
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
