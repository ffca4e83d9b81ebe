//! The promises that hold under abuse: an oversized body or message is
//! reported as 413 every time, slow or silent peers do not hold the server,
//! bad framing gets its proper answer, and every error keeps its header.

use std::sync::Arc;
use std::time::Duration;

use micro::client::CallOptions;
use micro::registry::MemoryRegistry;
use micro::{Client, ServiceHandle};
use micro_tests::process::Greeter as Process;
use micro_tests::{Greeter, GreeterClient};

const GREETER: &str = env!("CARGO_BIN_EXE_greeter");

async fn greeter() -> ServiceHandle {
    greeter_with(micro::Service::new("greeter")).await
}

fn client() -> Client {
    Client::builder()
        .registry(Arc::new(MemoryRegistry::new()))
        .build()
}

/// A 5 MiB body against the default 4 MiB limit, to a greeter in its own
/// process: the typed client hears the server's 413 every time, never a
/// reset reported as 503 (which failover would retry on another node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_every_time() {
    let server = Process::spawn(GREETER, &[("MICRO_REGISTRY", "memory")]);
    let greeter = GreeterClient::new("greeter", client());
    let big = "x".repeat(std::env::var("BIG_MB").map_or(5, |v| v.parse().unwrap()) << 20);
    // Four at a time, as a busy client would send them.
    let mut codes = Vec::new();
    for _ in 0..5 {
        let calls = (0..4).map(|_| {
            let opts = CallOptions::new().address(server.addr.clone());
            greeter.echo_with(big.clone(), opts)
        });
        for result in futures_util::future::join_all(calls).await {
            codes.push(result.expect_err("over the limit").code());
        }
    }
    let got = codes.iter().filter(|c| **c == 413).count();
    println!("oversized body: 413 in {got} of 20 calls ({codes:?})");
    assert_eq!(got, 20, "{codes:?}");
    // The server is still there.
    let opts = CallOptions::new().address(server.addr.clone());
    assert_eq!(greeter.echo_with("ok".into(), opts).await.unwrap(), "ok");
}

/// An 8 MiB stream message against the default limit: the client's send
/// goes through and its receive ends with the server's 413 (close 4413),
/// every time.
#[tokio::test]
async fn an_oversized_stream_message_is_413_every_time() {
    let svc = greeter().await;
    let greeter = GreeterClient::new("greeter", client());
    let big = "y".repeat(8 << 20);
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let opts = CallOptions::new().address(svc.local_addr().to_string());
        let mut talk = greeter.talk_with(opts).await.expect("stream opens");
        let pid = talk.recv().await.unwrap().expect("the greeting");
        assert_eq!(pid, std::process::id().to_string());
        let outcome = match talk.send(big.clone()).await {
            Err(e) => format!("send: {} {}", e.code(), e.detail()),
            Ok(()) => match talk.recv().await {
                Err(e) => format!("recv: {}", e.code()),
                Ok(m) => format!("recv: {m:?}"),
            },
        };
        outcomes.push(outcome);
    }
    let got = outcomes.iter().filter(|o| *o == "recv: 413").count();
    println!("oversized stream message: 413 in {got} of 20 streams");
    assert_eq!(got, 20, "{outcomes:?}");
    svc.stop().await.unwrap();
}

/// A raw TCP connection to `addr`, for what no well-behaved client sends.
async fn tcp(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects")
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(conn: &mut tokio::net::TcpStream, limit: Duration) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, conn.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {limit:?}; it sent {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// The error JSON of a raw HTTP response: (status line, body).
fn status_and_body(response: &str) -> (&str, &str) {
    let status = response.lines().next().unwrap_or_default();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body)
}

async fn greeter_with(service: micro::Service) -> ServiceHandle {
    service
        .address("127.0.0.1:0")
        .registry(Arc::new(MemoryRegistry::new()))
        .handle(Greeter)
        .start()
        .await
        .expect("service starts")
}

/// Half a request line is not held for ever: the header read timeout
/// closes the connection.
#[tokio::test]
async fn half_a_request_line_times_out() {
    use tokio::io::AsyncWriteExt;
    let svc = greeter_with(
        micro::Service::new("greeter").header_read_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut c = tcp(svc.local_addr()).await;
        c.write_all(b"POST / HT").await.unwrap();
        conns.push(c);
    }
    for c in &mut conns {
        let sent = read_to_close(c, Duration::from_secs(10)).await;
        assert_eq!(sent, "", "nothing is answered to half a request");
    }
    // Calls still work.
    let raw = micro_tests::RawClient::new();
    let rsp = raw
        .call(svc.local_addr(), "Greeter.Hello", &[], r#"{"name":"a"}"#)
        .await;
    assert_eq!(rsp.status, 200);
    svc.stop().await.unwrap();
}

/// A keep-alive connection with nothing to do is closed after the idle
/// timeout.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let svc =
        greeter_with(micro::Service::new("greeter").idle_timeout(Duration::from_millis(300))).await;
    let mut c = tcp(svc.local_addr()).await;
    let body = r#"{"name":"a"}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nMicro-Endpoint: Greeter.Hello\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = c.read(&mut buf).await.unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.ends_with(r#"{"message":"Hello a"}"#), "{first}");
    // Kept alive, then closed once idle.
    assert_eq!(read_to_close(&mut c, Duration::from_secs(10)).await, "");
    svc.stop().await.unwrap();
}

/// A graceful stop does not wait for connections that never sent a
/// complete request.
#[tokio::test]
async fn a_graceful_stop_does_not_wait_for_half_requests() {
    use tokio::io::AsyncWriteExt;
    let svc =
        greeter_with(micro::Service::new("greeter").grace_period(Duration::from_secs(30))).await;
    let mut half = Vec::new();
    for _ in 0..10 {
        let mut c = tcp(svc.local_addr()).await;
        c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nMicro-End")
            .await
            .unwrap();
        half.push(c);
    }
    // And one idle keep-alive connection that never sent a byte.
    half.push(tcp(svc.local_addr()).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), svc.stop()).await;
    assert!(
        stopped.is_ok(),
        "stop waited for connections with no complete request"
    );
    stopped.unwrap().unwrap();
    for c in &mut half {
        read_to_close(c, Duration::from_secs(2)).await;
    }
}

/// `Timeout` bounds the reading of the body: a caller that promises 1000
/// bytes and sends 10 gets 408 when its deadline passes.
#[tokio::test]
async fn the_deadline_covers_the_body() {
    use tokio::io::AsyncWriteExt;
    let svc = greeter().await;
    for (endpoint_or_topic, what) in [
        ("Micro-Endpoint: Greeter.Echo", "call"),
        ("Micro-Topic: greetings", "event"),
    ] {
        let mut c = tcp(svc.local_addr()).await;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: x\r\n{endpoint_or_topic}\r\nTimeout: 300000000\r\nContent-Length: 1000\r\n\r\n\"0123456"
        );
        c.write_all(request.as_bytes()).await.unwrap();
        let response = read_to_close(&mut c, Duration::from_secs(10)).await;
        let (status, body) = status_and_body(&response);
        assert!(status.starts_with("HTTP/1.1 408"), "{what}: {response}");
        let err = micro::Error::from_json(body.as_bytes()).expect("error JSON");
        assert_eq!(err.code(), 408, "{what}");
        assert!(
            err.detail().contains("request body"),
            "{what}: {}",
            err.detail()
        );
    }
    svc.stop().await.unwrap();
}

/// Without a deadline, the server's body timeout applies.
#[tokio::test]
async fn a_body_that_never_ends_times_out() {
    use tokio::io::AsyncWriteExt;
    let svc =
        greeter_with(micro::Service::new("greeter").body_timeout(Duration::from_millis(300))).await;
    let mut c = tcp(svc.local_addr()).await;
    c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nMicro-Endpoint: Greeter.Echo\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n\"ab\r\n")
        .await
        .unwrap();
    let response = read_to_close(&mut c, Duration::from_secs(10)).await;
    let (status, body) = status_and_body(&response);
    assert!(status.starts_with("HTTP/1.1 408"), "{response}");
    assert!(body.contains("body timeout"), "{body}");
    svc.stop().await.unwrap();
}

/// A transfer coding other than chunked is refused with 501.
#[tokio::test]
async fn transfer_codings_other_than_chunked_are_501() {
    use tokio::io::AsyncWriteExt;
    let svc = greeter().await;
    for coding in ["gzip, chunked", "deflate", "chunked, chunked"] {
        let mut c = tcp(svc.local_addr()).await;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nMicro-Endpoint: Greeter.Echo\r\nTransfer-Encoding: {coding}\r\n\r\n4\r\n\"ab\"\r\n0\r\n\r\n"
        );
        c.write_all(request.as_bytes()).await.unwrap();
        let response = read_to_close(&mut c, Duration::from_secs(10)).await;
        let (status, body) = status_and_body(&response);
        // hyper itself refuses some codings with a bare 400 before a request
        // exists; what reaches micro is refused with its error JSON.
        assert!(
            status.starts_with("HTTP/1.1 501") || status.starts_with("HTTP/1.1 400"),
            "{coding}: {response}"
        );
        if status.starts_with("HTTP/1.1 501") {
            let err = micro::Error::from_json(body.as_bytes()).expect("error JSON");
            assert!(
                err.detail().contains("Transfer-Encoding"),
                "{}",
                err.detail()
            );
        }
        assert!(!status.starts_with("HTTP/1.1 200"), "{coding} was accepted");
    }
    // gzip, chunked in particular is micro's 501.
    let mut c = tcp(svc.local_addr()).await;
    c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nMicro-Endpoint: Greeter.Echo\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4\r\n\"ab\"\r\n0\r\n\r\n").await.unwrap();
    let response = read_to_close(&mut c, Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1.1 501"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("micro-error: {"),
        "{response}"
    );
    svc.stop().await.unwrap();
}

/// An error detail with a byte a header cannot hold (DEL, from the query)
/// still comes in `Micro-Error`, escaped, as the same JSON.
#[tokio::test]
async fn the_error_header_survives_control_bytes() {
    let svc = greeter().await;
    let raw = micro_tests::RawClient::new();
    let rsp = raw
        .send(
            "GET",
            svc.local_addr(),
            "/?endpoint=Greeter.%7F",
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(rsp.status, 404);
    let header = rsp.header("micro-error").expect("Micro-Error is there");
    assert!(header.contains("\\u007f"), "{header}");
    let from_header: serde_json::Value = serde_json::from_str(header).unwrap();
    assert_eq!(
        from_header,
        rsp.json(),
        "the header and the body are the same JSON"
    );
    assert!(
        rsp.json()["detail"]
            .as_str()
            .unwrap()
            .contains("Greeter.\u{7f}")
    );
    svc.stop().await.unwrap();
}

/// A text frame that is not UTF-8 closes the stream with 1007.
#[tokio::test]
async fn invalid_utf8_in_a_text_frame_is_close_1007() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    let svc = greeter().await;
    let url = format!("ws://{}/?endpoint=Greeter.Talk", svc.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let greeting = ws.next().await.unwrap().unwrap();
    assert!(greeting.is_text());
    let frame = Frame::message(vec![b'"', 0xff, 0xfe, b'"'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    let close = match ws.next().await {
        Some(Ok(Message::Close(close))) => close,
        Some(Ok(other)) => panic!("unexpected {other:?}"),
        Some(Err(e)) => panic!("no close frame: {e}"),
        None => panic!("closed without a close frame"),
    };
    let close = close.expect("a close code");
    assert_eq!(close.code, CloseCode::Invalid);
    assert_eq!(u16::from(close.code), 1007);
    svc.stop().await.unwrap();
}

/// Past the limit of open streams an upgrade gets 503; a stream idle past
/// the idle timeout ends with 408.
#[tokio::test]
async fn stream_limits() {
    let svc = greeter_with(
        micro::Service::new("greeter")
            .max_streams(2)
            .stream_idle_timeout(Duration::from_millis(500)),
    )
    .await;
    let greeter = GreeterClient::new("greeter", client());
    let opts = || {
        CallOptions::new()
            .address(svc.local_addr().to_string())
            .retry(micro::client::RetryPolicy::never())
    };
    let mut a = greeter.talk_with(opts()).await.unwrap();
    let mut b = greeter.talk_with(opts()).await.unwrap();
    assert!(a.recv().await.unwrap().is_some());
    assert!(b.recv().await.unwrap().is_some());
    let Err(err) = greeter.talk_with(opts()).await else {
        panic!("the third stream is refused");
    };
    assert_eq!(err.code(), 503);
    assert!(err.detail().contains("2 streams open"), "{}", err.detail());
    // Idle: nothing sent for 500 ms ends both with 408.
    let err = a.recv().await.expect_err("idle stream ends");
    assert_eq!(err.code(), 408, "{}", err.detail());
    assert!(err.detail().contains("idle"), "{}", err.detail());
    let err = b.recv().await.expect_err("idle stream ends");
    assert_eq!(err.code(), 408);
    // A stream that talks stays open past the idle timeout.
    let mut c = greeter.talk_with(opts()).await.unwrap();
    assert!(c.recv().await.unwrap().is_some());
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.send(format!("m{i}")).await.unwrap();
        assert!(c.recv().await.unwrap().unwrap().ends_with(&format!("m{i}")));
    }
    c.close_send().await.unwrap();
    assert_eq!(c.recv().await.unwrap(), None);
    svc.stop().await.unwrap();
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// An idle stream costs a few KiB on the server, not the 140 KiB of
/// tungstenite's default buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_are_cheap() {
    let server = Process::spawn(GREETER, &[("MICRO_REGISTRY", "memory")]);
    let greeter = GreeterClient::new("greeter", client());
    // Warm up: the first stream allocates what every stream shares.
    let opts = || CallOptions::new().address(server.addr.clone());
    let mut warm = greeter.talk_with(opts()).await.unwrap();
    warm.recv().await.unwrap();
    let before = rss_kib(server.pid());
    let mut streams = Vec::new();
    for _ in 0..500 {
        let mut s = greeter.talk_with(opts()).await.unwrap();
        // Each has read its first message: its buffers are in use.
        s.recv().await.unwrap();
        streams.push(s);
    }
    let after = rss_kib(server.pid());
    let per_stream = (after.saturating_sub(before)) as f64 / 500.0;
    println!("idle streams: {before} KiB -> {after} KiB, {per_stream:.1} KiB a stream");
    assert!(per_stream < 40.0, "{per_stream:.1} KiB a stream");
}

/// When the server runs out of file descriptors, it says so (at warn, not
/// once per failed accept) and serves again once they are free.
#[test]
fn accept_errors_are_logged() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(GREETER);
    cmd.stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 48,
                rlim_max: 48,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server =
        Process::spawn_command(cmd, &[("MICRO_REGISTRY", "memory"), ("GREETER_LOG", "1")]);
    let stderr = server.take_stderr().expect("piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let held: Vec<std::net::TcpStream> = (0..80)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    let logged = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the server logs the failed accepts");
    assert!(logged.contains("WARN"), "{logged}");
    assert!(logged.contains("accepting a connection failed"), "{logged}");
    assert!(logged.contains("Too many open files"), "{logged}");
    drop(held);
    // Once the fds are free, it serves again.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answered = runtime.block_on(async {
        let greeter = GreeterClient::new("greeter", client());
        let opts = CallOptions::new()
            .address(server.addr.clone())
            .timeout(Duration::from_secs(10));
        greeter.echo_with("back".into(), opts).await
    });
    assert_eq!(answered.unwrap(), "back");
    // One line, not one per failed accept.
    let more: Vec<String> = lines.try_iter().collect();
    assert!(more.len() <= 2, "{more:?}");
}

/// The same 8 MiB message from Python's websockets: the close code 4413
/// arrives every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(micro_test_websockets),
    ignore = "needs python3 with websockets: set MICRO_TEST_WEBSOCKETS=1"
)]
async fn python_hears_4413_every_time() {
    micro_tests::require_tool(
        micro_tests::python_has("websockets.sync.client"),
        "MICRO_TEST_WEBSOCKETS",
        "python3 websockets",
        "pip install websockets",
    );
    let svc = greeter().await;
    let script = r#"
import sys
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed

codes = []
for _ in range(10):
    with connect(f"ws://{sys.argv[1]}/?endpoint=Greeter.Talk", max_size=None) as ws:
        ws.recv()
        try:
            ws.send("z" * (8 << 20))
            ws.recv()
            codes.append("no close")
        except ConnectionClosed as e:
            codes.append(e.rcvd.code if e.rcvd else None)
print(" ".join(str(c) for c in codes))
"#;
    let stdout = micro_tests::python(script, vec![svc.local_addr().to_string()]).await;
    let got = stdout.split_whitespace().filter(|c| *c == "4413").count();
    println!(
        "python websockets: close 4413 in {got} of 10 ({})",
        stdout.trim()
    );
    assert_eq!(got, 10, "{stdout}");
    svc.stop().await.unwrap();
}

/// HTTP/2 without TLS (prior knowledge) on the same port as HTTP/1.1,
/// from curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_http1_share_the_port() {
    let svc = greeter().await;
    let url = format!("http://{}/", svc.local_addr());
    let out = tokio::task::spawn_blocking(move || {
        let curl = |extra: &[&str]| {
            let mut cmd = std::process::Command::new("curl");
            cmd.args(["-sS", "-XPOST", "-H", "Content-Type: application/json"])
                .args(["-H", "Micro-Endpoint: Greeter.Hello"])
                .args(["-d", r#"{"name":"h2"}"#, "-w", " %{http_version}"])
                .args(extra)
                .arg(&url);
            let out = cmd.output().expect("curl runs");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        (curl(&["--http2-prior-knowledge"]), curl(&["--http1.1"]))
    })
    .await
    .unwrap();
    assert_eq!(out.0, r#"{"message":"Hello h2"} 2"#);
    assert_eq!(out.1, r#"{"message":"Hello h2"} 1.1"#);
    svc.stop().await.unwrap();
}
