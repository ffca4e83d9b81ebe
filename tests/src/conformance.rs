//! Behaviour every backend of a trait must have, written once and run
//! against each backend: a new backend passes by adding one test that
//! calls the suite with a way to make it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::registry::{
    EventKind, Node, RegisterOptions, Registry, RegistryError, Service, Watcher,
};

/// A record of service `name` (version `version`) with one node.
fn record(name: &str, version: &str, node: &str, address: &str) -> Service {
    Service::new(name)
        .with_version(version)
        .with_node(Node::new(node, address).with_metadata("protocol", "http"))
}

/// The nodes of every version of `name`, sorted by id.
async fn nodes(registry: &dyn Registry, name: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = match registry.get_service(name).await {
        Ok(records) => records.into_iter().flat_map(|r| r.nodes).collect(),
        Err(RegistryError::NotFound(_)) => Vec::new(),
        Err(e) => panic!("get_service({name}): {e}"),
    };
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes
}

/// The next event of `watcher` about service `name`, within `limit`.
async fn next_event(watcher: &mut Watcher, name: &str, limit: Duration) -> (EventKind, usize) {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, watcher.next())
            .await
            .unwrap_or_else(|_| panic!("no event about {name} within {limit:?}"))
            .expect("the watch goes on")
            .expect("no lag");
        if event.service.name == name {
            return (event.kind, event.service.nodes.len());
        }
    }
}

/// The registry contract (`micro::registry::Registry`): register, get,
/// list, watch, renew, TTL and deregister. `make` gives a fresh registry;
/// `prefix` keeps the names of one run apart from others the backend may
/// hold.
///
/// # Panics
/// On the first behaviour the backend gets wrong.
pub async fn registry(make: impl Fn() -> Arc<dyn Registry>, prefix: &str) {
    let registry = make();
    let name = |n: &str| format!("{prefix}-{n}");

    // Nothing there: not found, by name.
    let missing = name("missing");
    match registry.get_service(&missing).await {
        Err(RegistryError::NotFound(n)) => assert_eq!(n, missing),
        other => panic!("get_service of an unknown name: {other:?}"),
    }
    assert_eq!(
        registry
            .get_service(&missing)
            .await
            .unwrap_err()
            .to_string(),
        format!("service \"{missing}\" not found in registry")
    );

    // Register, get, list.
    let greeter = name("greeter");
    let mut watcher = registry.watch().await.expect("watch");
    let a = record(&greeter, "v1", &format!("{greeter}-a"), "127.0.0.1:1001");
    registry
        .register(&a, RegisterOptions::default())
        .await
        .expect("register");
    assert_eq!(
        next_event(&mut watcher, &greeter, Duration::from_secs(5)).await,
        (EventKind::Create, 1)
    );
    let found = registry.get_service(&greeter).await.expect("found");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].version, "v1");
    assert_eq!(found[0].nodes, a.nodes);
    let listed = registry.list_services().await.expect("list");
    assert!(listed.iter().any(|s| s.name == greeter), "{listed:?}");

    // Registering again renews and replaces; it does not add a node.
    let a2 = record(&greeter, "v1", &format!("{greeter}-a"), "127.0.0.1:1002");
    registry
        .register(&a2, RegisterOptions::default())
        .await
        .unwrap();
    let now = nodes(&*registry, &greeter).await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].address, "127.0.0.1:1002");
    assert_eq!(
        next_event(&mut watcher, &greeter, Duration::from_secs(5)).await,
        (EventKind::Update, 1)
    );

    // Nodes of one name and version accumulate; another version is
    // another record.
    let b = record(&greeter, "v1", &format!("{greeter}-b"), "127.0.0.1:1003");
    registry
        .register(&b, RegisterOptions::default())
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut watcher, &greeter, Duration::from_secs(5)).await,
        (EventKind::Update, 2)
    );
    let c = record(&greeter, "v2", &format!("{greeter}-c"), "127.0.0.1:1004");
    registry
        .register(&c, RegisterOptions::default())
        .await
        .unwrap();
    let versions = registry.get_service(&greeter).await.unwrap();
    let mut by_version: Vec<(String, usize)> = versions
        .iter()
        .map(|r| (r.version.clone(), r.nodes.len()))
        .collect();
    by_version.sort();
    assert_eq!(by_version, [("v1".to_owned(), 2), ("v2".to_owned(), 1)]);
    assert_eq!(nodes(&*registry, &greeter).await.len(), 3);
    let _ = next_event(&mut watcher, &greeter, Duration::from_secs(5)).await;

    // Deregistering removes only the nodes named; an unknown node is no
    // error; the last node's going is a delete.
    registry.deregister(&c).await.unwrap();
    assert_eq!(
        next_event(&mut watcher, &greeter, Duration::from_secs(5)).await,
        (EventKind::Delete, 1)
    );
    registry.deregister(&a2).await.unwrap();
    assert_eq!(nodes(&*registry, &greeter).await, b.nodes);
    let ghost = record(&greeter, "v1", &format!("{greeter}-ghost"), "127.0.0.1:1");
    registry
        .deregister(&ghost)
        .await
        .expect("deregistering an unknown node is fine");
    registry.deregister(&b).await.unwrap();
    assert!(nodes(&*registry, &greeter).await.is_empty());
    assert!(matches!(
        registry.get_service(&greeter).await,
        Err(RegistryError::NotFound(_))
    ));

    // A registration with a TTL and no renewal expires by itself, and
    // watchers hear of it.
    let short = name("short");
    let s = record(&short, "latest", &format!("{short}-1"), "127.0.0.1:1005");
    let ttl = Duration::from_millis(600);
    registry
        .register(&s, RegisterOptions::with_ttl(ttl))
        .await
        .unwrap();
    assert_eq!(nodes(&*registry, &short).await.len(), 1);
    let (kind, _) = next_event(&mut watcher, &short, Duration::from_secs(5)).await;
    assert_eq!(kind, EventKind::Create);
    let (kind, _) = next_event(&mut watcher, &short, ttl + Duration::from_secs(5)).await;
    assert_eq!(kind, EventKind::Delete, "the node expired");
    assert!(nodes(&*registry, &short).await.is_empty());

    // Renewal keeps a TTL registration alive past its TTL.
    let kept = name("kept");
    let k = record(&kept, "latest", &format!("{kept}-1"), "127.0.0.1:1006");
    for _ in 0..4 {
        registry
            .register(&k, RegisterOptions::with_ttl(ttl))
            .await
            .unwrap();
        tokio::time::sleep(ttl / 3).await;
    }
    assert_eq!(nodes(&*registry, &kept).await.len(), 1, "renewed in time");
    registry.deregister(&k).await.unwrap();

    // Invalid records are refused, with a reason.
    let err = registry
        .register(&Service::new(""), RegisterOptions::default())
        .await
        .expect_err("an empty name is refused");
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
}
