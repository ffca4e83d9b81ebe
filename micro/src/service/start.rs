//! Starting a service: binding, the server, the consumers and
//! subscriptions, the registration and its renewal.

use super::*;

impl Service {
    /// Starts serving and registers; returns once the service is reachable.
    ///
    /// # Errors
    /// 500 if the address cannot be bound or two handlers share a name or
    /// endpoint; the registry's error if registration fails.
    pub async fn start(self) -> Result<ServiceHandle> {
        let address = std::env::var("MICRO_SERVER_ADDRESS")
            .ok()
            .filter(|a| !a.is_empty())
            .or(self.address)
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
        let backends = self.backends.clone().unwrap_or_default();
        let broker = self
            .broker
            .clone()
            .unwrap_or_else(|| backends.broker().clone());
        let store = self
            .store
            .clone()
            .unwrap_or_else(|| backends.store().clone());
        let scope: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':') {
                    c
                } else {
                    '_'
                }
            })
            .take(crate::store::MAX_SCOPE_LEN)
            .collect();
        let store_name = store.name();
        let store = crate::store::Scoped::new(store, &scope).map_err(|e| e.or_id(&self.name))?;
        let events = self
            .events
            .clone()
            .unwrap_or_else(|| backends.events().clone());
        let group = scope.replace(':', "_");
        let topics = crate::events::Topics::new(events).with_group(&group);
        let var = |name: &str| match &self.settings {
            Some(config) => config.micro_var(name),
            None => std::env::var(name).ok().filter(|v| !v.is_empty()),
        };
        let auth = match self.auth.clone() {
            Some(auth) => Some(auth),
            None => crate::auth::from_settings(
                &self.name,
                &var,
                backends.store(),
                self.settings.as_ref(),
            )
            .await
            .map_err(|e| e.or_id(&self.name))?,
        };
        let identity = match &auth {
            Some(auth) => crate::auth::identity_from_settings(auth, &self.name, &var)
                .await
                .map_err(|e| e.or_id(&self.name))?,
            None => None,
        };
        let mut handlers = self.handlers.clone();
        if let Some(auth) = auth.as_ref().filter(|a| a.issues())
            && !handlers.iter().any(|h| h.name() == "Auth")
        {
            handlers.push(Arc::new(crate::auth::AuthHandler { auth: auth.clone() }));
        }
        let topics = topics.with_identity(identity.clone());
        let platform = Arc::new(crate::context::Platform {
            store,
            events: topics.clone(),
            identity,
        });
        #[cfg(feature = "tls")]
        let tls = match self.tls.clone() {
            Some(tls) => Some(tls),
            None => crate::tls::ServerTls::from_settings(&var).map_err(|e| e.or_id(&self.name))?,
        };
        #[cfg(feature = "tls")]
        let tls = tls.map(|t| t.acceptor());
        #[cfg(not(feature = "tls"))]
        let tls = {
            if var("MICRO_SERVER_TLS_CERT").is_some() {
                return Err(Error::internal(
                    "MICRO_SERVER_TLS_CERT is set but this build lacks micro's \"tls\" feature: enable it to serve HTTPS",
                )
                .with_id(self.name.clone()));
            }
            None
        };
        // One guard for every way in: calls, streams, events.
        let guard = auth.map(|auth| crate::auth::Guard {
            auth,
            service: Arc::from(self.name.as_str()),
        });
        #[cfg(feature = "metrics")]
        let metrics = self
            .metrics
            .then(|| crate::metrics::Metrics::new(&self.name));
        let server = Server::start(server::Config {
            #[cfg(feature = "metrics")]
            metrics: metrics.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            address,
            handlers,
            tls,
            guard: guard.clone(),
            max_body_size: self.max_body_size,
            body_timeout: self.body_timeout,
            timeouts: server::conn::Timeouts {
                header_read: self.header_read_timeout,
                idle: self.idle_timeout,
            },
            max_streams: self.max_streams,
            stream_idle_timeout: self.stream_idle_timeout,
            checks: self.checks,
            broker: broker.clone(),
            platform: Some(platform),
            layers: self.layers,
            #[cfg(feature = "protobuf")]
            descriptors: self.descriptors,
        })
        .await?;
        let local_addr = server.local_addr();

        // Subscribe before registering, so that publishers who find this
        // node find its subscriptions ready.
        let mut wanted = crate::broker::static_subscribers();
        for handler in &self.handlers {
            wanted.extend(handler.clone().subscribers());
        }
        wanted.extend(self.subscribers);
        let mut subscriptions = Vec::with_capacity(wanted.len());
        for sub in wanted {
            #[cfg(feature = "metrics")]
            let sub = match &metrics {
                Some(m) => crate::broker::Subscriber::new(
                    sub.topic.clone(),
                    sub.options,
                    m.messages(&sub.topic, sub.handler),
                ),
                None => sub,
            };
            match broker.subscribe(&sub.topic, sub.handler, sub.options).await {
                Ok(s) => subscriptions.push(s),
                Err(e) => {
                    server.abort();
                    for s in subscriptions {
                        let _ = s.unsubscribe().await;
                    }
                    return Err(Error::from(e).or_id(&self.name));
                }
            }
        }

        let mut wanted = crate::events::static_consumers();
        for handler in &self.handlers {
            wanted.extend(handler.clone().consumers());
        }
        wanted.extend(self.consumers);
        #[cfg(feature = "metrics")]
        let wanted: Vec<crate::events::Consumer> = match &metrics {
            Some(m) => wanted
                .into_iter()
                .map(|c| {
                    let outcomes = m.events(c.topic());
                    c.counted(outcomes)
                })
                .collect(),
            None => wanted,
        };
        let consumers = match crate::events::Running::start(wanted, &topics, guard).await {
            Ok(c) => c,
            Err(e) => {
                server.abort();
                for s in subscriptions {
                    let _ = s.unsubscribe().await;
                }
                return Err(e.or_id(&self.name));
            }
        };

        let registry = self.registry.unwrap_or_else(|| backends.registry().clone());
        let advertised = match std::env::var("MICRO_SERVER_ADVERTISE")
            .ok()
            .filter(|a| !a.is_empty())
            .or(self.advertise)
        {
            Some(a) => a,
            None => registration::advertise_address(local_addr).to_string(),
        };
        let mut node = registration::node(&self.name, advertised, &*registry, &*broker);
        // A broker whose publishers look subscribers up in the registry
        // advertises them, and keeps the registration current as they
        // change; for others the service lists its own, for information.
        let mut advert = broker.advertisement();
        let version = match &mut advert {
            Some(a) => {
                let (version, entries) = a.current();
                registration::set_subscriptions(&mut node, entries);
                Some(version)
            }
            None => {
                registration::set_subscriptions(&mut node, registration::listed(&subscriptions));
                None
            }
        };
        let mut record = registry::Record::new(self.name.clone()).with_version(self.version);
        record.metadata = self.metadata;
        record.endpoints = server.endpoints().to_vec();
        record.nodes.push(node);
        let ttl = RegisterOptions::with_ttl(self.register_ttl);
        if let Err(e) = registration::register_with_retries(&*registry, &record, &ttl).await {
            server.abort();
            consumers.stop().await;
            return Err(Error::from(e).or_id(&self.name));
        }
        // Campaigns start once the node is registered, so that the lead it
        // wins shows on it.
        let (leaders, leaders_seen) = tokio::sync::watch::channel(BTreeMap::new());
        let sync = self.sync.unwrap_or_else(|| backends.sync().clone());
        let sync_name = sync.name();
        let locker = crate::sync::Locker::with_owner(sync, record.nodes[0].id.clone());
        let campaigns = match leader::Campaigns::start(self.leader_tasks, &locker, &leaders) {
            Ok(c) => c,
            Err(e) => {
                server.abort();
                consumers.stop().await;
                let _ = registry.deregister(&record).await;
                return Err(e.or_id(&self.name));
            }
        };
        if let (Some(a), Some(version)) = (&advert, version) {
            a.registered(version);
        }
        let renewing = tokio::spawn(registration::renew(
            registry.clone(),
            record.clone(),
            ttl,
            self.register_interval,
            advert,
            (leaders, leaders_seen),
        ));
        tracing::info!(
            service = %self.name,
            address = %local_addr,
            advertise = %record.nodes[0].address,
            registry = registry.name(),
            broker = broker.name(),
            store = store_name,
            events = topics.backend().name(),
            sync = sync_name,
            "service started"
        );
        Ok(ServiceHandle {
            record,
            registry,
            server,
            renewing,
            subscriptions,
            consumers: Some(consumers),
            campaigns: Some(campaigns),
            grace_period: self.grace_period,
            shutdown_delay: self.shutdown_delay,
        })
    }
}
