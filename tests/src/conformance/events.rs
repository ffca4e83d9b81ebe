//! The events contract (`micro::events::Events`, with the retry limit and
//! dead letters `Topics` adds), written once and run against every
//! backend.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use micro::Error;
use micro::events::{
    Backoff, ConsumeOptions, DeadLetter, Deliveries, Delivery, Events, Start, Topics,
};

/// The next delivery within `limit`.
async fn next(deliveries: &mut Deliveries, limit: Duration) -> Delivery {
    tokio::time::timeout(limit, deliveries.next())
        .await
        .unwrap_or_else(|_| panic!("no delivery within {limit:?}"))
        .expect("the deliveries go on")
        .expect("no error")
}

/// Nothing delivered within `wait`.
async fn quiet(deliveries: &mut Deliveries, wait: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(wait, deliveries.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

const SHORT: Duration = Duration::from_secs(5);

/// Runs the events suite against the backend `make` gives. Each part
/// works on topics of its own, named from `prefix` (letters, digits, `-`),
/// so runs never meet.
///
/// # Panics
/// On the first behaviour the backend gets wrong.
pub async fn events(make: impl AsyncFn() -> Arc<dyn Events>, prefix: &str) {
    let topic = |part: &str| format!("{prefix}.{part}");
    let topics = Topics::new(make().await);

    // Publish: stored, with an id and growing sequences; a duplicate id
    // is stored once.
    let t = topic("publish");
    let a = topics.publish(&t, &1u32).await.expect("publish");
    let b = topics.publish_with_id(&t, "order-7", &2u32).await.unwrap();
    let again = topics.publish_with_id(&t, "order-7", &2u32).await.unwrap();
    assert!(!a.id.is_empty() && b.id == "order-7");
    assert!(b.sequence > a.sequence, "sequences grow");
    assert!(again.duplicate && again.sequence == b.sequence, "{again:?}");
    let elsewhere = topics
        .publish_with_id(&topic("publish-other"), "order-7", &2u32)
        .await
        .unwrap();
    assert!(
        !elsewhere.duplicate,
        "an id is deduplicated within its topic only"
    );
    let mut all = topics
        .consume(&t, ConsumeOptions::group("all").start(Start::Beginning))
        .await
        .expect("consume");
    let first = next(&mut all, SHORT).await;
    assert_eq!((first.decode::<u32>().unwrap(), first.attempt()), (1, 1));
    assert_eq!(first.event().topic, t, "dots in a topic work");
    first.ack().await.unwrap();
    let second = next(&mut all, SHORT).await;
    assert_eq!(second.event().id, "order-7");
    second.ack().await.unwrap();
    quiet(&mut all, Duration::from_millis(300)).await;

    // Start positions: new only, the beginning, a sequence, a time.
    let t = topic("start");
    let s1 = topics.publish(&t, &1u32).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let between = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s2 = topics.publish(&t, &2u32).await.unwrap();
    let mut new = topics
        .consume(&t, ConsumeOptions::group("new"))
        .await
        .unwrap();
    let starts = [
        ("beginning", Start::Beginning, vec![1, 2, 3]),
        ("sequence", Start::Sequence(s2.sequence), vec![2, 3]),
        ("time", Start::Time(between), vec![2, 3]),
    ];
    let mut consumers = Vec::new();
    for (group, start, _) in &starts {
        let options = ConsumeOptions::group(*group).start(*start);
        consumers.push(topics.consume(&t, options).await.unwrap());
    }
    topics.publish(&t, &3u32).await.unwrap();
    let d = next(&mut new, SHORT).await;
    assert_eq!(
        d.decode::<u32>().unwrap(),
        3,
        "a new group sees new events only"
    );
    d.ack().await.unwrap();
    for ((group, _, expected), mut c) in starts.into_iter().zip(consumers) {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            let d = next(&mut c, SHORT).await;
            got.push(d.decode::<u32>().unwrap());
            d.ack().await.unwrap();
        }
        assert_eq!(got, expected, "start at {group}");
    }
    assert!(s1.sequence < s2.sequence);

    // Groups: two members share the events, none lost or doubled; another
    // group gets every one.
    let t = topic("groups");
    let options = ConsumeOptions::group("workers").start(Start::Beginning);
    let members = [
        topics.consume(&t, options.clone()).await.unwrap(),
        topics.consume(&t, options).await.unwrap(),
    ];
    let mut audit = topics
        .consume(&t, ConsumeOptions::group("audit").start(Start::Beginning))
        .await
        .unwrap();
    for i in 0..200u32 {
        topics.publish(&t, &i).await.unwrap();
    }
    let (sender, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let workers: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(m, mut member)| {
            let sender = sender.clone();
            tokio::spawn(async move {
                while let Ok(Some(d)) =
                    tokio::time::timeout(Duration::from_secs(2), member.next()).await
                {
                    let d = d.expect("no error");
                    sender.send((m, d.decode::<u32>().unwrap())).unwrap();
                    d.ack().await.unwrap();
                }
            })
        })
        .collect();
    drop(sender);
    let mut got = Vec::new();
    while let Some(item) = seen.recv().await {
        got.push(item);
    }
    for w in workers {
        w.await.unwrap();
    }
    let values: BTreeSet<u32> = got.iter().map(|(_, v)| *v).collect();
    assert_eq!(got.len(), 200, "each event to one member, none doubled");
    assert_eq!(values, (0..200).collect(), "none lost");
    let mut audited = BTreeSet::new();
    for _ in 0..200 {
        let d = next(&mut audit, SHORT).await;
        audited.insert(d.decode::<u32>().unwrap());
        d.ack().await.unwrap();
    }
    assert_eq!(audited.len(), 200, "the other group gets every event");

    // Ordering within one consumer.
    let t = topic("order");
    let mut one = topics
        .consume(&t, ConsumeOptions::group("one").start(Start::Beginning))
        .await
        .unwrap();
    for i in 0..50u32 {
        topics.publish(&t, &i).await.unwrap();
    }
    let mut last = 0;
    for i in 0..50u32 {
        let d = next(&mut one, SHORT).await;
        assert_eq!(d.decode::<u32>().unwrap(), i, "in publish order");
        assert!(d.sequence() > last);
        last = d.sequence();
        d.ack().await.unwrap();
    }

    // Nack: delivered again after the delay, the attempt one higher.
    let t = topic("nack");
    let options = ConsumeOptions::group("retry")
        .start(Start::Beginning)
        .backoff(Backoff::fixed(Duration::from_millis(200)));
    let mut retry = topics.consume(&t, options).await.unwrap();
    topics.publish(&t, &"flaky").await.unwrap();
    let d = next(&mut retry, SHORT).await;
    assert_eq!(d.attempt(), 1);
    let (id, sequence) = (d.event().id.clone(), d.sequence());
    d.nack(&Error::internal("try again")).await.unwrap();
    let d = next(&mut retry, SHORT).await;
    assert_eq!(
        (d.decode::<String>().unwrap().as_str(), d.attempt()),
        ("flaky", 2)
    );
    assert_eq!(
        (d.event().id.as_str(), d.sequence()),
        (id.as_str(), sequence),
        "a nacked event keeps its place: not published again at the end"
    );
    d.ack().await.unwrap();
    quiet(&mut retry, Duration::from_millis(500)).await;

    // A nack whose delay outlasts the ack wait: not delivered again before
    // the delay is over, nor taken over as unacked meanwhile.
    let t = topic("nack-long");
    let options = ConsumeOptions::group("patient")
        .start(Start::Beginning)
        .ack_wait(Duration::from_secs(1))
        .backoff(Backoff::fixed(Duration::from_millis(1_800)));
    let mut patient = topics.consume(&t, options.clone()).await.unwrap();
    let mut other = topics.consume(&t, options).await.unwrap();
    topics.publish(&t, &"later").await.unwrap();
    let d = tokio::select! {
        d = next(&mut patient, SHORT) => d,
        d = next(&mut other, SHORT) => d,
    };
    let (id, nacked) = (d.event().id.clone(), std::time::Instant::now());
    d.nack(&Error::internal("not yet")).await.unwrap();
    let again = tokio::select! {
        d = next(&mut patient, SHORT) => d,
        d = next(&mut other, SHORT) => d,
    };
    assert!(
        nacked.elapsed() >= Duration::from_millis(1_700),
        "delivered again after {:?}, before the nack's delay",
        nacked.elapsed()
    );
    assert_eq!(
        (again.event().id.as_str(), again.attempt()),
        (id.as_str(), 2)
    );
    again.ack().await.unwrap();

    // Unacked past the ack wait: delivered again, to another member too.
    let t = topic("ackwait");
    let options = ConsumeOptions::group("slow")
        .start(Start::Beginning)
        .ack_wait(Duration::from_secs(1));
    let mut first = topics.consume(&t, options.clone()).await.unwrap();
    topics.publish(&t, &"held").await.unwrap();
    let held = next(&mut first, SHORT).await;
    drop(first);
    let mut second = topics.consume(&t, options).await.unwrap();
    let again = next(&mut second, SHORT).await;
    assert_eq!(again.event().id, held.event().id);
    assert_eq!(again.attempt(), 2);
    again.ack().await.unwrap();
    drop(held);

    // In progress: the ack wait starts again, so no one else gets it.
    let t = topic("progress");
    let options = ConsumeOptions::group("busy")
        .start(Start::Beginning)
        .ack_wait(Duration::from_secs(1));
    let mut worker = topics.consume(&t, options.clone()).await.unwrap();
    let mut other = topics.consume(&t, options).await.unwrap();
    topics.publish(&t, &"long job").await.unwrap();
    let d = tokio::select! {
        d = next(&mut worker, SHORT) => d,
        d = next(&mut other, SHORT) => d,
    };
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        d.in_progress().await.unwrap();
    }
    assert_eq!(d.attempt(), 1);
    let (a, b) = tokio::join!(
        tokio::time::timeout(Duration::from_millis(300), worker.next()),
        tokio::time::timeout(Duration::from_millis(300), other.next()),
    );
    assert!(
        a.is_err() && b.is_err(),
        "not redelivered while in progress"
    );
    d.ack().await.unwrap();

    // The retry limit, then the dead letter; a reject dead-letters at once.
    let t = topic("dead");
    let options = ConsumeOptions::group("billing")
        .start(Start::Beginning)
        .max_attempts(2)
        .backoff(Backoff::fixed(Duration::from_millis(50)));
    let mut billing = topics.consume(&t, options).await.unwrap();
    let mut letters = topics
        .consume(
            &format!("{t}.dead"),
            ConsumeOptions::group("ops").start(Start::Beginning),
        )
        .await
        .unwrap();
    let poison = topics.publish(&t, &"card declined").await.unwrap();
    for attempt in 1..=2 {
        let d = next(&mut billing, SHORT).await;
        assert_eq!(d.attempt(), attempt);
        assert_eq!(d.last_attempt(), attempt == 2);
        d.nack(&Error::bad_gateway("the bank is down"))
            .await
            .unwrap();
    }
    let letter = next(&mut letters, SHORT).await;
    let dead = DeadLetter::of(letter.event()).expect("a dead letter");
    assert_eq!(
        letter.decode::<String>().unwrap(),
        "card declined",
        "the original payload"
    );
    assert_eq!(
        (dead.id.as_str(), dead.sequence),
        (poison.id.as_str(), poison.sequence)
    );
    assert_eq!(
        (dead.topic.as_str(), dead.group.as_str(), dead.attempts),
        (t.as_str(), "billing", 2)
    );
    assert!(dead.error.contains("the bank is down"), "{}", dead.error);
    letter.ack().await.unwrap();
    quiet(&mut billing, Duration::from_millis(300)).await;
    topics.publish(&t, &"bad").await.unwrap();
    let d = next(&mut billing, SHORT).await;
    d.reject(&Error::bad_request("cannot decode"))
        .await
        .unwrap();
    let letter = next(&mut letters, SHORT).await;
    let dead = DeadLetter::of(letter.event()).unwrap();
    assert_eq!(dead.attempts, 1);
    assert!(dead.error.contains("cannot decode"));
    letter.ack().await.unwrap();

    // Used up without an ack (every consumer died): dead-lettered too.
    let t = topic("abandoned");
    let options = ConsumeOptions::group("crashy")
        .start(Start::Beginning)
        .ack_wait(Duration::from_secs(1))
        .max_attempts(1);
    let mut letters = topics
        .consume(
            &format!("{t}.dead"),
            ConsumeOptions::group("ops").start(Start::Beginning),
        )
        .await
        .unwrap();
    let mut crashy = topics.consume(&t, options).await.unwrap();
    topics.publish(&t, &"orphan").await.unwrap();
    drop(next(&mut crashy, SHORT).await);
    quiet(&mut crashy, Duration::from_secs(2)).await;
    let letter = next(&mut letters, SHORT).await;
    let dead = DeadLetter::of(letter.event()).unwrap();
    assert!(dead.error.contains("not acknowledged"), "{}", dead.error);
    letter.ack().await.unwrap();

    // Bad input: 400.
    for bad in ["", "a..b", "with space", "star*", "gt>"] {
        let err = topics.publish(bad, &1).await.unwrap_err();
        assert_eq!(err.code(), 400, "topic {bad:?}: {err}");
    }
    let err = topics
        .consume(&topic("x"), ConsumeOptions::group("no spaces"))
        .await
        .err()
        .expect("a bad group");
    assert_eq!(err.code(), 400);

    // 10,000 events, every one acked once.
    let t = topic("many");
    let mut many = topics
        .consume(&t, ConsumeOptions::group("bulk").start(Start::Beginning))
        .await
        .unwrap();
    let publisher = {
        let (topics, t) = (topics.clone(), t.clone());
        tokio::spawn(async move {
            for i in 0..10_000u32 {
                topics.publish(&t, &i).await.expect("publish");
            }
        })
    };
    let mut seen = BTreeSet::new();
    for _ in 0..10_000 {
        let d = next(&mut many, Duration::from_secs(20)).await;
        assert!(seen.insert(d.decode::<u32>().unwrap()), "no event twice");
        d.ack().await.unwrap();
    }
    publisher.await.unwrap();
    assert_eq!(seen.len(), 10_000);
    quiet(&mut many, Duration::from_millis(300)).await;
}
