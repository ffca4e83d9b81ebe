//! A lock backend that could not be set up: every call says why.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{Holder, Locks, SyncError};

/// Stands in for a backend chosen by `MICRO_SYNC` that cannot be used (a
/// URL the driver does not take, say): every call fails with 503 and the
/// reason, so that no lock is ever taken on a backend nobody else uses.
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

    fn fail<T: Send + 'static>(&self) -> BoxFuture<'static, Result<T, SyncError>> {
        let err = SyncError::Unavailable(format!(
            "the {} lock backend is unavailable: {}",
            self.name, self.why
        ));
        Box::pin(std::future::ready(Err(err)))
    }
}

impl Locks for Unavailable {
    fn name(&self) -> &'static str {
        self.name
    }

    fn acquire<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Duration,
    ) -> BoxFuture<'a, Result<Option<u64>, SyncError>> {
        self.fail()
    }

    fn renew<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u64,
        _: Duration,
    ) -> BoxFuture<'a, Result<bool, SyncError>> {
        self.fail()
    }

    fn release<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: u64,
    ) -> BoxFuture<'a, Result<bool, SyncError>> {
        self.fail()
    }

    fn holder<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Option<Holder>, SyncError>> {
        self.fail()
    }
}
