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
//! The index is built by streaming the store's keys at start and after a missed stretch of the
//! change feed, and kept current key by key by the feed (`feed.rs`).

use std::hash::BuildHasher;
use std::sync::RwLock;

use foldhash::HashMap;
use foldhash::fast::RandomState;
use smallvec::SmallVec;

use crate::origin::Origin;
use crate::store::KeyAllowlist;
use crate::time::Millis;

/// A key's expiry, `Millis::MAX` for none: the key allows its entries while `now` is below it.
type Holder = (u64, Millis);

/// The keys holding one entry. Most entries are a single key's own: inline, no allocation.
type Holders = SmallVec<[Holder; 1]>;
/// One key's entries: up to three inline.
type Entries = SmallVec<[u64; 3]>;

/// The index proper; [`PreflightIndex`] shares it between readers and the change feed.
#[derive(Default)]
pub struct Index {
    tags: RandomState,
    holders: HashMap<u64, Holders>,
    entries_of: HashMap<u64, Entries>,
}

#[derive(Default)]
pub struct PreflightIndex {
    index: RwLock<Index>,
}

impl PreflightIndex {
    /// Puts `fresh`, an index filled from a stream of the store's keys, in place of this
    /// one, which answered meanwhile.
    pub fn replace(&self, mut fresh: Index) {
        fresh.holders.values_mut().for_each(SmallVec::shrink_to_fit);
        fresh.holders.shrink_to_fit();
        fresh.entries_of.shrink_to_fit();
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// Replaces what key `key_id` contributes: `allowlist` is its current state, or `None`
    /// once it is revoked, allows nothing or is gone.
    pub fn update_key(&self, key_id: &str, allowlist: Option<&KeyAllowlist>) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        index.remove(key_id);
        if let Some(allowlist) = allowlist {
            index.insert(allowlist);
        }
    }

    /// True when a key that is neither revoked nor expired at `now` allows `origin`.
    pub fn allows(&self, origin: &Origin, now: Millis) -> bool {
        self.index.read().unwrap_or_else(|p| p.into_inner()).allows(origin, now)
    }
}

impl Index {
    pub fn insert(&mut self, allowlist: &KeyAllowlist) {
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
}
