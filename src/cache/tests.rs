//! The cache over a store in memory, with admin writes it is not told of: what it serves from
//! memory, and what each kind of change moves out of it (and nothing else).

use std::sync::Arc;

use serde_json::json;

use super::{KeyCache, KnownKeys, Lookup, MIN_FILTER_ITEMS};
use crate::secret::{SecretHash, hash_secret};
use crate::store::Store;
use crate::store::testing::{Elsewhere, memory_store};

async fn store_with_tenants(ids: &[&str]) -> (Arc<dyn Store>, Elsewhere) {
    let store = memory_store().await;
    let elsewhere = Elsewhere::on(&store);
    for id in ids {
        elsewhere.tenant(json!({ "id": id, "name": id })).await;
    }
    (store, elsewhere)
}

fn key_named(name: &str) -> serde_json::Value {
    json!({ "name": name, "scopes": [], "rateLimit": { "limit": 10, "windowSeconds": 60 } })
}

/// The key's name and its tenant's, as the cache answers for `hash`.
async fn names(cache: &KeyCache, store: &dyn Store, hash: &SecretHash) -> Option<(String, String)> {
    match cache.find(store, hash).await.unwrap() {
        Lookup::Known(record) => Some((record.key.name.clone(), record.tenant.name.clone())),
        Lookup::Unknown | Lookup::RuledOut => None,
    }
}

fn named(key: &str, tenant: &str) -> Option<(String, String)> {
    Some((key.to_owned(), tenant.to_owned()))
}

#[tokio::test]
async fn a_found_key_is_served_from_memory_until_its_own_change_arrives() {
    let (store, elsewhere) = store_with_tenants(&["acme"]).await;
    let (id, hash) = elsewhere.key("acme", key_named("one")).await;
    let (other_id, other) = elsewhere.key("acme", key_named("other")).await;
    let cache = KeyCache::default();
    assert_eq!(names(&cache, store.as_ref(), &hash).await, named("one", "acme"));
    assert_eq!(names(&cache, store.as_ref(), &other).await, named("other", "acme"));

    elsewhere.update_key(&id, json!({ "name": "two" })).await;
    elsewhere.update_key(&other_id, json!({ "name": "renamed" })).await;
    assert_eq!(names(&cache, store.as_ref(), &hash).await, named("one", "acme"), "not read again");
    cache.key_changed(&hash);
    assert_eq!(names(&cache, store.as_ref(), &hash).await, named("two", "acme"));
    // The other key stays until its own change arrives.
    assert_eq!(names(&cache, store.as_ref(), &other).await, named("other", "acme"));
}

#[tokio::test]
async fn a_tenant_change_moves_that_tenants_keys_and_no_others() {
    let (store, elsewhere) = store_with_tenants(&["acme", "globex"]).await;
    let (_, acme) = elsewhere.key("acme", key_named("a")).await;
    let (_, globex) = elsewhere.key("globex", key_named("g")).await;
    let cache = KeyCache::default();
    names(&cache, store.as_ref(), &acme).await;
    names(&cache, store.as_ref(), &globex).await;

    elsewhere.update_tenant("acme", json!({ "name": "Acme Corp" })).await;
    elsewhere.update_tenant("globex", json!({ "name": "Globex Corp" })).await;
    cache.forget_tenant("acme");
    assert_eq!(names(&cache, store.as_ref(), &acme).await, named("a", "Acme Corp"));
    assert_eq!(names(&cache, store.as_ref(), &globex).await, named("g", "globex"), "still cached");

    cache.invalidate();
    assert_eq!(names(&cache, store.as_ref(), &globex).await, named("g", "Globex Corp"));
}

#[tokio::test]
async fn the_filter_rules_out_what_it_has_not_heard_of_until_the_key_is_known_to_exist() {
    let (store, elsewhere) = store_with_tenants(&["acme"]).await;
    let cache = KeyCache::default();
    // Before the filter is loaded every hash may be a key: it is looked up.
    let stranger = hash_secret("kg_never-issued");
    assert!(matches!(cache.find(store.as_ref(), &stranger).await.unwrap(), Lookup::Unknown));

    cache.replace_known(KnownKeys::with_room_for(0));
    assert!(matches!(cache.find(store.as_ref(), &stranger).await.unwrap(), Lookup::RuledOut));
    // A key created where this cache did not hear of it is ruled out, until its change arrives.
    let (_, hash) = elsewhere.key("acme", key_named("new")).await;
    assert!(matches!(cache.find(store.as_ref(), &hash).await.unwrap(), Lookup::RuledOut));
    cache.key_changed(&hash);
    assert_eq!(names(&cache, store.as_ref(), &hash).await, named("new", "acme"));
}

#[test]
fn the_filter_asks_to_be_rebuilt_once_it_holds_more_keys_than_it_was_sized_for() {
    let cache = KeyCache::default();
    assert!(!cache.known_is_full(), "no filter yet");
    // Sized for its minimum, since it was given no keys.
    cache.replace_known(KnownKeys::with_room_for(0));
    for n in 0..MIN_FILTER_ITEMS as u64 {
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&n.to_le_bytes());
        cache.key_changed(&hash);
    }
    assert!(!cache.known_is_full());
    cache.key_changed(&[0xff; 32]);
    assert!(cache.known_is_full());
}
