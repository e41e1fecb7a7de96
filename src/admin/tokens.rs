//! The admin tokens in force (SPEC §8, §12, §17): each with a name, which the audit log records
//! as the actor of its writes, and a role. Compared in constant time.

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{AdminRole, Config};

/// Who presented an admin token: put in the request's extensions by the admin API.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The audit log's `actor`.
    pub name: Arc<str>,
    pub role: AdminRole,
}

/// The admin tokens in force, kept as their SHA-256: a reload replaces them at once, and the old
/// values stop working (SPEC §17).
#[derive(Clone, Default)]
pub struct AdminTokens(Arc<RwLock<Vec<HeldToken>>>);

/// A token's SHA-256, and who it is.
type HeldToken = ([u8; 32], Caller);

/// A token, its name and its role.
pub type NamedToken<'a> = (&'a str, &'a str, AdminRole);

impl AdminTokens {
    pub fn new<'a>(tokens: impl IntoIterator<Item = NamedToken<'a>>) -> Self {
        let this = Self::default();
        this.replace(tokens);
        this
    }

    /// The tokens a configuration names: `server.admin_token` (named `admin`, role admin) and
    /// each `[[admin.tokens]]` entry.
    pub fn of(config: &Config) -> Self {
        Self::new(configured(config))
    }

    /// Puts `tokens` in force instead of the current ones.
    pub fn replace<'a>(&self, tokens: impl IntoIterator<Item = NamedToken<'a>>) {
        let held = tokens
            .into_iter()
            .map(|(token, name, role)| (token_digest(token.as_bytes()), Caller { name: Arc::from(name), role }))
            .collect();
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = held;
    }

    /// Puts the tokens of `config` in force.
    pub fn replace_with(&self, config: &Config) {
        self.replace(configured(config));
    }

    /// Who `presented` is, if it is a token in force. Every token is compared, in constant time,
    /// and which one matched is chosen without a branch.
    pub fn caller(&self, presented: &str) -> Option<Caller> {
        let presented = token_digest(presented.as_bytes());
        let tokens = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut found = 0u32;
        for (place, (token, _)) in tokens.iter().enumerate() {
            found = u32::conditional_select(&found, &(place as u32 + 1), token.ct_eq(&presented));
        }
        found.checked_sub(1).map(|place| tokens[place as usize].1.clone())
    }
}

fn configured(config: &Config) -> impl Iterator<Item = NamedToken<'_>> {
    let main = config.server.admin_token.as_deref().map(|token| (token, "admin", AdminRole::Admin));
    main.into_iter()
        .chain(config.admin.tokens.iter().map(|entry| (entry.token.as_str(), entry.name.as_str(), entry.role)))
}

/// Hashing both sides first makes the comparison independent of the tokens' lengths (the
/// decision token is compared so too, `crate::decision`).
pub(crate) fn token_digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_is_its_own_caller_and_others_none() {
        let tokens = AdminTokens::new([
            ("first-token-0123456789", "admin", AdminRole::Admin),
            ("second-token-0123456789", "support", AdminRole::Read),
        ]);
        let support = tokens.caller("second-token-0123456789").unwrap();
        assert_eq!((&*support.name, support.role), ("support", AdminRole::Read));
        assert_eq!(&*tokens.caller("first-token-0123456789").unwrap().name, "admin");
        assert!(tokens.caller("second-token-012345678").is_none());
        assert!(tokens.caller("").is_none());
        tokens.replace([]);
        assert!(tokens.caller("first-token-0123456789").is_none());
        assert!(tokens.caller("second-token-0123456789").is_none());
    }
}
