//! `orca` killed with SIGKILL at different points of a saga, then `orca resume`d, on each
//! durable backend.
//!
//! What must hold after every crash: the execution ends in its terminal state; every step and
//! compensation the mock answered was called once, except the one call in flight at each
//! crash, which may be sent once more, with the same `Idempotency-Key` and body. The mock
//! counts calls by that key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value as Json, json};

use super::{Backend, Store};
use crate::support::{Gate, Mock, Recorded, Reply, Running, execution_id, services};

/// Two workflows over the same calls: `crash-ok` completes; in `crash-saga` the last step
/// fails for good, so `b` and then `a` are compensated. `c` retries a 503 after 400 ms.
const WORKFLOWS: &str = r#"apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: crash-ok
spec:
  steps:
    - name: a
      api: svc
      endpoint: /a
      method: POST
      compensation:
        name: undo_a
        api: svc
        endpoint: /undo_a
        method: POST
    - name: b
      api: svc
      endpoint: /b
      method: POST
      compensation:
        name: undo_b
        api: svc
        endpoint: /undo_b
        method: POST
    - name: c
      api: svc
      endpoint: /c
      method: POST
      retry:
        maxRetries: 2
        backoff:
          strategy: fixed
          initialDelay: 400ms
          jitter: 0.0
        retryableErrors: ["503"]
    - name: d
      api: svc
      endpoint: /d
      method: POST
---
apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: crash-saga
spec:
  steps:
    - name: a
      api: svc
      endpoint: /a
      method: POST
      compensation:
        name: undo_a
        api: svc
        endpoint: /undo_a
        method: POST
    - name: b
      api: svc
      endpoint: /b
      method: POST
      compensation:
        name: undo_b
        api: svc
        endpoint: /undo_b
        method: POST
    - name: c
      api: svc
      endpoint: /c
      method: POST
    - name: d
      api: svc
      endpoint: /fail
      method: POST
"#;

/// Where a run is killed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Once the mock holds a request to this path (answered only after the kill).
    InCall(&'static str),
    /// This long after the request to the path arrived (answered at once).
    After(&'static str, u64),
}

struct Scenario {
    name: &'static str,
    workflow: &'static str,
    /// One kill per process: the run, then each resume but the last.
    kills: &'static [Kill],
    /// Replies slowed down by this much, so timed kills land at varied points.
    delay_ms: u64,
    /// `c` answers 503 once before 200 (its retry timer is pending after the first call).
    c_fails_once: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "during a step's call",
        workflow: "crash-ok",
        kills: &[Kill::InCall("/b")],
        delay_ms: 0,
        c_fails_once: false,
    },
    Scenario {
        name: "between attempts, a retry timer pending",
        workflow: "crash-ok",
        kills: &[Kill::After("/c", 150)],
        delay_ms: 0,
        c_fails_once: true,
    },
    Scenario {
        name: "during compensation",
        workflow: "crash-saga",
        kills: &[Kill::InCall("/undo_b")],
        delay_ms: 0,
        c_fails_once: false,
    },
    Scenario {
        name: "during the failing call",
        workflow: "crash-saga",
        kills: &[Kill::InCall("/fail")],
        delay_ms: 0,
        c_fails_once: false,
    },
    Scenario {
        name: "twice: in a call, then in the resumed run",
        workflow: "crash-ok",
        kills: &[Kill::InCall("/a"), Kill::InCall("/d")],
        delay_ms: 0,
        c_fails_once: false,
    },
    Scenario {
        name: "at odd moments of a slow run",
        workflow: "crash-ok",
        kills: &[Kill::After("/a", 12), Kill::After("/c", 31)],
        delay_ms: 20,
        c_fails_once: false,
    },
    Scenario {
        name: "at odd moments of a slow saga",
        workflow: "crash-saga",
        kills: &[Kill::After("/b", 27), Kill::After("/undo_b", 9)],
        delay_ms: 20,
        c_fails_once: false,
    },
];

/// Programs the mock; returns one gate per kill, which holds that kill's call (if it is an
/// `InCall`) until released after the kill.
fn program(mock: &Mock, scenario: &Scenario) -> Vec<Gate> {
    let gates: Vec<Gate> = scenario.kills.iter().map(|_| Gate::new()).collect();
    let held = |path: &str| {
        scenario
            .kills
            .iter()
            .zip(&gates)
            .find(|(k, _)| matches!(k, Kill::InCall(p) if *p == path))
            .map(|(_, g)| g)
    };
    let delay = Duration::from_millis(scenario.delay_ms);
    for path in ["/a", "/b", "/c", "/d", "/undo_a", "/undo_b", "/fail"] {
        let mut reply = if path == "/fail" {
            Reply::status(500)
        } else {
            Reply::json(json!({"done": path}))
        };
        if scenario.delay_ms > 0 {
            reply = reply.delay(delay);
        }
        if let Some(gate) = held(path) {
            reply = reply.gate(gate);
        }
        mock.on(path, reply);
    }
    if scenario.c_fails_once {
        mock.script("/c", vec![Reply::status(503)]);
    }
    gates
}

/// Waits for the kill point, then SIGKILLs and reaps `running`; returns the requests the mock
/// had received by then.
fn kill_at(mock: &Mock, running: &mut Running, kill: Kill, seen_before: usize) -> Vec<Recorded> {
    let path = match kill {
        Kill::InCall(path) | Kill::After(path, _) => path,
    };
    let arrived = mock.wait_until(Duration::from_secs(15), |requests| {
        requests[seen_before..].iter().any(|r| r.path == path)
    });
    if let Kill::After(_, ms) = kill {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let _ = running.child.kill();
    running.child.wait().expect("reap orca");
    assert!(
        arrived,
        "no request to {path} before the kill: {:?}",
        mock.paths()
    );
    // A request already written to the socket may be read after the process died.
    std::thread::sleep(Duration::from_millis(30));
    mock.requests()
}

fn expected_status(workflow: &str) -> (&'static str, i32) {
    if workflow == "crash-ok" {
        ("completed", 0)
    } else {
        ("compensated", 1)
    }
}

fn run_scenario(store: &Store, scenario: &Scenario, flush_before_resume: bool) {
    let mock = Mock::start();
    let gates = program(&mock, scenario);
    let workflow = store.orca.write("crash.yaml", WORKFLOWS);
    let mut args = vec![
        "run".to_string(),
        workflow,
        "--workflow".to_string(),
        scenario.workflow.to_string(),
    ];
    args.extend(services(&mock.url, &["svc"]));

    let mut running = store.spawn(&args);
    let id = execution_id(&running.next_line(Duration::from_secs(15)));
    // The last request before each crash: the only one that may have been in flight.
    let mut in_flight = Vec::new();
    // Those that certainly were (held by the mock until after the kill).
    let mut held = Vec::new();
    let mut seen = 0;
    for (n, (kill, gate)) in scenario.kills.iter().zip(&gates).enumerate() {
        if n > 0 {
            running = store.spawn(&["resume".to_string(), id.clone()]);
        }
        let requests = kill_at(&mock, &mut running, *kill, seen);
        gate.release();
        let last = requests.last().and_then(|r| r.idempotency_key.clone());
        if matches!(kill, Kill::InCall(_)) {
            held.extend(last.clone());
        }
        in_flight.extend(last);
        seen = requests.len();
        if flush_before_resume {
            store.flush_redis();
        }
    }

    let out = store.run(&["resume".to_string(), id.clone()]);
    let (status, code) = expected_status(scenario.workflow);
    out.expect_code(code);
    let execution = out.json();
    let context = format!("{:?} / {}: {execution:#}", store.backend, scenario.name);
    assert_eq!(execution["status"], status, "{context}");
    let requests = mock.requests();
    check_calls(&requests, &id, &in_flight, &context);
    for key in &held {
        let calls = requests
            .iter()
            .filter(|r| r.idempotency_key.as_ref() == Some(key))
            .count();
        assert_eq!(
            calls, 2,
            "{key} was in flight, so it is sent again: {context}"
        );
    }
}

/// Every key called once, but a key in flight at a crash at most twice with the same body.
fn check_calls(requests: &[Recorded], id: &str, in_flight: &[String], context: &str) {
    let mut by_key: BTreeMap<&str, Vec<&Recorded>> = BTreeMap::new();
    for request in requests {
        let key = request
            .idempotency_key
            .as_deref()
            .unwrap_or_else(|| panic!("{} came without an Idempotency-Key", request.path));
        assert!(key.starts_with(&format!("{id}:")), "{key}: {context}");
        by_key.entry(key).or_default().push(request);
    }
    for (key, calls) in &by_key {
        let allowed = if in_flight.iter().any(|k| k == key) {
            2
        } else {
            1
        };
        assert!(
            calls.len() <= allowed,
            "{key} was called {} times: {context}",
            calls.len()
        );
        let bodies: Vec<&Json> = calls.iter().map(|r| &r.body).collect();
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{key}: {context}");
    }
}

fn crash_suite(backend: Backend) {
    let store = Store::new(backend);
    for (n, scenario) in SCENARIOS.iter().enumerate() {
        let flush = backend == Backend::RedisPersisted && n % 2 == 1;
        run_scenario(&store, scenario, flush);
    }
    // Nothing is left running.
    let running = store.run(&[
        "executions".to_string(),
        "list".to_string(),
        "--status".to_string(),
        "running".to_string(),
    ]);
    running.expect_code(0);
    assert_eq!(running.stdout.lines().count(), 1, "{}", running.stdout);
}

#[test]
fn crashes_on_sqlite_lose_nothing() {
    crash_suite(Backend::Sqlite);
}

#[test]
fn crashes_on_postgresql_lose_nothing() {
    crash_suite(Backend::Postgres);
}

#[test]
fn crashes_on_redis_persisted_to_postgresql_lose_nothing() {
    crash_suite(Backend::RedisPersisted);
}
