//! `grpc.health.v1.Health`: the standard gRPC health service, answered
//! from the same readiness as `GET /health/ready`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use prost::Message as _;

use super::frame::{self, GrpcBody, Out, Source};
use super::{long, response, trailers};
use crate::codec::ContentType;
use crate::server::Shared;
use crate::{Error, Result};

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `HealthCheckResponse.ServingStatus`.
const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;
const SERVICE_UNKNOWN: i32 = 3;

/// The largest health request read.
const LIMIT: usize = 64 * 1024;

/// How often `Watch` runs the readiness checks again.
const RECHECK: Duration = Duration::from_secs(5);

/// Whether `name` is this server's: empty (the whole server), the
/// service's name, or a gRPC service it answers.
fn known(shared: &Shared, name: &str) -> bool {
    name.is_empty()
        || name == shared.name
        || name == "grpc.health.v1.Health"
        || shared
            .grpc
            .keys()
            .any(|k| k.split_once('/').is_some_and(|(s, _)| s == name))
}

async fn status(shared: &Shared) -> i32 {
    if crate::server::health::is_ready(shared).await {
        SERVING
    } else {
        NOT_SERVING
    }
}

fn encode(status: i32) -> Bytes {
    frame::encode(&HealthCheckResponse { status }.encode_to_vec())
}

fn decode(message: &[u8]) -> Result<HealthCheckRequest> {
    HealthCheckRequest::decode(message)
        .map_err(|e| Error::bad_request(format!("decoding HealthCheckRequest: {e}")))
}

/// `Check`: the status now; NOT_FOUND for a service this server does not
/// know.
pub(super) async fn check(
    shared: &Arc<Shared>,
    body: Body,
    encoding: frame::Encoding,
) -> Result<Response> {
    let raw = crate::server::rpc::read_body(
        &http::HeaderMap::new(),
        body,
        LIMIT,
        shared.body_timeout,
        None,
    )
    .await?;
    let request = decode(&frame::single(raw, LIMIT, encoding)?)?;
    if !known(shared, &request.service) {
        return Err(Error::not_found(format!(
            "unknown service {:?}: this server reports on \"\", \"{}\" and its gRPC services",
            request.service, shared.name
        )));
    }
    Ok(response(
        ContentType::Protobuf,
        GrpcBody::Once {
            data: Some(encode(status(shared).await)),
            trailers: Some(trailers(&Ok(()))),
        },
    ))
}

/// `Watch`: the status now, then each change, until the client goes away
/// or the server stops (NOT_SERVING, then UNAVAILABLE).
pub(super) async fn watch(
    shared: &Arc<Shared>,
    body: Body,
    encoding: frame::Encoding,
) -> Result<Response> {
    let mut source = Source::new(body, LIMIT, encoding);
    let first = std::future::poll_fn(|cx| source.poll_message(cx)).await;
    let request = match first {
        Some(Ok(message)) => decode(&message)?,
        Some(Err(e)) => return Err(e),
        None => return Err(Error::bad_request("Watch needs its HealthCheckRequest")),
    };
    let out = Arc::new(Out::default());
    let shared = shared.clone();
    let driver = out.clone();
    tokio::spawn(async move {
        if !known(&shared, &request.service) {
            driver.push(&encode(SERVICE_UNKNOWN));
            driver.gone().await;
            return;
        }
        let mut stopping = shared.streams.stopping_signal();
        let mut last = status(&shared).await;
        driver.push(&encode(last));
        loop {
            let next = Instant::now() + RECHECK;
            tokio::select! {
                () = driver.gone() => return,
                _ = stopping.wait_for(|s| *s) => {
                    if last != NOT_SERVING {
                        driver.push(&encode(NOT_SERVING));
                    }
                    let err = Error::unavailable(format!("service \"{}\" is shutting down", shared.name));
                    driver.finish(trailers(&Err(err)));
                    return;
                }
                () = tokio::time::sleep_until(next.into()) => {}
            }
            let now = status(&shared).await;
            if now != last {
                driver.push(&encode(now));
                last = now;
            }
        }
    });
    Ok(long(response(ContentType::Protobuf, GrpcBody::Stream(out))))
}
