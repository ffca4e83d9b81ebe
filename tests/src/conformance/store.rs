//! The store contract (`micro::store::Store`), written once and run
//! against every backend.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use micro::codec::ContentType;
use micro::store::{Change, Query, Scoped, Store, Write};

/// What a store backend can do beyond the contract every one keeps.
#[derive(Clone, Copy, Debug)]
pub struct StoreTraits {
    /// It can watch a prefix.
    pub watches: bool,
    /// The longest key it takes, in bytes.
    pub max_key: usize,
}

/// Runs the store suite against the store `make` gives (one per test
/// part, sharing one backend). Each part works in a scope of its own,
/// named from `prefix`, so runs never meet.
///
/// # Panics
/// On the first behaviour the backend gets wrong.
pub async fn store(make: impl AsyncFn() -> Arc<dyn Store>, prefix: &str, traits: StoreTraits) {
    let scope = |part: &str| format!("{prefix}.{part}");
    let handle = async |part: &str| Scoped::new(make().await, &scope(part)).expect("a valid scope");

    // Exact reads, and 404 for what is not there.
    let s = handle("exact").await;
    assert_eq!(s.get::<String>("nothing").await.unwrap_err().code(), 404);
    let v1 = s.put("a", &"alpha").await.expect("put");
    assert_eq!(v1, 1, "a new key's first version");
    assert_eq!(s.get::<String>("a").await.unwrap(), "alpha");
    let record = s.read("a").await.unwrap();
    assert_eq!((record.key.as_str(), record.version), ("a", 1));
    let v2 = s.put("a", &"again").await.unwrap();
    assert_eq!(v2, 2, "each write adds one");
    assert_eq!(
        s.get::<String>("ab").await.unwrap_err().code(),
        404,
        "exact, not prefix"
    );

    // Byte order, prefixes and suffixes, with unicode and the characters
    // backends treat specially in patterns and names.
    let s = handle("order").await;
    let keys = [
        "k/b", "k/a", "k/%", "k/_", "k/*", "k/.", "k/:", "k/é", "k/日本", "k/a.json", "k/b.json",
        "l/a", "j/z", "k",
    ];
    for key in keys {
        s.put(key, &key)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }
    let mut want: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with("k/"))
        .collect();
    want.sort_unstable();
    assert_eq!(s.keys("k/").await.unwrap(), want, "byte order, prefix only");
    for key in keys {
        assert_eq!(
            s.get::<String>(key).await.unwrap(),
            key,
            "exact read of {key}"
        );
    }
    let json = s.list(&Query::prefix("k/").suffix(".json")).await.unwrap();
    let json: Vec<&str> = json.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(json, ["k/a.json", "k/b.json"]);
    let pattern = s.list(&Query::prefix("k/%")).await.unwrap();
    assert_eq!(pattern.len(), 1, "% is a character, not a pattern");
    let pattern = s.list(&Query::prefix("k/_")).await.unwrap();
    assert_eq!(pattern.len(), 1, "_ is a character, not a pattern");
    let star = s.list(&Query::prefix("k/*")).await.unwrap();
    assert_eq!(star.len(), 1, "* is a character, not a pattern");

    // Offset and limit count matches only.
    let page = s
        .list(&Query::prefix("k/").suffix(".json").offset(1).limit(5))
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].key, "k/b.json");
    let page = s.list(&Query::prefix("k/").limit(3)).await.unwrap();
    let page: Vec<&str> = page.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(page, want[..3]);

    // Cursor paging over 1,000 keys: every key once.
    let s = handle("paging").await;
    for i in (0..1000).rev() {
        s.put(&format!("item/{i:04}"), &i).await.unwrap();
    }
    s.put("other", &0).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = Query::prefix("item/").limit(64);
        if let Some(a) = &after {
            query = query.after(a.clone());
        }
        let page = s.list(&query).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 64);
        after = page.last().map(|r| r.key.clone());
        seen.extend(page.into_iter().map(|r| r.decode::<u32>().unwrap()));
    }
    assert_eq!(
        seen,
        (0..1000).collect::<Vec<u32>>(),
        "no key missed or repeated"
    );

    // Versions: write if absent, write on a version, delete on a version.
    let s = handle("versions").await;
    let v = s.write("doc", &1).if_absent().send().await.expect("absent");
    let err = s.write("doc", &2).if_absent().send().await.unwrap_err();
    assert_eq!(err.code(), 409, "exists: {err}");
    let v = s
        .write("doc", &3)
        .if_version(v)
        .send()
        .await
        .expect("current version");
    let err = s
        .write("doc", &4)
        .if_version(v - 1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), 409, "stale version: {err}");
    assert_eq!(s.get::<u32>("doc").await.unwrap(), 3);
    let err = s.delete_version("doc", v + 1).await.unwrap_err();
    assert_eq!(err.code(), 409, "delete on a wrong version");
    assert!(
        s.delete_version("doc", v).await.unwrap(),
        "deleted on its version"
    );
    assert!(!s.delete("doc").await.unwrap(), "already gone");
    let err = s.delete_version("doc", v).await.unwrap_err();
    assert_eq!(err.code(), 409, "delete on a version of nothing");
    let v = s
        .write("doc", &5)
        .if_absent()
        .send()
        .await
        .expect("absent again");
    assert_eq!(v, 1, "a deleted key starts again at 1");

    // Scopes are separate.
    let a = handle("scope-a").await;
    let b = a.scope(&scope("scope-b")).unwrap();
    a.put("same", &"a").await.unwrap();
    assert_eq!(b.get::<String>("same").await.unwrap_err().code(), 404);
    b.put("same", &"b").await.unwrap();
    assert_eq!(a.get::<String>("same").await.unwrap(), "a");
    assert_eq!(b.keys("").await.unwrap(), ["same"]);

    // TTL: an expired record is never returned, and is swept.
    let s = handle("ttl").await;
    s.write("brief", &1)
        .ttl(Duration::from_millis(300))
        .send()
        .await
        .unwrap();
    s.write("lasting", &2)
        .ttl(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    let record = s.read("brief").await.unwrap();
    assert!(record.expires_at.is_some(), "the expiry is kept");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        s.get::<u32>("brief").await.unwrap_err().code(),
        404,
        "expired"
    );
    assert_eq!(
        s.keys("").await.unwrap(),
        ["lasting"],
        "expired records are not listed"
    );
    let v = s
        .write("brief", &3)
        .if_absent()
        .send()
        .await
        .expect("an expired key is absent");
    assert_eq!(v, 1);
    // Swept: where the backend can watch, the sweep (its own, or this
    // one) is seen to remove the record.
    let mut swept = if traits.watches {
        Some(s.watch("gone").await.expect("watch"))
    } else {
        None
    };
    s.write("gone", &4)
        .ttl(Duration::from_millis(50))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.store().sweep().await.expect("sweep");
    if let Some(watch) = &mut swept {
        loop {
            let change = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("the expired record is swept within 10 s")
                .expect("the watch goes on")
                .expect("no error");
            match change {
                Change::Put(_) => continue,
                Change::Expire(k) | Change::Delete(k) => {
                    assert_eq!(k, "gone");
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(s.keys("").await.unwrap(), ["brief", "lasting"]);

    // A value of 1 MiB, byte for byte.
    let s = handle("large").await;
    let big: bytes::Bytes = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let write = Write::new("big", big.clone(), ContentType::MsgPack);
    s.store().write(s.name(), write).await.expect("1 MiB");
    let record = s.read("big").await.unwrap();
    assert_eq!(record.value, big, "1 MiB back byte for byte");
    assert_eq!(record.content_type, ContentType::MsgPack);

    // Bad input: 400, and the store goes on working.
    let err = s.put("", &1).await.unwrap_err();
    assert_eq!(err.code(), 400, "empty key: {err}");
    let long = "k".repeat(traits.max_key + 1);
    let err = s.put(&long, &1).await.unwrap_err();
    assert_eq!(err.code(), 400, "key over the limit: {err}");
    let err = s.get::<u32>(&long).await.unwrap_err();
    assert_eq!(err.code(), 400);
    assert!(
        Scoped::new(s.store().clone(), "").is_err(),
        "an empty scope"
    );
    assert!(
        Scoped::new(s.store().clone(), "a b").is_err(),
        "a scope with a space"
    );
    s.put("fine", &1).await.expect("still working");

    // Concurrency: 8 tasks, 1,000 compare-and-set increments in all.
    let s = handle("counter").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..125 {
                    s.update("n", |n: Option<u64>| n.unwrap_or(0) + 1)
                        .await
                        .expect("update");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get::<u64>("n").await.unwrap(), 1000, "no increment lost");

    // Fenced writes: a write with an older fencing token than the last is
    // refused, whoever comes first; racing holders end with the newest.
    let s = handle("fenced").await;
    s.write("job", &"five")
        .fence(5)
        .send()
        .await
        .expect("first");
    let err = s
        .write("job", &"three")
        .fence(3)
        .send()
        .await
        .expect_err("older");
    assert_eq!(err.code(), 409, "{err}");
    s.write("job", &"five again")
        .fence(5)
        .send()
        .await
        .expect("same holder");
    s.write("job", &"seven")
        .fence(7)
        .send()
        .await
        .expect("newer");
    let record = s.read("job").await.unwrap();
    assert_eq!(record.decode::<String>().unwrap(), "seven");
    assert_eq!(
        record
            .metadata
            .get(micro::store::FENCE_KEY)
            .map(String::as_str),
        Some("7")
    );
    let racers: Vec<_> = (10..18u64)
        .map(|fence| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    let _ = s.write("race", &fence).fence(fence).send().await;
                }
            })
        })
        .collect();
    for t in racers {
        t.await.unwrap();
    }
    assert_eq!(
        s.get::<u64>("race").await.unwrap(),
        17,
        "the newest holder's write"
    );

    // Watch: every change under the prefix, in order.
    let s = handle("watch").await;
    if traits.watches {
        let mut watch = s.watch("w/").await.expect("watch");
        s.put("w/1", &1).await.unwrap();
        s.put("x/1", &1).await.unwrap();
        s.put("w/1", &2).await.unwrap();
        s.delete("w/1").await.unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let change = tokio::time::timeout(Duration::from_secs(5), watch.next())
                .await
                .expect("a change within 5 s")
                .expect("the watch goes on")
                .expect("no error");
            got.push(match change {
                Change::Put(r) => format!("put {} v{}", r.key, r.version),
                Change::Delete(k) => format!("delete {k}"),
                Change::Expire(k) => format!("expire {k}"),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(got, ["put w/1 v1", "put w/1 v2", "delete w/1"]);
        // A record too large to travel inline (some backends send only its
        // key and version) still arrives whole.
        let big: bytes::Bytes = (0..64u32 << 10).map(|i| (i % 241) as u8).collect();
        let write = Write::new("w/big", big.clone(), ContentType::MsgPack);
        s.store().write(s.name(), write).await.expect("64 KiB");
        let change = tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .expect("a change within 5 s")
            .expect("the watch goes on")
            .expect("no error");
        match change {
            Change::Put(r) => {
                assert_eq!((r.key.as_str(), r.version), ("w/big", 1));
                assert_eq!(r.value, big, "the watched value byte for byte");
            }
            other => panic!("unexpected {other:?}"),
        }
    } else {
        let refused = s
            .watch("w/")
            .await
            .err()
            .expect("a backend without watch says so");
        assert_eq!(refused.code(), 501);
    }

    // Distinct keys stay distinct however they compare as text.
    let s = handle("distinct").await;
    let names = ["Key", "key", "KEY", "ke y", "key\u{0301}", "kéy"];
    for (i, k) in names.iter().enumerate() {
        s.put(k, &i).await.unwrap();
    }
    let listed: BTreeSet<String> = s.keys("").await.unwrap().into_iter().collect();
    assert_eq!(listed.len(), names.len(), "{listed:?}");
}
