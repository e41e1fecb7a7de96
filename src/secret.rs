//! API key secrets (`<prefix>_<random><checksum>`), their hashes, and random ids.
//!
//! The checksum lets a mistyped or forged key be refused before the store is asked; only the
//! SHA-256 of a secret is ever stored, and lookups are by that hash.

use sha2::{Digest, Sha256};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// 40 base62 characters: 238 random bits, 202 of them beyond the displayed prefix.
const RANDOM_LEN: usize = 40;
/// Base62 of a CRC32 fits in six characters (62^6 > 2^32).
const CHECKSUM_LEN: usize = 6;
/// Random characters shown in a key's display `prefix`.
pub const DISPLAY_RANDOM_CHARS: usize = 6;

/// `n` base62 characters from the OS CSPRNG, without modulo bias.
pub fn random_base62(n: usize) -> String {
    // A failing OS RNG leaves nothing safe to do: refuse to mint weak secrets.
    base62_from(n, |buf| getrandom::fill(buf).expect("the OS random number generator failed"))
}

/// Like [`random_base62`], for ids made on the hot path (a session's `jti`): the OS's random
/// bytes are drawn a few kilobytes at a time per thread, instead of one system call per id.
pub fn random_id(n: usize) -> String {
    const POOL: usize = 4096;
    thread_local! {
        static RANDOM: std::cell::RefCell<([u8; POOL], usize)> = const { std::cell::RefCell::new(([0; POOL], POOL)) };
    }
    base62_from(n, |buf| {
        RANDOM.with_borrow_mut(|(pool, used)| {
            let len = buf.len();
            if *used + len > POOL {
                getrandom::fill(pool).expect("the OS random number generator failed");
                *used = 0;
            }
            buf.copy_from_slice(&pool[*used..*used + len]);
            // Each byte is handed out once.
            *used += len;
        });
    })
}

fn base62_from(n: usize, mut fill: impl FnMut(&mut [u8; 64])) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        fill(&mut buf);
        for &b in &buf {
            // 248 = 4 * 62: bytes at or above it are dropped so every character is equally likely.
            if b < 248 && out.len() < n {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// The checksum's base-62 digits, on the stack: every request with a key checks one.
fn checksum(body: &str) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = BASE62[(n % 62) as usize];
        n /= 62;
    }
    digits
}

/// The SHA-256 of a secret: what the store keeps and the cache is keyed by.
pub type SecretHash = [u8; 32];

pub fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// A freshly minted secret. Its `Debug` is redacted; it is shown to the user exactly once.
pub struct NewSecret {
    pub secret: String,
    pub hash: SecretHash,
    /// The first characters of the secret, safe to display.
    pub prefix: String,
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

pub fn generate_secret(prefix: &str) -> NewSecret {
    let mut secret = format!("{prefix}_{}", random_base62(RANDOM_LEN));
    let sum = checksum(&secret);
    // Base-62 digits are ASCII.
    secret.extend(sum.map(char::from));
    NewSecret {
        hash: hash_secret(&secret),
        prefix: secret[..prefix.len() + 1 + DISPLAY_RANDOM_CHARS].to_owned(),
        secret,
    }
}

/// True when `candidate` has the shape of a key minted with `prefix` and its checksum holds.
/// Cheap and store-free: the first filter on the hot path.
pub fn is_well_formed(prefix: &str, candidate: &str) -> bool {
    let Some(rest) = candidate.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) else {
        return false;
    };
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, sum) = candidate.split_at(candidate.len() - CHECKSUM_LEN);
    checksum(body) == sum.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_well_formed_and_distinct() {
        let a = generate_secret("kg");
        let b = generate_secret("kg");
        assert!(is_well_formed("kg", &a.secret));
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 2 + 1 + RANDOM_LEN + CHECKSUM_LEN);
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.hash, hash_secret(&a.secret));
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let s = generate_secret("kg").secret;
        let mut chars: Vec<char> = s.chars().collect();
        chars[10] = if chars[10] == 'a' { 'b' } else { 'a' };
        let typo: String = chars.into_iter().collect();
        assert!(!is_well_formed("kg", &typo));
    }

    #[test]
    fn wrong_prefix_length_or_alphabet_is_malformed() {
        let s = generate_secret("kg").secret;
        assert!(!is_well_formed("xx", &s));
        assert!(!is_well_formed("kg", &s[..s.len() - 1]));
        assert!(!is_well_formed("kg", &format!("{s}0")));
        assert!(!is_well_formed("kg", ""));
        assert!(!is_well_formed("kg", "kg_"));
        assert!(!is_well_formed("kg", &s.replace('_', "-")));
        let with_symbol = format!("kg_{}", "!".repeat(RANDOM_LEN + CHECKSUM_LEN));
        assert!(!is_well_formed("kg", &with_symbol));
    }

    #[test]
    fn random_base62_has_the_requested_length_and_alphabet() {
        let s = random_base62(100);
        assert_eq!(s.len(), 100);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn random_ids_never_repeat_across_pool_refills() {
        // 1,000 ids of 22 characters draw 64 bytes each: 15 refills of the 4 KiB pool.
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| random_id(22)).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() == 22 && id.bytes().all(|b| b.is_ascii_alphanumeric())));
    }
}
