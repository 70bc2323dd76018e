//! The Redis store against the real server: the shared suite plus what only Redis does
//! (expiry after the TTL, lazy trimming of its indexes).

use std::time::Duration;

use super::*;
use crate::conformance::execution;
use crate::testing::{self, Fixture, PrefixGuard};
use crate::{Claim, LeaseStore};

async fn fresh() -> Fixture<RedisStore, PrefixGuard> {
    let (config, guard) = testing::redis(Duration::from_secs(60));
    Fixture::new(RedisStore::open(&config).await.unwrap(), guard)
}

crate::conformance::suite!(fresh);

#[tokio::test]
async fn component_state() {
    let fixture = fresh().await;
    crate::conformance::component_state(&fixture.store).await;
}

#[tokio::test]
async fn records_expire_after_the_ttl_and_leave_the_indexes() {
    let (config, _guard) = testing::redis(Duration::from_millis(600));
    let store = RedisStore::open(&config).await.unwrap();
    store
        .create(&execution("old", "wf", "running", 1), "a", 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fence = store
        .create(&execution("young", "wf", "running", 2), "a", 1)
        .await
        .unwrap();
    // A save pushes the expiry out again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    store
        .save(&execution("young", "wf", "running", 2), fence)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(store.load("old").await.unwrap(), None);
    assert!(store.load("young").await.unwrap().is_some());
    let listed = store.list(&ListFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(&*listed[0].id, "young");
    let expired = store.list_expired(100, 10).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].execution_id, "young");

    let mut conn = store.conn.clone();
    let indexed: Vec<String> = conn.zrange(store.index_key(), 0, -1).await.unwrap();
    assert_eq!(indexed, ["young"]);
    let leased: Vec<String> = conn.zrange(store.leases_key(), 0, -1).await.unwrap();
    assert_eq!(leased, ["young"]);
    assert!(matches!(
        store.renew("old", 1, 5).await,
        Err(StoreError::NotFound(_))
    ));
    let claim = Claim {
        owner: "b",
        until_ms: 5,
        now_ms: 0,
        take_over: None,
    };
    assert!(matches!(
        store.claim("old", &claim).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn listing_pages_through_more_than_one_page() {
    let store = fresh().await;
    for i in 0..(PAGE as i64 + 30) {
        let e = execution(
            &format!("e{i:04}"),
            if i % 2 == 0 { "even" } else { "odd" },
            "running",
            i,
        );
        store.store.create(&e, "o", 1).await.unwrap();
    }
    let filter = ListFilter {
        workflow_id: Some("odd".into()),
        ..ListFilter::default()
    };
    let odd = store.store.list(&filter).await.unwrap();
    assert_eq!(odd.len(), (PAGE as usize + 30) / 2);
    assert_eq!(*odd[0].id, format!("e{:04}", PAGE + 29));
    let limited = store
        .store
        .list(&ListFilter {
            limit: Some(3),
            ..filter
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 3);
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let (config, _) = RedisConfig::parse("redis://:secret@127.0.0.1:1", None).unwrap();
    let err = RedisStore::open(&config).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot connect to redis://:***@127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

/// After a Redis restart the server has forgotten the scripts; a batch loads them again and
/// runs each write exactly once.
#[tokio::test]
async fn a_batch_survives_the_script_cache_being_flushed() {
    let store = fresh().await;
    let fence = store
        .store
        .create(&execution("a", "wf", "running", 1), "o", 10)
        .await
        .unwrap();
    let _: () = ::redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut store.store.conn.clone())
        .await
        .unwrap();
    let outcomes = store
        .store
        .write(vec![
            Write::Create {
                execution: execution("b", "wf", "running", 2),
                owner: "o".into(),
                lease_until_ms: 10,
            },
            Write::Save {
                execution: execution("a", "wf", "completed", 1),
                fence,
                release: true,
            },
            Write::Create {
                execution: execution("a", "wf", "running", 3),
                owner: "o".into(),
                lease_until_ms: 10,
            },
        ])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], Ok(1)), "{outcomes:?}");
    assert!(matches!(outcomes[1], Ok(1)), "{outcomes:?}");
    assert!(
        matches!(outcomes[2], Err(StoreError::Exists(_))),
        "{outcomes:?}"
    );
    assert_eq!(
        store.store.load("a").await.unwrap().unwrap().status,
        "completed"
    );
    assert_eq!(store.store.lease("a").await.unwrap(), None);
    assert!(store.store.load("b").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announces_to_other_processes() {
    let (config, _guard) = testing::redis(Duration::from_secs(60));
    let here = RedisStore::open(&config).await.unwrap();
    let there = RedisStore::open(&config).await.unwrap();
    crate::conformance::announces_to_other_processes(&here, &there).await;
}
