//! Run with: cargo bench -p micro-examples --bench streaming
//!
//! Messages per second and round-trip latency of a micro bidirectional
//! stream against a raw axum WebSocket echo doing the same work (each JSON
//! message `{"name":…}` decoded and answered with `{"message":"Hello …"}`),
//! in one process and one run.
//!
//! Patterns:
//! - `ping-pong x1`: one stream, send one message, wait for its reply;
//! - `ping-pong x64`: 64 streams doing that at once;
//! - `pipelined x1`: one stream, one task sending as fast as it can while
//!   another receives.
//!
//! Rows:
//! - `raw axum ws`: axum's `WebSocketUpgrade`, driven by a plain
//!   tokio-tungstenite client (with `TCP_NODELAY`, as micro's client);
//! - `micro, raw client`: the micro service, driven by the same plain
//!   client (the server's cost alone);
//! - `micro typed`: the micro service through the generated client.
//!
//! `BENCH_SECS` sets the seconds per row and pattern (default 3), spread
//! over five interleaved rounds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use futures_util::{SinkExt, StreamExt};
use micro::client::{CallOptions, ClientStream};
use micro::registry::MemoryRegistry;
use micro::{Result, Stream, handler, service};
use micro_examples::helloworld::{Request, Response};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const ROUNDS: u32 = 5;

struct Bench;

#[service]
impl Bench {
    /// Answers every request, as the raw echo does.
    #[handler]
    async fn echo(&self, mut stream: Stream<Request, Response>) -> Result<()> {
        while let Some(req) = stream.recv().await? {
            stream
                .send(Response {
                    message: format!("Hello {}", req.name),
                })
                .await?;
        }
        Ok(())
    }
}

async fn raw_axum() -> SocketAddr {
    async fn upgrade(ws: WebSocketUpgrade) -> axum::response::Response {
        ws.on_upgrade(echo)
    }
    async fn echo(mut socket: WebSocket) {
        while let Some(Ok(msg)) = socket.recv().await {
            let AxumMessage::Text(text) = msg else {
                continue;
            };
            let req: Request = serde_json::from_str(text.as_str()).unwrap();
            let rsp = serde_json::to_string(&Response {
                message: format!("Hello {}", req.name),
            })
            .unwrap();
            if socket.send(AxumMessage::Text(rsp.into())).await.is_err() {
                return;
            }
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = axum::Router::new().route("/", axum::routing::get(upgrade));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    RawAxum,
    MicroRawClient,
    MicroTyped,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::RawAxum => "raw axum ws",
            Kind::MicroRawClient => "micro, raw client",
            Kind::MicroTyped => "micro typed",
        }
    }
}

struct Targets {
    raw: SocketAddr,
    micro: SocketAddr,
    client: BenchClient,
}

type Raw = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One open stream of a row.
// One per stream, a few at a time: the size does not matter.
#[allow(clippy::large_enum_variant)]
enum Conn {
    Raw(Raw),
    Micro(ClientStream<Request, Response>),
}

fn request() -> Request {
    Request {
        name: "alice".into(),
    }
}

fn check(rsp: &Response) {
    assert_eq!(rsp.message, "Hello alice");
}

fn decode(msg: Message) -> Response {
    match msg {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

async fn open(kind: Kind, t: &Targets) -> Conn {
    // TCP_NODELAY, as micro's client sets it.
    let raw = |url: String| async move {
        tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .unwrap()
            .0
    };
    match kind {
        Kind::RawAxum => Conn::Raw(raw(format!("ws://{}/", t.raw)).await),
        Kind::MicroRawClient => {
            Conn::Raw(raw(format!("ws://{}/?endpoint=Bench.Echo", t.micro)).await)
        }
        Kind::MicroTyped => Conn::Micro(
            t.client
                .echo_with(CallOptions::new().address(t.micro.to_string()))
                .await
                .unwrap(),
        ),
    }
}

impl Conn {
    async fn round_trip(&mut self) {
        match self {
            Conn::Raw(ws) => {
                let body = serde_json::to_string(&request()).unwrap();
                ws.send(Message::text(body)).await.unwrap();
                check(&decode(ws.next().await.unwrap().unwrap()));
            }
            Conn::Micro(s) => {
                s.send(request()).await.unwrap();
                check(&s.recv().await.unwrap().unwrap());
            }
        }
    }

    /// Sends for `dur` from one task while another receives; the count of
    /// replies.
    async fn pipelined(self, dur: Duration) -> usize {
        let deadline = Instant::now() + dur;
        match self {
            Conn::Raw(ws) => {
                let (mut tx, mut rx) = ws.split();
                let sending = tokio::spawn(async move {
                    let mut sent = 0;
                    while Instant::now() < deadline {
                        let body = serde_json::to_string(&request()).unwrap();
                        tx.send(Message::text(body)).await.unwrap();
                        sent += 1;
                    }
                    sent
                });
                let mut sending = std::pin::pin!(sending);
                let (mut got, mut sent) = (0, None);
                while sent != Some(got) {
                    tokio::select! {
                        msg = rx.next() => {
                            check(&decode(msg.unwrap().unwrap()));
                            got += 1;
                        }
                        n = &mut sending, if sent.is_none() => sent = Some(n.unwrap()),
                    }
                }
                got
            }
            Conn::Micro(s) => {
                let (mut tx, mut rx) = s.split();
                let sending = tokio::spawn(async move {
                    let mut sent = 0;
                    while Instant::now() < deadline {
                        tx.send(request()).await.unwrap();
                        sent += 1;
                    }
                    tx.close().await.unwrap();
                    sent
                });
                let mut got = 0;
                while let Some(rsp) = rx.recv().await.unwrap() {
                    check(&rsp);
                    got += 1;
                }
                assert_eq!(got, sending.await.unwrap());
                got
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pattern {
    PingPong(usize),
    Pipelined,
}

impl Pattern {
    fn name(self) -> String {
        match self {
            Pattern::PingPong(n) => format!("ping-pong x{n}"),
            Pattern::Pipelined => "pipelined x1".to_owned(),
        }
    }
}

/// One round of one row: messages per second and round-trip latencies.
async fn round(
    kind: Kind,
    pattern: Pattern,
    t: &Arc<Targets>,
    dur: Duration,
) -> (f64, Vec<Duration>) {
    match pattern {
        Pattern::PingPong(streams) => {
            let mut conns = Vec::new();
            for _ in 0..streams {
                conns.push(open(kind, t).await);
            }
            let started = Instant::now();
            let deadline = started + dur;
            let tasks: Vec<_> = conns
                .into_iter()
                .map(|mut c| {
                    tokio::spawn(async move {
                        let mut lat = Vec::with_capacity(1 << 14);
                        while Instant::now() < deadline {
                            let at = Instant::now();
                            c.round_trip().await;
                            lat.push(at.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.unwrap());
            }
            (all.len() as f64 / started.elapsed().as_secs_f64(), all)
        }
        Pattern::Pipelined => {
            let conn = open(kind, t).await;
            let started = Instant::now();
            let got = conn.pipelined(dur).await;
            (got as f64 / started.elapsed().as_secs_f64(), Vec::new())
        }
    }
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(secs));
}

async fn bench(secs: f64) {
    let registry = Arc::new(MemoryRegistry::new());
    let service = micro::Service::new("bench")
        .address("127.0.0.1:0")
        .registry(registry.clone())
        .broker(Arc::new(micro::broker::MemoryBroker::new()))
        .handle(Bench)
        .start()
        .await
        .unwrap();
    let targets = Arc::new(Targets {
        raw: raw_axum().await,
        micro: service.local_addr(),
        client: BenchClient::new("bench", micro::Client::builder().registry(registry).build()),
    });
    let slice = Duration::from_secs_f64(secs / f64::from(ROUNDS));
    let kinds = [Kind::RawAxum, Kind::MicroRawClient, Kind::MicroTyped];
    println!(
        "{:<14} {:<18} {:>10} {:>8} {:>8} {:>8}",
        "pattern", "row", "msg/s", "p50 µs", "p99 µs", "vs raw"
    );
    for pattern in [
        Pattern::PingPong(1),
        Pattern::PingPong(64),
        Pattern::Pipelined,
    ] {
        // Warm up every row, then interleave the rounds.
        for kind in kinds {
            round(kind, pattern, &targets, Duration::from_millis(200)).await;
        }
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
        for _ in 0..ROUNDS {
            for (i, kind) in kinds.iter().enumerate() {
                let (rate, lat) = round(*kind, pattern, &targets, slice).await;
                rates[i].push(rate);
                latencies[i].extend(lat);
            }
        }
        for (i, kind) in kinds.iter().enumerate() {
            let lat = &mut latencies[i];
            lat.sort_unstable();
            let pct = |p: f64| {
                lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                    .map_or_else(|| "-".to_owned(), |d| d.as_micros().to_string())
            };
            let mut ratios: Vec<f64> = rates[i]
                .iter()
                .zip(&rates[0])
                .map(|(r, base)| r / base)
                .collect();
            ratios.sort_by(f64::total_cmp);
            let mean = rates[i].iter().sum::<f64>() / rates[i].len() as f64;
            println!(
                "{:<14} {:<18} {:>10.0} {:>8} {:>8} {:>7.2}x",
                pattern.name(),
                kind.name(),
                mean,
                pct(0.50),
                pct(0.99),
                ratios[ratios.len() / 2]
            );
        }
    }
    service.stop().await.unwrap();
}
