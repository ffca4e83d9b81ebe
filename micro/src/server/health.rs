//! `GET /health`, `/health/live`, `/health/ready`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use futures_util::future::{BoxFuture, join_all};
use http::StatusCode;
use serde::Serialize;

use super::Shared;
use crate::Result;
use crate::wire::json_response;

/// How long one health check may take before it counts as down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync;

/// A named readiness check, run on every `/health` and `/health/ready`
/// request; see [`Service::health_check`](crate::Service::health_check).
#[derive(Clone)]
pub struct HealthCheck {
    name: String,
    check: Arc<CheckFn>,
}

impl HealthCheck {
    /// A check called `name` that is up while `check` returns `Ok`.
    pub fn new<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            check: Arc::new(move || Box::pin(check())),
        }
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Report {
    status: &'static str,
    checks: Vec<CheckReport>,
}

#[derive(Serialize)]
struct CheckReport {
    name: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

fn status(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

fn reply(report: &Report) -> Response {
    let code = if report.status == "up" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, serde_json::to_vec(report).unwrap_or_default())
}

async fn readiness(shared: &Shared) -> Report {
    let mut checks = Vec::with_capacity(shared.checks.len() + 1);
    if !shared.ready.load(Ordering::Relaxed) {
        checks.push(CheckReport {
            name: "server".to_owned(),
            status: "down",
            detail: Some("shutting down".to_owned()),
        });
    }
    let results = join_all(shared.checks.iter().map(|c| async move {
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, (c.check)()).await;
        let detail = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.detail().to_owned()),
            Err(_) => Some(format!("check took longer than {CHECK_TIMEOUT:?}")),
        };
        CheckReport {
            name: c.name.clone(),
            status: status(detail.is_none()),
            detail,
        }
    }))
    .await;
    checks.extend(results);
    let up = checks.iter().all(|c| c.status == "up");
    Report {
        status: status(up),
        checks,
    }
}

/// Whether the server is ready: not stopping, and every check up.
#[cfg(feature = "protobuf")]
pub(crate) async fn is_ready(shared: &Shared) -> bool {
    readiness(shared).await.status == "up"
}

/// `GET /health`: readiness, with every check listed.
pub(crate) async fn health(State(shared): State<Arc<Shared>>) -> Response {
    reply(&readiness(&shared).await)
}

/// `GET /health/ready`: down while stopping or while a check fails.
pub(crate) async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    reply(&readiness(&shared).await)
}

/// `GET /health/live`: up while the process serves requests at all.
pub(crate) async fn live() -> Response {
    reply(&Report {
        status: "up",
        checks: Vec::new(),
    })
}
