//! Signing keys: Ed25519, each with a key id, rotated with a grace period,
//! published as a JWKS document; and the keys of another issuer, from its
//! JWKS document.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;

use super::AuthError;

/// One key pair.
struct Signing {
    kid: String,
    encoding: EncodingKey,
    /// The raw public key, for the JWKS document.
    public: Vec<u8>,
}

/// A public key tokens are verified with, and until when it is accepted
/// (`None`: while it is current).
#[derive(Clone)]
struct Verifying {
    kid: String,
    decoding: DecodingKey,
    public: Vec<u8>,
    until: Option<Instant>,
}

/// The keys of an issuer: the current one signs; it and the keys rotated
/// out within their grace period verify.
pub(crate) struct KeySet {
    current: RwLock<Arc<Signing>>,
    verifying: RwLock<Vec<Verifying>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// A key set with one new key.
    pub(crate) fn generate() -> Result<Self, AuthError> {
        let signing = Arc::new(new_key()?);
        let verifying = verifying(&signing, None);
        Ok(Self {
            current: RwLock::new(signing),
            verifying: RwLock::new(vec![verifying]),
        })
    }

    /// The current key's id.
    pub(crate) fn kid(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .kid
            .clone()
    }

    /// A new current key; the old one verifies for `grace` more, then
    /// never again. Returns the new key's id.
    pub(crate) fn rotate(&self, grace: Duration) -> Result<String, AuthError> {
        let signing = Arc::new(new_key()?);
        let kid = signing.kid.clone();
        let mut verifying = self.verifying.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for key in verifying.iter_mut() {
            if key.until.is_none() {
                key.until = Some(now + grace);
            }
        }
        verifying.retain(|k| k.until.is_none_or(|u| u > now));
        verifying.push(self::verifying(&signing, None));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = signing;
        Ok(kid)
    }

    /// Signs `claims` with the current key.
    pub(crate) fn sign<C: Serialize>(&self, claims: &C) -> Result<String, AuthError> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(current.kid.clone());
        jsonwebtoken::encode(&header, claims, &current.encoding)
            .map_err(|e| AuthError::Internal(format!("signing a token: {e}")))
    }

    /// The key that verifies tokens with key id `kid`, if it is still
    /// accepted.
    pub(crate) fn decoding(&self, kid: &str) -> Option<DecodingKey> {
        self.accepted(kid, |k| k.decoding.clone())
    }

    /// Whether tokens with key id `kid` are still accepted.
    pub(crate) fn accepts(&self, kid: &str) -> bool {
        self.accepted(kid, |_| ()).is_some()
    }

    fn accepted<T>(&self, kid: &str, f: impl FnOnce(&Verifying) -> T) -> Option<T> {
        let now = Instant::now();
        self.verifying
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|k| k.kid == kid && k.until.is_none_or(|u| u > now))
            .map(f)
    }

    /// The JWKS document of the keys still accepted.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        let now = Instant::now();
        let keys: Vec<serde_json::Value> = self
            .verifying
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|k| k.until.is_none_or(|u| u > now))
            .map(|k| jwk(&k.kid, &k.public))
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// A JWK of an Ed25519 public key.
fn jwk(kid: &str, public: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": kid,
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
    })
}

fn new_key() -> Result<Signing, AuthError> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| AuthError::Internal("no randomness for a new key".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| AuthError::Internal(format!("a new key does not load: {e}")))?;
    let public = pair.public_key().as_ref().to_vec();
    Ok(Signing {
        kid: uuid::Uuid::new_v4().simple().to_string(),
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        public,
    })
}

fn verifying(signing: &Signing, until: Option<Instant>) -> Verifying {
    Verifying {
        kid: signing.kid.clone(),
        decoding: DecodingKey::from_ed_der(&signing.public),
        public: signing.public.clone(),
        until,
    }
}

/// The Ed25519 keys of a JWKS document, by key id; other keys are skipped.
pub(crate) fn from_jwks(doc: &serde_json::Value) -> Vec<(String, DecodingKey)> {
    let Some(keys) = doc.get("keys").and_then(|k| k.as_array()) else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| k.get("kty").and_then(|v| v.as_str()) == Some("OKP"))
        .filter(|k| k.get("crv").and_then(|v| v.as_str()) == Some("Ed25519"))
        .filter_map(|k| {
            let kid = k.get("kid")?.as_str()?.to_owned();
            let x = k.get("x")?.as_str()?;
            Some((kid, DecodingKey::from_ed_components(x).ok()?))
        })
        .collect()
}
