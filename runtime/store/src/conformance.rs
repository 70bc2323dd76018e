//! One behavioural suite that every [`ExecutionStore`] backend must pass.
//!
//! The runner is written against the trait, so a backend that differs in some corner (an
//! upsert that resets `created_at_ms`, a claim that ignores the fence) would break crash
//! recovery only in production. Each backend's test module calls [`suite!`] with a function
//! returning a fresh, isolated fixture (its own schema, key prefix or file).

use super::{Claim, ExecutionStore, Fence, ListFilter, StoreError, StoredExecution, Write};

pub(crate) fn execution(
    id: &str,
    workflow_id: &str,
    status: &str,
    created: i64,
) -> StoredExecution {
    StoredExecution {
        id: id.into(),
        workflow_id: workflow_id.into(),
        status: status.to_owned().into(),
        created_at_ms: created,
        updated_at_ms: created,
        body: format!(r#"{{"id":"{id}"}}"#).into_bytes().into(),
    }
}

fn ids(executions: &[StoredExecution]) -> Vec<&str> {
    executions.iter().map(|e| &*e.id).collect()
}

fn claim(owner: &str, until_ms: u64, now_ms: u64) -> Claim<'_> {
    Claim {
        owner,
        until_ms,
        now_ms,
        take_over: None,
    }
}

pub(crate) async fn round_trip(store: &dyn ExecutionStore) {
    let mut original = execution("e1", "wf", "running", 1_000);
    // Bytes that are not valid UTF-8 must survive: the body is binary, not text.
    original.body = vec![0, 159, 146, 150, b'{', b'}'].into();
    assert_eq!(store.create(&original, "a", 5_000).await.unwrap(), 1);
    assert_eq!(store.load("e1").await.unwrap(), Some(original));
    assert_eq!(store.load("nope").await.unwrap(), None);
    assert!(matches!(
        store.create(&execution("e1", "wf", "running", 9), "b", 1).await,
        Err(StoreError::Exists(id)) if id == "e1"
    ));
}

pub(crate) async fn save_keeps_created_at_and_updates_the_rest(store: &dyn ExecutionStore) {
    let fence = store
        .create(&execution("e1", "wf", "running", 1_000), "a", 5_000)
        .await
        .unwrap();
    let mut update = execution("e1", "wf", "completed", 5_000);
    update.updated_at_ms = 6_000;
    update.body = b"{\"done\":true}".to_vec().into();
    store.save(&update, fence).await.unwrap();

    let loaded = store.load("e1").await.unwrap().unwrap();
    assert_eq!(loaded.created_at_ms, 1_000);
    assert_eq!(loaded.updated_at_ms, 6_000);
    assert_eq!(loaded.status, "completed");
    assert_eq!(&*loaded.body, b"{\"done\":true}");
    assert_eq!(store.list(&ListFilter::default()).await.unwrap().len(), 1);
    // Listing by status goes through an index, which follows the change.
    let by_status = |status: &str| ListFilter {
        status: Some(status.to_owned()),
        ..ListFilter::default()
    };
    assert_eq!(store.list(&by_status("completed")).await.unwrap().len(), 1);
    assert!(store.list(&by_status("running")).await.unwrap().is_empty());
    // A save under a stale fence changes nothing, the status included.
    assert!(matches!(
        store
            .save(&execution("e1", "wf", "failed", 7_000), fence + 1)
            .await,
        Err(StoreError::Fenced { .. })
    ));
    let loaded = store.load("e1").await.unwrap().unwrap();
    assert_eq!(
        (&*loaded.status, loaded.updated_at_ms),
        ("completed", 6_000)
    );
    assert!(store.list(&by_status("failed")).await.unwrap().is_empty());
    assert!(matches!(
        store.save(&execution("nope", "wf", "running", 1), 1).await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn list_filters_orders_newest_first_and_limits(store: &dyn ExecutionStore) {
    for e in [
        execution("a", "wf1", "completed", 1_000),
        execution("b", "wf1", "running", 3_000),
        execution("c", "wf2", "running", 2_000),
        execution("d", "wf1", "running", 3_000),
        execution("e", "wf1", "failed", 4_000),
    ] {
        store.create(&e, "o", 1).await.unwrap();
    }
    let list = |workflow_id: Option<&str>, status: Option<&str>, limit: Option<usize>| {
        let filter = ListFilter {
            workflow_id: workflow_id.map(str::to_owned),
            status: status.map(str::to_owned),
            limit,
        };
        async move { store.list(&filter).await.unwrap() }
    };

    let all = list(None, None, None).await;
    assert_eq!(ids(&all), ["e", "d", "b", "c", "a"]);
    assert_eq!(all[4], execution("a", "wf1", "completed", 1_000));
    assert_eq!(
        ids(&list(Some("wf1"), None, None).await),
        ["e", "d", "b", "a"]
    );
    assert_eq!(
        ids(&list(None, Some("running"), None).await),
        ["d", "b", "c"]
    );
    assert_eq!(
        ids(&list(Some("wf1"), Some("running"), Some(1)).await),
        ["d"]
    );
    assert_eq!(ids(&list(None, None, Some(2)).await), ["e", "d"]);
    assert!(list(None, None, Some(0)).await.is_empty());
    assert!(list(Some("missing"), None, None).await.is_empty());
}

/// The property crash recovery rests on: a second claimant is refused while the lease runs,
/// wins once it expired, and from then on the first owner can no longer write.
pub(crate) async fn fencing_locks_out_the_previous_owner(store: &dyn ExecutionStore) {
    let first = store
        .create(&execution("e1", "wf", "running", 1_000), "a", 10_000)
        .await
        .unwrap();
    let lease = store.lease("e1").await.unwrap().unwrap();
    assert_eq!((lease.owner.as_str(), lease.fence), ("a", first));
    assert_eq!(lease.until_ms, 10_000);

    assert_eq!(
        store.claim("e1", &claim("b", 20_000, 9_000)).await.unwrap(),
        None
    );
    store.renew("e1", first, 12_000).await.unwrap();
    assert_eq!(
        store
            .claim("e1", &claim("b", 20_000, 11_000))
            .await
            .unwrap(),
        None
    );

    let second = store
        .claim("e1", &claim("b", 20_000, 12_001))
        .await
        .unwrap()
        .expect("the lease expired");
    assert!(second > first);
    let mut stale = execution("e1", "wf", "failed", 1_000);
    stale.body = b"stale".to_vec().into();
    assert!(matches!(
        store.save(&stale, first).await,
        Err(StoreError::Fenced { fence, .. }) if fence == first
    ));
    assert!(matches!(
        store.renew("e1", first, 30_000).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        store.release("e1", first).await,
        Err(StoreError::Fenced { .. })
    ));

    let mut fresh = execution("e1", "wf", "completed", 1_000);
    fresh.body = b"fresh".to_vec().into();
    store.save(&fresh, second).await.unwrap();
    assert_eq!(&*store.load("e1").await.unwrap().unwrap().body, b"fresh");
    let lease = store.lease("e1").await.unwrap().unwrap();
    assert_eq!((lease.owner.as_str(), lease.fence), ("b", second));

    // Released: nobody holds it, anyone may claim, and the fence keeps growing.
    store.release("e1", second).await.unwrap();
    assert_eq!(store.lease("e1").await.unwrap(), None);
    let third = store
        .claim("e1", &claim("c", 1, 0))
        .await
        .unwrap()
        .expect("a released lease is free");
    assert!(third > second);
    assert!(matches!(
        store.claim("nope", &claim("c", 1, 0)).await,
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) async fn take_over_is_a_compare_and_swap(store: &dyn ExecutionStore) {
    let first = store
        .create(&execution("e1", "wf", "running", 1_000), "a", 10_000)
        .await
        .unwrap();
    let mut stale_view = claim("b", 20_000, 0);
    stale_view.take_over = Some(first + 7);
    assert_eq!(store.claim("e1", &stale_view).await.unwrap(), None);

    let mut take_over = claim("b", 20_000, 0);
    take_over.take_over = Some(first);
    let second = store.claim("e1", &take_over).await.unwrap().unwrap();
    assert!(second > first);
    // The same owner claiming again (a retry after a lost reply) is allowed.
    let again = store.claim("e1", &claim("b", 20_000, 0)).await.unwrap();
    assert!(again.is_some_and(|f| f > second));
}

pub(crate) async fn list_expired_finds_dead_owners_only(store: &dyn ExecutionStore) {
    for (id, until) in [("x", 500), ("y", 100), ("z", 5_000), ("r", 50)] {
        store
            .create(&execution(id, "wf", "running", 1), "o", until)
            .await
            .unwrap();
    }
    store.release("r", 1).await.unwrap();
    let expired: Vec<(String, u64)> = store
        .list_expired(1_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.execution_id, l.until_ms))
        .collect();
    assert_eq!(expired, [("y".to_string(), 100), ("x".to_string(), 500)]);
    let first = store.list_expired(1_000, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].execution_id, "y");
    assert_eq!(first[0].owner, "o");
    assert!(store.list_expired(10, 10).await.unwrap().is_empty());
}

fn create(execution: StoredExecution, owner: &str, lease_until_ms: u64) -> Write {
    Write::Create {
        execution,
        owner: owner.to_owned(),
        lease_until_ms,
    }
}

fn save(execution: StoredExecution, fence: Fence) -> Write {
    Write::Save {
        execution,
        fence,
        release: false,
    }
}

/// A batch is per write: the stale and the duplicate ones fail alone, the rest is durable.
pub(crate) async fn a_batch_reports_each_write_and_commits_the_good_ones(
    store: &dyn ExecutionStore,
) {
    for id in ["a", "b"] {
        store
            .create(&execution(id, "wf", "running", 1_000), "o", 10)
            .await
            .unwrap();
    }
    let taken = store
        .claim("b", &claim("p", 1_000, 100))
        .await
        .unwrap()
        .unwrap();
    let mut a = execution("a", "wf", "completed", 9_999);
    a.updated_at_ms = 2_000;
    a.body = b"a done".to_vec().into();
    let mut stale_b = execution("b", "wf", "failed", 1_000);
    stale_b.body = b"stale".to_vec().into();

    let outcomes = store
        .write(vec![
            create(execution("c", "wf", "running", 3_000), "o", 500),
            save(a, 1),
            save(stale_b, 1),
            create(execution("a", "wf", "running", 4_000), "x", 1),
            save(execution("nope", "wf", "running", 1), 1),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 5);
    assert!(matches!(outcomes[0], Ok(1)), "{:?}", outcomes[0]);
    assert!(matches!(outcomes[1], Ok(1)), "{:?}", outcomes[1]);
    assert!(
        matches!(&outcomes[2], Err(StoreError::Fenced { id, fence: 1 }) if id == "b"),
        "{:?}",
        outcomes[2]
    );
    assert!(
        matches!(&outcomes[3], Err(StoreError::Exists(id)) if id == "a"),
        "{:?}",
        outcomes[3]
    );
    assert!(
        matches!(&outcomes[4], Err(StoreError::NotFound(id)) if id == "nope"),
        "{:?}",
        outcomes[4]
    );

    assert_eq!(
        store.load("c").await.unwrap(),
        Some(execution("c", "wf", "running", 3_000))
    );
    let lease = store.lease("c").await.unwrap().unwrap();
    assert_eq!(
        (lease.owner.as_str(), lease.fence, lease.until_ms),
        ("o", 1, 500)
    );
    let loaded_a = store.load("a").await.unwrap().unwrap();
    assert_eq!(loaded_a.status, "completed");
    assert_eq!(&*loaded_a.body, b"a done");
    assert_eq!(loaded_a.created_at_ms, 1_000);
    assert_eq!(loaded_a.updated_at_ms, 2_000);
    // The lost duplicate create changed nothing either.
    assert_eq!(store.lease("a").await.unwrap().unwrap().owner, "o");
    assert_eq!(
        store.load("b").await.unwrap(),
        Some(execution("b", "wf", "running", 1_000))
    );
    assert_eq!(store.lease("b").await.unwrap().unwrap().fence, taken);
    assert_eq!(store.load("nope").await.unwrap(), None);
}

pub(crate) async fn writes_to_one_execution_in_a_batch_apply_in_order(store: &dyn ExecutionStore) {
    let outcomes = store
        .write(vec![
            save(execution("e1", "wf", "early", 1), 1),
            create(execution("e1", "wf", "running", 1_000), "o", 10),
            save(execution("e1", "wf", "first", 1_000), 1),
            create(execution("e1", "wf", "again", 1_000), "o", 10),
            save(execution("e1", "wf", "second", 1_000), 1),
        ])
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], Err(StoreError::NotFound(_))),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[1], Ok(1)), "{outcomes:?}");
    assert!(matches!(outcomes[2], Ok(1)), "{outcomes:?}");
    assert!(
        matches!(&outcomes[3], Err(StoreError::Exists(_))),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[4], Ok(1)), "{outcomes:?}");
    assert_eq!(store.load("e1").await.unwrap().unwrap().status, "second");
}

pub(crate) async fn an_empty_batch_is_nothing_to_do(store: &dyn ExecutionStore) {
    assert!(store.write(Vec::new()).await.unwrap().is_empty());
    assert!(store.list(&ListFilter::default()).await.unwrap().is_empty());
}

/// `finish` is a save and a release in one: the lease is free, the fence stays (as after
/// [`LeaseStore::release`](super::LeaseStore::release)), and a stale finisher changes
/// nothing.
pub(crate) async fn finish_saves_and_releases_together(store: &dyn ExecutionStore) {
    let fence = store
        .create(&execution("e1", "wf", "running", 1_000), "a", 10_000)
        .await
        .unwrap();
    let mut done = execution("e1", "wf", "completed", 1_000);
    done.body = b"done".to_vec().into();
    store.finish(&done, fence).await.unwrap();
    assert_eq!(store.load("e1").await.unwrap(), Some(done.clone()));
    assert_eq!(store.lease("e1").await.unwrap(), None);
    assert!(store.list_expired(1_000_000, 10).await.unwrap().is_empty());
    let next = store
        .claim("e1", &claim("b", 1, 0))
        .await
        .unwrap()
        .expect("a finished execution's lease is free");
    assert!(next > fence);
    assert!(matches!(
        store.save(&execution("e1", "wf", "failed", 1), fence).await,
        Err(StoreError::Fenced { .. })
    ));

    // A finish with a stale fence neither writes nor releases.
    store
        .create(&execution("e2", "wf", "running", 1_000), "a", 10)
        .await
        .unwrap();
    let taken = store
        .claim("e2", &claim("b", 20_000, 100))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store
            .finish(&execution("e2", "wf", "completed", 1), fence)
            .await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(store.load("e2").await.unwrap().unwrap().status, "running");
    let lease = store.lease("e2").await.unwrap().unwrap();
    assert_eq!((lease.owner.as_str(), lease.fence), ("b", taken));
    assert!(matches!(
        store
            .finish(&execution("nope", "wf", "completed", 1), 1)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// The ids and fences of a bulk claim, in the order claimed.
fn ids_and_fences(claimed: &[(StoredExecution, Fence)]) -> Vec<(String, Fence)> {
    claimed
        .iter()
        .map(|(record, fence)| (record.id.to_string(), *fence))
        .collect()
}

/// Recovery's bulk claim: every expired lease is taken once, soonest-expired first, with
/// its record as last saved, and nothing else is touched.
pub(crate) async fn claim_expired_takes_each_expired_lease_once(store: &dyn ExecutionStore) {
    for (id, until) in [("x", 500), ("y", 100), ("z", 5_000), ("r", 50), ("w", 200)] {
        store
            .create(&execution(id, "wf", "running", 1), "dead", until)
            .await
            .unwrap();
    }
    store.release("r", 1).await.unwrap();
    // The dead owner's last checkpoint is what the claim must hand over.
    let checkpoint = StoredExecution {
        updated_at_ms: 7,
        body: br#"{"id":"y","step":2}"#.to_vec().into(),
        ..execution("y", "wf", "compensating", 1)
    };
    store.save(&checkpoint, 1).await.unwrap();
    assert!(
        store
            .claim_expired("me", 1_000, 9_000, 0)
            .await
            .unwrap()
            .is_empty()
    );

    let first = store.claim_expired("me", 1_000, 9_000, 2).await.unwrap();
    assert_eq!(
        ids_and_fences(&first),
        [("y".to_string(), 2), ("w".to_string(), 2)]
    );
    let (claimed, _) = &first[0];
    assert_eq!(&*claimed.body, &*checkpoint.body);
    assert_eq!(
        (&*claimed.status, claimed.updated_at_ms),
        ("compensating", 7)
    );
    assert_eq!(&*first[1].0.body, &br#"{"id":"w"}"#[..]);
    let rest = store.claim_expired("me", 1_000, 9_000, 10).await.unwrap();
    assert_eq!(ids_and_fences(&rest), [("x".to_string(), 2)]);
    assert!(
        store
            .claim_expired("other", 1_000, 9_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    for id in ["x", "y", "w"] {
        let lease = store.lease(id).await.unwrap().unwrap();
        assert_eq!(
            (lease.owner.as_str(), lease.fence, lease.until_ms),
            ("me", 2, 9_000)
        );
    }
    let live = store.lease("z").await.unwrap().unwrap();
    assert_eq!(
        (live.owner.as_str(), live.fence, live.until_ms),
        ("dead", 1, 5_000)
    );
    assert_eq!(store.lease("r").await.unwrap(), None);

    assert!(matches!(
        store.save(&execution("y", "wf", "failed", 1), 1).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        store.renew("y", 1, 20_000).await,
        Err(StoreError::Fenced { .. })
    ));
    store
        .save(&execution("y", "wf", "completed", 1), 2)
        .await
        .unwrap();
    assert_eq!(store.load("y").await.unwrap().unwrap().status, "completed");
    // Once the new leases run out too, they can be claimed again.
    let again = store
        .claim_expired("later", 10_000, 20_000, 10)
        .await
        .unwrap();
    assert_eq!(
        ids_and_fences(&again),
        [
            ("z".to_string(), 2),
            ("w".to_string(), 3),
            ("x".to_string(), 3),
            ("y".to_string(), 3)
        ]
    );
}

/// Expands to one `#[tokio::test]` per check, each on a fresh fixture from `$fresh()`: an
/// async fn returning a value with `store(&self) -> &dyn ExecutionStore`, which cleans up
/// (drops its schema, deletes its keys) when dropped.
macro_rules! suite {
    ($fresh:ident) => {
        $crate::conformance::suite!(
            @tests $fresh,
            round_trip,
            save_keeps_created_at_and_updates_the_rest,
            list_filters_orders_newest_first_and_limits,
            fencing_locks_out_the_previous_owner,
            take_over_is_a_compare_and_swap,
            list_expired_finds_dead_owners_only,
            a_batch_reports_each_write_and_commits_the_good_ones,
            writes_to_one_execution_in_a_batch_apply_in_order,
            an_empty_batch_is_nothing_to_do,
            finish_saves_and_releases_together,
            claim_expired_takes_each_expired_lease_once
        );
    };
    (@tests $fresh:ident, $($check:ident),+) => {
        $(
            #[tokio::test]
            async fn $check() {
                let fixture = $fresh().await;
                $crate::conformance::$check(&fixture.store).await;
            }
        )+
    };
}

pub(crate) use suite;

/// What every [`KvStore`](super::kv::KvStore) backend must do for component state: exact keys,
/// bytewise prefix listing (a prefix's glob or LIKE characters match only themselves), expiry
/// and deletion.
pub(crate) async fn component_state(kv: &dyn super::kv::KvStore) {
    use std::time::Duration;
    kv.set("t/a/x/e1/k", &[0, 255, 1], None).await.unwrap();
    // Long enough that a loaded machine still lists it before it expires.
    kv.set("t/a/x/e1/short", b"s", Some(Duration::from_millis(800)))
        .await
        .unwrap();
    kv.set("t/a/x/e1%_*?", b"odd", None).await.unwrap();
    kv.set("t/a/x/e2/k", b"other execution", None)
        .await
        .unwrap();
    kv.set("t/b/s/k", b"other tenant", None).await.unwrap();
    assert_eq!(kv.get("t/a/x/e1/k").await.unwrap(), Some(vec![0, 255, 1]));
    assert_eq!(kv.get("t/a/x/e1/missing").await.unwrap(), None);
    assert_eq!(
        kv.list_keys("t/a/x/e1/").await.unwrap(),
        ["t/a/x/e1/k", "t/a/x/e1/short"]
    );
    assert_eq!(kv.list_keys("t/a/x/e1%_*").await.unwrap(), ["t/a/x/e1%_*?"]);
    kv.set("t/a/x/e1/k", b"new", None).await.unwrap();
    assert_eq!(kv.get("t/a/x/e1/k").await.unwrap(), Some(b"new".to_vec()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(kv.get("t/a/x/e1/short").await.unwrap(), None);
    assert_eq!(kv.list_keys("t/a/x/e1/").await.unwrap(), ["t/a/x/e1/k"]);
    kv.delete("t/a/x/e1/k").await.unwrap();
    assert_eq!(kv.get("t/a/x/e1/k").await.unwrap(), None);
    assert!(kv.list_keys("t/a/x/e1/").await.unwrap().is_empty());
}

/// Two processes sharing a store (`here` and `there`): a watcher on `there` is woken by
/// each save `here` makes, told when the save ends the execution, and then reads the final
/// record; repeated, so that a watcher registering just before the finish never waits on.
pub(crate) async fn announces_to_other_processes(
    here: &dyn ExecutionStore,
    there: &dyn ExecutionStore,
) {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
    for round in 0..20 {
        let id = format!("shared{round}");
        let fence = here
            .create(&execution(&id, "wf", "running", 1_000), "a", u64::MAX)
            .await
            .unwrap();
        let mut watch = there.changes().watch(&id);
        // The first round also waits for the listening connection, which a first watch
        // opens.
        here.save(&execution(&id, "wf", "running", 1_000), fence)
            .await
            .unwrap();
        tokio::time::timeout(WITHIN, watch.changed())
            .await
            .expect("a save in one process wakes a watcher in the other");
        let finish = async {
            here.finish(&execution(&id, "wf", "completed", 1_000), fence)
                .await
                .unwrap()
        };
        let woken = async {
            loop {
                let status = there.load(&id).await.unwrap().unwrap().status;
                if status == "completed" {
                    return;
                }
                watch.finished().await;
            }
        };
        let (_, woken) = tokio::join!(finish, tokio::time::timeout(WITHIN, woken));
        woken.unwrap_or_else(|_| panic!("round {round}: the finish never reached the waiter"));
    }
}
