//! `keygate seed`: fills the configured store with many tenants and keys, for load tests and
//! benchmarks, through the store's own code (`Store::insert_bulk`).
//!
//! Keys are real: unique secrets from the OS random generator, hashed as usual, never printed.
//! Each key allows one to three origins of its tenant, exact and wildcard mixed, so the
//! preflight index sees a realistic mix: shared entries (`https://app.<tenant>.example`,
//! `https://*.<tenant>.example`) and one entry of the key's own.

use std::collections::BTreeSet;

use crate::model::{ApiKey, Subscription, Tenant, TenantStatus};
use crate::origin::OriginPattern;
use crate::scope::Scope;
use crate::secret::{SecretHash, generate_secret, random_base62};
use crate::store::{Store, StoreError};
use crate::time::now_millis;

/// Rows written per transaction.
const BATCH: usize = 10_000;

/// What was written.
#[derive(Debug, serde::Serialize)]
pub struct Seeded {
    pub tenants: usize,
    pub keys: usize,
}

/// Writes `tenants` tenants (`seed-0`, `seed-1`, …, module `orders`) and `keys` keys spread
/// evenly over them. Tenant ids are fixed, so seeding twice into one store is refused
/// (`CONFLICT`) rather than doubling up.
pub async fn seed(store: &dyn Store, keys: usize, tenants: usize, key_prefix: &str) -> Result<Seeded, StoreError> {
    let tenants = tenants.max(1);
    let now = now_millis();
    let all_tenants: Vec<Tenant> = (0..tenants).map(|t| tenant(t, now)).collect();
    let scopes: Vec<Scope> =
        ["sessions:create", "orders:read", "orders:write"].iter().filter_map(|s| Scope::parse(s).ok()).collect();
    let mut pending_tenants = all_tenants.as_slice();
    let mut batch: Vec<(ApiKey, SecretHash)> = Vec::with_capacity(BATCH);
    for index in 0..keys {
        let secret = generate_secret(key_prefix);
        let tenant = index % tenants;
        let key = ApiKey {
            id: format!("key_{}", random_base62(20)),
            tenant_id: all_tenants[tenant].id.clone(),
            name: format!("seed key {index}"),
            prefix: secret.prefix.clone(),
            scopes: scopes[..1 + index % scopes.len()].to_vec(),
            allowed_origins: origins(tenant, index),
            expires_at: None,
            revoked_at: None,
            rate_limit: None,
            created_at: now,
            last_used_at: None,
            meta: None,
        };
        batch.push((key, secret.hash));
        if batch.len() == BATCH {
            store.insert_bulk(std::mem::take(&mut pending_tenants), &batch).await?;
            batch.clear();
        }
    }
    store.insert_bulk(pending_tenants, &batch).await?;
    Ok(Seeded { tenants, keys })
}

fn tenant(index: usize, now: i64) -> Tenant {
    Tenant {
        id: format!("seed-{index}"),
        name: format!("Seed tenant {index}"),
        status: TenantStatus::Active,
        subscription: Subscription::Active,
        modules: BTreeSet::from(["orders".to_owned()]),
        rate_limit: None,
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
}
