//! For the unit tests beside the code: a store in memory (the real SQLite engine, migrated as
//! any other), and an [`Admin`] on it that tells no cache of its writes, as an admin write made
//! on another instance would not.

use std::sync::Arc;

use serde_json::Value;

use super::Store;
use crate::admin::Admin;
use crate::config::{Config, SQLITE_MEMORY};
use crate::secret::{SecretHash, hash_secret};

/// The default configuration, on a store in memory.
pub(crate) fn memory_config() -> Config {
    Config::parse(&format!("[store]\nurl = \"{SQLITE_MEMORY}\"\n"), std::iter::empty()).expect("a valid configuration")
}

pub(crate) async fn memory_store() -> Arc<dyn Store> {
    super::open(&memory_config()).await.expect("a store in memory")
}

/// Admin writes that reach the store and its change feed, and no cache.
pub(crate) struct Elsewhere(pub(crate) Admin);

impl Elsewhere {
    pub(crate) fn on(store: &Arc<dyn Store>) -> Self {
        Self(Admin::new(Arc::clone(store), memory_config().keys.prefix, None))
    }

    pub(crate) async fn tenant(&self, body: Value) {
        self.0.create_tenant("test", body.to_string().as_bytes()).await.expect("tenant created");
    }

    pub(crate) async fn update_tenant(&self, id: &str, body: Value) {
        self.0.update_tenant("test", id, body.to_string().as_bytes()).await.expect("tenant updated");
    }

    /// A new key of `tenant`: its id and the hash of its secret.
    pub(crate) async fn key(&self, tenant: &str, body: Value) -> (String, SecretHash) {
        let created = self.0.create_key("test", tenant, body.to_string().as_bytes()).await.expect("key created");
        (created.key.key.id.clone(), hash_secret(created.secret.as_deref().expect("a made secret")))
    }

    pub(crate) async fn update_key(&self, id: &str, body: Value) {
        self.0.update_key("test", id, body.to_string().as_bytes()).await.expect("key updated");
    }
}
