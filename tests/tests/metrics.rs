//! `GET /metrics` after known traffic: every count exact.

#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::time::Duration;

use micro::broker::{Message, SubscribeOptions};
use micro_tests::{Greeter, GreeterClient, Hello, RawClient};

/// The samples of a Prometheus text page: `(name, labels) -> value`.
fn samples(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .expect("a sample is a series and a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label=value");
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        out.insert((name.to_owned(), labels), value.parse().expect("a number"));
    }
    out
}

fn get(
    all: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let mut want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    want.insert("service".into(), "counted".into());
    *all.get(&(name.to_owned(), want.clone()))
        .unwrap_or_else(|| panic!("no {name} {want:?} in {all:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_calls_streams_and_messages_exactly() {
    let backends = micro::Backends::memory();
    let running = micro::Service::new("counted")
        .address("127.0.0.1:0")
        .backends(&backends)
        .handle(Greeter)
        .subscribe(
            "jobs",
            SubscribeOptions::default(),
            micro::broker::handler(|m: Message| async move {
                let n: u32 = m.decode()?;
                if n.is_multiple_of(2) {
                    Ok(())
                } else {
                    Err(micro::Error::internal("odd"))
                }
            }),
        )
        .consume(micro::events::Consumer::new(
            "orders",
            |n: u32, _: micro::events::Delivered| async move {
                // 4xx: dead-lettered at once, so counted once.
                if n < 3 {
                    Ok(())
                } else {
                    Err(micro::Error::bad_request("too big"))
                }
            },
        ))
        .start()
        .await
        .unwrap();
    let client = micro::Client::builder().backends(&backends).build();
    let topics = micro::events::Topics::new(backends.events().clone());
    for n in 0..4u32 {
        topics.publish("orders", &n).await.unwrap();
    }
    let greeter = GreeterClient::new("counted", client.clone());
    for i in 0..5 {
        greeter
            .hello(Hello {
                name: format!("n{i}"),
            })
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let e = greeter
            .fail(micro_tests::Failure {
                code: 409,
                detail: "taken".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), 409);
    }
    for n in 0..3u32 {
        let _ = client.publish("jobs", &n).await;
    }
    // One stream open while scraping, one opened and closed before.
    let mut closed = client
        .stream::<String, String>("counted", "Greeter.Talk", Default::default())
        .await
        .unwrap();
    closed.recv().await.unwrap();
    closed.close_send().await.unwrap();
    while closed.recv().await.unwrap().is_some() {}
    drop(closed);
    let mut open = client
        .stream::<String, String>("counted", "Greeter.Talk", Default::default())
        .await
        .unwrap();
    open.recv().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let raw = RawClient::new()
        .send("GET", running.local_addr(), "/metrics", &[], "")
        .await
        .unwrap();
    assert_eq!(raw.status, 200);
    assert!(
        raw.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(raw.body.to_vec()).unwrap();
    let all = samples(&text);
    let hello = [("endpoint", "Greeter.Hello"), ("code", "200")];
    assert_eq!(get(&all, "micro_requests_total", &hello), 5.0, "{text}");
    assert_eq!(
        get(
            &all,
            "micro_requests_total",
            &[("endpoint", "Greeter.Fail"), ("code", "409")]
        ),
        2.0
    );
    assert_eq!(
        get(
            &all,
            "micro_request_duration_seconds_count",
            &[("endpoint", "Greeter.Hello")]
        ),
        5.0
    );
    assert_eq!(
        get(
            &all,
            "micro_request_duration_seconds_count",
            &[("endpoint", "Greeter.Fail")]
        ),
        2.0
    );
    assert!(
        get(
            &all,
            "micro_request_duration_seconds_sum",
            &[("endpoint", "Greeter.Hello")]
        ) > 0.0
    );
    assert_eq!(
        get(
            &all,
            "micro_request_duration_seconds_bucket",
            &[("endpoint", "Greeter.Hello"), ("le", "+Inf")]
        ),
        5.0
    );
    assert_eq!(
        get(&all, "micro_streams_total", &[("endpoint", "Greeter.Talk")]),
        2.0
    );
    assert_eq!(
        get(&all, "micro_streams_open", &[("endpoint", "Greeter.Talk")]),
        1.0
    );
    assert_eq!(
        get(
            &all,
            "micro_messages_total",
            &[("topic", "jobs"), ("outcome", "ok")]
        ),
        2.0
    );
    assert_eq!(
        get(
            &all,
            "micro_messages_total",
            &[("topic", "jobs"), ("outcome", "error")]
        ),
        1.0
    );
    assert_eq!(
        get(
            &all,
            "micro_events_total",
            &[("topic", "orders"), ("outcome", "ok")]
        ),
        3.0
    );
    assert_eq!(
        get(
            &all,
            "micro_events_total",
            &[("topic", "orders"), ("outcome", "error")]
        ),
        1.0
    );

    drop(open);
    running.stop().await.unwrap();

    // Off: no metrics, and /metrics says why.
    let quiet = micro::Service::new("quiet")
        .address("127.0.0.1:0")
        .backends(&backends)
        .metrics(false)
        .handle(Greeter)
        .start()
        .await
        .unwrap();
    let raw = RawClient::new()
        .send("GET", quiet.local_addr(), "/metrics", &[], "")
        .await
        .unwrap();
    assert_eq!(raw.status, 404);
    assert!(raw.expect_error(404).contains("metrics"));
    quiet.stop().await.unwrap();
}
