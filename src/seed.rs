//! `keygate seed`: fills the configured store with many tenants and keys — rolled and imported
//! ones among them if asked, and the audit entries their making would have written — for load
//! tests and benchmarks, through the store's own code (`Store::insert_bulk`).
//!
//! Keys are real: unique secrets from the OS random generator, hashed as usual, never printed.
//! Each key allows one to three origins of its tenant, exact and wildcard mixed, so the
//! preflight index sees a realistic mix: shared entries (`https://app.<tenant>.example`,
//! `https://*.<tenant>.example`) and one entry of the key's own.

use std::collections::BTreeSet;

use crate::audit::{Audit, AuditAction};
use crate::model::{ApiKey, KeyView, RolledSecret, Subscription, Tenant, TenantStatus};
use crate::origin::OriginPattern;
use crate::scope::Scope;
use crate::secret::{DISPLAY_RANDOM_CHARS, SecretHash, generate_secret, hash_secret, random_base62};
use crate::store::{Bulk, BulkEarlier, BulkEntry, Store, StoreError};
use crate::time::{Millis, now_millis};

/// Keys written per batch (all batches are one transaction).
const BATCH: usize = 10_000;
/// How long a seeded earlier secret stays live: 30 days.
const OVERLAP: Millis = 30 * 86_400_000;
/// Seeded audit entries are spread over the year before the seed.
const YEAR: Millis = 365 * 86_400_000;
const ACTOR: &str = "seed";

/// What to write. `rolled` keys have one live earlier secret besides the current one;
/// `imported` keys have a secret in no format of keygate's (looked up by hash, as an imported
/// one); with `audit`, every tenant and key gets the entries its making would have written.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    pub keys: usize,
    pub tenants: usize,
    pub rolled: usize,
    pub imported: usize,
    pub audit: bool,
    pub key_prefix: &'a str,
}

/// What was written.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seeded {
    pub tenants: usize,
    pub keys: usize,
    pub rolled: usize,
    pub imported: usize,
    pub audit_entries: usize,
}

/// Writes `plan.tenants` tenants (`seed-0`, `seed-1`, …, module `orders`) and `plan.keys` keys
/// spread evenly over them, a tenant's keys one after another, telling `progress` how many keys
/// are written after each batch. Tenant ids are fixed, so seeding twice into one store is
/// refused (`CONFLICT`) rather than doubling up.
///
/// The secrets are made first and the keys written in the order of their hashes, ids rising
/// (`store::sql::bulk` says why): the hash and display prefix of every secret are held in
/// memory meanwhile, 40 bytes a key.
pub async fn seed(
    store: &dyn Store,
    plan: Plan<'_>,
    progress: &mut (dyn FnMut(usize) + Send),
) -> Result<Seeded, StoreError> {
    let tenants = plan.tenants.max(1);
    let (rolled, imported) = (plan.rolled.min(plan.keys), plan.imported.min(plan.keys));
    let now = now_millis();
    let entries = if plan.audit { tenants + plan.keys + rolled } else { 0 };
    let clock = Clock { start: now - YEAR, step: YEAR / entries.max(1) as Millis, next: 0 };
    let scopes: Vec<Scope> =
        ["sessions:create", "orders:read", "orders:write"].iter().filter_map(|s| Scope::parse(s).ok()).collect();
    let mut seeding = Seeding {
        plan,
        tenants,
        rolled,
        now,
        clock,
        scopes,
        tenant_ids: (0..tenants).map(tenant_id).collect(),
        id_stem: random_base62(ID_STEM),
        secrets: made_secrets(plan.key_prefix, plan.keys - imported, imported).into_iter(),
        earlier: made_secrets(plan.key_prefix, rolled, 0).into_iter(),
        written: None,
    };
    store
        .insert_bulk(&mut || {
            if let Some(written) = seeding.written {
                progress(written);
            }
            seeding.next_batch()
        })
        .await?;
    Ok(Seeded { tenants, keys: plan.keys, rolled, imported, audit_entries: entries })
}

/// A seeded key id: `key_`, this seed's stem, and the key's index in twelve digits: as long as
/// a created key's (`key_` and 20 characters), and rising.
const ID_STEM: usize = 8;

/// A secret made for the seed, kept as its hash and the random characters of its display
/// prefix: the secret itself is never shown, so nothing else of it is needed.
struct Made {
    hash: SecretHash,
    shown: [u8; DISPLAY_RANDOM_CHARS],
    imported: bool,
}

impl Made {
    fn prefix(&self, key_prefix: &str) -> String {
        let shown = String::from_utf8_lossy(&self.shown);
        if self.imported { format!("{IMPORTED}{shown}") } else { format!("{key_prefix}_{shown}") }
    }
}

/// An imported secret's start: it is in no format of keygate's.
const IMPORTED: &str = "imp-";

/// `regular` secrets of keygate's format and `imported` ones of none, in the order of their
/// hashes.
fn made_secrets(key_prefix: &str, regular: usize, imported: usize) -> Vec<Made> {
    let mut made: Vec<Made> = (0..regular + imported)
        .map(|index| {
            let is_imported = index < imported;
            let secret = if is_imported {
                format!("{IMPORTED}{}", random_base62(28))
            } else {
                generate_secret(key_prefix).secret
            };
            let start = if is_imported { IMPORTED.len() } else { key_prefix.len() + 1 };
            let mut shown = [0; DISPLAY_RANDOM_CHARS];
            shown.copy_from_slice(&secret.as_bytes()[start..start + DISPLAY_RANDOM_CHARS]);
            Made { hash: hash_secret(&secret), shown, imported: is_imported }
        })
        .collect();
    made.sort_unstable_by_key(|made| made.hash);
    made
}

/// A seed under way: the batches it gives the store, one at a time.
struct Seeding<'a> {
    plan: Plan<'a>,
    tenants: usize,
    rolled: usize,
    now: Millis,
    clock: Clock,
    scopes: Vec<Scope>,
    tenant_ids: Vec<String>,
    id_stem: String,
    secrets: std::vec::IntoIter<Made>,
    earlier: std::vec::IntoIter<Made>,
    /// Keys given so far; `None` before the first batch, which also carries the tenants.
    written: Option<usize>,
}

impl Seeding<'_> {
    fn next_batch(&mut self) -> Result<Option<Bulk>, StoreError> {
        let mut bulk = Bulk::default();
        let first = match self.written {
            Some(written) if written == self.plan.keys => return Ok(None),
            Some(written) => written,
            None => {
                bulk.tenants = (0..self.tenants).map(|t| tenant(t, self.now)).collect();
                if self.plan.audit {
                    for tenant in &bulk.tenants {
                        let after = Some(wire(tenant)?);
                        bulk.audit.push(entry(
                            self.clock.tick(),
                            AuditAction::TenantCreate,
                            &tenant.id,
                            &tenant.id,
                            None,
                            after,
                        ));
                    }
                }
                0
            }
        };
        let last = self.plan.keys.min(first + BATCH);
        for index in first..last {
            self.add_key(&mut bulk, index)?;
        }
        self.written = Some(last);
        Ok(Some(bulk))
    }

    fn add_key(&mut self, bulk: &mut Bulk, index: usize) -> Result<(), StoreError> {
        let plan = self.plan;
        // Evenly, a tenant's keys one after another.
        let tenant = (index as u128 * self.tenants as u128 / plan.keys as u128) as usize;
        let Some(made) = self.secrets.next() else {
            return Err(StoreError::Corrupt("the seed ran out of the secrets it made".to_owned()));
        };
        let mut key = ApiKey {
            id: format!("key_{}{index:012}", self.id_stem),
            tenant_id: self.tenant_ids[tenant].clone(),
            name: format!("seed key {index}"),
            prefix: made.prefix(plan.key_prefix),
            scopes: self.scopes[..1 + index % self.scopes.len()].to_vec(),
            allowed_origins: origins(tenant, index),
            expires_at: None,
            revoked_at: None,
            rate_limit: None,
            quota: None,
            created_at: self.now,
            last_used_at: None,
            meta: None,
        };
        let earlier =
            picked(index, self.rolled, plan.keys).then(|| self.earlier.next()).flatten().map(|earlier| BulkEarlier {
                key_id: key.id.clone(),
                hash: earlier.hash,
                prefix: earlier.prefix(plan.key_prefix),
                expires_at: self.now + OVERLAP,
            });
        if plan.audit {
            key_entries(&mut bulk.audit, &mut self.clock, &mut key, made.imported, earlier.as_ref())?;
        }
        bulk.keys.push((key, made.hash));
        bulk.earlier.extend(earlier);
        Ok(())
    }
}

/// Whether `index` is one of `count` indices spread evenly over `0..total`.
fn picked(index: usize, count: usize, total: usize) -> bool {
    count > 0 && (index as u128 * count as u128) % total as u128 >= (total - count) as u128
}

/// Times for the entries, in order, one `step` apart.
struct Clock {
    start: Millis,
    step: Millis,
    next: Millis,
}

impl Clock {
    fn tick(&mut self) -> Millis {
        self.next += 1;
        self.start + self.next * self.step
    }
}

/// The entries a key's making writes: its create (or import), and the roll that left it its
/// earlier secret. The key is dated by its first entry.
fn key_entries(
    audit: &mut Vec<BulkEntry>,
    clock: &mut Clock,
    key: &mut ApiKey,
    imported: bool,
    earlier: Option<&BulkEarlier>,
) -> Result<(), StoreError> {
    let current_prefix = key.prefix.clone();
    key.created_at = clock.tick();
    if let Some(earlier) = earlier {
        key.prefix = earlier.prefix.clone();
    }
    let action = if imported { AuditAction::KeyImport } else { AuditAction::KeyCreate };
    let created = wire(&KeyView { key: key.clone(), rolled_secrets: Vec::new() })?;
    let (tenant, id) = (key.tenant_id.clone(), key.id.clone());
    let mut made = entry(key.created_at, action, &tenant, &id, None, Some(created.clone()));
    if let Some(earlier) = earlier {
        key.prefix = current_prefix;
        let rolled_secrets =
            vec![RolledSecret { prefix: earlier.prefix.clone(), expires_at: earlier.expires_at, last_used_at: None }];
        let after = wire(&KeyView { key: key.clone(), rolled_secrets })?;
        audit.push(made);
        made = entry(clock.tick(), AuditAction::KeyRoll, &tenant, &id, Some(created), Some(after));
    }
    audit.push(made);
    Ok(())
}

fn entry(
    at: Millis,
    action: AuditAction,
    tenant_id: &str,
    target_id: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> BulkEntry {
    let audit = Audit { actor: ACTOR, action };
    BulkEntry { at, audit, tenant_id: Some(tenant_id.to_owned()), target_id: target_id.to_owned(), before, after }
}

fn wire(value: &impl serde::Serialize) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn tenant_id(index: usize) -> String {
    format!("seed-{index}")
}

fn tenant(index: usize, now: i64) -> Tenant {
    Tenant {
        id: tenant_id(index),
        name: format!("Seed tenant {index}"),
        status: TenantStatus::Active,
        subscription: Subscription::Active,
        modules: BTreeSet::from(["orders".to_owned()]),
        rate_limit: None,
        quota: None,
        created_at: now,
        meta: None,
    }
}

/// One to three origins: the tenant's app (exact), the tenant's wildcard, and one of the key's
/// own; which ones depends on the key's index.
fn origins(tenant: usize, index: usize) -> Vec<OriginPattern> {
    let candidates = [
        format!("https://app.t{tenant}.example"),
        format!("https://*.t{tenant}.example"),
        format!("https://k{index}.t{tenant}.example:8443"),
    ];
    let count = 1 + index % 3;
    let first = (index / 3) % 3;
    (0..count).filter_map(|i| OriginPattern::parse(&candidates[(first + i) % 3]).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_get_one_to_three_origins_exact_and_wildcard_mixed() {
        let mut counts = BTreeSet::new();
        let mut wildcards = 0;
        for index in 0..30 {
            let origins = origins(7, index);
            counts.insert(origins.len());
            wildcards += origins.iter().filter(|o| matches!(o, OriginPattern::Wildcard { .. })).count();
        }
        assert_eq!(counts, BTreeSet::from([1, 2, 3]));
        assert!(wildcards > 0 && wildcards < 60);
    }

    #[test]
    fn picked_spreads_exactly_count_indices_over_the_total() {
        for (count, total) in [(0, 10), (1, 10), (3, 10), (10, 10), (100_000, 1_000_000), (7, 1_000_003)] {
            let chosen: Vec<usize> = (0..total).filter(|&i| picked(i, count, total)).collect();
            assert_eq!(chosen.len(), count, "{count} of {total}");
            if count > 1 {
                let gaps: BTreeSet<usize> = chosen.windows(2).map(|w| w[1] - w[0]).collect();
                assert!(gaps.iter().max().unwrap() - gaps.iter().min().unwrap() <= 1, "{gaps:?}");
            }
        }
    }
}
