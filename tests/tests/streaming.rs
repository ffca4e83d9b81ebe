//! Streams over real sockets: the three shapes, half-close, errors,
//! cancellation, deadlines, graceful stop, many streams, balancing, and the
//! raw wire as a generic WebSocket client sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use micro::client::CallOptions;
use micro::codec::ContentType;
use micro::registry::MemoryRegistry;
use micro::selector::RoundRobin;
use micro::stream::StreamKind;
use micro::{Client, Context, Error, Result, ServiceHandle, Stream, Streaming, handler, service};
use micro_tests::RawClient;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Line {
    n: u32,
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Summary {
    count: u32,
    last: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Who {
    instance: u32,
    id: String,
    user: Option<String>,
    deadline: bool,
}

/// Counts the handler calls that are running; each guard is one.
#[derive(Clone, Default)]
struct Live {
    running: Arc<AtomicUsize>,
    changed: Arc<Notify>,
}

struct Running(Live);

impl Live {
    fn enter(&self) -> Running {
        self.running.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Running(self.clone())
    }

    fn count(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Waits until `count() == n`; how long that took.
    async fn until(&self, n: usize, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.count() == n {
                return start.elapsed();
            }
            assert!(
                tokio::time::timeout_at((start + limit).into(), changed)
                    .await
                    .is_ok(),
                "{} handlers running after {limit:?}, expected {n}",
                self.count()
            );
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

struct Chat {
    instance: u32,
    live: Live,
}

#[service]
impl Chat {
    /// Every line comes back, in order.
    #[handler]
    async fn echo(&self, mut stream: Stream<Line, Line>) -> Result<()> {
        let _running = self.live.enter();
        while let Some(line) = stream.recv().await? {
            stream.send(&line).await?;
        }
        Ok(())
    }

    /// Reads until the client half-closes, then replies with every number
    /// doubled and a summary.
    #[handler]
    async fn collect(&self, stream: Stream<u32, Summary>) -> Result<()> {
        let (mut tx, mut rx) = stream.split();
        let mut seen = Vec::new();
        while let Some(n) = rx.recv().await? {
            seen.push(n);
        }
        for (i, n) in seen.iter().enumerate() {
            tx.send(Summary {
                count: i as u32 + 1,
                last: Some(n * 2),
            })
            .await?;
        }
        tx.send(Summary {
            count: seen.len() as u32,
            last: seen.last().copied(),
        })
        .await?;
        Ok(())
    }

    /// Sends the numbers below the first request, then fails with 409.
    #[handler]
    async fn fail_after(&self, mut stream: Stream<u32, u32>) -> Result<()> {
        let n = stream.recv().await?.unwrap_or(0);
        for i in 0..n {
            stream.send(i).await?;
        }
        Err(Error::conflict(format!("stopped after {n}")))
    }

    /// Echoes one message, then panics.
    #[handler]
    async fn panics(&self, mut stream: Stream<u32, u32>) -> Result<()> {
        if let Some(n) = stream.recv().await? {
            stream.send(n).await?;
        }
        panic!("stream handler gave up");
    }

    /// Waits for a message that never comes.
    #[handler]
    async fn wait(&self, mut stream: Stream<u32, u32>) -> Result<()> {
        let _running = self.live.enter();
        while stream.recv().await?.is_some() {}
        Ok(())
    }

    /// A number every `every_ms`, forever.
    #[handler]
    async fn ticks(&self, every_ms: u64) -> Result<Streaming<u64>> {
        let running = self.live.enter();
        let every = Duration::from_millis(every_ms);
        Ok(Streaming::new(futures_util::stream::unfold(
            (0u64, running),
            move |(n, running)| async move {
                tokio::time::sleep(every).await;
                Some((Ok(n), (n + 1, running)))
            },
        )))
    }

    /// A number every `every_ms` until the service begins to stop; then a
    /// clean end.
    #[handler]
    async fn polite_ticks(&self, ctx: Context, every_ms: u64) -> Result<Streaming<u64>> {
        let every = Duration::from_millis(every_ms);
        Ok(Streaming::new(futures_util::stream::unfold(
            (0u64, ctx),
            move |(n, ctx)| async move {
                tokio::select! {
                    () = ctx.stopping() => None,
                    () = tokio::time::sleep(every) => Some((Ok(n), (n + 1, ctx))),
                }
            },
        )))
    }

    /// The sum of what the client sends.
    #[handler]
    async fn sum(&self, mut numbers: Streaming<i64>) -> Result<i64> {
        let mut total = 0;
        while let Some(n) = numbers.recv().await? {
            total += n;
        }
        Ok(total)
    }

    /// Who served the stream, with what context.
    #[handler]
    async fn whoami(&self, ctx: Context) -> Result<Streaming<Who>> {
        Ok(Streaming::iter([Who {
            instance: self.instance,
            id: ctx.id().to_owned(),
            user: ctx.metadata().get("x-user").map(str::to_owned),
            deadline: ctx.deadline().is_some(),
        }]))
    }

    /// A stream in, a stream out: each number squared.
    #[handler]
    async fn squares(&self, numbers: Streaming<u64>) -> Result<Streaming<u64>> {
        Ok(Streaming::new(
            numbers.map(|n: Result<u64>| n.map(|n| n * n)),
        ))
    }

    /// A plain endpoint beside the streams.
    #[handler]
    async fn ping(&self) -> Result<String> {
        Ok("pong".to_owned())
    }
}

struct Setup {
    registry: Arc<MemoryRegistry>,
    live: Live,
    running: Vec<ServiceHandle>,
}

impl Setup {
    async fn new(instances: u32) -> Self {
        Self::with(instances, |s| s).await
    }

    async fn with(instances: u32, configure: impl Fn(micro::Service) -> micro::Service) -> Self {
        let registry = Arc::new(MemoryRegistry::new());
        let live = Live::default();
        let mut running = Vec::new();
        for instance in 0..instances {
            let service = micro::Service::new("chat")
                .address("127.0.0.1:0")
                .registry(registry.clone())
                .broker(Arc::new(micro::broker::MemoryBroker::new()))
                .handle(Chat {
                    instance,
                    live: live.clone(),
                });
            running.push(configure(service).start().await.unwrap());
        }
        Self {
            registry,
            live,
            running,
        }
    }

    fn client(&self) -> ChatClient {
        let client = Client::builder().registry(self.registry.clone()).build();
        ChatClient::new("chat", client)
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.running[0].local_addr()
    }

    async fn stop(self) {
        for s in self.running {
            s.stop().await.unwrap();
        }
    }
}

fn line(n: u32) -> Line {
    Line {
        n,
        text: format!("line {n}"),
    }
}

#[tokio::test]
async fn ten_thousand_messages_echo_in_order_with_send_and_recv_in_two_tasks() {
    let setup = Setup::new(1).await;
    let stream = setup.client().echo().await.unwrap();
    let (mut tx, mut rx) = stream.split();
    const N: u32 = 10_000;
    let sending = tokio::spawn(async move {
        for n in 0..N {
            tx.send(line(n)).await.unwrap();
        }
        tx.close().await.unwrap();
    });
    let receiving = tokio::spawn(async move {
        let mut next = 0;
        while let Some(got) = rx.recv().await.unwrap() {
            assert_eq!(got, line(next));
            next += 1;
        }
        next
    });
    sending.await.unwrap();
    assert_eq!(receiving.await.unwrap(), N);
    setup.live.until(0, Duration::from_secs(1)).await;
    setup.stop().await;
}

#[tokio::test]
async fn half_close_ends_the_servers_receive_and_the_replies_still_arrive() {
    let setup = Setup::new(1).await;
    let mut stream = setup.client().collect().await.unwrap();
    for n in 1..=5 {
        stream.send(n).await.unwrap();
    }
    stream.close_send().await.unwrap();
    assert_eq!(
        stream.send(6).await.unwrap_err().detail(),
        "the stream is closed for sending"
    );
    let mut replies = Vec::new();
    while let Some(summary) = stream.recv().await.unwrap() {
        replies.push(summary);
    }
    assert_eq!(replies.len(), 6);
    assert_eq!(replies[4].last, Some(10));
    assert_eq!(
        replies[5],
        Summary {
            count: 5,
            last: Some(5)
        }
    );
    assert_eq!(stream.recv().await.unwrap(), None, "stays ended");
    setup.stop().await;
}

#[tokio::test]
async fn a_handler_error_reaches_recv_with_its_code_after_the_messages_before_it() {
    let setup = Setup::new(1).await;
    let mut stream = setup.client().fail_after().await.unwrap();
    stream.send(3).await.unwrap();
    for i in 0..3 {
        assert_eq!(stream.recv().await.unwrap(), Some(i));
    }
    let err = stream.recv().await.unwrap_err();
    assert_eq!(err.code(), 409);
    assert_eq!(err.detail(), "stopped after 3");
    assert_eq!(err.id(), "chat");
    assert_eq!(stream.recv().await.unwrap(), None, "over after the error");
    setup.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_ends_its_stream_with_500_and_the_server_stays_up() {
    let setup = Setup::new(1).await;
    let client = setup.client();
    let mut stream = client.panics().await.unwrap();
    stream.send(7).await.unwrap();
    assert_eq!(stream.recv().await.unwrap(), Some(7));
    let err = stream.recv().await.unwrap_err();
    assert_eq!(err.code(), 500);
    assert_eq!(
        err.detail(),
        "handler Chat.Panics panicked: stream handler gave up"
    );
    // The same service goes on serving streams and calls.
    let mut echo = client.echo().await.unwrap();
    echo.send(line(2)).await.unwrap();
    assert_eq!(echo.recv().await.unwrap(), Some(line(2)));
    assert_eq!(client.ping().await.unwrap(), "pong");
    drop(echo);
    setup.stop().await;
}

#[tokio::test]
async fn dropping_the_client_handle_cancels_the_handler() {
    let setup = Setup::new(1).await;
    let client = setup.client();

    // A handler waiting in recv.
    let stream = client.wait().await.unwrap();
    setup.live.until(1, Duration::from_secs(1)).await;
    drop(stream);
    let took = setup.live.until(0, Duration::from_secs(1)).await;
    eprintln!("waiting handler cancelled {took:?} after the drop");

    // A handler busy sending.
    let mut ticks = client.ticks(5).await.unwrap();
    assert_eq!(ticks.recv().await.unwrap(), Some(0));
    assert_eq!(setup.live.count(), 1);
    drop(ticks);
    let took = setup.live.until(0, Duration::from_secs(1)).await;
    eprintln!("sending handler cancelled {took:?} after the drop");
    setup.stop().await;
}

#[tokio::test]
async fn a_graceful_stop_ends_open_streams_with_a_clean_error() {
    let setup = Setup::with(1, |s| s.grace_period(Duration::from_millis(300))).await;
    let client = setup.client();
    let mut ticks = client.ticks(10).await.unwrap();
    assert_eq!(ticks.recv().await.unwrap(), Some(0));

    let started = Instant::now();
    let Setup { running, live, .. } = setup;
    let stopping = tokio::spawn(async move {
        for s in running {
            s.stop().await.unwrap();
        }
    });
    let err = loop {
        match ticks.recv().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended cleanly; expected an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), 503, "{err}");
    assert_eq!(err.detail(), "service \"chat\" is shutting down");
    let ended = started.elapsed();
    assert!(
        ended >= Duration::from_millis(250),
        "streams get the grace period: {ended:?}"
    );
    stopping.await.unwrap();
    live.until(0, Duration::from_secs(1)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");
}

#[tokio::test]
async fn a_handler_that_watches_the_stop_ends_its_stream_cleanly_at_once() {
    let setup = Setup::with(1, |s| s.grace_period(Duration::from_secs(20))).await;
    let client = setup.client();
    let mut ticks = client.polite_ticks(10).await.unwrap();
    assert_eq!(ticks.recv().await.unwrap(), Some(0));
    let started = Instant::now();
    let Setup { running, .. } = setup;
    let stopping = tokio::spawn(async move {
        for s in running {
            s.stop().await.unwrap();
        }
    });
    while let Some(n) = ticks.recv().await.unwrap() {
        assert!(n < 1000);
    }
    stopping.await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the stop did not wait out the 20 s grace period: {took:?}"
    );
    // A request's context never reports a stop.
    let ctx = Context::new();
    assert!(
        tokio::time::timeout(Duration::from_millis(20), ctx.stopping())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn opening_a_stream_on_a_stopping_service_fails_over_to_another_node() {
    let setup = Setup::new(2).await;
    let client = setup.client();
    let Setup {
        mut running,
        registry,
        ..
    } = setup;
    let second = running.pop().unwrap();
    let first = running.pop().unwrap();
    let first_addr = first.local_addr().to_string();
    first.stop().await.unwrap();
    // The client still has the stopped node cached, or not: either way the
    // stream opens on the one left.
    for _ in 0..5 {
        let mut who = client.whoami().await.unwrap();
        assert_eq!(who.recv().await.unwrap().unwrap().instance, 1);
    }
    let direct = client
        .whoami_with(CallOptions::new().address(first_addr))
        .await
        .unwrap_err();
    assert_eq!(direct.code(), 503, "{direct}");
    drop(registry);
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_dead_node_in_the_registry_costs_a_retry_not_a_failed_stream() {
    use micro::registry::{Node, RegisterOptions, Registry};
    let setup = Setup::new(1).await;
    // A node that registered and died: nothing listens at its address.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = dead.local_addr().unwrap().to_string();
    drop(dead);
    let mut record = setup.running[0].record().clone();
    record.nodes = vec![Node::new("chat-dead", address)];
    setup
        .registry
        .register(&record, RegisterOptions::default())
        .await
        .unwrap();
    let client = Client::builder()
        .registry(setup.registry.clone())
        .selector(Arc::new(RoundRobin::new()))
        .build();
    let chat = ChatClient::new("chat", client);
    for _ in 0..10 {
        let mut who = chat.whoami().await.unwrap();
        assert_eq!(who.recv().await.unwrap().unwrap().instance, 0);
    }
    setup.stop().await;
}

#[tokio::test]
async fn the_opening_deadline_bounds_the_whole_stream() {
    let setup = Setup::new(1).await;
    let client = setup.client();
    let started = Instant::now();
    let mut ticks = client
        .ticks_with(5, CallOptions::new().timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    let mut got = 0;
    let err = loop {
        match ticks.recv().await {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("ended cleanly"),
            Err(e) => break e,
        }
    };
    let took = started.elapsed();
    assert_eq!(err.code(), 408, "{err}");
    assert!(got > 10, "ticks flowed before the deadline: {got}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    setup.live.until(0, Duration::from_secs(1)).await;

    // A context's deadline does the same, and the handler sees it.
    let ctx = Context::new().with_timeout(Duration::from_secs(30));
    let mut who = client
        .whoami_with(CallOptions::new().context(&ctx))
        .await
        .unwrap();
    assert!(who.recv().await.unwrap().unwrap().deadline);
    let mut who = client.whoami().await.unwrap();
    assert!(
        !who.recv().await.unwrap().unwrap().deadline,
        "no deadline unless one is given"
    );
    setup.stop().await;
}

#[tokio::test]
async fn sixty_four_streams_at_once_against_one_service() {
    let setup = Setup::new(1).await;
    let client = setup.client();
    let mut tasks = Vec::new();
    for s in 0..64u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = client.echo().await.unwrap();
            for n in 0..200 {
                let sent = Line {
                    n,
                    text: format!("stream {s}"),
                };
                stream.send(&sent).await.unwrap();
                assert_eq!(stream.recv().await.unwrap(), Some(sent));
            }
            stream.close_send().await.unwrap();
            assert_eq!(stream.recv().await.unwrap(), None);
        }));
    }
    // All 64 are open at the same time at some point.
    setup.live.until(64, Duration::from_secs(10)).await;
    for t in tasks {
        t.await.unwrap();
    }
    setup.live.until(0, Duration::from_secs(2)).await;
    setup.stop().await;
}

#[tokio::test]
async fn streams_spread_over_instances_by_the_selector() {
    let setup = Setup::new(3).await;
    let client = Client::builder()
        .registry(setup.registry.clone())
        .selector(Arc::new(RoundRobin::new()))
        .build();
    let chat = ChatClient::new("chat", client);
    let mut per_instance = [0; 3];
    let mut open = Vec::new();
    for _ in 0..30 {
        let mut who = chat.whoami().await.unwrap();
        per_instance[who.recv().await.unwrap().unwrap().instance as usize] += 1;
        open.push(who);
    }
    assert_eq!(per_instance, [10, 10, 10]);
    setup.stop().await;
}

#[tokio::test]
async fn client_and_server_streaming_in_both_codecs() {
    let setup = Setup::new(1).await;
    for codec in [ContentType::Json, ContentType::MsgPack] {
        let chat = setup.client();
        let opts = || CallOptions::new().content_type(codec);
        let mut sum = chat.sum_with(opts()).await.unwrap();
        for n in 1..=100 {
            sum.send(n).await.unwrap();
        }
        assert_eq!(sum.close_and_recv().await.unwrap(), 5050);

        let mut ticks = chat.ticks_with(1, opts()).await.unwrap();
        let first: Vec<u64> = (&mut ticks)
            .take(5)
            .map(|t: Result<u64>| t.unwrap())
            .collect()
            .await;
        assert_eq!(first, [0, 1, 2, 3, 4]);

        // Stream in, stream out, through the Sink and Stream traits.
        let squares = chat.squares_with(opts()).await.unwrap();
        let (mut tx, rx) = squares.split();
        let mut input = futures_util::stream::iter((1..=10).map(Ok));
        tx.send_all(&mut input).await.unwrap();
        tx.close().await.unwrap();
        let got: Vec<u64> = rx.map(|r: Result<u64>| r.unwrap()).collect().await;
        assert_eq!(got, (1..=10).map(|n| n * n).collect::<Vec<_>>());
    }
    setup.stop().await;
}

#[tokio::test]
async fn metadata_and_the_request_id_travel_on_the_upgrade() {
    let setup = Setup::new(1).await;
    let ctx = Context::new()
        .with_id("stream-id-1")
        .with_metadata("x-user", "alice");
    let mut who = setup
        .client()
        .whoami_with(CallOptions::new().context(&ctx))
        .await
        .unwrap();
    let who = who.recv().await.unwrap().unwrap();
    assert_eq!(who.id, "stream-id-1");
    assert_eq!(who.user.as_deref(), Some("alice"));

    // Through a client whose transport is wrapped in a tower layer: the
    // upgrade goes through the layer too.
    let layered = Client::builder()
        .registry(setup.registry.clone())
        .layer(tower_http::set_header::SetRequestHeaderLayer::overriding(
            http::header::HeaderName::from_static("x-user"),
            http::HeaderValue::from_static("layered"),
        ))
        .build();
    let mut who = ChatClient::new("chat", layered).whoami().await.unwrap();
    let who = who.recv().await.unwrap().unwrap();
    assert_eq!(who.user.as_deref(), Some("layered"));
    setup.stop().await;
}

#[tokio::test]
async fn the_registry_shows_streams_with_their_kind() {
    let setup = Setup::new(1).await;
    let record = setup.running[0].record().clone();
    let kind = |name: &str| {
        let ep = record
            .endpoints
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} registered"));
        (StreamKind::of(ep), ep.metadata.get("stream").cloned())
    };
    assert_eq!(
        kind("Chat.Echo"),
        (Some(StreamKind::Bidirectional), Some("true".into()))
    );
    assert_eq!(kind("Chat.Sum").0, Some(StreamKind::Client));
    assert_eq!(kind("Chat.Ticks").0, Some(StreamKind::Server));
    assert_eq!(kind("Chat.Squares").0, Some(StreamKind::Bidirectional));
    assert_eq!(kind("Chat.Ping"), (None, None));
    let echo = record
        .endpoints
        .iter()
        .find(|e| e.name == "Chat.Echo")
        .unwrap();
    assert_eq!((&*echo.request, &*echo.response), ("Line", "Line"));
    setup.stop().await;
}

#[tokio::test]
async fn wrong_uses_of_the_wire_get_clear_errors() {
    let setup = Setup::new(1).await;
    let addr = setup.addr();
    let raw = RawClient::new();
    let upgrade = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let get = |headers: Vec<(&'static str, &'static str)>, path: &'static str| {
        let raw = raw.clone();
        async move { raw.send("GET", addr, path, &headers, "").await.unwrap() }
    };

    let plain = get(vec![], "/").await;
    assert!(plain.expect_error(426).contains("WebSocket upgrade"));
    assert_eq!(plain.header("upgrade"), Some("websocket"));

    let mut h = upgrade.to_vec();
    h.push(("micro-endpoint", "Chat.Nope"));
    assert_eq!(
        get(h, "/").await.expect_error(404),
        "endpoint Chat.Nope not found"
    );
    assert_eq!(
        get(upgrade.to_vec(), "/?endpoint=Chat.Ping")
            .await
            .expect_error(400),
        "endpoint Chat.Ping is not a stream: call it with POST /"
    );
    assert!(
        get(upgrade.to_vec(), "/")
            .await
            .expect_error(400)
            .starts_with("missing endpoint")
    );
    assert!(
        get(
            upgrade.to_vec(),
            "/?endpoint=Chat.Echo&content_type=text%2Fplain"
        )
        .await
        .expect_error(415)
        .contains("text/plain")
    );
    let mut h = upgrade.to_vec();
    h.retain(|(k, _)| *k != "sec-websocket-version");
    assert!(
        get(h, "/?endpoint=Chat.Echo")
            .await
            .expect_error(400)
            .contains("Sec-WebSocket-Version")
    );
    let post = raw.call(addr, "Chat.Echo", &[], "{}").await;
    assert!(post.expect_error(400).contains("is a stream"));
    // The plain endpoint still works beside the streams.
    assert_eq!(raw.call(addr, "Chat.Ping", &[], "").await.json(), "pong");
    setup.stop().await;
}

/// A generic WebSocket client: the frames as WIRE.md describes them.
async fn connect(
    addr: std::net::SocketAddr,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let request = format!("ws://{addr}/?{query}")
        .into_client_request()
        .unwrap();
    let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    ws
}

async fn next_close(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> (u16, String) {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_raw_frames_as_a_generic_websocket_client_sees_them() {
    let setup = Setup::with(1, |s| s.max_body_size(1024)).await;
    let addr = setup.addr();

    // JSON: text frames both ways, the empty frame as the half-close, then
    // a normal close.
    let mut ws = connect(addr, "endpoint=Chat.Echo").await;
    ws.send(Message::text(r#"{"n":1,"text":"hi"}"#))
        .await
        .unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => assert_eq!(t.as_str(), r#"{"n":1,"text":"hi"}"#),
        other => panic!("expected text, got {other:?}"),
    }
    ws.send(Message::text("")).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => assert!(t.is_empty(), "the server's half-close"),
        other => panic!("expected the empty frame, got {other:?}"),
    }
    assert_eq!(next_close(&mut ws).await.0, 1000);

    // MessagePack: binary frames.
    let mut ws = connect(addr, "endpoint=Chat.Echo&content_type=application/msgpack").await;
    let body = rmp_serde::to_vec_named(&line(7)).unwrap();
    ws.send(Message::binary(body.clone())).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Binary(b) => assert_eq!(&b[..], &body[..]),
        other => panic!("expected binary, got {other:?}"),
    }
    drop(ws);

    // A message that does not decode: 4400 with the reason.
    let mut ws = connect(addr, "endpoint=Chat.Echo").await;
    ws.send(Message::text("not json")).await.unwrap();
    let (code, reason) = next_close(&mut ws).await;
    assert_eq!(code, 4400);
    assert!(
        reason.starts_with("stream message does not decode"),
        "{reason}"
    );

    // A message over the limit: 4413.
    let mut ws = connect(addr, "endpoint=Chat.Echo").await;
    let big = format!(r#"{{"n":1,"text":"{}"}}"#, "x".repeat(2000));
    ws.send(Message::text(big)).await.unwrap();
    let (code, reason) = next_close(&mut ws).await;
    assert_eq!(code, 4413, "{reason}");

    // A handler error: 4000 + code.
    let mut ws = connect(addr, "endpoint=Chat.FailAfter").await;
    ws.send(Message::text("0")).await.unwrap();
    assert_eq!(
        next_close(&mut ws).await,
        (4409, "stopped after 0".to_owned())
    );

    // Data after the half-close: 4400, even while the handler is busy.
    let mut ws = connect(addr, "endpoint=Chat.Ticks").await;
    ws.send(Message::text("1000")).await.unwrap();
    ws.send(Message::text("")).await.unwrap();
    ws.send(Message::text("1")).await.unwrap();
    let (code, reason) = next_close(&mut ws).await;
    assert_eq!(code, 4400, "{reason}");
    assert!(
        reason.starts_with("message after the half-close"),
        "{reason}"
    );

    // The server is still up.
    let mut chat = setup.client().echo().await.unwrap();
    chat.send(line(1)).await.unwrap();
    assert_eq!(chat.recv().await.unwrap(), Some(line(1)));
    // An open stream would hold a graceful stop for its grace period.
    drop(chat);
    setup.stop().await;
}

#[tokio::test]
async fn a_closing_client_gets_its_close_answered() {
    let setup = Setup::new(1).await;
    let mut ws = connect(setup.addr(), "endpoint=Chat.Wait").await;
    setup.live.until(1, Duration::from_secs(1)).await;
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    // The server answers the close, and the connection ends.
    let rest = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(rest.is_ok(), "the server answered the close");
    setup.live.until(0, Duration::from_secs(1)).await;
    setup.stop().await;
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_websockets),
    ignore = "needs python3 with websockets: set MICRO_TEST_WEBSOCKETS=1"
)]
async fn a_python_websockets_client_drives_streams() {
    let have = micro_tests::python_has("websockets.sync.client");
    micro_tests::require_tool(
        have,
        "MICRO_TEST_WEBSOCKETS",
        "python3 websockets",
        "pip install websockets",
    );
    let setup = Setup::new(1).await;
    let script = r#"
import json, sys
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed

addr = sys.argv[1]

def closed(ws):
    try:
        ws.recv()
    except ConnectionClosed as e:
        return (e.rcvd.code, e.rcvd.reason)
    raise SystemExit("expected the close")

# Bidirectional, JSON text frames, endpoint in the query.
with connect(f"ws://{addr}/?endpoint=Chat.Echo") as ws:
    for n in range(100):
        ws.send(json.dumps({"n": n, "text": f"py {n}"}))
    for n in range(100):
        assert json.loads(ws.recv()) == {"n": n, "text": f"py {n}"}
    ws.send("")
    assert ws.recv() == "", "the server's half-close"
    print("echo", closed(ws))

# Client streaming, endpoint in the header.
with connect(f"ws://{addr}/", additional_headers={"Micro-Endpoint": "Chat.Sum"}) as ws:
    for n in range(1, 11):
        ws.send(str(n))
    ws.send("")
    total = json.loads(ws.recv())
    assert ws.recv() == ""
    print("sum", total, closed(ws)[0])

# Server streaming with metadata on the upgrade; it takes no request.
with connect(f"ws://{addr}/?endpoint=Chat.Whoami", additional_headers={"X-User": "py"}) as ws:
    print("whoami", json.loads(ws.recv())["user"])

# A handler error is the close code.
with connect(f"ws://{addr}/?endpoint=Chat.FailAfter") as ws:
    ws.send("2")
    got = [json.loads(ws.recv()) for _ in range(2)]
    print("fail", got, closed(ws))
"#;
    let stdout = micro_tests::python(script, vec![setup.addr().to_string()]).await;
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "echo (1000, '')",
            "sum 55 1000",
            "whoami py",
            "fail [0, 1] (4409, 'stopped after 2')",
        ]
    );
    setup.stop().await;
}

#[tokio::test]
#[cfg_attr(
    not(micro_test_browser),
    ignore = "needs chromium: set MICRO_TEST_BROWSER=1"
)]
async fn a_browser_drives_a_stream() {
    let setup = Setup::new(1).await;
    // The page reports its result by loading an image from here.
    let report = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // A page that opens the stream the way browsers must: the endpoint in
    // the query, since a browser cannot set headers on a WebSocket.
    let page = format!(
        r#"<html><body><script>
const ws = new WebSocket("ws://{}/?endpoint=Chat.Echo");
const got = [];
const report = (text) => {{ new Image().src = "http://{}/result?" + encodeURIComponent(text); }};
ws.onopen = () => {{
  for (let n = 0; n < 3; n++) ws.send(JSON.stringify({{n, text: "browser " + n}}));
  ws.send("");
}};
ws.onmessage = (e) => got.push(e.data);
ws.onclose = (e) => {{
  const texts = got.filter((m) => m !== "").map((m) => JSON.parse(m).text);
  report([e.code, got.length, texts.join("|"), got[got.length - 1] === "" ? "end" : "no-end"].join(" "));
}};
ws.onerror = () => report("error");
</script></body></html>"#,
        setup.addr(),
        report.local_addr().unwrap()
    );
    let dir = std::env::temp_dir().join(format!("micro-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("stream.html");
    std::fs::write(&file, page).unwrap();
    let mut browser = micro_tests::chromium(&dir.join("profile"))
        .arg(format!("file://{}", file.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(30), report.accept())
        .await
        .expect("the page reports within 30 s")
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        use tokio::io::AsyncReadExt;
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "the report request ended early");
        head.extend_from_slice(&buf[..n]);
    }
    {
        use tokio::io::AsyncWriteExt;
        let _ = conn
            .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .await;
    }
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let head = String::from_utf8_lossy(&head);
    let query = head
        .split_whitespace()
        .nth(1)
        .and_then(|target| target.split_once('?'))
        .map(|(_, q)| q.to_owned())
        .unwrap_or_else(|| panic!("no result in the report: {head}"));
    assert_eq!(
        percent_decode(&query),
        "1000 4 browser 0|browser 1|browser 2 end",
        "close code, messages, texts, the server's half-close"
    );
    setup.stop().await;
}

/// Decodes `%XX` escapes, as `encodeURIComponent` makes them.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn accepted_connections_keep_alive_so_a_vanished_peer_is_found() {
    let setup = Setup::new(1).await;
    let port = setup.addr().port();
    let mut stream = setup.client().echo().await.unwrap();
    stream.send(line(1)).await.unwrap();
    assert_eq!(stream.recv().await.unwrap(), Some(line(1)));
    // The server's end of the stream's connection has a keepalive timer.
    // `ss` shows one timer per socket, so while a segment waits for its
    // acknowledgement it shows the retransmission timer instead: look again.
    let mut text = String::new();
    for _ in 0..40 {
        let out = std::process::Command::new("ss")
            .args(["-tno", "state", "established"])
            .arg(format!("( sport = :{port} )"))
            .output()
            .expect("ss (iproute2) is installed");
        text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("timer:(keepalive,") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text.contains("timer:(keepalive,"), "{text}");
    drop(stream);
    setup.stop().await;
}
