//! Auth from micro's settings: `MICRO_AUTH`, `MICRO_AUTH_ADDRESS`,
//! `MICRO_AUTH_ID`, `MICRO_AUTH_SECRET`, and the rules of a config.

use std::sync::Arc;

use super::{AccountKind, Auth, Identity, JWKS_PATH, Rule};
use crate::Error;
use crate::store::Store;

/// The auth a service's settings ask for: none unless `MICRO_AUTH=jwt`;
/// then a verifier of the issuer at `MICRO_AUTH_ADDRESS` if it is set, else
/// an issuer named after the service, keeping accounts in `store`. The
/// rules come from the config's `auth.rules`, reloaded with it. On an
/// issuer, `MICRO_AUTH_ID` and `MICRO_AUTH_SECRET` name an account made on
/// first start, with the scopes of `MICRO_AUTH_SCOPES` (default
/// `auth:admin,service`).
///
/// # Errors
/// An unknown `MICRO_AUTH` (auth must not be off by a typo), or rules in
/// the config that do not read.
pub(crate) async fn from_settings(
    service: &str,
    var: &(dyn Fn(&str) -> Option<String> + Sync),
    store: &Arc<dyn Store>,
    config: Option<&crate::config::Config>,
) -> crate::Result<Option<Auth>> {
    match var("MICRO_AUTH").as_deref() {
        None | Some("none") => return Ok(None),
        Some("jwt") => {}
        Some(other) => {
            return Err(Error::internal(format!(
                "unknown MICRO_AUTH \"{other}\", expected one of: none, jwt; refusing to start without the auth asked for"
            )));
        }
    }
    let builder = match var("MICRO_AUTH_ADDRESS") {
        Some(issuer) => Auth::verifier(jwks_url(&issuer)),
        None => Auth::issuer(service).store(store.clone()),
    };
    let builder = match var("MICRO_AUTH_AUDIENCE") {
        Some(audience) => builder.audience(audience),
        None => builder,
    };
    let auth = builder.build()?;
    if let Some(config) = config
        && config.contains("auth.rules")
    {
        let rules = config.watch::<Vec<Rule>>("auth.rules")?;
        auth.set_rules(rules.get().to_vec());
        let weak = Arc::downgrade(&auth.inner);
        let mut changes = rules;
        tokio::spawn(async move {
            loop {
                let rules = changes.changed().await;
                let Some(inner) = weak.upgrade() else { return };
                tracing::info!(rules = rules.len(), "auth: the rules changed");
                Auth { inner }.set_rules(rules.to_vec());
            }
        });
    }
    if auth.issues()
        && let (Some(id), Some(secret)) = (var("MICRO_AUTH_ID"), var("MICRO_AUTH_SECRET"))
        && auth.account(&id).await?.is_none()
    {
        let scopes = var("MICRO_AUTH_SCOPES").unwrap_or_else(|| "auth:admin,service".into());
        let scopes: Vec<&str> = scopes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        auth.create(&id, AccountKind::Service, &scopes, &secret)
            .await?;
        tracing::info!(account = %id, "auth: made the account MICRO_AUTH_ID names");
    }
    Ok(Some(auth))
}

/// The service's identity: see [`Identity`].
///
/// # Errors
/// The first login failing.
pub(crate) async fn identity_from_settings(
    auth: &Auth,
    service: &str,
    var: &(dyn Fn(&str) -> Option<String> + Sync),
) -> crate::Result<Option<Identity>> {
    let credentials = var("MICRO_AUTH_ID").zip(var("MICRO_AUTH_SECRET"));
    let issuer = var("MICRO_AUTH_ADDRESS").map(|a| base_url(&a));
    Identity::start(auth, service, credentials, issuer).await
}

/// The issuer's base URL from `MICRO_AUTH_ADDRESS` (`host:port` or a URL).
fn base_url(address: &str) -> String {
    let address = address.trim_end_matches('/');
    let address = address.strip_suffix(JWKS_PATH).unwrap_or(address);
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// The JWKS URL of the issuer at `address`.
fn jwks_url(address: &str) -> String {
    format!("{}{JWKS_PATH}", base_url(address))
}
