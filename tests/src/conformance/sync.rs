//! The lock contract (`micro::sync::Locks`), through `Locker`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use micro::sync::{Locker, Locks};

/// Every lock backend passes this: try-lock, owner-checked renew and
/// release, strictly growing tokens, mutual exclusion under contention
/// (8 tasks, 1,000 critical sections, an overlap detector), expiry of an
/// abandoned lease, renewal past several TTLs, `lost()` when the lease is
/// taken away, the wait bound (408), bad names (400), and an election that
/// hands over on resign. `prefix` keeps one run's names apart.
pub async fn sync(backend: Arc<dyn Locks>, prefix: &str) {
    let a = Locker::with_owner(backend.clone(), "node-a");
    let b = Locker::with_owner(backend.clone(), "node-b");
    let ttl = Duration::from_secs(2);

    // Try-lock, and who holds it.
    let name = format!("{prefix}.try");
    let held = a.try_lock(&name, ttl).await.unwrap().expect("a free lock");
    assert!(held.owner().starts_with("node-a/"), "{}", held.owner());
    assert!(
        b.try_lock(&name, ttl).await.unwrap().is_none(),
        "taken twice"
    );
    let holder = b.holder(&name).await.unwrap().expect("a holder");
    assert_eq!(
        (holder.owner.as_str(), holder.fence),
        (held.owner(), held.fence())
    );

    // Only the holder renews or releases it.
    let fence = held.fence();
    assert!(!backend.release(&name, "node-b/x", fence).await.unwrap());
    assert!(
        !backend
            .release(&name, held.owner(), fence + 1)
            .await
            .unwrap()
    );
    assert!(!backend.renew(&name, "node-b/x", fence, ttl).await.unwrap());
    assert!(
        b.try_lock(&name, ttl).await.unwrap().is_none(),
        "released by another"
    );
    held.unlock().await.unwrap();
    assert!(b.holder(&name).await.unwrap().is_none());

    // Tokens grow with every acquisition, whoever takes it.
    let mut last = fence;
    for i in 0..6 {
        let locker = if i % 2 == 0 { &a } else { &b };
        let lock = locker.try_lock(&name, ttl).await.unwrap().expect("free");
        assert!(lock.fence() > last, "{} after {last}", lock.fence());
        last = lock.fence();
        lock.unlock().await.unwrap();
    }

    // The wait is bounded: 408 once it has passed.
    let held = a.try_lock(&name, ttl).await.unwrap().unwrap();
    let started = Instant::now();
    let err = b
        .lock(&name, ttl, Duration::from_millis(300))
        .await
        .expect_err("held by a");
    assert_eq!(err.code(), 408, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Released, a waiter gets it without waiting out its bound.
    let waiter = {
        let b = b.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let lock = b.lock(&name, ttl, Duration::from_secs(10)).await.unwrap();
            (started.elapsed(), lock)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.unlock().await.unwrap();
    let (waited, lock) = waiter.await.unwrap();
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    // Dropping a guard releases it.
    drop(lock);
    let deadline = Instant::now() + Duration::from_secs(2);
    while b.holder(&name).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "a dropped lock stayed held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Bad names and times to live.
    for bad in ["", "two words", &"x".repeat(201)] {
        let err = a.try_lock(bad, ttl).await.expect_err(bad);
        assert_eq!(err.code(), 400, "{bad:?}: {err}");
    }
    let err = a
        .try_lock(&name, Duration::from_millis(1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 400, "{err}");

    exclusion(&a, &b, &format!("{prefix}.mutex")).await;
    leases(&backend, &a, &b, &format!("{prefix}.lease")).await;
    election(&a, &b, &format!("{prefix}.leader")).await;
}

/// 8 tasks (on two lockers) enter one lock's critical section 1,000 times
/// in all: never two at once, and each holder's token above the last.
async fn exclusion(a: &Locker, b: &Locker, name: &str) {
    let inside = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let highest = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let locker = if t % 2 == 0 { a.clone() } else { b.clone() };
            let (inside, entered, highest) = (inside.clone(), entered.clone(), highest.clone());
            let name = name.to_owned();
            tokio::spawn(async move {
                for _ in 0..125 {
                    let lock = locker
                        .lock(&name, Duration::from_secs(5), Duration::from_secs(60))
                        .await
                        .unwrap();
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two inside");
                    let before = highest.swap(lock.fence(), Ordering::SeqCst);
                    assert!(lock.fence() > before, "{} after {before}", lock.fence());
                    tokio::task::yield_now().await;
                    entered.fetch_add(1, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    lock.unlock().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(entered.load(Ordering::SeqCst), 1000);
}

/// Leases: an abandoned one ends by itself, a held one is renewed past
/// several TTLs, and a lease taken away makes `lost()` fire.
async fn leases(backend: &Arc<dyn Locks>, a: &Locker, b: &Locker, name: &str) {
    let ttl = Duration::from_millis(300);
    // A holder that died: a lease nobody renews.
    let fence = backend
        .acquire(name, "node-dead/1", ttl)
        .await
        .unwrap()
        .expect("free");
    assert!(a.try_lock(name, ttl).await.unwrap().is_none());
    let started = Instant::now();
    let lock = a.lock(name, ttl, Duration::from_secs(5)).await.unwrap();
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    assert!(lock.fence() > fence);

    // Held past several TTLs: renewed, nobody else gets it.
    tokio::time::sleep(ttl * 4).await;
    assert!(!lock.is_lost());
    assert!(
        b.try_lock(name, ttl).await.unwrap().is_none(),
        "renewal lapsed"
    );

    // Taken away (as an operator deleting it, or a backend that lost it):
    // `lost()` fires within about a TTL, and unlocking says so.
    assert!(
        backend
            .release(name, lock.owner(), lock.fence())
            .await
            .unwrap()
    );
    tokio::time::timeout(ttl * 3, lock.lost())
        .await
        .expect("lost() fired");
    assert!(lock.is_lost());
    let taken = b.try_lock(name, ttl).await.unwrap().expect("free again");
    let err = lock.unlock().await.expect_err("lost");
    assert_eq!(err.code(), 409, "{err}");
    // That failed unlock did not release the new holder's lock.
    assert!(a.try_lock(name, ttl).await.unwrap().is_none());
    taken.unlock().await.unwrap();

    // Released while its guard renews it every few milliseconds: the
    // holder's release never loses to its own renewal. On a loaded
    // machine a renewal can come later than 30 ms, and the lease lapses:
    // then the release is rightly refused, and the lock is free for
    // anyone; a release refused while the holder still has the lock is
    // the failure.
    let ttl = Duration::from_millis(30);
    let mut released = 0;
    for round in 0..20u64 {
        let lock = a.try_lock(name, ttl).await.unwrap().expect("free");
        tokio::time::sleep(Duration::from_millis(round % 7 * 3)).await;
        if backend
            .release(name, lock.owner(), lock.fence())
            .await
            .unwrap()
        {
            released += 1;
        } else {
            let other = b.try_lock(name, ttl).await.unwrap().unwrap_or_else(|| {
                panic!("round {round}: the holder's release failed while it held the lock")
            });
            // It may lapse as well on a loaded machine: either is fine.
            let _ = other.unlock().await;
        }
        lock.lost().await;
    }
    assert!(
        released >= 10,
        "only {released} of 20 releases went through: the leases lapsed too often to test the race"
    );
}

/// Two candidates: exactly one leads; when it resigns the other leads at
/// once, with a larger token.
async fn election(a: &Locker, b: &Locker, name: &str) {
    let ttl = Duration::from_secs(2);
    let first = a.campaign(name, ttl).unwrap();
    let fence = tokio::time::timeout(Duration::from_secs(5), first.elected())
        .await
        .expect("a leads");
    let second = b.campaign(name, ttl).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(first.is_leader() && !second.is_leader(), "two leaders");
    let started = Instant::now();
    first.resign().await;
    let next = tokio::time::timeout(Duration::from_secs(5), second.elected())
        .await
        .expect("b leads");
    assert!(
        started.elapsed() < ttl,
        "took over after {:?}",
        started.elapsed()
    );
    assert!(next > fence);
    second.resign().await;
}
