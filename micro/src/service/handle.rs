//! A running service, its graceful stop, and the signals that ask for it.

use super::*;

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// A running service, from [`Service::start`].
///
/// Dropping the handle leaves the service running until the runtime shuts
/// down; call [`stop`](Self::stop) for a graceful stop.
pub struct ServiceHandle {
    pub(super) record: registry::Record,
    pub(super) registry: Arc<dyn Registry>,
    pub(super) server: Server,
    /// Renews the registration until the stop begins.
    pub(super) renewing: JoinHandle<()>,
    /// Ended after the deregistration, before the drain.
    pub(super) subscriptions: Vec<crate::broker::Subscription>,
    /// Stopped with the subscriptions; the delivery being handled finishes.
    pub(super) consumers: Option<crate::events::Running>,
    /// Resigned first on a stop, so the lead moves on at once.
    pub(super) campaigns: Option<leader::Campaigns>,
    pub(super) grace_period: Duration,
    pub(super) shutdown_delay: Duration,
}

impl fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("local_addr", &self.server.local_addr())
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl ServiceHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The registry record of this node: name, version, endpoints and the
    /// node itself.
    pub fn record(&self) -> &registry::Record {
        &self.record
    }

    /// Stops gracefully: reports not-ready, deregisters, waits the shutdown
    /// delay, closes the listener and waits up to the grace period for
    /// in-flight requests and open streams. Stream handlers learn of the
    /// stop through [`Context::stopping`](crate::Context::stopping); the
    /// streams still open when the grace period ends are closed with 503.
    ///
    /// # Errors
    /// 500 if the server had already failed.
    pub async fn stop(mut self) -> Result<()> {
        let name = self.server.name().to_owned();
        self.server.begin_stop();
        if let Some(campaigns) = self.campaigns.take() {
            campaigns.resign().await;
        }
        // No renewal may race the deregistration below.
        self.renewing.abort();
        let _ = (&mut self.renewing).await;
        if let Err(e) = self.registry.deregister(&self.record).await {
            tracing::warn!(service = %name, error = %e, "deregistering failed");
        }
        for subscription in std::mem::take(&mut self.subscriptions) {
            if let Err(e) = subscription.unsubscribe().await {
                tracing::warn!(service = %name, error = %e, "unsubscribing failed");
            }
        }
        if let Some(consumers) = self.consumers.take() {
            consumers.stop().await;
        }
        if !self.shutdown_delay.is_zero() {
            tokio::time::sleep(self.shutdown_delay).await;
        }
        self.server.drain(self.grace_period).await?;
        tracing::info!(service = %name, "service stopped");
        Ok(())
    }
}
