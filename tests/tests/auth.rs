//! Auth: rules, tokens and identities through real calls, streams and
//! events on real sockets.

use std::sync::Arc;
use std::time::Duration;

use micro::auth::{Account, AccountKind, Auth, Rule, TokenKind};
use micro::client::CallOptions;
use micro::{Backends, Client, Context, Result, Service, ServiceHandle, handler, service};
use micro_tests::RawClient;
use serde::{Deserialize, Serialize};

/// Who a handler saw.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Who {
    account: Option<String>,
    caller: Option<String>,
}

fn who(ctx: &Context) -> Who {
    Who {
        account: ctx.account().map(|a| a.id.clone()),
        caller: ctx.caller().map(|a| a.id.clone()),
    }
}

struct Orders;

#[service]
impl Orders {
    /// Anyone.
    #[handler(public)]
    async fn menu(&self) -> Result<Vec<String>> {
        Ok(vec!["tea".into()])
    }

    /// Accounts with `orders:write`.
    #[handler(scopes = ["orders:write"])]
    async fn place(&self, ctx: Context, item: String) -> Result<Who> {
        let _ = item;
        Ok(who(&ctx))
    }

    /// Whatever the config rules say.
    #[handler]
    async fn history(&self, ctx: Context) -> Result<Who> {
        Ok(who(&ctx))
    }

    /// A stream for `orders:write`.
    #[handler(scopes = ["orders:write"])]
    async fn track(&self, mut stream: micro::Stream<String, String>) -> Result<()> {
        while let Some(text) = stream.recv().await? {
            stream.send(format!("tracking {text}")).await?;
        }
        Ok(())
    }
}

fn account(id: &str, scopes: &[&str]) -> Account {
    Account::new(
        id,
        AccountKind::User,
        scopes.iter().map(|s| (*s).to_owned()).collect(),
    )
}

async fn serve(auth: &Auth, backends: &Backends) -> ServiceHandle {
    Service::new("orders")
        .address("127.0.0.1:0")
        .backends(backends)
        .auth(auth.clone())
        .handle(Orders)
        .start()
        .await
        .unwrap()
}

/// A raw call with `token`, if any; the status and the error detail.
async fn call(addr: std::net::SocketAddr, endpoint: &str, token: Option<&str>) -> (u16, String) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    let body = if endpoint == "Orders.Place" {
        "\"tea\""
    } else {
        "{}"
    };
    let rsp = RawClient::new().call(addr, endpoint, &headers, body).await;
    let json: serde_json::Value = serde_json::from_slice(&rsp.body).unwrap_or_default();
    let detail = json["detail"].as_str().unwrap_or_default().to_owned();
    (rsp.status.as_u16(), detail)
}

#[tokio::test]
async fn a_table_of_rules_through_real_calls() {
    let auth = Auth::issuer("shop").build().unwrap();
    let backends = Backends::memory();
    let service = serve(&auth, &backends).await;
    let addr = service.local_addr();
    let ttl = Duration::from_secs(60);
    let writer = auth
        .issue(&account("w", &["orders:write"]), TokenKind::Access, ttl)
        .unwrap();
    let reader = auth
        .issue(&account("r", &["orders:read"]), TokenKind::Access, ttl)
        .unwrap();

    struct Case {
        what: &'static str,
        rules: Vec<Rule>,
        endpoint: &'static str,
        token: Option<String>,
        status: u16,
    }
    let case = |what, rules, endpoint, token: Option<&String>, status| Case {
        what,
        rules,
        endpoint,
        token: token.cloned(),
        status,
    };
    let cases = [
        case("public, no token", vec![], "Orders.Menu", None, 200),
        case(
            "public, a garbage token",
            vec![],
            "Orders.Menu",
            Some(&"garbage".to_owned()),
            200,
        ),
        case("scoped, no token", vec![], "Orders.Place", None, 401),
        case(
            "scoped, the scope",
            vec![],
            "Orders.Place",
            Some(&writer),
            200,
        ),
        case(
            "scoped, another scope",
            vec![],
            "Orders.Place",
            Some(&reader),
            403,
        ),
        case(
            "no rules, a token",
            vec![],
            "Orders.History",
            Some(&writer),
            403,
        ),
        case("no rules, no token", vec![], "Orders.History", None, 401),
        case(
            "any account",
            vec![Rule::grant("*", "*")],
            "Orders.History",
            Some(&reader),
            200,
        ),
        case(
            "any account, none",
            vec![Rule::grant("*", "*")],
            "Orders.History",
            None,
            401,
        ),
        case(
            "a wildcard",
            vec![Rule::grant("Orders.Hist*", "orders:read")],
            "Orders.History",
            Some(&reader),
            200,
        ),
        case(
            "a deny above the DSL",
            vec![Rule::deny("Orders.Place", "*").priority(200)],
            "Orders.Place",
            Some(&writer),
            403,
        ),
        case(
            "a deny below the DSL",
            vec![Rule::deny("Orders.Place", "*").priority(5)],
            "Orders.Place",
            Some(&writer),
            200,
        ),
        case(
            "deny beats grant by priority",
            vec![
                Rule::grant("*", "*"),
                Rule::deny("Orders.History", "orders:read").priority(1),
            ],
            "Orders.History",
            Some(&reader),
            403,
        ),
        case(
            "a rule for another service",
            vec![Rule::grant("*", "*").service("billing")],
            "Orders.History",
            Some(&reader),
            403,
        ),
    ];
    for c in cases {
        auth.set_rules(c.rules);
        let (status, detail) = call(addr, c.endpoint, c.token.as_deref()).await;
        assert_eq!(status, c.status, "{}: {detail}", c.what);
        if status == 401 {
            assert!(
                detail.contains("needs a valid token"),
                "{}: {detail}",
                c.what
            );
        }
        if status == 403 {
            assert!(detail.contains("may not call"), "{}: {detail}", c.what);
        }
    }
    service.stop().await.unwrap();
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_short_reason_and_the_server_stays_up() {
    use base64::Engine as _;
    let auth = Auth::issuer("shop")
        .leeway(Duration::ZERO)
        .key_grace(Duration::from_millis(500))
        .build()
        .unwrap();
    let service = serve(&auth, &Backends::memory()).await;
    let addr = service.local_addr();
    let writer = account("w", &["orders:write"]);
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let good = auth
        .issue(&writer, TokenKind::Access, Duration::from_secs(60))
        .unwrap();
    let (_, payload_sig) = good.split_once('.').unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "not.a.jwt".into(), "invalid token: malformed"),
        ("100 KiB", "x".repeat(100 * 1024), "invalid token: too long"),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(serde_json::json!({"alg": "none"})),
                payload_sig.split('.').next().unwrap()
            ),
            "invalid token",
        ),
        (
            "a wrong kid",
            format!(
                "{}.{payload_sig}",
                b64(serde_json::json!({"alg": "EdDSA", "kid": "nope"}))
            ),
            "invalid token: unknown key",
        ),
        (
            "another audience",
            auth.issue_for(
                &writer,
                TokenKind::Access,
                Duration::from_secs(60),
                "billing",
            )
            .unwrap(),
            "invalid token: wrong audience",
        ),
        (
            "a refresh token",
            auth.issue(&writer, TokenKind::Refresh, Duration::from_secs(60))
                .unwrap(),
            "a refresh token is not an access token",
        ),
    ];
    for (what, token, reason) in cases {
        let (status, detail) = call(addr, "Orders.Place", Some(&token)).await;
        assert_eq!(status, 401, "{what}: {detail}");
        assert!(detail.contains(reason), "{what}: {detail}");
        assert!(detail.len() < 200, "{what}: a short reason: {detail}");
    }
    // Expired.
    let expired = auth
        .issue(&writer, TokenKind::Access, Duration::ZERO)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, detail) = call(addr, "Orders.Place", Some(&expired)).await;
    assert_eq!(
        (status, detail.contains("expired")),
        (401, true),
        "{detail}"
    );
    // A rotated-out key: accepted within its grace, refused after.
    auth.rotate_keys().unwrap();
    assert_eq!(
        call(addr, "Orders.Place", Some(&good)).await.0,
        200,
        "within the grace"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, detail) = call(addr, "Orders.Place", Some(&good)).await;
    assert_eq!(
        (status, detail.as_str()),
        (
            401,
            "Orders.Place needs a valid token: invalid token: unknown key"
        )
    );
    // A bearer of another kind, and the server still serves.
    let rsp = RawClient::new()
        .call(
            addr,
            "Orders.Place",
            &[
                ("authorization", "Basic YTpi"),
                ("content-type", "application/json"),
            ],
            "\"tea\"",
        )
        .await;
    assert_eq!(rsp.status.as_u16(), 401);
    let health = RawClient::new()
        .send("GET", addr, "/health", &[], "")
        .await
        .unwrap();
    assert_eq!(health.status.as_u16(), 200);
    service.stop().await.unwrap();
}

#[tokio::test]
async fn the_typed_client_sends_its_token() {
    let auth = Auth::issuer("shop").build().unwrap();
    let backends = Backends::memory();
    let service = serve(&auth, &backends).await;
    let (account, secret) = auth
        .generate("alice", AccountKind::User, &["orders:write"])
        .await
        .unwrap();
    let tokens = auth.token(&account.id, &secret).await.unwrap();
    let anonymous = OrdersClient::new("orders", Client::builder().backends(&backends).build());
    assert_eq!(anonymous.menu().await.unwrap(), ["tea"]);
    assert_eq!(anonymous.place("tea".into()).await.unwrap_err().code(), 401);
    // A token per call.
    let with = anonymous
        .place_with("tea".into(), CallOptions::new().token(&tokens.access))
        .await
        .unwrap();
    assert_eq!(with.account.as_deref(), Some("alice"));
    // A token on the client.
    let client = OrdersClient::new(
        "orders",
        Client::builder()
            .backends(&backends)
            .token(&tokens.access)
            .build(),
    );
    assert_eq!(
        client.place("tea".into()).await.unwrap().account.as_deref(),
        Some("alice")
    );
    // Refreshed tokens work too.
    let renewed = auth.refresh(&tokens.refresh).await.unwrap();
    let opts = CallOptions::new().token(&renewed.access);
    assert!(anonymous.place_with("tea".into(), opts).await.is_ok());
    service.stop().await.unwrap();
}

#[tokio::test]
async fn stream_upgrades_are_checked_before_the_101() {
    use futures_util::{SinkExt, StreamExt};
    let auth = Auth::issuer("shop").build().unwrap();
    let backends = Backends::memory();
    let service = serve(&auth, &backends).await;
    let addr = service.local_addr();
    let token = auth
        .issue(
            &account("w", &["orders:write"]),
            TokenKind::Access,
            Duration::from_secs(60),
        )
        .unwrap();
    // A plain WebSocket client, as a browser would open it.
    let url = format!("ws://{addr}/?endpoint=Orders.Track");
    let refused = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    match refused {
        tokio_tungstenite::tungstenite::Error::Http(rsp) => assert_eq!(rsp.status().as_u16(), 401),
        other => panic!("expected a 401, got {other}"),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}&token={token}"))
        .await
        .unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("\"a\""))
        .await
        .unwrap();
    let reply = ws.next().await.unwrap().unwrap();
    assert_eq!(reply.to_text().unwrap(), "\"tracking a\"");
    ws.close(None).await.unwrap();
    // The typed client, with the token on the upgrade.
    let client = OrdersClient::new(
        "orders",
        Client::builder().backends(&backends).token(&token).build(),
    );
    let mut stream = client.track().await.unwrap();
    stream.send("b".to_owned()).await.unwrap();
    assert_eq!(stream.recv().await.unwrap().as_deref(), Some("tracking b"));
    stream.close_send().await.unwrap();
    assert_eq!(stream.recv().await.unwrap(), None);
    let anonymous = OrdersClient::new("orders", Client::builder().backends(&backends).build());
    assert_eq!(anonymous.track().await.unwrap_err().code(), 401);
    service.stop().await.unwrap();
}

/// The JWKS document of an issuer is all a verifier needs.
#[tokio::test]
async fn a_verifier_needs_only_the_jwks_url() {
    let issuer = Auth::issuer("shop").build().unwrap();
    let issuing = serve(&issuer, &Backends::memory()).await;
    let url = format!("http://{}{}", issuing.local_addr(), micro::auth::JWKS_PATH);
    let jwks = RawClient::new()
        .send("GET", issuing.local_addr(), micro::auth::JWKS_PATH, &[], "")
        .await
        .unwrap();
    assert_eq!(jwks.status.as_u16(), 200);
    let doc: serde_json::Value = serde_json::from_slice(&jwks.body).unwrap();
    assert_eq!(doc["keys"][0]["kty"], "OKP");
    assert_eq!(doc["keys"][0]["kid"], issuer.key_id().unwrap().as_str());

    let verifier = Auth::verifier(url).build().unwrap();
    let token = issuer
        .issue(
            &account("w", &["orders:write"]),
            TokenKind::Access,
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(verifier.verify(&token).await.unwrap().id, "w");
    // A new key is fetched when a token names it.
    issuer.rotate_keys().unwrap();
    let newer = issuer
        .issue(
            &account("w", &["orders:write"]),
            TokenKind::Access,
            Duration::from_secs(60),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(verifier.verify(&newer).await.unwrap().id, "w");
    // A verifier issues nothing and serves no JWKS.
    assert_eq!(
        verifier
            .generate("x", AccountKind::User, &[])
            .await
            .unwrap_err()
            .code(),
        501
    );
    issuing.stop().await.unwrap();
}

struct Front {
    backend: BackClient,
}

#[service]
impl Front {
    /// Calls the back service for the caller.
    #[handler(scopes = ["orders:write"])]
    async fn forward(&self, ctx: Context) -> Result<Who> {
        self.backend.seen_with(CallOptions::from(&ctx)).await
    }
}

struct Back;

#[service]
impl Back {
    #[handler(scopes = ["service"])]
    async fn seen(&self, ctx: Context) -> Result<Who> {
        Ok(who(&ctx))
    }
}

#[tokio::test]
async fn a_service_calls_another_with_its_identity_for_a_user() {
    // A issues tokens (and mints its own identity); B only verifies them
    // with A's JWKS URL.
    let backends = Backends::memory();
    let issuer = Auth::issuer("front").build().unwrap();
    let client = Client::builder().backends(&backends).build();
    let front = Service::new("front")
        .address("127.0.0.1:0")
        .backends(&backends)
        .auth(issuer.clone())
        .handle(Front {
            backend: BackClient::new("back", client),
        })
        .start()
        .await
        .unwrap();
    let jwks = format!("http://{}{}", front.local_addr(), micro::auth::JWKS_PATH);
    let back = Service::new("back")
        .address("127.0.0.1:0")
        .backends(&backends)
        .auth(Auth::verifier(jwks).build().unwrap())
        .handle(Back)
        .start()
        .await
        .unwrap();
    let user = issuer
        .issue(
            &account("alice", &["orders:write"]),
            TokenKind::Access,
            Duration::from_secs(60),
        )
        .unwrap();
    let rsp = RawClient::new()
        .call(
            front.local_addr(),
            "Front.Forward",
            &[
                ("authorization", &format!("Bearer {user}")),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await;
    assert_eq!(
        rsp.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&rsp.body)
    );
    let seen: Who = serde_json::from_slice(&rsp.body).unwrap();
    assert_eq!(
        seen,
        Who {
            account: Some("front".into()),
            caller: Some("alice".into())
        },
        "B sees A's identity and, apart, the user"
    );
    // The user alone may not call B: it lacks the service scope.
    let direct = call(back.local_addr(), "Back.Seen", Some(&user)).await;
    assert_eq!(direct.0, 403, "{}", direct.1);
    back.stop().await.unwrap();
    front.stop().await.unwrap();
}

#[tokio::test]
async fn events_from_the_http_broker_are_checked() {
    use micro::broker::{HttpBroker, Message, SubscribeOptions, handler};
    use micro::registry::MemoryRegistry;
    let auth = Auth::issuer("shop")
        .rules(vec![Rule::grant("topic:orders.*", "events:publish")])
        .build()
        .unwrap();
    let registry: Arc<dyn micro::registry::Registry> = Arc::new(MemoryRegistry::new());
    let broker = Arc::new(HttpBroker::new(registry.clone()));
    let got: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let log = got.clone();
    let service = Service::new("listener")
        .address("127.0.0.1:0")
        .registry(registry.clone())
        .broker(broker.clone())
        .auth(auth.clone())
        .subscribe(
            "orders.placed",
            SubscribeOptions::default(),
            handler(move |msg: Message| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(msg.decode::<String>()?);
                    Ok(())
                }
            }),
        )
        .start()
        .await
        .unwrap();
    let backends = Backends::memory()
        .with_registry(registry.clone())
        .with_broker(broker);
    let client = Client::builder().backends(&backends).build();
    let refused = client.publish("orders.placed", "anonymous").await;
    let token = auth
        .issue(
            &account("shop", &["events:publish"]),
            TokenKind::Service,
            Duration::from_secs(60),
        )
        .unwrap();
    let other = auth
        .issue(
            &account("nosy", &["orders:read"]),
            TokenKind::Access,
            Duration::from_secs(60),
        )
        .unwrap();
    let forbidden = client
        .publish_with("orders.placed", "nosy", CallOptions::new().token(&other))
        .await;
    let published = client
        .publish_with("orders.placed", "signed", CallOptions::new().token(&token))
        .await
        .unwrap();
    assert_eq!(published.delivered, Some(1));
    // The publisher hears why: the subscriber's node refused the delivery.
    assert_eq!(refused.unwrap_err().code(), 401);
    assert_eq!(forbidden.unwrap_err().code(), 403);
    assert_eq!(
        *got.lock().unwrap(),
        ["signed"],
        "only the signed event was handled"
    );
    service.stop().await.unwrap();
}

#[tokio::test]
async fn durable_events_are_checked_and_refused_ones_dead_lettered() {
    use micro::events::{ConsumeOptions, Consumer, DeadLetter, MemoryEvents, Start, Topics};
    let auth = Auth::issuer("shop")
        .rules(vec![Rule::grant("topic:invoices*", "*")])
        .build()
        .unwrap();
    let events: Arc<dyn micro::events::Events> = Arc::new(MemoryEvents::new());
    let backends = Backends::memory().with_events(events.clone());
    let got: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let log = got.clone();
    let service = Service::new("billing")
        .address("127.0.0.1:0")
        .backends(&backends)
        .auth(auth.clone())
        .consume(
            Consumer::new("invoices", move |text: String, _d| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(text);
                    Ok(())
                }
            })
            .options(ConsumeOptions::group("billing").start(Start::Beginning)),
        )
        .start()
        .await
        .unwrap();
    let token = auth
        .issue(
            &account("shop", &[]),
            TokenKind::Service,
            Duration::from_secs(60),
        )
        .unwrap();
    let plain = Topics::new(events.clone());
    plain.publish("invoices", &"unsigned").await.unwrap();
    let signed = Topics::new(events.clone())
        .with_identity(Some(micro::auth::Identity::fixed("shop", &token)));
    signed.publish("invoices", &"signed").await.unwrap();
    let dead = Topics::new(events.clone());
    let mut letters = dead
        .consume(
            "invoices.dead",
            ConsumeOptions::group("ops").start(Start::Beginning),
        )
        .await
        .unwrap();
    let letter = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::StreamExt::next(&mut letters),
    )
    .await
    .expect("a dead letter")
    .unwrap()
    .unwrap();
    let info = DeadLetter::of(letter.info().event()).unwrap();
    assert!(info.error.contains("needs a valid token"), "{}", info.error);
    assert_eq!(
        letter.info().event().decode::<String>().unwrap(),
        "unsigned"
    );
    letter.ack().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while got.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(*got.lock().unwrap(), ["signed"]);
    service.stop().await.unwrap();
}

#[tokio::test]
async fn one_setting_turns_auth_on_with_rules_from_config() {
    let dir = std::env::temp_dir().join(format!("micro-auth-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("service.toml");
    let port = micro_tests::free_port();
    let write = |rules: &str| {
        std::fs::write(
            &file,
            format!(
                "[micro]\nregistry = \"memory\"\nbroker = \"memory\"\nserver_address = \"127.0.0.1:{port}\"\n\
                 auth = \"jwt\"\nauth_id = \"admin\"\nauth_secret = \"a-secret-of-16-bytes-or-more\"\n\n{rules}"
            ),
        )
        .unwrap();
    };
    write("[[auth.rules]]\nendpoint = \"Orders.History\"\nscope = \"*\"\n");
    let config = micro::config::Config::builder()
        .file(&file)
        .load()
        .await
        .unwrap();
    let service = Service::new("orders")
        .config(&config)
        .handle(Orders)
        .start()
        .await
        .unwrap();
    let addr = service.local_addr();
    let raw = RawClient::new();
    let post = |endpoint: &'static str, token: Option<String>, body: String| {
        let raw = raw.clone();
        async move {
            let bearer = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("content-type", "application/json")];
            if let Some(b) = &bearer {
                headers.push(("authorization", b.as_str()));
            }
            let rsp = raw.call(addr, endpoint, &headers, body).await;
            let json: serde_json::Value = serde_json::from_slice(&rsp.body).unwrap();
            (rsp.status.as_u16(), json)
        }
    };
    // The account the settings name, made on first start.
    let (status, tokens) = post(
        "Auth.Token",
        None,
        r#"{"id": "admin", "secret": "a-secret-of-16-bytes-or-more"}"#.into(),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let admin = tokens["access"].as_str().unwrap().to_owned();
    let (status, wrong) = post(
        "Auth.Token",
        None,
        r#"{"id": "admin", "secret": "wrong-secret-of-some-length"}"#.into(),
    )
    .await;
    assert_eq!(
        (status, wrong["detail"].as_str()),
        (401, Some("wrong account or secret"))
    );
    // Accounts made by an admin; refused to anyone else.
    let (status, made) = post(
        "Auth.Generate",
        Some(admin.clone()),
        r#"{"id": "bob", "scopes": ["orders:write"]}"#.into(),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let secret = made["secret"].as_str().unwrap().to_owned();
    let (status, bob) = post(
        "Auth.Token",
        None,
        format!(r#"{{"id": "bob", "secret": "{secret}"}}"#),
    )
    .await;
    assert_eq!(status, 200);
    let bob_access = bob["access"].as_str().unwrap().to_owned();
    let (status, _) = post(
        "Auth.Generate",
        Some(bob_access.clone()),
        r#"{"id": "eve"}"#.into(),
    )
    .await;
    assert_eq!(status, 403, "bob has no auth:admin");
    let (status, me) = post("Auth.Inspect", Some(bob_access.clone()), "{}".into()).await;
    assert_eq!((status, me["id"].as_str()), (200, Some("bob")));
    // Refresh tokens refresh, and are no access tokens.
    let bob_refresh = bob["refresh"].as_str().unwrap().to_owned();
    let (status, _) = post(
        "Auth.Refresh",
        None,
        format!(r#"{{"refresh": "{bob_refresh}"}}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        post("Orders.History", Some(bob_refresh), "{}".into())
            .await
            .0,
        401
    );
    // The config's rule, then a reloaded one.
    assert_eq!(
        post("Orders.History", Some(bob_access.clone()), "{}".into())
            .await
            .0,
        200
    );
    write("[[auth.rules]]\nendpoint = \"Orders.History\"\nscope = \"orders:audit\"\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while post("Orders.History", Some(bob_access.clone()), "{}".into())
        .await
        .0
        != 403
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the reloaded rules did not apply"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The JWKS document is served.
    let jwks = raw
        .send("GET", addr, micro::auth::JWKS_PATH, &[], "")
        .await
        .unwrap();
    assert_eq!(jwks.status.as_u16(), 200);
    service.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unknown_auth_setting_refuses_to_start() {
    let config = micro::config::Config::builder()
        .set_default("micro.registry", "memory")
        .set_default("micro.auth", "jwtt")
        .set_default("micro.server_address", "127.0.0.1:0")
        .load()
        .await
        .unwrap();
    // The environment wins over the config: this test needs it unset.
    assert!(
        std::env::var_os("MICRO_AUTH").is_none(),
        "unset MICRO_AUTH to run this test"
    );
    let err = Service::new("orders")
        .config(&config)
        .handle(Orders)
        .start()
        .await
        .unwrap_err();
    assert!(
        err.detail().contains("unknown MICRO_AUTH \"jwtt\""),
        "{err}"
    );
}

struct Relay;

#[service]
impl Relay {
    /// Asks the issuer who this service is, with its own identity.
    #[handler(public)]
    async fn whoami(&self, ctx: Context) -> Result<Account> {
        let client = Client::builder().backends(&Backends::memory()).build();
        let issuer = ctx
            .metadata()
            .get("x-issuer")
            .unwrap_or_default()
            .to_owned();
        client
            .call(
                "issuer",
                "Auth.Inspect",
                &(),
                CallOptions::from(&ctx).address(issuer),
            )
            .await
    }
}

#[tokio::test]
async fn a_verifier_logs_in_to_its_issuer_with_its_own_account() {
    // The issuer, with an account for the relay service.
    let issuer = Auth::issuer("issuer").build().unwrap();
    issuer
        .create(
            "relay",
            AccountKind::Service,
            &["service"],
            "relay-secret-of-16-bytes",
        )
        .await
        .unwrap();
    let issuing = Service::new("issuer")
        .address("127.0.0.1:0")
        .backends(&Backends::memory())
        .auth(issuer)
        .start()
        .await
        .unwrap();
    let address = issuing.local_addr().to_string();
    // The relay verifies the issuer's tokens and logs in to it with the
    // account its settings name.
    let config = micro::config::Config::builder()
        .set_default("micro.registry", "memory")
        .set_default("micro.broker", "memory")
        .set_default("micro.server_address", "127.0.0.1:0")
        .set_default("micro.auth", "jwt")
        .set_default("micro.auth_address", format!("http://{address}"))
        .set_default("micro.auth_id", "relay")
        .set_default("micro.auth_secret", "relay-secret-of-16-bytes")
        .load()
        .await
        .unwrap();
    let relay = Service::new("relay")
        .config(&config)
        .handle(Relay)
        .start()
        .await
        .unwrap();
    let rsp = RawClient::new()
        .call(
            relay.local_addr(),
            "Relay.Whoami",
            &[("content-type", "application/json"), ("x-issuer", &address)],
            "{}",
        )
        .await;
    assert_eq!(
        rsp.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&rsp.body)
    );
    let account: Account = serde_json::from_slice(&rsp.body).unwrap();
    assert_eq!(
        (account.id.as_str(), account.kind),
        ("relay", AccountKind::Service)
    );
    // Wrong credentials fail the start, saying why.
    let wrong = micro::config::Config::builder()
        .set_default("micro.registry", "memory")
        .set_default("micro.server_address", "127.0.0.1:0")
        .set_default("micro.auth", "jwt")
        .set_default("micro.auth_address", format!("http://{address}"))
        .set_default("micro.auth_id", "relay")
        .set_default("micro.auth_secret", "not-the-secret-at-all")
        .load()
        .await
        .unwrap();
    assert!(
        std::env::var_os("MICRO_AUTH_SECRET").is_none(),
        "unset MICRO_AUTH_SECRET to run this test"
    );
    let err = Service::new("relay")
        .config(&wrong)
        .handle(Relay)
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.code(), 401, "{err}");
    relay.stop().await.unwrap();
    issuing.stop().await.unwrap();
}
