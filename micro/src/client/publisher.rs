//! [`Publisher`]: a typed publisher bound to one topic.

use std::fmt;

use serde::Serialize;

use super::{CallOptions, Client};
use crate::Result;
use crate::broker::Published;

/// Publishes values of one type to one topic.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> micro::Result<()> {
/// use std::sync::Arc;
/// use micro::broker::MemoryBroker;
/// use micro::client::Publisher;
///
/// #[derive(serde::Serialize)]
/// struct UserCreated { id: u64 }
///
/// let client = micro::Client::builder().broker(Arc::new(MemoryBroker::new())).build();
/// let users: Publisher<UserCreated> = Publisher::new("user.created", client);
/// users.publish(&UserCreated { id: 42 }).await?;
/// # Ok(()) }
/// ```
pub struct Publisher<T> {
    topic: String,
    client: Client,
    _type: std::marker::PhantomData<fn(&T)>,
}

impl<T> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<T> Clone for Publisher<T> {
    fn clone(&self) -> Self {
        Self {
            topic: self.topic.clone(),
            client: self.client.clone(),
            _type: std::marker::PhantomData,
        }
    }
}

impl<T: Serialize> Publisher<T> {
    /// A publisher of `T` to `topic` through `client`'s broker.
    pub fn new(topic: impl Into<String>, client: Client) -> Self {
        Self {
            topic: topic.into(),
            client,
            _type: std::marker::PhantomData,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `value`.
    ///
    /// # Errors
    /// As [`Client::publish`](Client::publish).
    pub async fn publish(&self, value: &T) -> Result<Published> {
        self.client.publish(&self.topic, value).await
    }

    /// Publishes `value` with options (metadata, content type, context).
    ///
    /// # Errors
    /// As [`Client::publish`](Client::publish).
    pub async fn publish_with(&self, value: &T, options: CallOptions) -> Result<Published> {
        self.client.publish_with(&self.topic, value, options).await
    }
}
