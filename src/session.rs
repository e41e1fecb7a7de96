//! Browser session tokens (SPEC §3): JWS compact tokens bound to an API key, its tenant and
//! the calling origin. jsonwebtoken checks the signature with the algorithm pinned; every
//! header and claim rule of the contract is checked here, so that "valid in every way but
//! expired" can be told apart from any other defect.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};

use crate::audit::{Audit, AuditAction};

use crate::config::{SessionAlgorithm, SessionsConfig};
use crate::model::ApiKey;
use crate::origin::Origin;
use crate::secret::{random_base62, random_id};
use crate::store::{SigningKeyRecord, Store, StoreError};
use crate::time::{Millis, now_millis};

pub const AUDIENCE: &str = "keygate:session";

/// A token's claims, as read back.
#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    tid: String,
    origin: String,
    iat: i64,
    exp: i64,
    /// Required, though nothing is looked up by it: a token without one is not keygate's.
    #[serde(rename = "jti")]
    _jti: String,
}

/// The claims of a token being minted; borrowed, so minting copies no string to sign it.
#[derive(Serialize)]
struct NewClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    tid: &'a str,
    origin: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
}

/// A freshly minted token; `expires_at` is Unix seconds.
pub struct MintedSession {
    pub token: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    Invalid,
    Expired,
}

/// How many tokens whose signature checked out are remembered, with their claims. A browser
/// sends its token with every write for up to an hour, and checking the signature is most of
/// what a session costs (an HMAC, two base64 and two JSON decodes; far more for EdDSA). The
/// claims are still checked against the key, origin and clock on every request.
const VERIFIED_TOKENS: usize = 10_000;

struct KeyRing {
    signer: Option<Signer>,
    verifiers: HashMap<String, DecodingKey>,
    jwks: serde_json::Value,
    /// Tokens signed by this ring's keys, by the exact token text. It goes with the ring: a
    /// rotated or retired key leaves no token verified by it behind.
    verified: Cache<String, Arc<Claims>>,
}

pub struct Sessions {
    algorithm: SessionAlgorithm,
    issuer: String,
    ttl_seconds: i64,
    ring: RwLock<Arc<KeyRing>>,
}

fn jwt_algorithm(algorithm: SessionAlgorithm) -> Algorithm {
    match algorithm {
        SessionAlgorithm::HS256 => Algorithm::HS256,
        SessionAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// Generates a signing key of `algorithm`: 256 random bits for HS256, an Ed25519 pair for EdDSA.
pub fn generate_key(algorithm: SessionAlgorithm, now: Millis) -> Result<SigningKeyRecord, StoreError> {
    let (private_key, public_key) = match algorithm {
        SessionAlgorithm::HS256 => {
            let mut secret = vec![0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| StoreError::Unavailable(format!("random: {e}")))?;
            (secret, Vec::new())
        }
        SessionAlgorithm::EdDSA => {
            use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| StoreError::Unavailable("ed25519 keygen".to_owned()))?;
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                .map_err(|_| StoreError::Unavailable("ed25519 keygen".to_owned()))?;
            (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
    };
    Ok(SigningKeyRecord {
        kid: format!("sk_{}", random_base62(16)),
        algorithm: algorithm.as_str().to_owned(),
        private_key,
        public_key,
        created_at: now,
        retired_at: None,
    })
}

/// The key that signs new tokens, prepared once per ring: its key schedule (an HMAC key, an
/// Ed25519 pair parsed from its PKCS #8 form) and the token's encoded header, the same for
/// every token it signs. A mint then serialises the claims and signs (jsonwebtoken's `encode`
/// rebuilt the key and the header on every call). Tokens are still checked by jsonwebtoken.
struct Signer {
    /// The base64url of the JOSE header (`alg`, `kid`, `typ`), then the `.`.
    header: String,
    key: SigningKey,
}

#[expect(clippy::large_enum_variant, reason = "one in a key ring, used by every mint: boxing it buys nothing")]
enum SigningKey {
    Hmac(aws_lc_rs::hmac::Key),
    Ed25519(Ed25519KeyPair),
}

impl Signer {
    fn new(algorithm: SessionAlgorithm, record: &SigningKeyRecord) -> Option<Self> {
        let key = match algorithm {
            SessionAlgorithm::HS256 => {
                SigningKey::Hmac(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &record.private_key))
            }
            SessionAlgorithm::EdDSA => SigningKey::Ed25519(Ed25519KeyPair::from_pkcs8(&record.private_key).ok()?),
        };
        let header = serde_json::json!({ "alg": algorithm.as_str(), "kid": record.kid, "typ": "JWT" });
        Some(Self { header: URL_SAFE_NO_PAD.encode(header.to_string()) + ".", key })
    }

    /// The compact JWS of `claims`: header, payload and signature, each base64url.
    fn sign(&self, claims: &NewClaims<'_>) -> Option<String> {
        let payload = serde_json::to_vec(claims).ok()?;
        let mut token = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 90);
        token.push_str(&self.header);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        // Each signature is owned by its own type (no copy of it), then encoded onto the token.
        match &self.key {
            SigningKey::Hmac(key) => {
                let tag = aws_lc_rs::hmac::sign(key, token.as_bytes());
                append_signature(&mut token, tag.as_ref());
            }
            SigningKey::Ed25519(pair) => {
                let signature = pair.sign(token.as_bytes());
                append_signature(&mut token, signature.as_ref());
            }
        }
        Some(token)
    }
}

/// The JWS's last part: `.` and the signature, base64url.
fn append_signature(token: &mut String, signature: &[u8]) {
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, token);
}

impl KeyRing {
    /// Builds the ring from the stored keys of `algorithm`: the newest unretired key signs,
    /// every unretired key verifies.
    fn build(algorithm: SessionAlgorithm, records: &[SigningKeyRecord]) -> Self {
        let mut ring = KeyRing {
            signer: None,
            verifiers: HashMap::new(),
            jwks: serde_json::json!({ "keys": [] }),
            verified: Cache::new(VERIFIED_TOKENS),
        };
        let mut published = Vec::new();
        let usable = records.iter().filter(|r| r.algorithm == algorithm.as_str() && r.retired_at.is_none());
        for record in usable {
            let decoding = match algorithm {
                SessionAlgorithm::HS256 => DecodingKey::from_secret(&record.private_key),
                SessionAlgorithm::EdDSA => {
                    let x = URL_SAFE_NO_PAD.encode(&record.public_key);
                    published.push(serde_json::json!({
                        "kty": "OKP", "crv": "Ed25519", "x": x, "kid": record.kid, "alg": "EdDSA", "use": "sig",
                    }));
                    DecodingKey::from_ed_der(&record.public_key)
                }
            };
            ring.verifiers.insert(record.kid.clone(), decoding);
            // Records come oldest first, so the last one seen signs.
            ring.signer = Signer::new(algorithm, record);
        }
        ring.jwks = serde_json::json!({ "keys": published });
        ring
    }
}

impl Sessions {
    /// Loads the signing keys from the store, generating the first one when there is none.
    pub async fn load(config: &SessionsConfig, store: &dyn Store) -> Result<Self, StoreError> {
        let sessions = Self {
            algorithm: config.algorithm,
            issuer: config.issuer.clone(),
            ttl_seconds: config.ttl_seconds as i64,
            ring: RwLock::new(Arc::new(KeyRing::build(config.algorithm, &[]))),
        };
        sessions.reload(store).await?;
        if sessions.current().signer.is_none() {
            // The instance's own write: the audit log records it under `keygate`. Another
            // instance starting on the same store may make it first: then its key is loaded.
            let audit = Audit { actor: "keygate", action: AuditAction::SigningKeyRotate };
            store.insert_first_signing_key(&generate_key(config.algorithm, now_millis())?, audit).await?;
            sessions.reload(store).await?;
        }
        Ok(sessions)
    }

    /// Sessions over the given signing keys, without a store (the fuzz target, `fuzz/`).
    pub fn from_records(config: &SessionsConfig, records: &[SigningKeyRecord]) -> Self {
        Self {
            algorithm: config.algorithm,
            issuer: config.issuer.clone(),
            ttl_seconds: config.ttl_seconds as i64,
            ring: RwLock::new(Arc::new(KeyRing::build(config.algorithm, records))),
        }
    }

    /// Re-reads the signing keys (after a rotation, here or on another instance).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let ring = Arc::new(KeyRing::build(self.algorithm, &store.signing_keys().await?));
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = ring;
        Ok(())
    }

    fn current(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The JWKS document: the public keys with EdDSA, an empty set with HS256.
    pub fn jwks(&self) -> serde_json::Value {
        self.current().jwks.clone()
    }

    /// Mints a token for `key` at `origin`, living `ttl_seconds` but never past the key's expiry.
    pub fn mint(&self, key: &ApiKey, origin: &Origin, now: Millis) -> Option<MintedSession> {
        let ring = self.current();
        let signer = ring.signer.as_ref()?;
        let iat = now.div_euclid(1000);
        let key_end = key.expires_at.map_or(i64::MAX, |at| at.div_euclid(1000));
        let exp = (iat + self.ttl_seconds).min(key_end);
        let jti = random_id(22);
        let claims = NewClaims {
            iss: &self.issuer,
            aud: AUDIENCE,
            sub: &key.id,
            tid: &key.tenant_id,
            origin: origin.as_str(),
            iat,
            exp,
            jti: &jti,
        };
        Some(MintedSession { token: signer.sign(&claims)?, expires_at: exp })
    }

    /// Checks a presented token against the authenticated key and the request's origin.
    pub fn verify(&self, token: &str, key: &ApiKey, origin: &Origin, now: Millis) -> Result<(), SessionError> {
        self.verify_until(token, key, origin, now).map(|_| ())
    }

    /// [`Sessions::verify`], answering when the token expires (Unix seconds).
    pub fn verify_until(&self, token: &str, key: &ApiKey, origin: &Origin, now: Millis) -> Result<i64, SessionError> {
        let ring = self.current();
        let claims = match ring.verified.get(token) {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_signature(&ring, token)?);
                ring.verified.insert(token.to_owned(), Arc::clone(&claims));
                claims
            }
        };
        self.check_claims(&claims, key, origin, now)
    }

    /// The token's claims, if its header follows the contract and a key of `ring` signed it.
    fn verify_signature(&self, ring: &KeyRing, token: &str) -> Result<Claims, SessionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionError::Invalid)?;
        let algorithm = jwt_algorithm(self.algorithm);
        let header_ok = header.alg == algorithm
            && header.typ.as_deref() == Some("JWT")
            && header.crit.is_none()
            && header.jku.is_none()
            && header.jwk.is_none()
            && header.x5u.is_none()
            && header.x5c.is_none();
        if !header_ok {
            return Err(SessionError::Invalid);
        }
        let decoding = header.kid.as_deref().and_then(|kid| ring.verifiers.get(kid)).ok_or(SessionError::Invalid)?;

        // Expiry and audience are checked by `check_claims`, after every other rule.
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(jsonwebtoken::decode::<Claims>(token, decoding, &validation).map_err(|_| SessionError::Invalid)?.claims)
    }

    /// Every claim rule of the contract, against the authenticated key, the request's origin
    /// and the clock.
    fn check_claims(&self, claims: &Claims, key: &ApiKey, origin: &Origin, now: Millis) -> Result<i64, SessionError> {
        let now_seconds = now.div_euclid(1000);
        let claims_ok = claims.iss == self.issuer
            && claims.aud == AUDIENCE
            && claims.sub == key.id
            && claims.tid == key.tenant_id
            && claims.origin == origin.as_str()
            && claims.iat <= now_seconds
            && claims.exp > claims.iat
            && claims.exp - claims.iat <= self.ttl_seconds;
        if !claims_ok {
            return Err(SessionError::Invalid);
        }
        if now_seconds >= claims.exp { Err(SessionError::Expired) } else { Ok(claims.exp) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ApiKey {
        ApiKey {
            id: id.to_owned(),
            tenant_id: "acme".to_owned(),
            name: "k".to_owned(),
            prefix: "kg_abc".to_owned(),
            scopes: Vec::new(),
            allowed_origins: Vec::new(),
            expires_at: None,
            revoked_at: None,
            rate_limit: None,
            quota: None,
            created_at: 0,
            last_used_at: None,
            meta: None,
        }
    }

    fn sessions(records: &[SigningKeyRecord]) -> Sessions {
        Sessions {
            algorithm: SessionAlgorithm::HS256,
            issuer: "keygate".to_owned(),
            ttl_seconds: 60,
            ring: RwLock::new(Arc::new(KeyRing::build(SessionAlgorithm::HS256, records))),
        }
    }

    #[test]
    fn a_remembered_token_is_still_checked_against_key_origin_and_clock_every_time() {
        let record = generate_key(SessionAlgorithm::HS256, 0).unwrap();
        let sessions = sessions(std::slice::from_ref(&record));
        let (alice, bob) = (key("key_alice"), key("key_bob"));
        let origin = Origin::parse("https://app.example").unwrap();
        let now = 1_000_000_000;
        let minted = sessions.mint(&alice, &origin, now).unwrap();

        assert_eq!(sessions.verify(&minted.token, &alice, &origin, now), Ok(()));
        assert_eq!(sessions.current().verified.len(), 1, "its signature is checked once");
        assert_eq!(sessions.verify(&minted.token, &alice, &origin, now + 1_000), Ok(()));
        let elsewhere = Origin::parse("https://evil.example").unwrap();
        assert_eq!(sessions.verify(&minted.token, &alice, &elsewhere, now), Err(SessionError::Invalid));
        assert_eq!(sessions.verify(&minted.token, &bob, &origin, now), Err(SessionError::Invalid));
        let expired = minted.expires_at * 1000;
        assert_eq!(sessions.verify(&minted.token, &alice, &origin, expired), Err(SessionError::Expired));

        // A forged token is never remembered.
        let forged = format!("{}x", minted.token);
        assert_eq!(sessions.verify(&forged, &alice, &origin, now), Err(SessionError::Invalid));
        assert_eq!(sessions.current().verified.len(), 1);

        // A ring without the key that signed it (the key retired) knows no token of it.
        *sessions.ring.write().unwrap() = Arc::new(KeyRing::build(SessionAlgorithm::HS256, &[]));
        assert_eq!(sessions.verify(&minted.token, &alice, &origin, now), Err(SessionError::Invalid));
    }
}
