//! Issuing tokens and verifying them: signing with this issuer's keys,
//! checking another's through its JWKS document, and remembering tokens
//! already verified.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{
    Account, AccountKind, Auth, AuthError, Claims, Keys, MAX_TOKEN_LEN, TokenKind, Tokens,
    VERIFIED_CAPACITY, Verified, unix_now,
};

impl Auth {
    /// An access and a refresh token for `account`.
    pub(super) fn tokens(&self, account: &Account) -> crate::Result<Tokens> {
        let kind = match account.kind {
            AccountKind::User => TokenKind::Access,
            AccountKind::Service => TokenKind::Service,
        };
        Ok(Tokens {
            access: self.issue(account, kind, self.inner.access_ttl)?,
            refresh: self.issue(account, TokenKind::Refresh, self.inner.refresh_ttl)?,
            expires_in: self.inner.access_ttl.as_secs(),
        })
    }

    /// A token of `kind` for `account`, valid for `ttl`, without checking
    /// that the account exists: for service identities and tests.
    ///
    /// # Errors
    /// 501 on a verifier.
    pub fn issue(
        &self,
        account: &Account,
        kind: TokenKind,
        ttl: Duration,
    ) -> crate::Result<String> {
        self.issue_for(account, kind, ttl, &self.inner.audience)
    }

    /// As [`issue`](Self::issue), for another audience.
    ///
    /// # Errors
    /// 501 on a verifier.
    pub fn issue_for(
        &self,
        account: &Account,
        kind: TokenKind,
        ttl: Duration,
        audience: &str,
    ) -> crate::Result<String> {
        let keys = self.own_keys()?;
        let now = unix_now();
        let claims = Claims {
            iss: self.inner.issuer.clone(),
            sub: account.id.clone(),
            aud: audience.to_owned(),
            exp: now + ttl.as_secs(),
            iat: now,
            typ: kind,
            kind: account.kind,
            scopes: account.scopes.clone(),
            metadata: account.metadata.clone(),
        };
        Ok(keys.sign(&claims)?)
    }

    /// The account an access (or service) token speaks for.
    ///
    /// # Errors
    /// 401 with a short reason for anything else: garbage, too long,
    /// another algorithm (`none` included), an unknown or retired key, a
    /// bad signature, expired, another audience, a refresh token; 503 if
    /// the issuer's keys cannot be fetched.
    pub async fn verify(&self, token: &str) -> crate::Result<Account> {
        self.verify_at(token, None).await
    }

    /// As [`verify`](Self::verify), judging expiry at `at` instead of
    /// now: for a durable event, whose token had to be valid when it was
    /// stored.
    pub(crate) async fn verify_at(
        &self,
        token: &str,
        at: Option<SystemTime>,
    ) -> crate::Result<Account> {
        if at.is_none()
            && let Some(account) = self.remembered(token)
        {
            return Ok(account);
        }
        let (claims, kid) = self.claims(token, at).await?;
        if claims.typ == TokenKind::Refresh {
            return Err(AuthError::Unauthenticated(
                "a refresh token is not an access token".into(),
            )
            .into());
        }
        let exp = claims.exp;
        let account = Account {
            id: claims.sub,
            kind: claims.kind,
            scopes: claims.scopes,
            metadata: claims.metadata,
            issuer: claims.iss,
        };
        let mut verified = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(
            Arc::from(token),
            Verified {
                account: account.clone(),
                kid,
                exp,
            },
        );
        Ok(account)
    }

    /// The account of `token` if it was verified lately, is not expired,
    /// and its key still verifies.
    fn remembered(&self, token: &str) -> Option<Account> {
        let mut verified = self
            .inner
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = verified.get(token)?;
        let live = entry.exp + self.inner.leeway.as_secs() >= unix_now();
        let key_kept = match &self.inner.keys {
            Keys::Own(keys) => keys.accepts(&entry.kid),
            Keys::Remote(remote) => remote.has(&entry.kid),
        };
        if live && key_kept {
            return Some(entry.account.clone());
        }
        verified.remove(token);
        None
    }

    /// The checked claims of any of micro's tokens, and its key id.
    pub(super) async fn claims(
        &self,
        token: &str,
        at: Option<SystemTime>,
    ) -> Result<(Claims, String), AuthError> {
        let bad = |why: &str| AuthError::Unauthenticated(format!("invalid token: {why}"));
        if token.len() > MAX_TOKEN_LEN {
            return Err(bad("too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| bad("malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(bad("unexpected algorithm"));
        }
        let kid = header.kid.ok_or_else(|| bad("no key id"))?;
        let key = self
            .decoding(&kid)
            .await?
            .ok_or_else(|| bad("unknown key"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = self.inner.leeway.as_secs();
        validation.set_audience(&[&self.inner.audience]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        if at.is_some() {
            validation.validate_exp = false;
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => bad("expired"),
                K::InvalidAudience => bad("wrong audience"),
                K::InvalidSignature => bad("bad signature"),
                K::ImmatureSignature => bad("not valid yet"),
                _ => bad("malformed"),
            }
        })?;
        if let Some(at) = at {
            let at = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            if data.claims.exp + self.inner.leeway.as_secs() < at {
                return Err(bad("expired"));
            }
        }
        Ok((data.claims, kid))
    }

    /// The key `kid` names: this auth's own, or the issuer's, fetched
    /// again if it is new.
    async fn decoding(&self, kid: &str) -> Result<Option<DecodingKey>, AuthError> {
        match &self.inner.keys {
            Keys::Own(keys) => Ok(keys.decoding(kid)),
            Keys::Remote(remote) => {
                if let Some(key) = remote.get(kid) {
                    return Ok(Some(key));
                }
                remote.fetch().await?;
                Ok(remote.get(kid))
            }
        }
    }
}
