//! A store that could not be opened: every call says why.

use futures_util::future::BoxFuture;

use super::{Condition, Query, Record, Store, StoreError, Write};

/// Stands in for a store that could not be opened (chosen by
/// `MICRO_STORE`, say, with its directory held by another process): every
/// call fails with 503 and the reason, so the service keeps serving what
/// does not need it and the failure is never silent.
#[derive(Clone, Debug)]
pub struct Unavailable {
    name: &'static str,
    why: String,
}

impl Unavailable {
    /// A `name` store that is down for `why`.
    pub fn new(name: &'static str, why: impl Into<String>) -> Self {
        Self {
            name,
            why: why.into(),
        }
    }

    fn fail<T: Send + 'static>(&self) -> BoxFuture<'static, Result<T, StoreError>> {
        let err = StoreError::Unavailable(format!(
            "the {} store is unavailable: {}",
            self.name, self.why
        ));
        Box::pin(std::future::ready(Err(err)))
    }
}

impl Store for Unavailable {
    fn name(&self) -> &'static str {
        self.name
    }

    fn read<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Record, StoreError>> {
        self.fail()
    }

    fn list<'a>(
        &'a self,
        _: &'a str,
        _: &'a Query,
    ) -> BoxFuture<'a, Result<Vec<Record>, StoreError>> {
        self.fail()
    }

    fn write<'a>(&'a self, _: &'a str, _: Write) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.fail()
    }

    fn delete<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Condition,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.fail()
    }
}
