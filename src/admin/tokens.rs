//! The admin tokens in force (SPEC §8, §17), compared in constant time.

use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The admin tokens in force, kept as their SHA-256: a reload replaces them at once, and the old
/// values stop working (SPEC §17).
#[derive(Clone, Default)]
pub struct AdminTokens(Arc<RwLock<Vec<[u8; 32]>>>);

impl AdminTokens {
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Self {
        let this = Self::default();
        this.replace(tokens);
        this
    }

    /// Puts `tokens` in force instead of the current ones.
    pub fn replace<'a>(&self, tokens: impl IntoIterator<Item = &'a str>) {
        let hashes = tokens.into_iter().map(hash_token).collect();
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = hashes;
    }

    /// Whether `presented` is a token in force. Every token is compared, in constant time.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = hash_token(presented);
        let tokens = self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokens.iter().fold(subtle::Choice::from(0), |found, token| found | token.ct_eq(&presented)).into()
    }
}

/// Hashing both sides first makes the comparison independent of the tokens' lengths.
fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}
