//! The preflight index (SPEC §4): which origins some usable key allows. A preflight carries no
//! credentials, so it is answered from the union of every usable key's allowlist, and its cost
//! must not grow with the number of keys.
//!
//! Every allowlist entry is reduced to a 64-bit tag (a keyed hash of the entry, with a key
//! drawn per process), so the index holds numbers, not strings:
//!
//! - `holders`: entry tag → the keys whose allowlist holds it, each with its expiry. An exact
//!   origin is looked up by its own tag; a wildcard `https://*.example.com` by the tag of each
//!   domain the origin's host sits under (`a.b.example.com` → `b.example.com`,
//!   `example.com`, `com`): a handful of probes, whatever the key count.
//! - `entries_of`: key tag → its entry tags, so a changed key's old entries can be taken out.
//!
//! A tag collision could make a preflight answer wrongly (2⁻⁶⁴ per pair, with a key an
//! attacker cannot know); the actual request is always checked against its own key's
//! allowlist, so a wrong preflight answer opens nothing.
//!
//! The index is filled by streaming the store's allowlists, behind: start waits only for the
//! filter of known keys, and preflights that arrive before the first fill is in place wait
//! for it (for at most [`FILL_WAIT`]; docs/design.md says why they are not answered from the
//! store meanwhile). It is filled again after a missed stretch of the change feed, the old
//! index answering meanwhile, and kept current key by key by the feed (`feed.rs`); what the
//! feed changes while a fill runs is replayed onto the fresh index before it is put in place.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use foldhash::fast::RandomState;
use smallvec::SmallVec;

use crate::origin::Origin;
use crate::store::{KeyAllowlist, Store};
use crate::time::Millis;

/// How long a preflight waits for the first fill before it is answered 503.
pub(crate) const FILL_WAIT: Duration = Duration::from_secs(10);
/// A fill the store failed is tried again this much later.
const FILL_RETRY: Duration = Duration::from_secs(1);

/// A key's expiry, `Millis::MAX` for none: the key allows its entries while `now` is below it.
type Holder = (u64, Millis);

/// The keys holding one entry. Most entries are a single key's own: inline, no allocation.
type Holders = SmallVec<[Holder; 1]>;
/// One key's entries: up to three inline.
type Entries = SmallVec<[u64; 3]>;

/// The index proper; [`PreflightIndex`] shares it between readers, the change feed and its fills.
#[derive(Default)]
struct Index {
    tags: RandomState,
    holders: HashMap<u64, Holders>,
    entries_of: HashMap<u64, Entries>,
}

pub struct PreflightIndex {
    index: RwLock<Index>,
    /// The fill running behind, if any, with what the feed changed since it began.
    filling: Mutex<Option<Filling>>,
    /// True once a filled index is in place; until then preflights wait.
    filled: tokio::sync::watch::Sender<bool>,
}

struct Filling {
    generation: u64,
    /// Each key's allowlist as the feed read it after its change, in the feed's order.
    updates: Vec<(String, Option<KeyAllowlist>)>,
}

impl Default for PreflightIndex {
    fn default() -> Self {
        Self { index: RwLock::default(), filling: Mutex::default(), filled: tokio::sync::watch::Sender::new(false) }
    }
}

impl PreflightIndex {
    /// Fills a fresh index from `store`'s allowlists behind, and puts it in place; a fill begun
    /// later supersedes this one. Retries while the store fails.
    pub fn spawn_fill(self: &Arc<Self>, store: Arc<dyn Store>) {
        let generation = self.begin_fill();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            loop {
                let mut fresh = Index::default();
                let mut allowlists = 0u64;
                let visited = store
                    .visit_allowlists(&mut |allowlist| {
                        fresh.insert(&allowlist);
                        allowlists += 1;
                    })
                    .await;
                match visited {
                    Ok(()) => {
                        if this.finish_fill(generation, fresh) {
                            let ms = started.elapsed().as_millis() as u64;
                            tracing::info!(allowlists, ms, "the preflight index is filled");
                        }
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "could not fill the preflight index; retrying"),
                }
                tokio::time::sleep(FILL_RETRY).await;
                if !this.is_filling(generation) {
                    return;
                }
            }
        });
    }

    fn begin_fill(&self) -> u64 {
        let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        let generation = filling.as_ref().map_or(0, |fill| fill.generation + 1);
        *filling = Some(Filling { generation, updates: Vec::new() });
        generation
    }

    fn is_filling(&self, generation: u64) -> bool {
        let filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        filling.as_ref().is_some_and(|fill| fill.generation == generation)
    }

    /// Puts `fresh` in place of the index that answered meanwhile, with the feed's updates
    /// since the fill began replayed onto it: the fill's stream may have read a key before its
    /// change. False when a later fill superseded this one.
    fn finish_fill(&self, generation: u64, mut fresh: Index) -> bool {
        // The slow parts outside the locks: the feed's updates and preflights go on meanwhile.
        fresh.holders.values_mut().for_each(SmallVec::shrink_to_fit);
        fresh.holders.shrink_to_fit();
        fresh.entries_of.shrink_to_fit();
        let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        let Some(fill) = filling.take_if(|fill| fill.generation == generation) else { return false };
        for (key_id, allowlist) in &fill.updates {
            fresh.update_key(key_id, allowlist.as_ref());
        }
        let old = std::mem::replace(&mut *self.index.write().unwrap_or_else(|p| p.into_inner()), fresh);
        drop(filling);
        self.filled.send_replace(true);
        drop(old);
        true
    }

    /// Replaces what key `key_id` contributes: `allowlist` is its current state, or `None`
    /// once it is revoked, allows nothing or is gone.
    pub fn update_key(&self, key_id: &str, allowlist: Option<&KeyAllowlist>) {
        let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = filling.as_mut() {
            fill.updates.push((key_id.to_owned(), allowlist.cloned()));
        }
        self.index.write().unwrap_or_else(|p| p.into_inner()).update_key(key_id, allowlist);
    }

    /// Whether a filled index is in place, waiting up to [`FILL_WAIT`] for the first fill.
    pub async fn wait_filled(&self) -> bool {
        if *self.filled.borrow() {
            return true;
        }
        let mut filled = self.filled.subscribe();
        tokio::time::timeout(FILL_WAIT, filled.wait_for(|filled| *filled)).await.is_ok_and(|seen| seen.is_ok())
    }

    /// Whether the first fill is in place (for `/readyz`).
    pub fn is_filled(&self) -> bool {
        *self.filled.borrow()
    }

    /// True when a key that is neither revoked nor expired at `now` allows `origin`.
    pub fn allows(&self, origin: &Origin, now: Millis) -> bool {
        self.index.read().unwrap_or_else(|p| p.into_inner()).allows(origin, now)
    }
}

impl Index {
    fn update_key(&mut self, key_id: &str, allowlist: Option<&KeyAllowlist>) {
        self.remove(key_id);
        if let Some(allowlist) = allowlist {
            self.insert(allowlist);
        }
    }

    fn insert(&mut self, allowlist: &KeyAllowlist) {
        let key = self.tags.hash_one(allowlist.key_id.as_str());
        let until = allowlist.expires_at.unwrap_or(Millis::MAX);
        let mut tags: Entries = allowlist.patterns.iter().map(|pattern| self.pattern_tag(pattern)).collect();
        tags.sort_unstable();
        tags.dedup();
        for tag in &tags {
            self.holders.entry(*tag).or_default().push((key, until));
        }
        self.entries_of.insert(key, tags);
    }

    fn remove(&mut self, key_id: &str) {
        let key = self.tags.hash_one(key_id);
        let Some(tags) = self.entries_of.remove(&key) else { return };
        for tag in tags.iter() {
            if let Some(holders) = self.holders.get_mut(tag) {
                holders.retain(|(holder, _)| *holder != key);
                if holders.is_empty() {
                    self.holders.remove(tag);
                }
            }
        }
    }

    fn allows(&self, origin: &Origin, now: Millis) -> bool {
        let live = |tag: u64| self.holders.get(&tag).is_some_and(|keys| keys.iter().any(|(_, until)| now < *until));
        if live(self.exact_tag(origin.as_str())) {
            return true;
        }
        let host = origin.host();
        host.match_indices('.')
            .filter(|(at, _)| *at > 0)
            .any(|(at, _)| live(self.wildcard_tag(origin.scheme(), &host[at + 1..], origin.port_part())))
    }

    /// The tag of an entry in its normal form: `scheme://host[:port]` or
    /// `scheme://*.base[:port]` (a wildcard's base is a DNS name, so a `:` starts its port).
    fn pattern_tag(&self, pattern: &str) -> u64 {
        match pattern.split_once("://*.") {
            Some((scheme, rest)) => {
                let (base, port_part) = rest.rfind(':').map_or((rest, ""), |at| rest.split_at(at));
                self.wildcard_tag(scheme, base, port_part)
            }
            None => self.exact_tag(pattern),
        }
    }

    fn exact_tag(&self, origin: &str) -> u64 {
        self.tags.hash_one(("=", origin))
    }

    /// `scheme://*.base[:port]`, from its parts, so a lookup needs no allocation.
    fn wildcard_tag(&self, scheme: &str, base: &str, port_part: &str) -> u64 {
        self.tags.hash_one(("*", scheme, base, port_part))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::OriginPattern;

    fn allowlist(key_id: &str, patterns: &[&str], expires_at: Option<Millis>) -> KeyAllowlist {
        KeyAllowlist {
            key_id: key_id.to_owned(),
            patterns: patterns.iter().map(|p| OriginPattern::parse(p).unwrap().to_string()).collect(),
            expires_at,
        }
    }

    fn allows(index: &PreflightIndex, origin: &str, now: Millis) -> bool {
        index.allows(&Origin::parse(origin).unwrap(), now)
    }

    #[test]
    fn exact_and_wildcard_entries_match_as_the_patterns_do() {
        let index = PreflightIndex::default();
        index.update_key("k1", Some(&allowlist("k1", &["https://app.example.com", "https://*.shop.io:8443"], None)));
        for (origin, expected) in [
            ("https://app.example.com", true),
            ("https://APP.example.com:443", true),
            ("http://app.example.com", false),
            ("https://example.com", false),
            ("https://a.shop.io:8443", true),
            ("https://a.b.shop.io:8443", true),
            ("https://shop.io:8443", false),
            ("https://a.shop.io", false),
            ("https://evil-shop.io:8443", false),
            ("https://a.shop.io.evil.net:8443", false),
        ] {
            assert_eq!(allows(&index, origin, 0), expected, "{origin}");
            let pattern_says = ["https://app.example.com", "https://*.shop.io:8443"]
                .iter()
                .any(|p| OriginPattern::parse(p).unwrap().matches(&Origin::parse(origin).unwrap()));
            assert_eq!(pattern_says, expected, "{origin}: the index and OriginPattern::matches agree");
        }
    }

    #[test]
    fn keys_come_and_go_one_by_one_and_expire() {
        let index = PreflightIndex::default();
        index.update_key("k1", Some(&allowlist("k1", &["https://a.example"], Some(1_000))));
        index.update_key("k2", Some(&allowlist("k2", &["https://a.example", "https://b.example"], None)));
        assert!(allows(&index, "https://a.example", 2_000), "k2 still allows it after k1 expired");
        index.update_key("k2", Some(&allowlist("k2", &["https://b.example"], None)));
        assert!(allows(&index, "https://a.example", 999));
        assert!(!allows(&index, "https://a.example", 1_000), "expired at exactly expiresAt");
        index.update_key("k2", None);
        assert!(!allows(&index, "https://b.example", 0));
        index.update_key("k1", None);
        let inner = index.index.read().unwrap();
        assert!(inner.holders.is_empty() && inner.entries_of.is_empty(), "nothing left behind");
    }

    #[tokio::test]
    async fn a_fill_keeps_what_the_feed_changed_while_it_ran_and_preflights_wait_for_the_first() {
        let index = Arc::new(PreflightIndex::default());
        let generation = index.begin_fill();
        // The fill's stream read k1 before the feed applied its change.
        let mut fresh = Index::default();
        fresh.insert(&allowlist("k1", &["https://old.example"], None));
        fresh.insert(&allowlist("k2", &["https://b.example"], None));
        index.update_key("k1", Some(&allowlist("k1", &["https://new.example"], None)));
        let waiting = tokio::spawn({
            let index = Arc::clone(&index);
            async move { index.wait_filled().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished() && !index.is_filled(), "a preflight waits for the first fill");
        assert!(index.finish_fill(generation, fresh));
        assert!(waiting.await.unwrap(), "and is answered once it is in place");
        assert!(allows(&index, "https://new.example", 0), "the feed's change replayed onto the fill");
        assert!(!allows(&index, "https://old.example", 0));
        assert!(allows(&index, "https://b.example", 0));
        index.update_key("k2", None);
        assert!(!allows(&index, "https://b.example", 0), "after the fill, the feed changes the index itself");
    }

    #[test]
    fn a_superseded_fill_is_dropped() {
        let index = PreflightIndex::default();
        let first = index.begin_fill();
        let second = index.begin_fill();
        let mut stale = Index::default();
        stale.insert(&allowlist("k1", &["https://a.example"], None));
        assert!(!index.finish_fill(first, stale));
        assert!(!index.is_filled());
        assert!(index.finish_fill(second, Index::default()));
        assert!(index.is_filled() && !allows(&index, "https://a.example", 0));
    }
}
