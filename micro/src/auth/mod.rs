//! Authentication and authorization: accounts, JWTs, rules per endpoint.
//!
//! An [`Auth`] either issues tokens (it holds Ed25519 signing keys, keeps
//! accounts in a store and publishes its public keys as a JWKS document)
//! or only verifies them, with the keys from another issuer's JWKS URL.
//! Tokens are JWTs signed with EdDSA, with a `kid` in the header and `typ`
//! (`access`, `refresh` or `service`), `aud`, `iss`, `sub`, `exp` and the
//! account's scopes among the claims. A refresh token is never accepted
//! as an access token, and account secrets never expire.
//!
//! A service with auth on checks every way in before it reads a body: calls,
//! stream upgrades, events from the HTTP broker and durable events. A call
//! without a valid token gets 401, one the rules refuse 403 (see
//! [`Rule`]); `#[handler(public)]` and `#[handler(scopes = [..])]` declare
//! rules in the code. A public endpoint works without a token: a missing or
//! bad token only matters where the rules need an account.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
//! use micro::auth::{AccountKind, Auth, Rule};
//!
//! let auth = Auth::issuer("shop").rules(vec![Rule::grant("Orders.*", "orders:write")]).build()?;
//! let (account, secret) = auth.generate("alice", AccountKind::User, &["orders:write"]).await?;
//! let tokens = auth.token(&account.id, &secret).await?;
//! let verified = auth.verify(&tokens.access).await?;
//! assert_eq!(verified.id, "alice");
//! assert!(auth.allows("shop", "Orders.Place", Some(&verified)));
//! assert!(!auth.allows("shop", "Orders.Place", None));
//! // A refresh token is not an access token.
//! assert_eq!(auth.verify(&tokens.refresh).await.unwrap_err().code(), 401);
//! # Ok(()) }
//! ```

mod accounts;
mod guard;
mod handler;
mod identity;
mod keys;
mod remote;
mod rules;
mod settings;
#[cfg(test)]
mod tests;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

use remote::Remote;

pub use guard::Credentials;
pub(crate) use guard::{Guard, Peer, declared};
pub use handler::ADMIN_SCOPE;
pub(crate) use handler::AuthHandler;
pub use identity::Identity;
pub use rules::{Access, DSL_PRIORITY, Rule};
pub(crate) use settings::{from_settings, identity_from_settings};

use crate::store::{MemoryStore, Scoped, Store};
use crate::{Error, code};
use keys::KeySet;

/// The longest token accepted, in bytes: a longer one is refused unread.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The audience tokens are issued for and checked against, unless set.
pub const DEFAULT_AUDIENCE: &str = "micro";

/// The path a service that issues tokens serves its JWKS document at.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Whose account it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    /// A person, or a program acting for one.
    #[default]
    User,
    /// A service, acting for itself.
    Service,
}

/// An account: who a caller is and what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Account {
    /// Unique among the issuer's accounts.
    pub id: String,
    /// A user or a service.
    #[serde(default)]
    pub kind: AccountKind,
    /// What it may do, as rules read them (`orders:write`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Free-form metadata, carried in its tokens.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Who issued its token (the issuer's name).
    #[serde(default)]
    pub issuer: String,
}

impl Account {
    /// An account with no metadata.
    pub fn new(id: impl Into<String>, kind: AccountKind, scopes: Vec<String>) -> Self {
        Self {
            id: id.into(),
            kind,
            scopes,
            metadata: BTreeMap::new(),
            issuer: String::new(),
        }
    }

    /// Whether the account has `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What a token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Calls, for a while (default 15 minutes).
    Access,
    /// Only for new tokens, for longer (default 30 days).
    Refresh,
    /// Calls by a service, for a while.
    Service,
}

/// An access token and the refresh token that gets the next one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tokens {
    /// For calls: `Authorization: Bearer <access>`.
    pub access: String,
    /// For [`Auth::refresh`].
    pub refresh: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// The claims of micro's tokens.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    typ: TokenKind,
    #[serde(default)]
    kind: AccountKind,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
}

/// Why auth refused or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No valid credentials (401); the reason is short and safe to show.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// The account exists already (409).
    #[error("{0}")]
    Conflict(String),
    /// Bad input (400).
    #[error("{0}")]
    Invalid(String),
    /// The issuer's keys or the account store cannot be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// This auth cannot do that (501): a verifier asked to issue.
    #[error("{0}")]
    Unsupported(String),
    /// Something failed that should not (500).
    #[error("{0}")]
    Internal(String),
}

impl From<AuthError> for Error {
    fn from(err: AuthError) -> Self {
        let code = match &err {
            AuthError::Unauthenticated(_) => code::UNAUTHORIZED,
            AuthError::Forbidden(_) => code::FORBIDDEN,
            AuthError::Conflict(_) => code::CONFLICT,
            AuthError::Invalid(_) => code::BAD_REQUEST,
            AuthError::Unavailable(_) => code::UNAVAILABLE,
            AuthError::Unsupported(_) => code::NOT_IMPLEMENTED,
            AuthError::Internal(_) => code::INTERNAL,
        };
        Error::new("", code, err.to_string()).with_source(err)
    }
}

/// Where an auth gets the keys it verifies with.
enum Keys {
    /// Its own: it issues.
    Own(KeySet),
    /// Another issuer's, from its JWKS document.
    Remote(Remote),
}

/// An issuer or a verifier of tokens, with the rules calls are checked
/// against. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    keys: Keys,
    rules: RwLock<Vec<Rule>>,
    accounts: Scoped,
    access_ttl: Duration,
    refresh_ttl: Duration,
    leeway: Duration,
    key_grace: Duration,
    /// Access tokens verified lately, so that a caller sending the same
    /// token call after call pays for one signature check.
    verified: std::sync::Mutex<HashMap<Arc<str>, Verified>>,
}

/// A verified access token: its account, its key and its expiry.
struct Verified {
    account: Account,
    kid: String,
    exp: u64,
}

/// How many verified tokens are remembered; past it the memory is cleared.
const VERIFIED_CAPACITY: usize = 10_000;

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("issues", &matches!(self.inner.keys, Keys::Own(_)))
            .finish_non_exhaustive()
    }
}

/// Builds an [`Auth`].
#[derive(Debug)]
#[must_use]
pub struct AuthBuilder {
    issuer: String,
    jwks: Option<String>,
    audience: String,
    rules: Vec<Rule>,
    store: Option<Arc<dyn Store>>,
    access_ttl: Duration,
    refresh_ttl: Duration,
    leeway: Duration,
    key_grace: Option<Duration>,
}

impl AuthBuilder {
    /// The audience tokens are issued for and must name. Default: `micro`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The access rules. Default: none, so only what the DSL declares
    /// public or scoped is let in.
    pub fn rules(mut self, rules: Vec<Rule>) -> Self {
        self.rules = rules;
        self
    }

    /// Where accounts are kept (scope `micro-auth`). Default: memory.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// How long access and service tokens last. Default: 15 minutes.
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// How long refresh tokens last. Default: 30 days.
    pub fn refresh_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_ttl = ttl;
        self
    }

    /// How far past its expiry a token is still accepted, for clocks that
    /// disagree. Default: 30 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How long a key rotated out still verifies. Default: the access
    /// token lifetime, so that no token it signed is cut short.
    pub fn key_grace(mut self, grace: Duration) -> Self {
        self.key_grace = Some(grace);
        self
    }

    /// The auth.
    ///
    /// # Errors
    /// 500 if no key can be made, 400 if the JWKS URL is not a URL.
    pub fn build(self) -> crate::Result<Auth> {
        let keys = match self.jwks {
            None => Keys::Own(KeySet::generate()?),
            Some(url) => {
                url.parse::<http::Uri>()
                    .map_err(|e| Error::bad_request(format!("invalid JWKS URL \"{url}\": {e}")))?;
                Keys::Remote(Remote {
                    url,
                    keys: RwLock::default(),
                    fetched: tokio::sync::Mutex::new(None),
                })
            }
        };
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        Ok(Auth {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                audience: self.audience,
                keys,
                rules: RwLock::new(self.rules),
                accounts: Scoped::new(store, "micro-auth")?,
                access_ttl: self.access_ttl,
                refresh_ttl: self.refresh_ttl,
                leeway: self.leeway,
                key_grace: self.key_grace.unwrap_or(self.access_ttl),
                verified: std::sync::Mutex::default(),
            }),
        })
    }
}

impl Auth {
    /// An auth that issues tokens as `issuer` with keys of its own.
    pub fn issuer(issuer: impl Into<String>) -> AuthBuilder {
        AuthBuilder {
            issuer: issuer.into(),
            jwks: None,
            audience: DEFAULT_AUDIENCE.into(),
            rules: Vec::new(),
            store: None,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            leeway: Duration::from_secs(30),
            key_grace: None,
        }
    }

    /// An auth that verifies the tokens of the issuer whose JWKS document
    /// is at `url` (`http://issuer:8080/.well-known/jwks.json`); it issues
    /// none.
    pub fn verifier(url: impl Into<String>) -> AuthBuilder {
        AuthBuilder {
            jwks: Some(url.into()),
            ..Self::issuer("")
        }
    }

    /// The issuer's name (empty for a verifier).
    pub fn name(&self) -> &str {
        &self.inner.issuer
    }

    /// Whether this auth issues tokens (and serves a JWKS document).
    pub fn issues(&self) -> bool {
        matches!(self.inner.keys, Keys::Own(_))
    }

    fn own_keys(&self) -> Result<&KeySet, AuthError> {
        match &self.inner.keys {
            Keys::Own(keys) => Ok(keys),
            Keys::Remote(r) => Err(AuthError::Unsupported(format!(
                "this service verifies the tokens of {}; it issues none",
                r.url
            ))),
        }
    }

    /// Rotates the signing key: new tokens are signed with a new key, and
    /// the old one still verifies for the key grace period. Returns the
    /// new key's id.
    ///
    /// # Errors
    /// 501 on a verifier; 500 if no key can be made.
    pub fn rotate_keys(&self) -> crate::Result<String> {
        Ok(self.own_keys()?.rotate(self.inner.key_grace)?)
    }

    /// The id of the key tokens are signed with now.
    ///
    /// # Errors
    /// 501 on a verifier.
    pub fn key_id(&self) -> crate::Result<String> {
        Ok(self.own_keys()?.kid())
    }

    /// The JWKS document of the keys that verify this issuer's tokens.
    ///
    /// # Errors
    /// 501 on a verifier.
    pub fn jwks(&self) -> crate::Result<serde_json::Value> {
        Ok(self.own_keys()?.jwks())
    }

    /// The rules calls are checked against.
    pub fn rules(&self) -> Vec<Rule> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the rules (from a reloaded config, say).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.inner.rules.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }

    /// Whether the rules let `account` (none: anonymous) call `endpoint`
    /// of `service`.
    pub fn allows(&self, service: &str, endpoint: &str, account: Option<&Account>) -> bool {
        let rules = self.inner.rules.read().unwrap_or_else(|e| e.into_inner());
        rules::allows(rules.iter(), service, endpoint, account)
    }

    /// As [`allows`](Self::allows), with the rules the DSL declares too.
    pub(crate) fn allows_with(
        &self,
        declared: &[Rule],
        service: &str,
        endpoint: &str,
        account: Option<&Account>,
    ) -> bool {
        let rules = self.inner.rules.read().unwrap_or_else(|e| e.into_inner());
        rules::allows(rules.iter().chain(declared), service, endpoint, account)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
