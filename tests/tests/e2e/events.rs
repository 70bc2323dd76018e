//! An execution followed as it runs: the event stream (`GET /v1/executions/ID/events`),
//! `orca watch` on it, and `orca start --wait`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::server::Server;
use crate::support::{Gate, Mock, Orca, Reply};

/// Two steps; the first is retried once on 503.
const RETRIED: &str = "apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: retried
spec:
  retry: {maxRetries: 2, backoff: {initialDelay: 20ms}, retryableErrors: [\"503\"]}
  steps:
    - name: first
      api: svc
      endpoint: /first
    - name: second
      api: svc
      endpoint: /second
";

/// A server with [`RETRIED`] applied for tenant `alpha`, and the service it calls: the first
/// step's first call answers 503, the second step's calls wait for `gate`.
struct Retried {
    orca: Orca,
    mock: Mock,
    gate: Gate,
    server: Server,
    token: String,
}

impl Retried {
    fn new() -> Self {
        let orca = Orca::new();
        let mock = Mock::start();
        let gate = Gate::new();
        mock.script("/first", vec![Reply::status(503)]);
        mock.on("/first", Reply::json(json!({"ok": 1})));
        mock.on("/second", Reply::json(json!({"ok": 2})).gate(&gate));
        let server = Server::launch(&orca);
        let token = server.tenant("alpha");
        server.apply(&token, RETRIED);
        Retried {
            orca,
            mock,
            gate,
            server,
            token,
        }
    }
}

/// One event of a stream: id, kind, data.
pub type Streamed = (u64, String, Json);

/// Reads `GET /v1/executions/ID/events` (after `last`, when given) to its end; the status,
/// and the events.
pub fn event_stream(addr: &str, token: &str, id: &str, last: Option<&str>) -> (u16, Vec<Streamed>) {
    let mut stream = TcpStream::connect(addr).expect("connects to orca serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let resume = last
        .map(|l| format!("Last-Event-ID: {l}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /v1/executions/{id}/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\n{resume}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).unwrap();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let chunked = loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break true;
        }
    };
    assert!(chunked);
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut body);
    if status != 200 {
        return (status, Vec::new());
    }
    let mut events = Vec::new();
    let (mut id, mut kind, mut data) = (None, None, None);
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
            kind = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
            data = serde_json::from_str(v).ok();
        } else if line.is_empty()
            && let (Some(i), Some(k), Some(d)) = (id.take(), kind.take(), data.take())
        {
            events.push((i, k, d));
        }
    }
    (status, events)
}

#[test]
fn the_event_stream_follows_an_execution_and_resumes_after_the_last_event_id() {
    let Retried {
        orca: _orca,
        mock,
        gate,
        server,
        token: a,
    } = Retried::new();
    let b = server.tenant("beta");
    let (status, started) = server.start(&a, "", "retried", &mock.url);
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();

    let live = std::thread::scope(|scope| {
        let reader = scope.spawn(|| event_stream(&server.addr, &a, &id, None));
        assert!(mock.wait_until(Duration::from_secs(10), |r| {
            r.iter().any(|r| r.path == "/second")
        }));
        gate.release();
        reader.join().unwrap()
    });
    let (status, events) = live;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"execution.started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"execution.ended"), "{kinds:?}");
    assert!(kinds.contains(&"retry.scheduled"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "attempt.ended").count(), 3);
    assert!(
        events.windows(2).all(|w| w[0].0 < w[1].0),
        "ids grow: {events:?}"
    );
    let retry = events
        .iter()
        .find(|(_, k, _)| k == "retry.scheduled")
        .unwrap();
    assert_eq!(retry.2["step"], "first");
    assert_eq!(retry.2["delay_ms"].as_u64().map(|d| d >= 10), Some(true));
    assert_eq!(events.last().unwrap().2["status"], "completed");

    // Resumed mid-way: exactly the events after the one named, once each.
    let (status, rest) = event_stream(&server.addr, &a, &id, Some(&events[4].0.to_string()));
    assert_eq!(status, 200);
    assert_eq!(rest, events[5..].to_vec());

    let (status, _) = event_stream(&server.addr, &b, &id, None);
    assert_eq!(status, 404, "another tenant's execution is unknown");
    let (status, _) = event_stream(&server.addr, &a, &id, Some("yesterday"));
    assert_eq!(status, 400);
}

#[test]
fn orca_watch_prints_the_progress_of_an_execution_on_a_server_and_start_waits() {
    let Retried {
        orca,
        mock,
        gate,
        server,
        token,
    } = Retried::new();
    let client = [
        ("ORCA_SERVER", format!("http://{}", server.addr)),
        ("ORCA_TOKEN", token.clone()),
    ];
    let env: Vec<(&str, &str)> = client.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let service = format!("svc={}", mock.url);

    let started = orca.run_env(&["start", "retried", "--service", &service], &env);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let id = started.stdout.trim().to_string();
    let watched = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| orca.run_env(&["watch", &id], &env));
        assert!(mock.wait_until(Duration::from_secs(10), |r| {
            r.iter().any(|r| r.path == "/second")
        }));
        gate.release();
        watcher.join().unwrap()
    });
    assert_eq!(watched.code, 0, "{}", watched.stderr);
    let lines: Vec<&str> = watched.stderr.lines().collect();
    assert_eq!(
        lines[0],
        format!("execution {id} of retried started"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  ✗ first: ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  ↻ first: retrying in ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("  ✓ second: 200 in ")),
        "{lines:?}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("execution {id} completed in ")),
        "{lines:?}"
    );

    // `--wait` without a duration: until it ends, printed like `orca run`.
    let done = orca.run_env(&["start", "retried", "--service", &service, "--wait"], &env);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let execution = done.json();
    assert_eq!(execution["status"], "completed", "{execution}");
    assert_eq!(execution["workflow"], "retried");
}
