//! One call's attempts: the request each sends, and the loop that sends
//! it again to another node while the retry policy says so, all within the
//! call's deadline.

use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};

use super::{CallOptions, Client};
use crate::codec::ContentType;
use crate::context::new_id;
use crate::transport::{Failure, USER_AGENT_VALUE, reply_error};
use crate::wire::{MICRO_ENDPOINT, MICRO_ID, MICRO_SERVICE, TIMEOUT};
use crate::{Error, Result};

impl Client {
    /// Sends `attempt` to a node of `service`, and again to another node
    /// while the retry policy says so, all within `deadline`.
    pub(super) async fn attempts(
        &self,
        service: &str,
        endpoint: &str,
        content_type: ContentType,
        attempt: &Attempt,
        options: &CallOptions,
        deadline: Instant,
    ) -> Result<Outcome> {
        let policy = options.retry.as_ref().unwrap_or(&self.inner.retry);
        let budget = deadline.saturating_duration_since(Instant::now());
        let attempts = async {
            let mut tried: Vec<String> = Vec::new();
            let mut retry = 0;
            loop {
                let node = match &options.address {
                    Some(address) => Err(address.as_str()),
                    None => Ok(self.pick(service, &options.filters, &tried).await?),
                };
                let address = match &node {
                    Ok(picked) => picked.node().address.as_str(),
                    Err(address) => address,
                };
                let result = self
                    .send(
                        service,
                        endpoint,
                        address,
                        content_type,
                        attempt,
                        options,
                        deadline,
                    )
                    .await;
                let reached = !matches!(result, Err(Failure::Transport(_)));
                if let Ok(picked) = &node {
                    self.inner.selector.mark(service, picked.node(), reached);
                }
                let err = match result {
                    Ok(reply) => return Ok(reply),
                    Err(failure) => failure.into_error(),
                };
                let pause = policy.backoff.delay(retry + 1);
                let time_left = Instant::now() + pause < deadline;
                if retry >= policy.retries || !time_left || !policy.should_retry(&err) {
                    return Err(err);
                }
                retry += 1;
                tracing::debug!(service, endpoint, address, retry, error = %err, "retrying");
                tried.push(address.to_owned());
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        };
        match tokio::time::timeout_at(deadline.into(), attempts).await {
            Ok(result) => result.map_err(|e| e.or_id(service)),
            Err(_) => {
                let what = match attempt {
                    Attempt::Call { .. } => "calling",
                    Attempt::Open { .. } => "opening a stream to",
                };
                Err(Error::timeout(format!(
                    "deadline exceeded {what} {service} {endpoint} after {budget:?}"
                ))
                .with_id(service.to_owned()))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        service: &str,
        endpoint: &str,
        address: &str,
        content_type: ContentType,
        attempt: &Attempt,
        options: &CallOptions,
        deadline: Instant,
    ) -> Result<Outcome, Failure> {
        let uri = format!("http://{address}/");
        let builder = match attempt {
            Attempt::Call { .. } => Request::post(uri.as_str()),
            Attempt::Open { .. } => Request::get(uri.as_str()),
        };
        let mut parts = builder
            .body(())
            .map_err(|e| {
                Failure::Reply(Error::bad_request(format!(
                    "invalid node address \"{address}\": {e}"
                )))
            })?
            .into_parts()
            .0;
        let headers = &mut parts.headers;
        match &options.context {
            Some(ctx) if !options.metadata.is_empty() => {
                let mut merged = ctx.metadata().clone();
                merged.extend_from(&options.metadata);
                merged.write_headers(headers);
            }
            Some(ctx) => ctx.metadata().write_headers(headers),
            None => options.metadata.write_headers(headers),
        }
        headers.insert(CONTENT_TYPE, content_type.header_value());
        headers.insert(USER_AGENT, USER_AGENT_VALUE.clone());
        let invalid = |what: &str, value: &str| {
            Failure::Reply(Error::bad_request(format!("invalid {what} \"{value}\"")))
        };
        headers.insert(
            MICRO_ENDPOINT.clone(),
            HeaderValue::from_str(endpoint).map_err(|_| invalid("endpoint", endpoint))?,
        );
        headers.insert(
            MICRO_SERVICE.clone(),
            HeaderValue::from_str(service).map_err(|_| invalid("service name", service))?,
        );
        let id = options
            .context
            .as_ref()
            .map_or_else(new_id, |c| c.id().to_owned());
        headers.insert(
            MICRO_ID.clone(),
            HeaderValue::from_str(&id).map_err(|_| invalid("request id", &id))?,
        );
        // A call's budget is what is left of its deadline; a stream's is
        // its own deadline, if it has one.
        let budget = match attempt {
            Attempt::Call { .. } => Some(deadline),
            Attempt::Open { deadline } => *deadline,
        };
        if let Some(budget) = budget {
            let remaining = budget.saturating_duration_since(Instant::now());
            headers.insert(
                TIMEOUT.clone(),
                HeaderValue::from(remaining.as_nanos() as u64),
            );
        }

        let body = match attempt {
            Attempt::Call { body } => body.clone(),
            Attempt::Open { .. } => {
                // Boxed: the upgrade's future is large, and inline it would
                // grow every call's future, which is moved on each call.
                let socket = Box::pin(self.upgrade(parts, service, address)).await?;
                return Ok(Outcome::Socket(Box::new(socket), address.to_owned()));
            }
        };
        let (parts, bytes) = self
            .inner
            .transport
            .exchange(parts, body, self.inner.max_response_size, service, address)
            .await?;
        let reply_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(ContentType::from_header)
            .unwrap_or(content_type);
        if parts.status == StatusCode::OK {
            return Ok(Outcome::Reply(reply_type, bytes));
        }
        Err(Failure::Reply(reply_error(
            &parts, &bytes, service, address,
        )))
    }
}

/// What one attempt sends.
pub(super) enum Attempt {
    /// A request with its encoded body.
    Call { body: Bytes },
    /// A stream's upgrade request; the stream's own deadline, if any.
    Open { deadline: Option<Instant> },
}

/// What one attempt got back.
pub(super) enum Outcome {
    Reply(ContentType, Bytes),
    /// The stream's socket and the address of the node it reached.
    Socket(Box<crate::stream::Socket>, String),
}
