//! [`Consumer`]: a function a service runs for each event of a topic,
//! settling each delivery by its result.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{ConsumeOptions, Delivered, Topics};
use crate::{Error, Result};

/// What a consumer runs for each delivery.
pub type ConsumerFn = Arc<dyn Fn(Delivered) -> BoxFuture<'static, Result<()>> + Send + Sync>;
type Handler = ConsumerFn;

/// A function a service runs for each event of a topic, one at a time per
/// consumer: `Ok` acks; an error nacks (delivered again after the
/// group's backoff, dead-lettered on the last attempt); a 4xx error or a
/// payload that does not decode dead-letters at once; a panic nacks as a
/// 500.
///
/// ```no_run
/// use micro::events::{Consumer, Delivered};
///
/// # async fn f() -> micro::Result<()> {
/// let billing = Consumer::new("orders.placed", |order: String, d: Delivered| async move {
///     println!("charging {order}, attempt {}", d.attempt());
///     Ok(())
/// });
/// micro::Service::new("billing").consume(billing).run().await
/// # }
/// ```
#[derive(Clone)]
pub struct Consumer {
    topic: String,
    options: Option<ConsumeOptions>,
    handler: Handler,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("topic", &self.topic)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Runs `f` with each event of `topic`, decoded as `T`, in the
    /// service's own group (its name) from new events on, unless
    /// [`options`](Self::options) say otherwise.
    pub fn new<T, F, Fut>(topic: impl Into<String>, f: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T, Delivered) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        let f = Arc::new(f);
        Self {
            topic: topic.into(),
            options: None,
            handler: Arc::new(move |delivered: Delivered| {
                let f = f.clone();
                Box::pin(async move {
                    let value: T = delivered.event().decode()?;
                    f(value, delivered).await
                })
            }),
        }
    }

    /// This consumer, counting what it handles in `outcomes`.
    #[cfg(feature = "metrics")]
    pub(crate) fn counted(mut self, outcomes: crate::metrics::Outcomes) -> Self {
        let handler = self.handler;
        self.handler =
            Arc::new(move |delivered| Box::pin(outcomes.clone().count(handler(delivered))));
        self
    }

    /// A consumer of `topic` running `handler` as it is; generated code
    /// builds these. An empty group in `options` means the service's.
    #[doc(hidden)]
    pub fn from_parts(topic: &str, options: ConsumeOptions, handler: ConsumerFn) -> Self {
        Self {
            topic: topic.to_owned(),
            options: Some(options),
            handler,
        }
    }

    /// The group, start, ack wait, attempts, backoff and dead-letter topic.
    #[must_use]
    pub fn options(mut self, options: ConsumeOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// A service's consumers while it runs.
#[derive(Debug)]
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Starts every consumer on `topics`; fails if one cannot consume.
    pub(crate) async fn start(
        consumers: Vec<Consumer>,
        topics: &Topics,
        guard: Option<crate::auth::Guard>,
    ) -> Result<Self> {
        let (stop, stopping) = watch::channel(false);
        let mut tasks = Vec::with_capacity(consumers.len());
        for consumer in consumers {
            let mut options = consumer.options.clone().unwrap_or_else(|| topics.options());
            if options.group.is_empty() {
                options.group = topics.options().group;
            }
            let deliveries = match topics.consume(&consumer.topic, options).await {
                Ok(d) => d,
                Err(e) => {
                    for t in &tasks {
                        JoinHandle::abort(t);
                    }
                    return Err(e);
                }
            };
            tasks.push(tokio::spawn(run(
                consumer,
                deliveries,
                stopping.clone(),
                guard.clone(),
            )));
        }
        Ok(Self { stop, tasks })
    }

    /// Stops taking deliveries and waits for the ones being handled.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn run(
    consumer: Consumer,
    mut deliveries: super::Deliveries,
    mut stopping: watch::Receiver<bool>,
    guard: Option<crate::auth::Guard>,
) {
    loop {
        let delivery = tokio::select! {
            biased;
            _ = stopping.changed() => return,
            d = deliveries.next() => d,
        };
        let delivery = match delivery {
            None => return,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::warn!(topic = %consumer.topic, error = %e, "consuming failed; trying on");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Some(guard) = &guard
            && let Err(e) = admit(guard, &delivery).await
        {
            // Refused: a dead letter at once, as any 4xx; a 503 (the
            // issuer's keys out of reach) is tried again.
            let settled = if e.code() == crate::code::UNAVAILABLE {
                delivery.nack(&e).await
            } else {
                delivery.reject(&e).await
            };
            if let Err(e) = settled {
                tracing::warn!(topic = %consumer.topic, error = %e, "settling a delivery failed");
            }
            continue;
        }
        let info = delivery.info();
        let span = tracing::info_span!(
            "micro.event",
            topic = %consumer.topic,
            group = %info.group(),
            sequence = info.sequence(),
            attempt = info.attempt(),
            trace_id = info.event().metadata.get("traceparent").map(String::as_str).and_then(crate::trace::Trace::from_traceparent).map(|t| t.trace_id().to_string()),
        );
        let handled = AssertUnwindSafe((consumer.handler)(info).instrument(span))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Error::internal("the consumer panicked")));
        let settled = match handled {
            Ok(()) => delivery.ack().await,
            Err(e) if (400..500).contains(&e.code()) => delivery.reject(&e).await,
            Err(e) => delivery.nack(&e).await,
        };
        if let Err(e) = settled {
            tracing::warn!(topic = %consumer.topic, error = %e, "settling a delivery failed");
        }
    }
}

/// Whether the auth lets the event in: the token in its `authorization`
/// metadata, judged when the event was stored, against the rules for
/// `topic:<topic>`.
async fn admit(guard: &crate::auth::Guard, delivery: &super::Delivery) -> Result<()> {
    let info = delivery.info();
    let event = info.event();
    let mut headers = http::HeaderMap::new();
    for (key, name) in [
        ("authorization", http::header::AUTHORIZATION),
        ("micro-caller", crate::wire::MICRO_CALLER.clone()),
    ] {
        if let Some(v) = event
            .metadata
            .get(key)
            .and_then(|v| http::HeaderValue::try_from(v.as_str()).ok())
        {
            headers.insert(name, v);
        }
    }
    let resource = format!("topic:{}", event.topic);
    guard
        .check_at(&resource, &[], &mut headers, Some(event.timestamp), None)
        .await
        .map(drop)
}

/// A `#[consume]` free function, collected from the whole binary with
/// `inventory`. Generated code builds these; not public API.
#[doc(hidden)]
#[derive(Debug)]
pub struct StaticConsumer {
    /// The topic.
    pub topic: &'static str,
    /// The function's path, for logs.
    pub name: &'static str,
    /// Its options; an empty group is the service's.
    pub options: fn() -> ConsumeOptions,
    /// Decodes the event and calls the function.
    pub handler: fn(Delivered) -> BoxFuture<'static, Result<()>>,
}

inventory::collect!(StaticConsumer);

/// Every `#[consume]` free function linked into this binary.
pub(crate) fn static_consumers() -> Vec<Consumer> {
    inventory::iter::<StaticConsumer>
        .into_iter()
        .map(|s| {
            let f = s.handler;
            Consumer::from_parts(s.topic, (s.options)(), Arc::new(f))
        })
        .collect()
}
