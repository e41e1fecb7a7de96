//! Keeping this instance's in-memory state in step with the store: after an admin write here
//! (at once) and after one on another instance sharing the store (within [`POLL_EVERY`], by
//! watching the store's revision number).

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{Allowlists, KeyCache};
use crate::session::Sessions;
use crate::store::Store;

/// Well inside the contract's "within 1 second on every other instance".
pub const POLL_EVERY: Duration = Duration::from_millis(400);

pub struct StoreWatch {
    pub store: Arc<dyn Store>,
    pub cache: Arc<KeyCache>,
    pub allowlists: Arc<Allowlists>,
    pub sessions: Arc<Sessions>,
}

impl StoreWatch {
    /// Drops cached keys at once, then re-reads allowlists and signing keys.
    pub async fn refresh(&self) {
        self.cache.invalidate();
        if let Err(error) = self.allowlists.reload(self.store.as_ref()).await {
            tracing::warn!(%error, "could not reload origin allowlists");
        }
        if let Err(error) = self.sessions.reload(self.store.as_ref()).await {
            tracing::warn!(%error, "could not reload session signing keys");
        }
    }

    /// Polls the store's revision until `shutdown` fires; refreshes when it moves.
    pub fn spawn(self: &Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let watch = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = watch.store.revision().await.ok();
            let mut tick = tokio::time::interval(POLL_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => break,
                }
                match watch.store.revision().await {
                    Ok(revision) if seen != Some(revision) => {
                        seen = Some(revision);
                        watch.refresh().await;
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "could not read the store revision"),
                }
            }
        });
    }
}
