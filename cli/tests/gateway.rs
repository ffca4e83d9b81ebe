//! `micro gateway` in a process of its own, in front of services in this
//! test's process: the HTTP API and its streams, errors passed through,
//! the bind and token rules, the MCP server (Python's `mcp` client, over
//! HTTP and stdio) and the dashboard (headless Chromium, driven over the
//! DevTools protocol). Tests with mDNS run in a network namespace of
//! their own.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use micro::registry::MdnsRegistry;
use micro::{Result, handler, service};
use micro_tests::netns::isolated;
use micro_tests::{Greeter, RawClient};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message as Ws;

const MICRO: &str = env!("CARGO_BIN_EXE_micro");

/// What to quote.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Quote {
    /// The item.
    pub item: String,
    /// How many; one when not given.
    pub quantity: Option<u32>,
    /// How fast it ships.
    pub speed: Speed,
}

/// Shipping speeds.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Speed {
    /// In a week.
    Standard,
    /// Tomorrow.
    Express,
}

/// A price.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Price {
    /// The item quoted.
    pub item: String,
    /// The price in cents.
    pub cents: u64,
}

/// A shop whose request and reply types have JSON Schemas.
#[derive(Debug)]
pub struct Shop;

#[service]
impl Shop {
    /// Quotes the price of an item.
    #[handler]
    async fn quote(&self, quote: Quote) -> Result<Price> {
        if quote.item.is_empty() {
            return Err(micro::Error::bad_request("an item is needed"));
        }
        let each = match quote.speed {
            Speed::Standard => 250,
            Speed::Express => 400,
        };
        Ok(Price {
            item: quote.item,
            cents: each * u64::from(quote.quantity.unwrap_or(1)),
        })
    }
}

/// A service on loopback, registered with mDNS.
async fn start(name: &str, handler: impl micro::server::Handler) -> micro::ServiceHandle {
    micro::Service::new(name)
        .address("127.0.0.1:0")
        .registry(Arc::new(MdnsRegistry::new()))
        .handle(handler)
        .start()
        .await
        .expect("the service starts")
}

/// The gateway binary with `args`, on mDNS and the HTTP broker.
fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(MICRO);
    cmd.arg("gateway")
        .args(args)
        .env("MICRO_REGISTRY", "mdns")
        .env_remove("MICRO_PROFILE")
        .env_remove("MICRO_BROKER")
        .env_remove("MICRO_AUTH")
        .env_remove("MICRO_GATEWAY_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A running gateway and the address it serves.
struct Gateway {
    _child: Child,
    addr: String,
}

/// Starts `micro gateway` and waits for the line naming its address.
async fn gateway(args: &[&str], env: &[(&str, &str)]) -> Gateway {
    let mut cmd = command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("micro gateway runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("micro gateway on http://") {
                return rest.split_once(": ").unwrap().0.to_owned();
            }
            eprintln!("gateway: {line}");
        }
        panic!("the gateway exited before serving");
    })
    .await
    .expect("the gateway serves within 20 s");
    // Keep reading, so that its logs never block it.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("gateway: {line}");
        }
    });
    Gateway {
        _child: child,
        addr,
    }
}

/// `POST /<service>/<endpoint>` through the gateway, retried while the
/// gateway has not yet found the service by mDNS (404).
async fn call(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> micro_tests::Raw {
    let raw = RawClient::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = raw
            .send("POST", &gw.addr, path, headers, body.to_owned())
            .await
            .expect("the gateway answers");
        if reply.status != 404 || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> micro_tests::Raw {
    RawClient::new()
        .send("GET", addr, path, headers, "")
        .await
        .expect("the gateway answers")
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes a network namespace for mDNS"
)]
fn calls_streams_and_errors_through_the_gateway() {
    isolated(|| async {
        let shop = start("shop", Shop).await;
        let greeter = start("greeter", Greeter).await;
        let gw = gateway(&["--address", "127.0.0.1:0"], &[]).await;
        let json_type = [("content-type", "application/json")];

        // A call by name, its reply as the service gave it.
        let reply = call(
            &gw,
            "/shop/Shop.Quote",
            &json_type,
            r#"{"item": "tea", "quantity": 3, "speed": "express"}"#,
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.json(), json!({"item": "tea", "cents": 1200}));

        // Metadata and the deadline reach the handler.
        let reply = call(
            &gw,
            "/greeter/Greeter.Whoami",
            &[("x-user", "carol"), ("timeout", "2000000000")],
            "",
        )
        .await;
        let seen = reply.json();
        assert_eq!(seen["user"], "carol", "{seen}");
        assert!(seen["remaining_ms"].as_u64().unwrap() <= 2000, "{seen}");

        // MessagePack in and out.
        let body = rmp_serde::to_vec_named(&json!({"name": "pack"})).unwrap();
        let reply = RawClient::new()
            .send(
                "POST",
                &gw.addr,
                "/greeter/Greeter.Hello",
                &[("content-type", "application/msgpack")],
                body,
            )
            .await
            .unwrap();
        assert_eq!(reply.header("content-type"), Some("application/msgpack"));
        let greeting: Value = rmp_serde::from_slice(&reply.body).unwrap();
        assert_eq!(greeting["message"], "Hello pack");

        // The service's errors, passed through with their code and id.
        let reply = call(
            &gw,
            "/greeter/Greeter.Fail",
            &json_type,
            r#"{"code": 409, "detail": "already taken"}"#,
        )
        .await;
        assert_eq!(reply.expect_error(409), "already taken");
        // A body the service's types refuse: the service's 400.
        let reply = call(&gw, "/shop/Shop.Quote", &json_type, r#"{"item": 5}"#).await;
        let detail = reply.expect_error(400);
        assert!(detail.contains("expected a string"), "{detail}");
        assert_eq!(reply.json()["id"], "shop", "the service answered");
        let reply = call(
            &gw,
            "/shop/Shop.Quote",
            &json_type,
            r#"{"item": "", "speed": "standard"}"#,
        )
        .await;
        assert_eq!(reply.expect_error(400), "an item is needed");
        // No such service, no such endpoint.
        let reply = RawClient::new()
            .send("POST", &gw.addr, "/nosuch/No.Such", &json_type, "{}")
            .await
            .unwrap();
        let detail = reply.expect_error(404);
        assert!(detail.contains("nosuch"), "{detail}");
        let reply = call(&gw, "/shop/Shop.Nothing", &json_type, "{}").await;
        reply.expect_error(404);
        // What the gateway itself refuses.
        let reply = call(
            &gw,
            "/greeter/Greeter.Hello",
            &[("content-type", "text/plain")],
            "hi",
        )
        .await;
        reply.expect_error(415);
        let reply = call(&gw, "/greeter/Greeter.Whoami", &[("timeout", "soon")], "").await;
        reply.expect_error(400);
        let reply = get(&gw.addr, "/greeter/Greeter.Hello", &[]).await;
        reply.expect_error(405);
        let reply = get(&gw.addr, "/no/such/path", &[]).await;
        reply.expect_error(404);

        // A stream through the gateway, both ways, and its end.
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/greeter/Greeter.Talk", gw.addr))
                .await
                .expect("the stream opens");
        let pid = next_text(&mut ws).await;
        assert_eq!(pid, format!("\"{}\"", std::process::id()));
        for word in ["one", "two"] {
            ws.send(Ws::text(format!("\"{word}\""))).await.unwrap();
            let echoed = next_text(&mut ws).await;
            assert_eq!(echoed, format!("\"{}: {word}\"", std::process::id()));
        }
        ws.send(Ws::text("")).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "", "the service's end");
        match ws.next().await {
            Some(Ok(Ws::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1000),
            other => panic!("expected a close, got {other:?}"),
        }
        // A stream to a service that is not there: refused before the
        // upgrade, with the error's status.
        let refused =
            tokio_tungstenite::connect_async(format!("ws://{}/nosuch/No.Such", gw.addr)).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 404);
            }
            other => panic!("expected 404, got {other:?}"),
        }

        // What the dashboard reads.
        let services = get(&gw.addr, "/api/services", &[]).await.json();
        let names: Vec<&str> = services
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"shop") && names.contains(&"greeter"),
            "{services}"
        );
        let records = get(&gw.addr, "/api/services/shop", &[]).await.json();
        let quote = &records[0]["endpoints"][0];
        assert_eq!(quote["name"], "Shop.Quote");
        assert_eq!(
            quote["metadata"]["description"],
            "Quotes the price of an item."
        );
        assert_eq!(
            quote["request_schema"]["required"],
            json!(["item", "speed"])
        );
        let health = get(&gw.addr, "/api/health/shop", &[]).await.json();
        assert_eq!(health[0]["status"], "up", "{health}");
        assert_eq!(health[0]["address"], shop.local_addr().to_string());
        get(&gw.addr, "/api/services/nosuch", &[])
            .await
            .expect_error(404);

        // The live tail of a topic.
        let (mut tail, _) =
            tokio_tungstenite::connect_async(format!("ws://{}/api/topics/orders.placed", gw.addr))
                .await
                .expect("the tail opens");
        let client = micro::Client::builder()
            .registry(Arc::new(MdnsRegistry::new()))
            .build();
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                // The tail's subscriber is found by mDNS: publish until it is.
                let _ = client.publish("orders.placed", &json!({"order": 7})).await;
                if let Ok(Some(Ok(Ws::Text(text)))) =
                    tokio::time::timeout(Duration::from_millis(300), tail.next()).await
                {
                    return serde_json::from_str::<Value>(&text).unwrap();
                }
            }
        })
        .await
        .expect("a message reaches the tail within 20 s");
        assert_eq!(got["topic"], "orders.placed");
        assert_eq!(got["payload"], json!({"order": 7}));
        assert!(!got["id"].as_str().unwrap().is_empty());
        tail.close(None).await.unwrap();

        // Still serving after all of that.
        let reply = call(
            &gw,
            "/greeter/Greeter.Hello",
            &json_type,
            r#"{"name": "end"}"#,
        )
        .await;
        assert_eq!(reply.json()["message"], "Hello end");
        greeter.stop().await.unwrap();
        shop.stop().await.unwrap();
    });
}

async fn next_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = std::result::Result<Ws, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Ws::Text(text)))) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[test]
#[cfg_attr(
    not(micro_test_root),
    ignore = "needs root: it makes a network namespace for mDNS"
)]
fn beyond_loopback_the_gateway_needs_auth_or_open() {
    isolated(|| async {
        // Another address, neither auth nor --open: refused at start.
        let out = command(&["--address", "0.0.0.0:0"]).output().await.unwrap();
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("refusing to serve 0.0.0.0") && text.contains("--open"),
            "{text}"
        );
        // Told so explicitly, it serves.
        let open = gateway(&["--address", "0.0.0.0:0", "--open"], &[]).await;
        let port = open.addr.rsplit_once(':').unwrap().1;
        let reply = get(&format!("127.0.0.1:{port}"), "/api/services", &[]).await;
        assert_eq!(reply.status, 200);
        drop(open);

        // With an issuer to verify tokens against, every request needs one.
        let issuer = micro::auth::Auth::issuer("issuer").build().unwrap();
        let issuing = micro::Service::new("issuer")
            .address("127.0.0.1:0")
            .registry(Arc::new(MdnsRegistry::new()))
            .auth(issuer.clone())
            .start()
            .await
            .unwrap();
        let greeter = start("greeter", Greeter).await;
        let guarded = gateway(
            &[
                "--address",
                "0.0.0.0:0",
                "--auth",
                &issuing.local_addr().to_string(),
            ],
            &[],
        )
        .await;
        // Served on every address; reached here on loopback.
        let port = guarded.addr.rsplit_once(':').unwrap().1.to_owned();
        let gw = Gateway {
            addr: format!("127.0.0.1:{port}"),
            ..guarded
        };
        let hello = r#"{"name": "tok"}"#;
        let json_type = ("content-type", "application/json");
        let reply = RawClient::new()
            .send(
                "POST",
                &gw.addr,
                "/greeter/Greeter.Hello",
                &[json_type],
                hello,
            )
            .await
            .unwrap();
        reply.expect_error(401);
        get(&gw.addr, "/api/services", &[]).await.expect_error(401);
        let reply = get(
            &gw.addr,
            "/api/services",
            &[("authorization", "Bearer garbage")],
        )
        .await;
        reply.expect_error(401);
        // The dashboard's page itself holds no data: it loads, and asks
        // for a token.
        let page = get(&gw.addr, "/", &[]).await;
        assert_eq!(page.status, 200);
        let account = micro::auth::Account::new(
            "alice",
            micro::auth::AccountKind::User,
            vec!["orders".into()],
        );
        let token = issuer
            .issue(
                &account,
                micro::auth::TokenKind::Access,
                Duration::from_secs(300),
            )
            .unwrap();
        let bearer = format!("Bearer {token}");
        let reply = call(
            &gw,
            "/greeter/Greeter.Hello",
            &[json_type, ("authorization", &bearer)],
            hello,
        )
        .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.json()["message"], "Hello tok");
        // A WebSocket carries it in the query.
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://{}/greeter/Greeter.Talk?token={token}",
            gw.addr
        ))
        .await
        .expect("the stream opens with a token");
        assert_eq!(
            next_text(&mut ws).await,
            format!("\"{}\"", std::process::id())
        );
        let refused =
            tokio_tungstenite::connect_async(format!("ws://{}/greeter/Greeter.Talk", gw.addr))
                .await;
        assert!(
            matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401),
            "{refused:?}"
        );
        greeter.stop().await.unwrap();
        issuing.stop().await.unwrap();
    });
}

#[cfg(feature = "etcd")]
#[tokio::test]
async fn a_gateway_whose_registry_is_down_answers_503() {
    // etcd where nothing listens: the registry cannot be reached.
    let gw = gateway(
        &["--address", "127.0.0.1:0"],
        &[
            ("MICRO_REGISTRY", "etcd"),
            ("MICRO_REGISTRY_ADDRESS", "http://127.0.0.1:1"),
        ],
    )
    .await;
    let reply = RawClient::new()
        .send(
            "POST",
            &gw.addr,
            "/greeter/Greeter.Hello",
            &[("content-type", "application/json")],
            r#"{"name": "x"}"#,
        )
        .await
        .unwrap();
    reply.expect_error(503);
    get(&gw.addr, "/api/services", &[]).await.expect_error(503);
    get(&gw.addr, "/api/services/greeter", &[])
        .await
        .expect_error(503);
}

/// Lists the gateway's tools and calls two, over streamable HTTP (argv[1]
/// is the URL) or stdio (argv[1] is `stdio`, argv[2] the micro binary).
const MCP_CLIENT: &str = r#"
import asyncio, json, sys, traceback
from mcp import ClientSession

async def session_run(read, write):
    async with ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        tools = [t.model_dump(by_alias=True, exclude_none=True) for t in listed.tools]
        quote = await session.call_tool("shop_Shop_Quote", {"item": "tea", "speed": "standard", "quantity": 2})
        failed = await session.call_tool("greeter_Greeter_Fail", {"code": 409, "detail": "taken"})
        quote = quote.model_dump(by_alias=True)
        failed = failed.model_dump(by_alias=True)
        print(json.dumps({
            "tools": tools,
            "quote": {"error": bool(quote.get("isError")), "text": quote["content"][0]["text"],
                      "structured": quote.get("structuredContent")},
            "failed": {"error": bool(failed.get("isError")), "text": failed["content"][0]["text"]},
        }))

async def main():
    if sys.argv[1] == "stdio":
        from mcp.client.stdio import stdio_client, StdioServerParameters
        params = StdioServerParameters(command=sys.argv[2], args=["gateway", "--stdio"],
                                       env={"MICRO_REGISTRY": "mdns", "PATH": "/usr/bin:/bin"})
        async with stdio_client(params) as streams:
            await session_run(streams[0], streams[1])
    else:
        from mcp.client.streamable_http import streamable_http_client
        async with streamable_http_client(sys.argv[1]) as streams:
            await session_run(streams[0], streams[1])

try:
    asyncio.run(main())
except BaseException as e:
    # Every exception of a group, not just its summary.
    traceback.print_exception(e)
    sys.exit(1)
"#;

#[test]
#[cfg_attr(
    not(all(micro_test_root, micro_test_mcp)),
    ignore = "needs root (a network namespace for mDNS) and Python's mcp: set MICRO_TEST_MCP=1"
)]
fn an_mcp_client_lists_and_calls_the_endpoints_as_tools() {
    micro_tests::require_tool(
        micro_tests::python_has("mcp"),
        "MICRO_TEST_MCP",
        "Python's mcp package",
        "pip install mcp",
    );
    isolated(|| async {
        let shop = start("shop", Shop).await;
        let greeter = start("greeter", Greeter).await;
        let gw = gateway(&["--address", "127.0.0.1:0"], &[]).await;
        // Wait until the gateway sees both services.
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(&gw.addr, "/api/services", &[])
            .await
            .json()
            .as_array()
            .unwrap()
            .len()
            < 2
        {
            assert!(Instant::now() < deadline, "the gateway finds both services");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        for transport in ["http", "stdio"] {
            let args = match transport {
                "http" => vec![format!("http://{}/mcp", gw.addr)],
                _ => vec!["stdio".to_owned(), MICRO.to_owned()],
            };
            let out = micro_tests::python(MCP_CLIENT, args).await;
            let seen: Value =
                serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
            let tools = seen["tools"].as_array().unwrap();
            let tool = |name: &str| {
                tools
                    .iter()
                    .find(|t| t["name"] == name)
                    .unwrap_or_else(|| panic!("{transport}: no tool {name} in {seen}"))
            };
            // Names MCP clients take: no dots.
            assert!(
                tools.iter().all(|t| t["name"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')),
                "{seen}"
            );
            let quote = tool("shop_Shop_Quote");
            assert!(
                quote["description"]
                    .as_str()
                    .unwrap()
                    .starts_with("Quotes the price of an item."),
                "{quote}"
            );
            assert_eq!(quote["inputSchema"]["type"], "object");
            assert_eq!(quote["inputSchema"]["required"], json!(["item", "speed"]));
            assert_eq!(
                quote["inputSchema"]["properties"]["item"]["description"],
                "The item."
            );
            // A stream is not a tool; unary endpoints without a schema are.
            assert!(tools.iter().all(|t| t["name"] != "greeter_Greeter_Talk"));
            tool("greeter_Greeter_Hello");
            // Calls: the reply, and an error the model can read.
            assert_eq!(seen["quote"]["error"], false, "{seen}");
            assert_eq!(
                seen["quote"]["structured"],
                json!({"item": "tea", "cents": 500})
            );
            assert_eq!(seen["failed"]["error"], true, "{seen}");
            let failed: Value =
                serde_json::from_str(seen["failed"]["text"].as_str().unwrap()).unwrap();
            assert_eq!(failed["code"], 409);
            assert_eq!(failed["detail"], "taken");
        }
        greeter.stop().await.unwrap();
        shop.stop().await.unwrap();
    });
}

/// A DevTools protocol session with one page of Chromium.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    /// Every event seen, in order.
    events: Vec<Value>,
}

impl Cdp {
    async fn send(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let message = json!({"id": id, "method": method, "params": params});
        self.ws.send(Ws::text(message.to_string())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within 20 s"));
            let Some(Ok(Ws::Text(text))) = frame else {
                panic!("{method}: the browser went away: {frame:?}");
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
            self.events.push(value);
        }
    }

    /// Evaluates `expression` in the page; its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .send(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    async fn until(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(expression).await != json!(true) {
            assert!(Instant::now() < deadline, "the page never showed {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[test]
#[cfg_attr(
    not(all(micro_test_root, micro_test_browser)),
    ignore = "needs root (a network namespace for mDNS) and chromium: set MICRO_TEST_BROWSER=1"
)]
fn the_dashboard_lists_services_and_calls_one_from_its_form() {
    isolated(|| async {
        let shop = start("shop", Shop).await;
        let greeter = start("greeter", Greeter).await;
        let gw = gateway(&["--address", "127.0.0.1:0"], &[]).await;

        let profile = std::env::temp_dir().join(format!("micro-dashboard-{}", std::process::id()));
        let mut browser = micro_tests::chromium(&profile)
            .args([
                "--window-size=1400,900",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        // "DevTools listening on ws://127.0.0.1:<port>/devtools/browser/<id>"
        let mut lines = BufReader::new(browser.stderr.take().unwrap()).lines();
        let devtools = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.to_owned();
                }
            }
            panic!("chromium exited before listening");
        })
        .await
        .expect("chromium's DevTools listen within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = devtools
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let targets = get(&format!("127.0.0.1:{port}"), "/json/list", &[])
            .await
            .json();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page")["webSocketDebuggerUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        let (ws, _) = tokio_tungstenite::connect_async(page).await.unwrap();
        let mut cdp = Cdp {
            ws,
            next: 0,
            events: Vec::new(),
        };
        cdp.send("Runtime.enable", json!({})).await;
        cdp.send("Log.enable", json!({})).await;
        cdp.send("Page.enable", json!({})).await;
        cdp.send(
            "Page.navigate",
            json!({"url": format!("http://{}/", gw.addr)}),
        )
        .await;

        // The running services are listed.
        cdp.until(
            r#"!!document.querySelector('a[data-service="shop"]') && !!document.querySelector('a[data-service="greeter"]')"#,
            "both services",
        )
        .await;
        // A service's page: its node with its health, and its endpoint's form.
        cdp.eval(r#"document.querySelector('a[data-service="shop"]').click(); true"#)
            .await;
        cdp.until(
            r#"!!document.querySelector('form[data-endpoint="Shop.Quote"] input[name="item"]')"#,
            "the Quote form",
        )
        .await;
        cdp.until(
            r#"(document.querySelector('#nodes .node-health') || {}).textContent === 'up'"#,
            "the node's health",
        )
        .await;
        let shown = cdp
            .eval(r#"document.querySelector('#service').textContent"#)
            .await;
        let shown = shown.as_str().unwrap();
        assert!(shown.contains("Quotes the price of an item."), "{shown}");
        assert!(shown.contains(&shop.local_addr().to_string()), "{shown}");
        // Fill the form from its fields, as a person would, and call.
        cdp.eval(
            r#"(() => {
                const form = document.querySelector('form[data-endpoint="Shop.Quote"]');
                const set = (name, value) => {
                    const input = form.querySelector(`[name="${name}"]`);
                    input.value = value;
                    input.dispatchEvent(new Event('input', { bubbles: true }));
                    input.dispatchEvent(new Event('change', { bubbles: true }));
                };
                set('item', 'coffee');
                set('quantity', '2');
                set('speed', JSON.stringify('express'));
                form.querySelector('button[type="submit"]').click();
                return true;
            })()"#,
        )
        .await;
        cdp.until(
            r#"(() => { const r = document.querySelector('form[data-endpoint="Shop.Quote"] pre.result'); return !!r && r.dataset.status === '200'; })()"#,
            "the call's reply",
        )
        .await;
        let result = cdp
            .eval(r#"document.querySelector('form[data-endpoint="Shop.Quote"] pre.result').textContent"#)
            .await;
        let result = result.as_str().unwrap();
        assert!(result.starts_with("200"), "{result}");
        assert!(
            result.contains(r#""item": "coffee""#) && result.contains(r#""cents": 800"#),
            "{result}"
        );

        // The screenshot, kept as the test's artefact.
        let shot = cdp
            .send("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            shot["data"].as_str().unwrap(),
        )
        .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let artefact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        std::fs::write(&artefact, &png).unwrap();
        eprintln!("dashboard screenshot: {}", artefact.display());

        // Nothing went wrong in the browser's console.
        let errors: Vec<&Value> = cdp
            .events
            .iter()
            .filter(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => true,
                Some("Runtime.consoleAPICalled") => {
                    matches!(e["params"]["type"].as_str(), Some("error" | "assert"))
                }
                Some("Log.entryAdded") => e["params"]["entry"]["level"] == "error",
                _ => false,
            })
            .collect();
        assert!(errors.is_empty(), "browser console errors: {errors:?}");

        let _ = browser.kill().await;
        let _ = std::fs::remove_dir_all(&profile);
        greeter.stop().await.unwrap();
        shop.stop().await.unwrap();
    });
}
