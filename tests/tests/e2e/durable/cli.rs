//! The seed's state store from the command line: Redis in front of PostgreSQL surviving a
//! flush and an outage, and `orca resume` refusing to steal a live execution.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Backend, Store, finish, redis_url};
use crate::support::{Gate, Mock, Reply, execution_id, services};

const TWO_STEPS: &str = r#"apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: two-steps
spec:
  steps:
    - name: first
      api: svc
      endpoint: /first
    - name: second
      api: svc
      endpoint: /second
"#;

fn run_args(store: &Store, mock: &Mock) -> Vec<String> {
    let mut args = vec!["run".to_string(), store.orca.write("two.yaml", TWO_STEPS)];
    args.extend(services(&mock.url, &["svc"]));
    args
}

#[test]
fn a_redis_flush_mid_run_loses_nothing() {
    let store = Store::new(Backend::RedisPersisted);
    let mock = Mock::start();
    let gate = Gate::new();
    mock.on("/first", Reply::json(json!({"n": 1})));
    mock.on("/second", Reply::json(json!({"n": 2})).gate(&gate));
    let args = run_args(&store, &mock);

    std::thread::scope(|scope| {
        let run = scope.spawn(|| store.run(&args));
        assert!(
            mock.wait_until(Duration::from_secs(15), |r| r
                .iter()
                .any(|r| r.path == "/second")),
            "the second step never started"
        );
        store.flush_redis();
        gate.release();
        let out = run.join().expect("the run thread");
        out.expect_code(0);
        let execution = out.json();
        assert_eq!(execution["status"], "completed");
        let id = execution["id"].as_str().expect("an id").to_string();

        // Gone from Redis again: `show` reads PostgreSQL.
        store.flush_redis();
        let shown = store.run(&["executions".into(), "show".into(), id.clone()]);
        shown.expect_code(0);
        assert_eq!(shown.json()["status"], "completed");
        assert_eq!(shown.json()["output"], execution["output"]);
    });
    assert_eq!(mock.paths(), ["/first", "/second"]);
}

#[test]
fn with_redis_down_runs_complete_on_postgresql_with_one_warning() {
    let store = Store::new(Backend::RedisPersisted);
    let mock = Mock::start();
    mock.on("/first", Reply::json(json!({"n": 1})));
    mock.on("/second", Reply::json(json!({"n": 2})));
    let mut command = store.command(&run_args(&store, &mock));
    command.env("ORCA_REDIS_URL", "redis://127.0.0.1:1");
    let out = finish(command);
    out.expect_code(0);
    assert_eq!(out.json()["status"], "completed");
    let warnings = out.stderr.matches("Redis is unavailable").count();
    assert_eq!(warnings, 1, "{}", out.stderr);

    // With Redis back, the execution is there (read from PostgreSQL).
    let id = out.json()["id"].as_str().expect("an id").to_string();
    let shown = store.run(&["executions".into(), "show".into(), id]);
    shown.expect_code(0);
    assert_eq!(shown.json()["status"], "completed");
}

#[test]
fn resuming_an_execution_another_process_drives_is_refused() {
    let store = Store::new(Backend::Postgres);
    let mock = Mock::start();
    let gate = Gate::new();
    mock.on("/first", Reply::json(json!({"n": 1})).gate(&gate));
    mock.on("/second", Reply::json(json!({"n": 2})));
    let mut running = store.spawn(&run_args(&store, &mock));
    let id = execution_id(&running.next_line(Duration::from_secs(15)));
    assert!(mock.wait_until(Duration::from_secs(15), |r| !r.is_empty()));

    let refused = store.run(&["resume".into(), id.clone()]);
    let pid = running.child.id().to_string();
    let _ = running.child.kill();
    running.child.wait().expect("reap orca");
    gate.release();
    refused.expect_code(2);
    assert!(refused.stderr.contains(&id), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!("/{pid}/")),
        "names the owner: {}",
        refused.stderr
    );
    assert!(refused.stderr.contains("lease until"), "{}", refused.stderr);

    // Once that process is dead, the same command takes over at once.
    let resumed = store.run(&["resume".into(), id]);
    resumed.expect_code(0);
    assert_eq!(resumed.json()["status"], "completed");
}

/// A relay to the test Redis that holds every request `delay` before passing it on, as a
/// Redis under load would answer; returns its URL.
fn slow_redis(delay: Duration) -> String {
    let upstream = redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the relay");
    let address = listener.local_addr().expect("the relay's address");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (Ok(mut requests), Ok(mut to_server)) = (client.try_clone(), server.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64 * 1024];
                while let Ok(n @ 1..) = requests.read(&mut buffer) {
                    std::thread::sleep(delay);
                    if to_server.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            });
            let (mut replies, mut to_client) = (server, client);
            std::thread::spawn(move || std::io::copy(&mut replies, &mut to_client));
        }
    });
    format!("redis://{address}")
}

#[test]
fn orca_run_exits_only_once_its_redis_copies_have_landed() {
    let store = Store::new(Backend::RedisPersisted);
    let mock = Mock::start();
    let gate = Gate::new();
    mock.on("/first", Reply::json(json!({"n": 1})));
    mock.on("/second", Reply::json(json!({"n": 2})).gate(&gate));
    // Every request to Redis takes 200 ms, so the last copies are still on their way when
    // the workflow ends.
    let mut command = store.command(&run_args(&store, &mock));
    command.env(
        "ORCA_REDIS_URL",
        format!(
            "{}?prefix={}",
            slow_redis(Duration::from_millis(200)),
            store.prefix
        ),
    );
    std::thread::scope(|scope| {
        let run = scope.spawn(|| finish(command));
        // While the second step waits, the running execution's copy reaches Redis.
        let deadline = Instant::now() + Duration::from_secs(15);
        while store.redis_copies().is_empty() {
            assert!(Instant::now() < deadline, "no copy reached Redis");
            std::thread::sleep(Duration::from_millis(20));
        }
        gate.release();
        let out = run.join().expect("the run thread");
        out.expect_code(0);
        assert_eq!(out.json()["status"], "completed");
        let id = out.json()["id"].as_str().expect("an id").to_string();
        // The last save removes the copy (executions live in Redis while they run): had
        // `orca` exited before that landed, other processes would read it as running.
        assert_eq!(store.redis_copies(), Vec::<String>::new());
        assert_eq!(store.redis_status(&id), None);
    });
}
