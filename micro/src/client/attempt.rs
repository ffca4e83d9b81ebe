//! One call's attempts: the request each sends, and the loop that sends
//! it again to another node while the retry policy says so, all within the
//! call's deadline.

use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};

use super::{CallOptions, Client};
use crate::codec::ContentType;
use crate::transport::{Failure, USER_AGENT_VALUE, reply_error};
use crate::wire::{MICRO_ENDPOINT, MICRO_ID, MICRO_SERVICE, TIMEOUT};
use crate::{Error, Result};

impl Client {
    /// The token a call or publish sends as its own: the call's, else the
    /// client's, else (made for a service's context) the service's.
    pub(crate) fn own_token(&self, options: &CallOptions) -> Option<std::sync::Arc<str>> {
        options
            .token
            .as_deref()
            .map(std::sync::Arc::from)
            .or_else(|| {
                self.inner
                    .identity
                    .as_ref()
                    .and_then(crate::auth::Identity::token)
            })
            .or_else(|| {
                options
                    .context
                    .as_ref()
                    .and_then(crate::Context::identity_token)
            })
    }

    /// Sets who the call is from: the call's token, else the client's,
    /// else (for a call made for a service's context) the service's own,
    /// in `Authorization`; the context's caller, when there is one and the
    /// call has a token of its own, in `Micro-Caller`. Without a token of
    /// its own, a call made for a context passes the context's on.
    fn credentials(&self, options: &CallOptions, headers: &mut http::HeaderMap) {
        let context = options.context.as_ref();
        let own = self.own_token(options);
        let received = context.and_then(crate::Context::credentials);
        let bearer = |token: &str| HeaderValue::try_from(format!("Bearer {token}")).ok();
        match own {
            Some(own) => {
                if let Some(value) = bearer(&own) {
                    headers.insert(http::header::AUTHORIZATION, value);
                }
                if let Some(caller) = received.and_then(crate::auth::Credentials::on_behalf_of)
                    && let Ok(value) = HeaderValue::try_from(caller)
                {
                    headers.insert(crate::wire::MICRO_CALLER.clone(), value);
                }
            }
            None => {
                if let Some(value) = received
                    .and_then(crate::auth::Credentials::token)
                    .and_then(bearer)
                {
                    headers.insert(http::header::AUTHORIZATION, value);
                }
            }
        }
    }

    /// Sends `attempt` to a node of `service`, and again to another node
    /// while the retry policy says so, all within `deadline`; the call
    /// started at `started` (read once, for the first attempt too).
    pub(super) async fn attempts(
        &self,
        target: &Target<'_>,
        content_type: ContentType,
        attempt: &Attempt,
        options: &CallOptions,
        (started, deadline): (Instant, Instant),
    ) -> Result<Outcome> {
        let (service, endpoint) = (target.service, target.endpoint);
        let policy = options.retry.as_ref().unwrap_or(&self.inner.retry);
        let budget = deadline.saturating_duration_since(started);
        // Pinned where it is made: handing the large future to the timer
        // by value would copy it on every call.
        let attempts = std::pin::pin!(async {
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
                // The clock is read again once anything (a lookup, a
                // failed attempt) may have taken time since the start.
                let now = match (&node, retry) {
                    (Err(_), 0) => started,
                    _ => Instant::now(),
                };
                let result = self
                    .send(
                        target,
                        address,
                        content_type,
                        attempt,
                        options,
                        (now, deadline),
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
                    // Boxed: only a retry pays for the timer's room.
                    Box::pin(tokio::time::sleep(pause)).await;
                }
            }
        });
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
        target: &Target<'_>,
        address: &str,
        content_type: ContentType,
        attempt: &Attempt,
        options: &CallOptions,
        (now, deadline): (Instant, Instant),
    ) -> Result<Outcome, Failure> {
        // The URI's text becomes its storage: one allocation, no copy.
        let uri = http::Uri::from_maybe_shared(Bytes::from(format!(
            "{}://{address}/",
            self.inner.scheme
        )))
        .map_err(|e| {
            Failure::Reply(Error::bad_request(format!(
                "invalid node address \"{address}\": {e}"
            )))
        })?;
        let method = match attempt {
            Attempt::Call { .. } => http::Method::POST,
            Attempt::Open { .. } => http::Method::GET,
        };
        let mut parts = Request::new(()).into_parts().0;
        parts.method = method;
        parts.uri = uri;
        let headers = &mut parts.headers;
        headers.reserve(8);
        match &options.context {
            Some(ctx) if !options.metadata.is_empty() => {
                let mut merged = ctx.metadata().clone();
                merged.extend_from(&options.metadata);
                merged.write_headers(headers);
            }
            Some(ctx) => ctx.metadata().write_headers(headers),
            None => options.metadata.write_headers(headers),
        }
        self.credentials(options, headers);
        headers.insert(CONTENT_TYPE, content_type.header_value());
        headers.insert(USER_AGENT, USER_AGENT_VALUE.clone());
        headers.insert(MICRO_ENDPOINT.clone(), target.endpoint_header.clone());
        headers.insert(MICRO_SERVICE.clone(), target.service_header.clone());
        // A call made for a context carries its request id on; without
        // one the server makes the id (docs/wire.md), so that a plain call
        // neither draws a random id nor sends it.
        let mut traced = false;
        if let Some(ctx) = &options.context {
            headers.insert(MICRO_ID.clone(), ctx.id_header().clone());
            // The trace goes on, with the span serving the context (the
            // handler's call, stream or message) as the parent.
            if let Some(trace) = ctx.trace() {
                headers.insert(crate::trace::TRACEPARENT.clone(), trace.header());
                traced = true;
            }
        }
        // Without a context's trace, a valid `traceparent` the caller gave
        // as the call's own metadata (a gateway passing on its caller's)
        // is sent on, so the service continues that trace.
        if !traced
            && let Some(value) = options
                .metadata
                .as_headers()
                .get(&crate::trace::TRACEPARENT)
            && value
                .to_str()
                .is_ok_and(|v| crate::trace::Trace::from_traceparent(v).is_some())
        {
            headers.insert(crate::trace::TRACEPARENT.clone(), value.clone());
        }
        // A call's budget is what is left of its deadline; a stream's is
        // its own deadline, if it has one.
        let budget = match attempt {
            Attempt::Call { .. } => Some(deadline),
            Attempt::Open { deadline } => *deadline,
        };
        if let Some(budget) = budget {
            let remaining = budget.saturating_duration_since(now);
            headers.insert(TIMEOUT.clone(), crate::wire::timeout_value(remaining));
        }

        let body = match attempt {
            Attempt::Call { body } => body.clone(),
            Attempt::Open { .. } => {
                // Boxed: the upgrade's future is large, and inline it would
                // grow every call's future, which is moved on each call.
                let socket = Box::pin(self.upgrade(parts, target.service, address)).await?;
                return Ok(Outcome::Socket(Box::new(socket), address.to_owned()));
            }
        };
        // Boxed: reading a reply takes room that every call's future,
        // and every handler's future around it, would carry otherwise.
        let (parts, bytes) = Box::pin(self.inner.transport.exchange(
            parts,
            body,
            self.inner.max_response_size,
            target.service,
            address,
        ))
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
            &parts,
            &bytes,
            target.service,
            address,
        )))
    }
}

/// What a call is addressed to: its service and endpoint, as text for
/// errors and as the header values each attempt sends, made once per call
/// (or, for a typed client, once).
pub(crate) struct Target<'a> {
    pub(crate) service: &'a str,
    pub(crate) endpoint: &'a str,
    service_header: HeaderValue,
    endpoint_header: HeaderValue,
}

impl<'a> Target<'a> {
    /// # Errors
    /// 400 when either is not a valid header value.
    pub(crate) fn new(service: &'a str, endpoint: &'a str) -> Result<Self> {
        let invalid = |what: &str, value: &str| {
            Error::bad_request(format!("invalid {what} \"{value}\"")).with_id(service.to_owned())
        };
        Ok(Self {
            service,
            endpoint,
            service_header: HeaderValue::from_str(service)
                .map_err(|_| invalid("service name", service))?,
            endpoint_header: HeaderValue::from_str(endpoint)
                .map_err(|_| invalid("endpoint", endpoint))?,
        })
    }
}

/// A service's name with its header value made once, for the typed
/// clients `#[service]` generates. Cloning it (with its typed client)
/// copies no text.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct ServiceName {
    name: std::sync::Arc<str>,
    /// `None` when the name cannot be a header value; each call says so.
    header: Option<HeaderValue>,
}

impl ServiceName {
    pub fn new(name: String) -> Self {
        let header = HeaderValue::from_str(&name).ok();
        Self {
            name: name.into(),
            header,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The target `endpoint` of this service; `endpoint` is a generated
    /// `Type.Method`, always a valid header value.
    pub(crate) fn target(&self, endpoint: &'static str) -> Result<Target<'_>> {
        let Some(service_header) = self.header.clone() else {
            return Target::new(&self.name, endpoint);
        };
        Ok(Target {
            service: &self.name,
            endpoint,
            service_header,
            endpoint_header: HeaderValue::from_static(endpoint),
        })
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
