//! An events backend that could not be set up: every call says why.

use futures_util::future::BoxFuture;

use super::{ConsumeOptions, Events, EventsError, NewEvent, Published, Receipts};

/// Stands in for a backend chosen by `MICRO_EVENTS` that cannot be used
/// (a URL the driver does not take, say): every call fails with 503 and
/// the reason, so that a publisher never gets `Ok` for an event not stored.
#[derive(Clone, Debug)]
pub(crate) struct Unavailable {
    name: &'static str,
    why: String,
}

impl Unavailable {
    /// A `name` backend that is down for `why`.
    pub(crate) fn new(name: &'static str, why: impl Into<String>) -> Self {
        Self {
            name,
            why: why.into(),
        }
    }

    fn fail<T: Send + 'static>(&self) -> BoxFuture<'static, Result<T, EventsError>> {
        let err = EventsError::Unavailable(format!(
            "the {} events backend is unavailable: {}",
            self.name, self.why
        ));
        Box::pin(std::future::ready(Err(err)))
    }
}

impl Events for Unavailable {
    fn name(&self) -> &'static str {
        self.name
    }

    fn publish<'a>(
        &'a self,
        _: &'a str,
        _: NewEvent,
    ) -> BoxFuture<'a, Result<Published, EventsError>> {
        self.fail()
    }

    fn consume<'a>(
        &'a self,
        _: &'a str,
        _: &'a ConsumeOptions,
    ) -> BoxFuture<'a, Result<Receipts, EventsError>> {
        self.fail()
    }
}
