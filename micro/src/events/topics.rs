//! [`Topics`]: typed publishing and consuming on a backend.

use std::sync::Arc;

use serde::Serialize;

use super::delivery::{Deliveries, Group, deliveries};
use super::{ConsumeOptions, Events, NewEvent, Published, check_group, check_topic};
use crate::codec::ContentType;
use crate::{Error, Result};

/// Typed events on a backend: publish values, consume deliveries with the
/// retry limit and dead letters applied. Cheap to clone.
///
/// A handler gets one from [`Context::events`](crate::Context::events),
/// whose [`options`](Self::options) name the service's own group.
#[derive(Clone, Debug)]
pub struct Topics {
    events: Arc<dyn Events>,
    content_type: ContentType,
    group: Option<Arc<str>>,
    /// Whose token published events carry, for consumers with auth on.
    identity: Option<crate::auth::Identity>,
}

impl Topics {
    /// Topics on `events`, encoding with JSON.
    pub fn new(events: Arc<dyn Events>) -> Self {
        Self {
            events,
            content_type: ContentType::Json,
            group: None,
            identity: None,
        }
    }

    /// The same, with `identity`'s token in the `authorization` metadata
    /// of every event published (unless the event sets its own), so that
    /// consumers with auth on let them in. A service's handle carries the
    /// service's identity.
    #[must_use]
    pub fn with_identity(mut self, identity: Option<crate::auth::Identity>) -> Self {
        self.identity = identity;
        self
    }

    /// The same, with `group` as the default group of
    /// [`options`](Self::options).
    #[must_use]
    pub fn with_group(mut self, group: &str) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The same, encoding published values with `content_type`.
    #[must_use]
    pub fn with_content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Events> {
        &self.events
    }

    /// Consume options for the default group (the service's name); a
    /// handle without one uses `default`.
    pub fn options(&self) -> ConsumeOptions {
        ConsumeOptions::group(self.group.as_deref().unwrap_or("default"))
    }

    /// Publishes `value` to `topic`; returns once it is stored.
    ///
    /// # Errors
    /// 400 for a bad topic, 500 if the value does not encode, 503 if the
    /// backend cannot be reached: never `Ok` for an event not stored.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        value: &T,
    ) -> Result<Published> {
        self.publish_event(topic, self.event(value)?).await
    }

    /// Publishes `value` with `id`: a second publish of the same id within
    /// the dedup window stores nothing.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_with_id<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        id: &str,
        value: &T,
    ) -> Result<Published> {
        self.publish_event(topic, self.event(value)?.with_id(id))
            .await
    }

    /// `value` as an event, encoded with this handle's codec.
    fn event<T: Serialize + ?Sized>(&self, value: &T) -> Result<NewEvent> {
        let payload = self
            .content_type
            .encode(value)
            .map_err(|e| Error::internal(e.to_string()).with_source(e))?;
        Ok(NewEvent::new(self.content_type, payload))
    }

    /// Publishes an event already encoded.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn publish_event(&self, topic: &str, mut event: NewEvent) -> Result<Published> {
        check_topic(topic)?;
        if let Some(token) = self
            .identity
            .as_ref()
            .and_then(crate::auth::Identity::token)
            && !event.metadata.contains_key("authorization")
        {
            event
                .metadata
                .insert("authorization".into(), format!("Bearer {token}"));
        }
        Ok(self.events.publish(topic, event).await?)
    }

    /// The deliveries of `topic` to one member of `options.group`.
    ///
    /// # Errors
    /// 400 for a bad topic, group or dead-letter topic; 503 if the
    /// backend cannot be reached.
    pub async fn consume(&self, topic: &str, options: ConsumeOptions) -> Result<Deliveries> {
        check_topic(topic)?;
        check_group(&options.group)?;
        let dead_letter = options.dead_letter_topic(topic);
        check_topic(&dead_letter)?;
        if options.ack_wait.is_zero() {
            return Err(Error::bad_request("the ack wait must be more than zero"));
        }
        let receipts = self.events.consume(topic, &options).await?;
        let group = Arc::new(Group {
            backend: self.events.clone(),
            options,
            dead_letter,
        });
        Ok(deliveries(receipts, group))
    }
}
