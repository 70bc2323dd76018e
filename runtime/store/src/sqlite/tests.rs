//! SQLite specifics (the file, its pragmas, migrations, several connections) on top of the
//! shared suite.

use super::*;
use crate::conformance::execution;
use crate::testing::Fixture;
use std::sync::Arc;

use crate::{Claim, LeaseStore};

async fn fresh() -> Fixture<SqliteStore> {
    Fixture::new(SqliteStore::open_in_memory().unwrap(), ())
}

crate::conformance::suite!(fresh);

async fn pragma<T: rusqlite::types::FromSql + Send + 'static>(
    store: &SqliteStore,
    name: &'static str,
) -> T {
    store
        .with_conn(move |conn| conn.pragma_query_value(None, name, |row| row.get(0)))
        .await
        .unwrap()
}

#[tokio::test]
async fn open_creates_parent_directories_and_configures_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/orca.db");
    let store = SqliteStore::open(&path).unwrap();
    assert!(path.exists());

    let mode: String = pragma(&store, "journal_mode").await;
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    // FULL is 2.
    assert_eq!(pragma::<i64>(&store, "synchronous").await, 2);
    assert_eq!(pragma::<i64>(&store, "busy_timeout").await, 5_000);
    assert_eq!(
        pragma::<i64>(&store, "user_version").await,
        MIGRATIONS.len() as i64
    );
}

#[tokio::test]
async fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orca.db");
    let original = execution("e1", "wf", "completed", 1_000);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create(&original, "a", 1).await.unwrap();
    }

    // Reopening must not re-run the migrations (they would fail on the existing table).
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        pragma::<i64>(&store, "user_version").await,
        MIGRATIONS.len() as i64
    );
    assert_eq!(store.load("e1").await.unwrap(), Some(original));
}

#[tokio::test]
async fn executions_from_before_leases_are_free_to_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(MIGRATIONS[0]).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.execute(
            "INSERT INTO executions VALUES ('old', 'wf', 'running', 1, 1, x'7b7d')",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.lease("old").await.unwrap(), None);
    let claim = Claim {
        owner: "me",
        until_ms: 10,
        now_ms: 0,
        take_over: None,
    };
    assert_eq!(store.claim("old", &claim).await.unwrap(), Some(1));
}

#[tokio::test]
async fn refuses_a_schema_newer_than_it_knows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orca.db");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();

    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("schema version 99"), "{err}");
}

#[tokio::test]
async fn two_stores_on_one_file_see_each_others_writes_and_fences() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = SqliteStore::open(&path).unwrap();
    let second = SqliteStore::open(&path).unwrap();

    let from_first = execution("a", "wf", "running", 1_000);
    let fence = first.create(&from_first, "one", 100).await.unwrap();
    assert_eq!(second.load("a").await.unwrap(), Some(from_first));

    let claim = Claim {
        owner: "two",
        until_ms: 10_000,
        now_ms: 200,
        take_over: None,
    };
    let taken = second.claim("a", &claim).await.unwrap().unwrap();
    let mut update = execution("a", "wf", "completed", 9_000);
    update.updated_at_ms = 2_000;
    second.save(&update, taken).await.unwrap();
    assert!(matches!(
        first.save(&execution("a", "wf", "failed", 1), fence).await,
        Err(StoreError::Fenced { .. })
    ));

    let seen = first.load("a").await.unwrap().unwrap();
    assert_eq!(seen.status, "completed");
    assert_eq!(seen.created_at_ms, 1_000);
    assert_eq!(seen.updated_at_ms, 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_one_file_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let stores = [
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    ];

    let mut tasks = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        for i in 0..25 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("s{n}-{i:02}");
                let fence = store
                    .create(&execution(&id, "wf", "running", i), "o", 1)
                    .await?;
                store
                    .save(&execution(&id, "wf", "completed", i), fence)
                    .await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    assert_eq!(
        stores[0].list(&ListFilter::default()).await.unwrap().len(),
        50
    );
}

#[tokio::test]
async fn writes_queued_behind_a_busy_connection_share_one_commit() {
    let store = SqliteStore::open_in_memory().unwrap();
    let records: Vec<_> = (0..50)
        .map(|i| execution(&format!("e{i}"), "wf", "running", i))
        .collect();
    for record in &records {
        store.create(record, "me", u64::MAX).await.unwrap();
    }
    let commits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = commits.clone();
    store
        .with_conn(move |conn| {
            conn.commit_hook(Some(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                false
            }))?;
            Ok(())
        })
        .await
        .unwrap();

    // Hold the connection's thread while the saves queue up behind it.
    let (release, held) = mpsc::channel::<()>();
    let busy = {
        let store = store.clone();
        tokio::spawn(async move { store.with_conn(move |_| Ok(held.recv())).await })
    };
    let saves: Vec<_> = records
        .into_iter()
        .map(|mut record| {
            let store = store.clone();
            record.status = "completed".into();
            tokio::spawn(async move { store.save(&record, 1).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.send(()).unwrap();

    busy.await.unwrap().unwrap().unwrap();
    for save in saves {
        save.await.unwrap().unwrap();
    }
    assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let completed = store
        .list(&ListFilter {
            status: Some("completed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(completed.len(), 50);
}
