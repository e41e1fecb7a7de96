//! The change feed over a store in memory: writes made where this instance does not hear of
//! them (another instance, the CLI) reach its cache, its filter of known keys and its listener
//! at the next catch-up; a gap in the feed resyncs in full.

use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{FeedListener, StoreWatch};
use crate::cache::{KeyCache, Lookup};
use crate::model::{Subscription, Tenant, TenantStatus};
use crate::preflight::PreflightIndex;
use crate::secret::SecretHash;
use crate::session::Sessions;
use crate::store::testing::{Elsewhere, memory_config, memory_store};
use crate::store::{Bulk, Store};

/// What the listener heard, in order.
#[derive(Default)]
struct Heard(Mutex<Vec<String>>);

impl FeedListener for Heard {
    fn key_changed(&self, key_id: &str) {
        self.0.lock().unwrap().push(format!("key {key_id}"));
    }
    fn tenant_changed(&self, tenant_id: &str) {
        self.0.lock().unwrap().push(format!("tenant {tenant_id}"));
    }
    fn everything_changed(&self) {
        self.0.lock().unwrap().push("everything".to_owned());
    }
}

impl Heard {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Instance {
    store: Arc<dyn Store>,
    watch: Arc<StoreWatch>,
    heard: Arc<Heard>,
    elsewhere: Elsewhere,
}

impl Instance {
    /// A loaded watch over a store holding tenant `acme`.
    async fn start() -> Self {
        let store = memory_store().await;
        let elsewhere = Elsewhere::on(&store);
        elsewhere.tenant(json!({ "id": "acme", "name": "acme" })).await;
        let sessions = Arc::new(Sessions::load(&memory_config().sessions, store.as_ref()).await.unwrap());
        let cache = Arc::new(KeyCache::default());
        let watch = Arc::new(StoreWatch::new(Arc::clone(&store), cache, Arc::new(PreflightIndex::default()), sessions));
        watch.load().await.unwrap();
        let heard = Arc::new(Heard::default());
        watch.set_listener(&(Arc::clone(&heard) as Arc<dyn FeedListener>));
        Self { store, watch, heard, elsewhere }
    }

    async fn key(&self) -> (String, SecretHash) {
        let body = json!({ "name": "web", "scopes": [], "rateLimit": { "limit": 10, "windowSeconds": 60 } });
        self.elsewhere.key("acme", body).await
    }

    /// The key's name and its tenant's, as this instance's cache answers.
    async fn names(&self, hash: &SecretHash) -> Option<(String, String)> {
        match self.watch.cache.find(self.store.as_ref(), hash).await.unwrap() {
            Lookup::Known(record) => Some((record.key.name.clone(), record.tenant.name.clone())),
            Lookup::Unknown | Lookup::RuledOut => None,
        }
    }
}

fn named(key: &str, tenant: &str) -> Option<(String, String)> {
    Some((key.to_owned(), tenant.to_owned()))
}

#[tokio::test]
async fn a_key_created_and_changed_elsewhere_is_known_and_current_after_a_catch_up() {
    let instance = Instance::start().await;
    let (id, hash) = instance.key().await;
    assert_eq!(instance.names(&hash).await, None, "ruled out: the filter has not heard of it");
    instance.watch.catch_up().await;
    assert_eq!(instance.names(&hash).await, named("web", "acme"));
    assert_eq!(instance.heard.take(), [format!("key {id}")]);

    instance.elsewhere.update_key(&id, json!({ "name": "renamed" })).await;
    instance.elsewhere.update_tenant("acme", json!({ "name": "Acme Corp" })).await;
    assert_eq!(instance.names(&hash).await, named("web", "acme"), "cached until the feed says otherwise");
    instance.watch.catch_up().await;
    assert_eq!(instance.names(&hash).await, named("renamed", "Acme Corp"));
    assert_eq!(instance.heard.take(), [format!("key {id}"), "tenant acme".to_owned()]);

    // Nothing new: nothing applied, nobody told.
    instance.watch.catch_up().await;
    assert!(instance.heard.take().is_empty());
}

#[tokio::test]
async fn an_unknown_key_is_worth_a_second_look_only_when_the_feed_moved() {
    let instance = Instance::start().await;
    assert!(!instance.watch.refresh_for_unknown_key().await, "nothing changed");
    let (_, hash) = instance.key().await;
    assert!(instance.watch.refresh_for_unknown_key().await, "the key's creation arrived");
    assert_eq!(instance.names(&hash).await, named("web", "acme"));
}

#[tokio::test]
async fn a_gap_in_the_feed_resyncs_in_full_wherever_it_falls() {
    let instance = Instance::start().await;
    let (id, hash) = instance.key().await;
    instance.watch.catch_up().await;
    instance.heard.take();

    // A bulk insert (`keygate seed`) moves the revision and records no change: a gap, after
    // which this instance cannot know what changed. Here it falls between two recorded
    // changes, and the first of them is what this instance has seen last.
    let bulk = Tenant {
        id: "bulk".to_owned(),
        name: "bulk".to_owned(),
        status: TenantStatus::Active,
        subscription: Subscription::Active,
        modules: Default::default(),
        rate_limit: None,
        quota: None,
        created_at: 0,
        meta: None,
    };
    instance.elsewhere.update_key(&id, json!({ "name": "renamed" })).await;
    let mut bulk = Some(Bulk { tenants: vec![bulk], ..Bulk::default() });
    instance.store.insert_bulk(&mut || Ok(bulk.take())).await.unwrap();
    instance.elsewhere.update_tenant("acme", json!({ "name": "Acme Corp" })).await;
    instance.watch.catch_up().await;
    assert_eq!(instance.heard.take(), ["everything"]);
    assert_eq!(instance.names(&hash).await, named("renamed", "Acme Corp"));
}
