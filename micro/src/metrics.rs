//! Prometheus metrics of a service (cargo feature `metrics`), served as
//! text at `GET /metrics` on the service's own port, through
//! prometheus-client.
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `micro_requests_total` | `endpoint`, `code` | calls served, by the status they got |
//! | `micro_request_duration_seconds` | `endpoint` | how long each call took, as a histogram |
//! | `micro_streams_open` | `endpoint` | streams open now |
//! | `micro_streams_total` | `endpoint` | streams opened |
//! | `micro_messages_total` | `topic`, `outcome` (`ok`, `error`) | broker messages handled by the service's subscribers |
//! | `micro_events_total` | `topic`, `outcome` (`ok`, `error`) | durable events handled by its consumers |
//!
//! Every series carries the label `service`. `Service::metrics(false)`
//! turns them off for one service.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    endpoint: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Handled {
    topic: String,
    outcome: &'static str,
}

fn latency() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// The metrics of one service.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Call, Counter>,
    durations: Family<Endpoint, Histogram, fn() -> Histogram>,
    open: Family<Endpoint, Gauge>,
    opened: Family<Endpoint, Counter>,
    messages: Family<Handled, Counter>,
    events: Family<Handled, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The metrics of the service `name`.
    pub(crate) fn new(name: &str) -> Arc<Self> {
        let mut registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("service"),
                std::borrow::Cow::Owned(name.to_owned()),
            )]
            .into_iter(),
        );
        let requests = Family::<Call, Counter>::default();
        let durations =
            Family::<Endpoint, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let open = Family::<Endpoint, Gauge>::default();
        let opened = Family::<Endpoint, Counter>::default();
        let messages = Family::<Handled, Counter>::default();
        let events = Family::<Handled, Counter>::default();
        registry.register(
            "micro_requests",
            "Calls served, by status code",
            requests.clone(),
        );
        registry.register(
            "micro_request_duration_seconds",
            "How long calls took to serve",
            durations.clone(),
        );
        registry.register("micro_streams_open", "Streams open now", open.clone());
        registry.register("micro_streams", "Streams opened", opened.clone());
        registry.register(
            "micro_messages",
            "Broker messages handled by the service's subscribers",
            messages.clone(),
        );
        registry.register(
            "micro_events",
            "Durable events handled by the service's consumers",
            events.clone(),
        );
        Arc::new(Self {
            registry,
            requests,
            durations,
            open,
            opened,
            messages,
            events,
        })
    }

    /// The handles of one endpoint's series, made once so that a call
    /// costs no lookup or allocation.
    pub(crate) fn endpoint(self: &Arc<Self>, endpoint: &str) -> EndpointMetrics {
        let label = Endpoint {
            endpoint: endpoint.to_owned(),
        };
        EndpointMetrics {
            ok: self
                .requests
                .get_or_create(&Call {
                    endpoint: endpoint.to_owned(),
                    code: 200,
                })
                .clone(),
            duration: self.durations.get_or_create(&label).clone(),
            open: self.open.get_or_create(&label).clone(),
            opened: self.opened.get_or_create(&label).clone(),
            endpoint: endpoint.into(),
            all: self.clone(),
        }
    }

    /// The registry as Prometheus text.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding the metrics failed");
        }
        out
    }

    /// `handler`, counting what it handles of `topic`.
    pub(crate) fn messages(
        self: &Arc<Self>,
        topic: &str,
        handler: crate::broker::MessageHandler,
    ) -> crate::broker::MessageHandler {
        let outcomes = self.outcomes(&self.messages, topic);
        Arc::new(move |message| Box::pin(outcomes.clone().count(handler(message))))
    }

    /// The ok and error counters of `topic` in `family`.
    fn outcomes(&self, family: &Family<Handled, Counter>, topic: &str) -> Outcomes {
        let of = |outcome| {
            family
                .get_or_create(&Handled {
                    topic: topic.to_owned(),
                    outcome,
                })
                .clone()
        };
        Outcomes {
            ok: of("ok"),
            error: of("error"),
        }
    }

    /// The ok and error counters of the durable events of `topic`.
    pub(crate) fn events(&self, topic: &str) -> Outcomes {
        self.outcomes(&self.events, topic)
    }
}

/// The ok and error counters of one topic's handler.
#[derive(Clone, Debug)]
pub(crate) struct Outcomes {
    ok: Counter,
    error: Counter,
}

impl Outcomes {
    /// Runs a handler's future, counting how it ended.
    pub(crate) async fn count(
        self,
        run: impl Future<Output = crate::Result<()>>,
    ) -> crate::Result<()> {
        let result = run.await;
        match &result {
            Ok(()) => self.ok.inc(),
            Err(_) => self.error.inc(),
        };
        result
    }
}

/// One endpoint's series.
#[derive(Clone)]
pub(crate) struct EndpointMetrics {
    ok: Counter,
    duration: Histogram,
    open: Gauge,
    opened: Counter,
    endpoint: Arc<str>,
    all: Arc<Metrics>,
}

impl std::fmt::Debug for EndpointMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointMetrics")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl EndpointMetrics {
    /// A call that got `code` after `took`.
    pub(crate) fn call(&self, code: u16, took: Duration) {
        if code == 200 {
            self.ok.inc();
        } else {
            self.all
                .requests
                .get_or_create(&Call {
                    endpoint: self.endpoint.to_string(),
                    code,
                })
                .inc();
        }
        self.duration.observe(took.as_secs_f64());
    }

    /// A stream opened; the guard closes it.
    pub(crate) fn stream(&self) -> OpenStream {
        self.opened.inc();
        self.open.inc();
        OpenStream(self.open.clone())
    }
}

/// An open stream in `micro_streams_open`, until dropped.
#[derive(Debug)]
pub(crate) struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}
