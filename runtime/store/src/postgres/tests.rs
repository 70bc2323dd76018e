//! The PostgreSQL store against the local server, each test in a schema of its own.

use super::*;
use crate::LeaseStore;
use crate::testing::{self, Fixture, SchemaGuard};

async fn fresh() -> Fixture<PostgresStore, SchemaGuard> {
    let (config, guard) = testing::postgres();
    Fixture::new(PostgresStore::open(&config).await.unwrap(), guard)
}

crate::conformance::suite!(fresh);

#[tokio::test]
async fn component_state() {
    let fixture = fresh().await;
    crate::conformance::component_state(&fixture.store).await;
}

/// Two processes recovering at once: `SKIP LOCKED` splits the expired leases between
/// them, and none is handed to both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bulk_claims_at_once_split_the_expired_leases() {
    let (config, _guard) = testing::postgres();
    let first = PostgresStore::open(&config).await.unwrap();
    let second = PostgresStore::open(&config).await.unwrap();
    let batch = (0..300)
        .map(|i| Write::Create {
            execution: crate::conformance::execution(&format!("e{i:03}"), "wf", "running", 1),
            owner: "dead".into(),
            lease_until_ms: 10 + i,
        })
        .collect();
    assert!(first.write(batch).await.unwrap().iter().all(Result::is_ok));

    let (a, b) = tokio::join!(
        first.claim_expired("a", 1_000, 9_000, 200),
        second.claim_expired("b", 1_000, 9_000, 200),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<&str> = a.iter().chain(&b).map(|(record, _)| &*record.id).collect();
    assert_eq!(all.len(), 300, "a took {}, b took {}", a.len(), b.len());
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 300);
    assert!(a.iter().chain(&b).all(|(_, fence)| *fence == 2));
    assert!(
        a.windows(2).all(|w| w[0].0.id < w[1].0.id),
        "soonest-expired first"
    );
}

#[tokio::test]
async fn opening_twice_at_once_migrates_once() {
    let (config, _guard) = testing::postgres();
    let (a, b) = tokio::join!(PostgresStore::open(&config), PostgresStore::open(&config));
    let (_a, b) = (a.unwrap(), b.unwrap());
    let client = b.client().await.unwrap();
    let versions: i64 = client
        .query_one("SELECT count(*) FROM orca_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions as usize, schema::MIGRATIONS.len());
}

#[tokio::test]
async fn execution_pages_leave_room_for_in_place_updates() {
    let (config, _guard) = testing::postgres();
    let store = PostgresStore::open(&config).await.unwrap();
    let options: Option<Vec<String>> = catalog(
        &store,
        "SELECT reloptions FROM pg_class WHERE oid = 'orca_executions'::regclass",
    )
    .await;
    assert_eq!(options, Some(vec!["fillfactor=50".to_string()]));
}

/// The one value `sql` reads from `store`'s database.
async fn catalog<T>(store: &PostgresStore, sql: &str) -> T
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    let client = store.client().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn batches_are_written_through_a_function_that_plans_them_once() {
    let (config, _guard) = testing::postgres();
    let store = PostgresStore::open(&config).await.unwrap();
    let settings: Option<Vec<String>> = catalog(
        &store,
        "SELECT proconfig FROM pg_proc WHERE oid = 'orca_write'::regproc",
    )
    .await;
    assert_eq!(
        settings,
        Some(vec!["plan_cache_mode=force_generic_plan".to_string()])
    );
    // A batch of two creates, then one of a save, a stale save and a save of an unknown
    // execution, each answered per write.
    let (a, b) = (
        crate::conformance::execution("a", "wf", "running", 1),
        crate::conformance::execution("b", "wf", "running", 2),
    );
    let creates = [a.clone(), b.clone()].map(|execution| Write::Create {
        execution,
        owner: "me".into(),
        lease_until_ms: 10,
    });
    let outcomes = store.write_committed(&creates).await.unwrap();
    let fences: Vec<_> = outcomes.iter().map(|o| o.as_ref().ok().copied()).collect();
    assert_eq!(fences, vec![Some((1, 1)), Some((1, 2))]);
    let mut done = a.clone();
    done.status = "completed".into();
    let unknown = crate::conformance::execution("c", "wf", "running", 3);
    let saves = [
        Write::Save {
            execution: done.clone(),
            fence: 1,
            release: true,
        },
        Write::Save {
            execution: b.clone(),
            fence: 7,
            release: false,
        },
        Write::Save {
            execution: unknown,
            fence: 1,
            release: false,
        },
    ];
    let outcomes = store.write_committed(&saves).await.unwrap();
    assert!(matches!(outcomes[0], Ok((1, 1))), "{:?}", outcomes[0]);
    assert!(matches!(&outcomes[1], Err(StoreError::Fenced { id, fence: 7 }) if id == "b"));
    assert!(matches!(&outcomes[2], Err(StoreError::NotFound(id)) if id == "c"));
    assert_eq!(store.load("a").await.unwrap().unwrap().status, "completed");
}

#[tokio::test]
async fn records_are_compressed_with_lz4_where_the_server_has_it() {
    let (config, _guard) = testing::postgres();
    let store = PostgresStore::open(&config).await.unwrap();
    let client = store.client().await.unwrap();
    let row = client
        .query_one(
            "SELECT a.attcompression::text,
                    COALESCE((SELECT 'lz4' = ANY(enumvals) FROM pg_settings
                              WHERE name = 'default_toast_compression'), false)
             FROM pg_attribute a
             WHERE a.attrelid = 'orca_executions'::regclass AND a.attname = 'body'",
            &[],
        )
        .await
        .unwrap();
    let (method, has_lz4): (String, bool) = (row.get(0), row.get(1));
    // `l` is lz4; an empty method is the server's default (pglz).
    assert_eq!(method, if has_lz4 { "l" } else { "" });
    // A record well past the compression threshold still reads back as written.
    let mut big = crate::conformance::execution("e1", "wf", "running", 1);
    big.body = serde_json::to_vec(&vec!["a step's worth of JSON"; 400])
        .unwrap()
        .into();
    let fence = store.create(&big, "me", 10).await.unwrap();
    store.save(&big, fence).await.unwrap();
    assert_eq!(store.load("e1").await.unwrap(), Some(big));
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let config = PostgresConfig {
        url: "postgresql://postgres:secret@127.0.0.1:1/test?connect_timeout=2".into(),
        schema: None,
    };
    let err = PostgresStore::open(&config).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot connect to postgresql://postgres:***@127.0.0.1:1"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announces_to_other_processes() {
    let (config, _guard) = testing::postgres();
    let here = PostgresStore::open(&config).await.unwrap();
    let there = PostgresStore::open(&config).await.unwrap();
    crate::conformance::announces_to_other_processes(&here, &there).await;
}
