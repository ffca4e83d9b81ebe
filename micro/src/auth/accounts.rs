//! Accounts an issuer keeps: made with a secret whose PBKDF2 hash alone is
//! stored, logged in to with it, looked up, deleted, and refreshed.

use super::*;

/// An account as kept in the store: the account and its secret's hash.
#[derive(Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) account: Account,
    pub(super) salt: String,
    pub(super) hash: String,
}

/// The rounds of PBKDF2 a secret is hashed with.
const PBKDF2_ROUNDS: u32 = 100_000;

impl Auth {
    /// Makes an account with a new secret; returns both. The secret is
    /// shown once: only its hash is kept, and it never expires.
    ///
    /// # Errors
    /// 409 if the id is taken; 400 for an empty id; 501 on a verifier.
    pub async fn generate(
        &self,
        id: &str,
        kind: AccountKind,
        scopes: &[&str],
    ) -> crate::Result<(Account, String)> {
        let secret = random_text(32)?;
        let account = self.store_account(id, kind, scopes, &secret).await?;
        Ok((account, secret))
    }

    /// Makes an account with the secret given (at least 16 bytes) instead
    /// of a new one: for accounts named in settings.
    ///
    /// # Errors
    /// 409 if the id is taken; 400 for an empty id or a short secret.
    pub async fn create(
        &self,
        id: &str,
        kind: AccountKind,
        scopes: &[&str],
        secret: &str,
    ) -> crate::Result<Account> {
        if secret.len() < 16 {
            return Err(AuthError::Invalid("an account secret is at least 16 bytes".into()).into());
        }
        self.store_account(id, kind, scopes, secret).await
    }

    /// Keeps a new account with `secret`'s hash.
    async fn store_account(
        &self,
        id: &str,
        kind: AccountKind,
        scopes: &[&str],
        secret: &str,
    ) -> crate::Result<Account> {
        self.own_keys()?;
        if id.is_empty() || id.len() > 256 {
            return Err(AuthError::Invalid("an account id is 1 to 256 bytes".into()).into());
        }
        let mut account = Account::new(id, kind, scopes.iter().map(|s| (*s).to_owned()).collect());
        account.issuer = self.inner.issuer.clone();
        let salt = random_text(16)?;
        let stored = Stored {
            account: account.clone(),
            hash: hash(&salt, secret),
            salt,
        };
        self.inner
            .accounts
            .write(&key(id), &stored)
            .if_absent()
            .send()
            .await
            .map_err(|e| match e.code() {
                code::CONFLICT => {
                    Error::from(AuthError::Conflict(format!("account \"{id}\" exists")))
                }
                _ => e,
            })?;
        Ok(account)
    }

    /// The account `id`, if there is one.
    ///
    /// # Errors
    /// The store's error.
    pub async fn account(&self, id: &str) -> crate::Result<Option<Account>> {
        match self.inner.accounts.get::<Stored>(&key(id)).await {
            Ok(stored) => Ok(Some(stored.account)),
            Err(e) if e.code() == code::NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the account `id`: its refresh tokens stop working at once,
    /// its access tokens when they expire.
    ///
    /// # Errors
    /// The store's error.
    pub async fn delete(&self, id: &str) -> crate::Result<bool> {
        self.inner.accounts.delete(&key(id)).await
    }

    /// Tokens for the account `id` with its secret.
    ///
    /// # Errors
    /// 401 for an unknown account or a wrong secret (the same error for
    /// both); 501 on a verifier.
    pub async fn token(&self, id: &str, secret: &str) -> crate::Result<Tokens> {
        self.own_keys()?;
        let refused = || Error::from(AuthError::Unauthenticated("wrong account or secret".into()));
        let stored = match self.inner.accounts.get::<Stored>(&key(id)).await {
            Ok(stored) => stored,
            Err(e) if e.code() == code::NOT_FOUND => {
                // As long as a wrong secret takes.
                let _ = hash("salt", secret);
                return Err(refused());
            }
            Err(e) => return Err(e),
        };
        if !matches_hash(&stored.salt, secret, &stored.hash) {
            return Err(refused());
        }
        self.tokens(&stored.account)
    }

    /// New tokens for a refresh token; the account is read again, so
    /// changed scopes apply and a deleted account gets none.
    ///
    /// # Errors
    /// 401 for anything but a valid refresh token of a live account.
    pub async fn refresh(&self, refresh: &str) -> crate::Result<Tokens> {
        self.own_keys()?;
        let (claims, _) = self.claims(refresh, None).await?;
        if claims.typ != TokenKind::Refresh {
            return Err(AuthError::Unauthenticated("not a refresh token".into()).into());
        }
        match self.account(&claims.sub).await? {
            Some(account) => self.tokens(&account),
            None => Err(AuthError::Unauthenticated("the account is gone".into()).into()),
        }
    }
}

fn key(id: &str) -> String {
    format!("account/{id}")
}

/// `n` random bytes, base64url.
fn random_text(n: usize) -> Result<String, AuthError> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = vec![0; n];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthError::Internal("no randomness".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The PBKDF2-HMAC-SHA256 of `secret` with `salt`, base64url.
fn hash(salt: &str, secret: &str) -> String {
    use base64::Engine as _;
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(PBKDF2_ROUNDS).expect("not zero"),
        salt.as_bytes(),
        secret.as_bytes(),
        &mut out,
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
}

/// Whether `secret` with `salt` hashes to `hash`, compared in constant
/// time.
fn matches_hash(salt: &str, secret: &str, hash: &str) -> bool {
    use base64::Engine as _;
    let Ok(expected) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(hash) else {
        return false;
    };
    ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(PBKDF2_ROUNDS).expect("not zero"),
        salt.as_bytes(),
        secret.as_bytes(),
        &expected,
    )
    .is_ok()
}
