//! W3C trace context across services: a caller's `traceparent` is
//! continued by the first service and carried by its call to the second,
//! so both run in one trace, and each call's span names it in the logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use micro::client::CallOptions;
use micro::{Context, Result, handler, service};
use micro_tests::RawClient;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Hops {
    front: String,
    back: String,
    front_span: String,
    back_span: String,
}

struct Back;

#[service]
impl Back {
    #[handler]
    async fn where_am_i(&self, ctx: Context) -> Result<(String, String)> {
        tracing::info!("back serving");
        let t = ctx.trace().expect("a server context has a trace");
        Ok((t.trace_id().to_string(), t.span_id().to_string()))
    }
}

struct Front {
    client: micro::Client,
}

#[service]
impl Front {
    #[handler]
    async fn hops(&self, ctx: Context) -> Result<Hops> {
        tracing::info!("front serving");
        let (back, back_span): (String, String) = self
            .client
            .call(
                "back",
                "Back.WhereAmI",
                &(),
                CallOptions::new().context(&ctx),
            )
            .await?;
        // An event published for the request carries the trace too.
        self.client
            .publish_with("hops", &"hop", CallOptions::new().context(&ctx))
            .await?;
        let t = ctx.trace().expect("a server context has a trace");
        Ok(Hops {
            front: t.trace_id().to_string(),
            back,
            front_span: t.span_id().to_string(),
            back_span,
        })
    }
}

/// The log lines of this process, for the spans' fields.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_across_two_services() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let lines = Lines::default();
    let writer = lines.clone();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(false);
    #[cfg(feature = "opentelemetry")]
    let (otel, exported, provider) = {
        use opentelemetry::trace::TracerProvider as _;
        let exported = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("micro-tests"));
        (Some(layer), exported, provider)
    };
    #[cfg(not(feature = "opentelemetry"))]
    let otel: Option<tracing_subscriber::layer::Identity> = None;
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(fmt).with(otel))
        .unwrap();

    let backends = micro::Backends::memory();
    let heard = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = heard.clone();
    let back = micro::Service::new("back")
        .address("127.0.0.1:0")
        .backends(&backends)
        .handle(Back)
        .subscribe(
            "hops",
            micro::broker::SubscribeOptions::default(),
            micro::broker::handler(move |m: micro::broker::Message| {
                let log = log.clone();
                async move {
                    let trace = m
                        .context()
                        .trace()
                        .expect("a message's context has a trace");
                    log.lock().unwrap().push(trace.trace_id().to_string());
                    Ok(())
                }
            }),
        )
        .start()
        .await
        .unwrap();
    let client = micro::Client::builder().backends(&backends).build();
    let front = micro::Service::new("front")
        .address("127.0.0.1:0")
        .backends(&backends)
        .handle(Front {
            client: client.clone(),
        })
        .start()
        .await
        .unwrap();

    // A caller that is not micro starts the trace.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let raw = RawClient::new()
        .call(
            front.local_addr(),
            "Front.Hops",
            &[
                ("content-type", "application/json"),
                ("traceparent", traceparent),
            ],
            "{}",
        )
        .await;
    let hops: Hops = serde_json::from_value(raw.json()).unwrap();
    assert_eq!(
        hops.front, "4bf92f3577b34da6a3ce929d0e0e4736",
        "the caller's trace is continued"
    );
    assert_eq!(hops.back, hops.front, "and carried to the next service");
    assert_ne!(
        hops.front_span, "00f067aa0ba902b7",
        "each hop is a span of its own"
    );
    assert_ne!(hops.back_span, hops.front_span);
    assert_eq!(
        heard.lock().unwrap().first().map(String::as_str),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "the event's subscriber is in the trace"
    );

    // Without one, the first service starts a trace, and it is one trace still.
    let raw = RawClient::new()
        .call(
            front.local_addr(),
            "Front.Hops",
            &[("content-type", "application/json")],
            "{}",
        )
        .await;
    let fresh: Hops = serde_json::from_value(raw.json()).unwrap();
    assert_eq!(fresh.back, fresh.front);
    assert_ne!(fresh.front, hops.front);
    assert_eq!(fresh.front.len(), 32);

    // A malformed traceparent starts a new trace too.
    let raw = RawClient::new()
        .call(
            front.local_addr(),
            "Front.Hops",
            &[
                ("content-type", "application/json"),
                ("traceparent", "00-zz-yy-01"),
            ],
            "{}",
        )
        .await;
    let restarted: Hops = serde_json::from_value(raw.json()).unwrap();
    assert_eq!(restarted.back, restarted.front);
    assert_eq!(restarted.front.len(), 32);

    // Each handler's log line is inside its call's span, which names the trace.
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let line = |what: &str| {
        text.lines()
            .find(|l| l.contains(what) && l.contains("4bf92f3577b34da6a3ce929d0e0e4736"))
            .unwrap_or_else(|| panic!("no {what} line in the trace:\n{text}"))
            .to_owned()
    };
    let front_line = line("front serving");
    assert!(
        front_line.contains("micro.call{") && front_line.contains("endpoint=Front.Hops"),
        "{front_line}"
    );
    assert!(
        front_line.contains(&format!("span_id={}", hops.front_span)),
        "{front_line}"
    );
    let back_line = line("back serving");
    assert!(back_line.contains("endpoint=Back.WhereAmI"), "{back_line}");
    assert!(
        back_line.contains(&format!("span_id={}", hops.back_span)),
        "{back_line}"
    );

    // Exported to OpenTelemetry: both calls' spans in the caller's trace,
    // the first a child of the caller's span, the second of the first.
    #[cfg(feature = "opentelemetry")]
    {
        provider.force_flush().unwrap();
        let spans = exported.get_finished_spans().unwrap();
        let in_trace: Vec<_> = spans
            .iter()
            .filter(|s| s.name == "micro.call")
            .filter(|s| s.span_context.trace_id().to_string() == "4bf92f3577b34da6a3ce929d0e0e4736")
            .collect();
        assert_eq!(in_trace.len(), 2, "{spans:#?}");
        let front_span = in_trace
            .iter()
            .find(|s| s.span_context.span_id().to_string() == hops.front_span)
            .expect("the front call's span, with the id its context gave");
        assert_eq!(front_span.parent_span_id.to_string(), "00f067aa0ba902b7");
        let back_span = in_trace
            .iter()
            .find(|s| s.span_context.span_id().to_string() == hops.back_span)
            .expect("the back call's span");
        assert_eq!(back_span.parent_span_id.to_string(), hops.front_span);
    }

    front.stop().await.unwrap();
    back.stop().await.unwrap();
}

/// A `traceparent` a caller gives as a call's own metadata, with no
/// context, is sent on: a gateway passing on its caller's continues that
/// trace. One that does not parse is not sent, and the service starts a
/// trace of its own.
#[tokio::test(flavor = "multi_thread")]
async fn a_traceparent_in_call_metadata_is_continued() {
    let backends = micro::Backends::memory();
    let back = micro::Service::new("back")
        .address("127.0.0.1:0")
        .backends(&backends)
        .handle(Back)
        .start()
        .await
        .unwrap();
    let client = micro::Client::builder().backends(&backends).build();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (trace, span): (String, String) = client
        .call(
            "back",
            "Back.WhereAmI",
            &(),
            CallOptions::new().metadata("traceparent", traceparent),
        )
        .await
        .unwrap();
    assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c");
    assert_ne!(
        span, "b7ad6b7169203331",
        "the service's call is a span of its own"
    );

    let (fresh, _): (String, String) = client
        .call(
            "back",
            "Back.WhereAmI",
            &(),
            CallOptions::new().metadata("traceparent", "00-not-a-trace-01"),
        )
        .await
        .unwrap();
    assert_eq!(fresh.len(), 32);
    assert_ne!(fresh, trace);
    back.stop().await.unwrap();
}
