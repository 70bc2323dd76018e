//! Several `orca serve` processes on one store: what one process does reaches a client
//! talking to another, without polling. Each test runs on PostgreSQL and on Redis persisted
//! to PostgreSQL, the two stores servers share.

use std::time::Duration;

use serde_json::json;

use crate::durable::{Backend, Store};
use crate::events::event_stream;
use crate::server::{Server, workflow};
use crate::support::{Gate, Mock, Reply};

const SHARED: [Backend; 2] = [Backend::Postgres, Backend::RedisPersisted];

/// Two servers on one store, and an execution of `orders` that A started and whose call is
/// held by `gate` (it has reached the service).
struct Held {
    _store: Store,
    mock: Mock,
    gate: Gate,
    a: Server,
    b: Server,
    token: String,
    id: String,
}

impl Held {
    /// `a_flags`: more flags for A's `orca serve`.
    fn on(backend: Backend, a_flags: &[&str]) -> Self {
        let store = Store::new(backend);
        let mock = Mock::start();
        let gate = Gate::new();
        mock.on("/orders/7", Reply::json(json!({"amount": 1})).gate(&gate));
        let a = Server::launch_on_with(&store, a_flags);
        let b = Server::launch_on(&store);
        let token = a.tenant("alpha");
        a.apply(&token, &workflow("orders"));
        let (status, started) = a.start(&token, "", "orders", &mock.url);
        assert_eq!(status, 202, "{backend:?}: {started}");
        let id = started["id"].as_str().unwrap().to_string();
        assert!(mock.wait_until(Duration::from_secs(10), |r| !r.is_empty()));
        Held {
            _store: store,
            mock,
            gate,
            a,
            b,
            token,
            id,
        }
    }

    /// `GET /v1/executions/ID?wait=30s` on `server`.
    fn wait_on(&self, server: &Server) -> (u16, serde_json::Value) {
        let path = format!("/v1/executions/{}?wait=30s", self.id);
        server.call("GET", &path, &self.token, "")
    }
}

/// A client waiting on B (`GET /v1/executions/ID?wait=`) for an execution A drives is
/// answered when it finishes, and B's event stream of it follows it to its end: the changes
/// travel through the store's notification channel.
#[test]
fn a_waiter_on_one_server_is_woken_by_a_finish_on_another() {
    for backend in SHARED {
        let held = Held::on(backend, &[]);
        let (b, token, id) = (&held.b, &held.token, &held.id);
        std::thread::scope(|scope| {
            let waiter =
                scope.spawn(|| b.call("GET", &format!("/v1/executions/{id}?wait=50s"), token, ""));
            let stream = scope.spawn(|| event_stream(&b.addr, token, id, None));
            // Both have asked before the call answers (or at worst read the end).
            std::thread::sleep(Duration::from_millis(200));
            held.gate.release();
            let (status, done) = waiter.join().unwrap();
            assert_eq!(status, 200, "{backend:?}: {done}");
            // Had B not heard of the finish, it would answer after 50 s with `running`.
            assert_eq!(done["status"], "completed", "{backend:?}: {done}");
            // B's event stream follows the execution A drives to its end.
            let (status, events) = stream.join().unwrap();
            assert_eq!(status, 200, "{backend:?}");
            let last = events.last().map(|(_, kind, _)| kind.as_str());
            assert_eq!(last, Some("execution.ended"), "{backend:?}: {events:?}");
        });
    }
}

/// A start waited for on one server, many times over: each answers with the finished
/// execution, never the 202 of a wait that missed the finish.
#[test]
fn waits_that_race_the_finish_never_miss_it() {
    for backend in SHARED {
        let store = Store::new(backend);
        let mock = Mock::start();
        mock.on("/orders/7", Reply::json(json!({"amount": 1})));
        let server = Server::launch_on(&store);
        let token = server.tenant("alpha");
        server.apply(&token, &workflow("orders"));
        for round in 0..40 {
            let (status, done) = server.start(&token, "?wait=50s", "orders", &mock.url);
            assert_eq!(status, 200, "{backend:?} round {round}: {done}");
            assert_eq!(
                done["status"], "completed",
                "{backend:?} round {round}: {done}"
            );
        }
    }
}

/// A new version applied on B is what the next start on A runs, although A had the old one
/// compiled and cached; an execution started before keeps the version it started with.
#[test]
fn a_new_version_applied_anywhere_replaces_the_cached_plan_but_not_a_running_execution() {
    for backend in SHARED {
        let store = Store::new(backend);
        let mock = Mock::start();
        let gate = Gate::new();
        mock.on("/orders/7", Reply::json(json!({"v": 1})).gate(&gate));
        mock.on("/v2/orders/7", Reply::json(json!({"v": 2})));
        let a = Server::launch_on(&store);
        let b = Server::launch_on(&store);
        let token = a.tenant("alpha");
        a.apply(&token, &workflow("orders"));

        let (status, first) = a.start(&token, "", "orders", &mock.url);
        assert_eq!(status, 202, "{backend:?}: {first}");
        assert!(mock.wait_until(Duration::from_secs(10), |r| !r.is_empty()));
        b.apply(
            &token,
            &workflow("orders").replace("/orders/{id}", "/v2/orders/{id}"),
        );
        let (status, second) = a.start(&token, "?wait=50s", "orders", &mock.url);
        assert_eq!(status, 200, "{backend:?}: {second}");
        assert_eq!(second["status"], "completed", "{backend:?}: {second}");
        assert_eq!(second["output"]["fetch"]["v"], 2, "{backend:?}: {second}");

        gate.release();
        let id = first["id"].as_str().unwrap();
        let (status, first) = b.call("GET", &format!("/v1/executions/{id}?wait=50s"), &token, "");
        assert_eq!(status, 200, "{backend:?}: {first}");
        assert_eq!(first["output"]["fetch"]["v"], 1, "{backend:?}: {first}");
    }
}

/// A server stopped with SIGTERM hands the executions it still drives over: another server
/// sharing the store takes them over at its next sweep, without a restart of the first.
#[test]
fn a_server_stopped_with_sigterm_hands_its_executions_to_another() {
    for backend in SHARED {
        let mut held = Held::on(backend, &["--grace", "0s"]);
        held.a.terminate();
        held.gate.release();
        let (status, done) = held.wait_on(&held.b);
        assert_eq!(status, 200, "{backend:?}: {done}");
        assert_eq!(done["status"], "completed", "{backend:?}: {done}");
        // B sent the call again, with the same key.
        let calls = held.mock.requests_to("/orders/7");
        assert!(calls.len() >= 2, "{backend:?}: {calls:?}");
        assert!(
            calls
                .iter()
                .all(|c| c.idempotency_key == calls[0].idempotency_key)
        );
    }
}

/// A server killed outright (SIGKILL) loses its executions to another server sharing the
/// store within 10 s with the default lease settings: once its lease runs out, the other's
/// sweep takes the execution over and sends the call again. The two run on one host, but the
/// sweep does not use the same-host shortcut (a dead pid): only the lease decides.
#[test]
fn a_killed_servers_executions_are_taken_over_within_ten_seconds() {
    for backend in SHARED {
        let mut held = Held::on(backend, &[]);
        held.a.child.kill().unwrap();
        held.a.child.wait().unwrap();
        let killed = std::time::Instant::now();
        assert!(
            held.mock
                .wait_until(Duration::from_secs(10), |r| r.len() >= 2),
            "{backend:?}: not taken over within 10 s of the kill"
        );
        let taken_over = killed.elapsed();
        held.gate.release();
        let (status, done) = held.wait_on(&held.b);
        assert_eq!(status, 200, "{backend:?}: {done}");
        assert_eq!(done["status"], "completed", "{backend:?}: {done}");
        eprintln!("{backend:?}: taken over {taken_over:?} after the kill");
    }
}

/// A cancel sent to a server that does not drive the execution works as on the one that
/// does: it takes the execution over (the other is fenced out) and cancels it.
#[test]
fn a_cancel_sent_to_another_server_cancels_the_execution() {
    for backend in SHARED {
        let held = Held::on(backend, &[]);
        let cancel = format!("/v1/executions/{}/cancel", held.id);
        let (status, body) = held.b.call("POST", &cancel, &held.token, "");
        assert_eq!(status, 202, "{backend:?}: {body}");
        // B has taken it over once it sends the call in flight again (the same key): only
        // then may the call answer, or A would complete the execution first.
        assert!(
            held.mock
                .wait_until(Duration::from_secs(10), |r| r.len() >= 2)
        );
        held.gate.release();
        let (status, done) = held.wait_on(&held.a);
        assert_eq!(status, 200, "{backend:?}: {done}");
        assert_eq!(done["status"], "cancelled", "{backend:?}: {done}");
        // Cancelled once is final: B, whose store wrote the end, refuses another cancel.
        // (A may still read a Redis copy of the running execution for a while: see the
        // layered store's notes on copies read by other processes.)
        let (status, body) = held.b.call("POST", &cancel, &held.token, "");
        assert_eq!(status, 409, "{backend:?}: {body}");
    }
}
