//! The endpoints an issuing service serves: `Auth.Token`, `Auth.Refresh`,
//! `Auth.Generate` and `Auth.Inspect`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Account, AccountKind, Auth, Tokens};
use crate::registry::Endpoint;
use crate::server::{Call, Handler, Reply};
use crate::{Error, Result};

/// The scope `Auth.Generate` needs.
pub const ADMIN_SCOPE: &str = "auth:admin";

/// `Auth.Token`'s request.
#[derive(Debug, Serialize, Deserialize)]
struct Login {
    id: String,
    secret: String,
}

/// `Auth.Refresh`'s request.
#[derive(Debug, Serialize, Deserialize)]
struct Refresh {
    refresh: String,
}

/// `Auth.Generate`'s request.
#[derive(Debug, Serialize, Deserialize)]
struct Generate {
    id: String,
    #[serde(default)]
    kind: AccountKind,
    #[serde(default)]
    scopes: Vec<String>,
}

/// `Auth.Generate`'s reply: the account and its secret, shown once.
#[derive(Debug, Serialize, Deserialize)]
struct Generated {
    account: Account,
    secret: String,
}

/// The `Auth` handler of an issuing service.
pub(crate) struct AuthHandler {
    pub(crate) auth: Auth,
}

impl Handler for AuthHandler {
    fn name(&self) -> &str {
        "Auth"
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        vec![
            Endpoint::new("Auth.Token", "Login", "Tokens").with_metadata("auth", "public"),
            Endpoint::new("Auth.Refresh", "Refresh", "Tokens").with_metadata("auth", "public"),
            Endpoint::new("Auth.Generate", "Generate", "Generated")
                .with_metadata("scopes", ADMIN_SCOPE),
            Endpoint::new("Auth.Inspect", "()", "Account").with_metadata("auth", "account"),
        ]
    }

    fn call(self: Arc<Self>, index: usize, call: Call) -> BoxFuture<'static, Result<Reply>> {
        Box::pin(async move {
            let ct = call.reply_content_type();
            match index {
                0 => {
                    let login: Login = call.decode()?;
                    let tokens: Tokens = self.auth.token(&login.id, &login.secret).await?;
                    Reply::encode(ct, &tokens)
                }
                1 => {
                    let refresh: Refresh = call.decode()?;
                    Reply::encode(ct, &self.auth.refresh(&refresh.refresh).await?)
                }
                2 => {
                    let generate: Generate = call.decode()?;
                    let scopes: Vec<&str> = generate.scopes.iter().map(String::as_str).collect();
                    let (account, secret) = self
                        .auth
                        .generate(&generate.id, generate.kind, &scopes)
                        .await?;
                    Reply::encode(ct, &Generated { account, secret })
                }
                3 => match call.context().account() {
                    Some(account) => Reply::encode(ct, account),
                    None => Err(Error::unauthorized("Auth.Inspect needs a valid token")),
                },
                _ => Err(Error::not_found(format!(
                    "Auth has no endpoint number {index}"
                ))),
            }
        })
    }
}
