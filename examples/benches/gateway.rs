//! Run with: cargo bench -p micro-examples --bench gateway
//!
//! Calls per second of the helloworld service through micro's gateway
//! (`POST /helloworld/Helloworld.Greeting` to the gateway, which finds the
//! service in the registry and calls it) against calling the service
//! directly (`POST /` with `Micro-Endpoint`), with the same plain hyper
//! client encoding the request and decoding the reply, at 1 and 64
//! concurrent calls, in one process and one run. The service, the
//! gateway and the client share the memory registry.
//!
//! The direct row is one HTTP exchange per call; the gateway's is two (the
//! client to the gateway, the gateway to the service). With a handler that
//! does nothing and every side on the same cores, the second hop costs
//! about what the first does, so no proxy can reach more than about half
//! the direct rate there. Two more rows put that in proportion:
//!
//! - `raw hyper proxy`: the same extra hop written by hand, an axum route
//!   that forwards the body to the service's address (known in advance, no
//!   registry) with a pooled hyper client and returns the reply: what the
//!   gateway's own work is measured against;
//! - the `1 ms handler` rows: a service whose handler waits a millisecond,
//!   as one that reads a database would, direct and through the gateway.
//!
//! Each row runs in seven interleaved rounds; a ratio is the median of the
//! rounds' ratios.
//!
//! `BENCH_SECS` sets the seconds per row (default 3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use micro::{handler, service};
use micro_examples::helloworld::{Helloworld, Request, Response};

type Hyper = HyperClient<HttpConnector, Full<Bytes>>;

const ROUNDS: usize = 7;

/// Greets as helloworld does, after a millisecond's wait.
#[derive(Debug)]
struct Waiting;

#[service(name = "Helloworld")]
impl Waiting {
    #[handler]
    async fn greeting(&self, req: Request) -> micro::Result<Response> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(Response {
            message: format!("Hello {}", req.name),
        })
    }
}

/// The extra hop by hand: `POST /{service}/{endpoint}` forwarded to
/// `upstream` with `Micro-Endpoint`, the reply's status, type and body
/// passed back.
async fn raw_proxy(upstream: SocketAddr) -> SocketAddr {
    use axum::extract::{Path, State};
    use axum::response::IntoResponse;
    async fn forward(
        State((client, upstream)): State<(Hyper, SocketAddr)>,
        Path((_service, endpoint)): Path<(String, String)>,
        body: Bytes,
    ) -> axum::response::Response {
        let request = http::Request::post(format!("http://{upstream}/"))
            .header("content-type", "application/json")
            .header("micro-endpoint", endpoint)
            .body(Full::new(body))
            .unwrap();
        let reply = client.request(request).await.unwrap();
        let (parts, body) = reply.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, body).into_response()
    }
    let client: Hyper = HyperClient::builder(TokioExecutor::new()).build(HttpConnector::new());
    let app = axum::Router::new()
        .route("/{service}/{endpoint}", axum::routing::post(forward))
        .with_state((client, upstream));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// One call: the request encoded, the reply decoded and checked.
async fn call(client: &Hyper, uri: &str, endpoint: Option<&str>) {
    let body = serde_json::to_vec(&Request {
        name: "alice".into(),
    })
    .unwrap();
    let mut request = http::Request::post(uri).header("content-type", "application/json");
    if let Some(endpoint) = endpoint {
        request = request.header("micro-endpoint", endpoint);
    }
    let reply = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("request");
    assert_eq!(reply.status(), 200);
    let body = reply.into_body().collect().await.unwrap().to_bytes();
    let reply: Response = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply.message, "Hello alice");
}

/// Calls from `concurrency` tasks for `slice`: calls per second, and every
/// latency.
async fn round(
    client: &Hyper,
    uri: &Arc<str>,
    endpoint: Option<&'static str>,
    concurrency: usize,
    slice: Duration,
) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let deadline = started + slice;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, uri) = (client.clone(), uri.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    call(&client, &uri, endpoint).await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    (all.len() as f64 / started.elapsed().as_secs_f64(), all)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let backends = micro::Backends::memory();
        let service = micro::Service::new("helloworld")
            .address("127.0.0.1:0")
            .backends(&backends)
            .handle(Helloworld)
            .start()
            .await
            .unwrap();
        let gateway = micro_gateway::Gateway::builder()
            .backends(&backends)
            .build();
        let listener = gateway.bind("127.0.0.1:0").await.unwrap();
        let gateway_addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            gateway
                .serve(listener, std::future::pending::<()>())
                .await
                .unwrap();
        });

        let waiting = micro::Service::new("waiting")
            .address("127.0.0.1:0")
            .backends(&backends)
            .handle(Waiting)
            .start()
            .await
            .unwrap();
        let proxy = raw_proxy(service.local_addr()).await;

        let client: Hyper = HyperClient::builder(TokioExecutor::new()).build(HttpConnector::new());
        let uri = |text: String| -> Arc<str> { text.into() };
        let greeting = Some("Helloworld.Greeting");
        let rows: Vec<(&str, Arc<str>, Option<&'static str>)> = vec![
            ("direct", uri(format!("http://{}/", service.local_addr())), greeting),
            ("gateway", uri(format!("http://{gateway_addr}/helloworld/Helloworld.Greeting")), None),
            ("raw hyper proxy", uri(format!("http://{proxy}/helloworld/Helloworld.Greeting")), None),
            ("1 ms handler, direct", uri(format!("http://{}/", waiting.local_addr())), greeting),
            ("1 ms handler, gateway", uri(format!("http://{gateway_addr}/waiting/Helloworld.Greeting")), None),
        ];
        let slice = Duration::from_secs_f64(secs / ROUNDS as f64);

        println!(
            "{:<24} {:>5} {:>10} {:>9} {:>9}",
            "row", "conc", "calls/s", "p50 µs", "p99 µs"
        );
        for concurrency in [1, 64] {
            // Warm every path: connections, the gateway's registry cache.
            for (_, uri, endpoint) in &rows {
                round(&client, uri, *endpoint, concurrency, Duration::from_millis(300)).await;
            }
            let mut rates = vec![Vec::new(); rows.len()];
            let mut latencies = vec![Vec::new(); rows.len()];
            for _ in 0..ROUNDS {
                for (i, (_, uri, endpoint)) in rows.iter().enumerate() {
                    let (rate, lat) = round(&client, uri, *endpoint, concurrency, slice).await;
                    rates[i].push(rate);
                    latencies[i].extend(lat);
                }
            }
            for (i, (name, _, _)) in rows.iter().enumerate() {
                latencies[i].sort_unstable();
                println!(
                    "{:<24} {:>5} {:>10.0} {:>9.0} {:>9.0}",
                    name,
                    concurrency,
                    median(rates[i].clone()),
                    percentile(&latencies[i], 0.50).as_secs_f64() * 1e6,
                    percentile(&latencies[i], 0.99).as_secs_f64() * 1e6,
                );
            }
            let ratio = |a: usize, b: usize| {
                median(rates[a].iter().zip(&rates[b]).map(|(x, y)| x / y).collect())
            };
            println!("  at {concurrency}: gateway / direct {:.2}x, gateway / raw hyper proxy {:.2}x, 1 ms handler gateway / direct {:.2}x\n",
                ratio(1, 0), ratio(1, 2), ratio(4, 3));
        }
        waiting.stop().await.unwrap();
        service.stop().await.unwrap();
    });
}
