//! `orca serve` against a hostile tenant: names and ids no object can have, definitions that
//! used to panic the loader, expressions built to run for minutes, and a shutdown with open
//! waits. Every answer is a 4xx with a message or a normal answer, never a 5xx, a closed
//! connection or a stalled server; no execution is lost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::durable::{Backend, Store};
use crate::server::{ADMIN, Server, workflow};
use crate::support::{Gate, Mock, Orca, Reply};

/// Requests with NUL characters, names breaking the naming rule and malformed bodies, on one
/// server: each gets the 4xx a client can act on.
fn refuses_what_no_object_can_be(server: &Server) {
    let token = server.tenant("acme");
    server.apply(&token, &workflow("orders"));
    let digest_nul = format!("/v1/components/sha256:{}%00", "a".repeat(63));
    for (method, path, expected) in [
        ("GET", "/v1/executions/x%00", 404),
        ("GET", "/v1/executions/x", 404),
        ("POST", "/v1/executions/x%00/cancel", 404),
        ("POST", "/v1/executions/x%00/resume", 404),
        ("GET", "/v1/definitions/w%00", 404),
        ("DELETE", "/v1/definitions/w%00", 404),
        ("GET", digest_nul.as_str(), 404),
        ("GET", "/v1/executions?workflow=w%00", 400),
        ("GET", "/v1/executions?status=nope", 400),
        ("GET", "/v1/executions?cursor=%00", 400),
    ] {
        let (status, body) = server.call(method, path, &token, "");
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
    let long = "a".repeat(100_000);
    for name in [
        "\"a\\u0000b\"",
        "\"\"",
        "\"../../etc\"",
        "\"a/b\"",
        "\"x\\ny\"",
        long.as_str(),
    ] {
        let yaml = format!(
            "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: {name}\nspec:\n  steps:\n    - {{name: a, api: svc}}\n"
        );
        let (status, body) = server.call("POST", "/v1/definitions", &token, &yaml);
        assert_eq!(status, 400, "{name:.40}: {body}");
        assert_eq!(body["field"], "metadata.name", "{body}");
    }
    for bad in [
        json!({"workflow": 5}),
        json!({"workflow": "w\u{0}"}),
        json!({"workflow": "orders", "services": {"a/b": "http://x"}}),
    ] {
        let (status, body) = server.call("POST", "/v1/executions", &token, &bad.to_string());
        assert_eq!(status, 400, "{bad}: {body}");
    }
    for name in ["a\u{0}", "A", ""] {
        let (status, body) = server.call(
            "POST",
            "/v1/tenants",
            ADMIN,
            &json!({ "name": name }).to_string(),
        );
        assert_eq!(status, 400, "{name:?}: {body}");
    }
    let (status, _) = server.call("POST", "/v1/tenants/a%00/tokens", ADMIN, "");
    assert_eq!(status, 404);
    // Still serving.
    let (status, _) = server.call("GET", "/healthz", "", "");
    assert_eq!(status, 200);
}

#[test]
fn nul_characters_and_bad_names_are_4xx_on_sqlite() {
    let orca = Orca::new();
    refuses_what_no_object_can_be(&Server::launch(&orca));
}

#[test]
fn nul_characters_and_bad_names_are_4xx_on_postgresql() {
    let store = Store::new(Backend::Postgres);
    let url = store.postgres();
    refuses_what_no_object_can_be(&Server::launch_with(&store.orca, &["--store", &url]));
}

/// A wait of 1e30 seconds and a CEL error past column 65,535 closed the connection (a panic
/// in the handler); both are 400s naming the field.
#[test]
fn definitions_that_panicked_the_loader_are_400() {
    let orca = Orca::new();
    let server = Server::launch(&orca);
    let token = server.tenant("acme");
    let wait = "apiVersion: orca.dev/v1\nkind: WorkflowDefinition\nmetadata:\n  name: w\nspec:\n  startAt: pause\n  states:\n    - {name: pause, type: wait, seconds: 1e30, next: d}\n    - {name: d, type: succeed}\n";
    let cel = format!(
        "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: c\nspec:\n  steps:\n    - name: a\n      api: svc\n      condition: \"{})\"\n",
        "true || ".repeat(9_000)
    );
    for (yaml, field) in [
        (wait.to_string(), "spec.states[0].seconds"),
        (cel, "spec.steps[0].condition"),
    ] {
        let (status, body) = server.call("POST", "/v1/definitions", &token, &yaml);
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["field"], field, "{body}");
    }
}

const EXPENSIVE: &str = "apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: pairs
spec:
  steps:
    - name: check
      api: svc
      endpoint: /ok
      condition: \"input.xs.all(a, input.xs.all(b, a + b >= 0))\"
";

/// Three starts whose condition iterates close to the budget each, at once: the server keeps
/// answering `/healthz` within 100 ms, and data that would take an expression over the
/// budget fails that execution with a message instead of running.
#[test]
fn expensive_expressions_never_stall_the_server() {
    let orca = Orca::new();
    let mock = Mock::start();
    mock.on("/ok", Reply::json(json!({"ok": true})));
    let server = Server::launch(&orca);
    let token = server.tenant("acme");
    server.apply(&token, EXPENSIVE);
    let start = |n: usize| {
        let request = json!({
            "workflow": "pairs",
            "input": {"xs": (0..n).collect::<Vec<_>>()},
            "services": {"svc": mock.url},
        });
        server.call(
            "POST",
            "/v1/executions?wait=60s",
            &token,
            &request.to_string(),
        )
    };

    let (status, over) = start(2_000);
    assert_eq!(status, 200, "{over}");
    assert_eq!(over["status"], "failed", "{over}");
    assert!(
        over["error"].as_str().unwrap().contains("over the budget"),
        "{over}"
    );

    let worst = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..3).map(|_| scope.spawn(|| start(990))).collect();
        let mut worst = Duration::ZERO;
        while !starts.iter().all(|s| s.is_finished()) {
            let asked = Instant::now();
            let (status, _) = server.call("GET", "/healthz", "", "");
            assert_eq!(status, 200);
            worst = worst.max(asked.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        for started in starts {
            let (status, body) = started.join().unwrap();
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["status"], "completed", "{body}");
        }
        worst
    });
    assert!(
        worst < Duration::from_millis(100),
        "/healthz took {worst:?} while expressions ran"
    );
}

/// SIGTERM with a request waiting on a held execution: the wait answers at once with the
/// execution as it stands, the process exits within its grace, and the execution is stopped
/// at its checkpoint (not failed), so a restarted server finishes it.
#[test]
fn sigterm_ends_open_waits_and_hands_executions_over() {
    let orca = Orca::new();
    let mock = Mock::start();
    let gate = Gate::new();
    mock.on("/orders/7", Reply::json(json!({"ok": true})).gate(&gate));
    let mut server = Server::launch_with(&orca, &["--grace", "1s"]);
    let a = server.tenant("alpha");
    server.apply(&a, &workflow("orders"));
    let waiting = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| server.start(&a, "?wait=60s", "orders", &mock.url));
        let deadline = Instant::now() + Duration::from_secs(10);
        while mock.requests_to("/orders/7").is_empty() {
            assert!(Instant::now() < deadline, "the call never arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        let signalled = Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let (status, body) = waiter.join().unwrap();
        (status, body, signalled.elapsed())
    });
    let (status, body, answered_after) = waiting;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "running", "{body}");
    assert!(
        answered_after < Duration::from_secs(2),
        "{answered_after:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "orca serve outlived its grace");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    gate.release();

    let id = body["id"].as_str().unwrap();
    let server = Server::launch(&orca);
    let done = server.wait_final(&a, id, Duration::from_secs(10));
    assert_eq!(done["status"], "completed", "{done}");
}

/// Executions resumed after a crash count against their tenant's quota.
#[test]
fn the_running_quota_holds_after_a_restart() {
    let orca = Orca::new();
    let mock = Mock::start();
    let gate = Gate::new();
    mock.on("/orders/7", Reply::json(json!({"ok": true})).gate(&gate));
    let quota = ["--max-running-per-tenant", "2"];
    let mut server = Server::launch_with(&orca, &quota);
    let a = server.tenant("alpha");
    server.apply(&a, &workflow("orders"));
    for _ in 0..2 {
        let (status, body) = server.start(&a, "", "orders", &mock.url);
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = server.start(&a, "", "orders", &mock.url);
    assert_eq!(status, 429, "{body}");
    // Both calls sent before the crash, so that the count below is of calls sent again.
    assert!(mock.wait_until(Duration::from_secs(10), |requests| requests.len() >= 2));
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = Server::launch_with(&orca, &quota);
    // The restarted server resumes both (their calls are sent again, and held).
    assert!(
        mock.wait_until(Duration::from_secs(10), |requests| requests.len() >= 4),
        "the resumed executions never called again"
    );
    let (status, body) = server.start(&a, "", "orders", &mock.url);
    assert_eq!(status, 429, "{body}");
    gate.release();
}
