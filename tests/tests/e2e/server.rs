//! `orca serve` through the real binary: tenants, workflows and executions over HTTP, and a
//! server killed with executions in flight that finishes them after a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::{Gate, Mock, Orca, Reply};

pub const ADMIN: &str = "e2e-admin";

/// A running `orca serve`; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The `--metrics-listen` address, when given.
    pub metrics_addr: Option<String>,
}

/// One HTTP/1.1 request to `addr`; returns the status and the body as JSON (a string if not
/// JSON).
pub fn request(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, Json) {
    let mut stream = TcpStream::connect(addr).expect("connects to orca serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let json = serde_json::from_str(body).unwrap_or_else(|_| json!(body));
    (status, json)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn launch(orca: &Orca) -> Server {
        Server::launch_with(orca, &[])
    }

    pub fn launch_with(orca: &Orca, extra: &[&str]) -> Server {
        Server::spawn(orca.command(&Server::args(extra)), extra)
    }

    /// One of several servers sharing `store`.
    pub fn launch_on(store: &crate::durable::Store) -> Server {
        Server::launch_on_with(store, &[])
    }

    pub fn launch_on_with(store: &crate::durable::Store, extra: &[&str]) -> Server {
        let args: Vec<String> = Server::args(extra).into_iter().map(String::from).collect();
        Server::spawn(store.command(&args), extra)
    }

    /// Sends SIGTERM and waits (up to 10 s) for a clean exit.
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "orca serve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(exit.success(), "{exit:?}");
    }

    fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN];
        args.extend_from_slice(extra);
        args
    }

    fn spawn(mut command: std::process::Command, extra: &[&str]) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("orca serve starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut read = |prefix: &str| {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("orca serve prints its address");
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected {prefix}..., got {line:?}"))
                .to_string()
        };
        let addr = read("listening on http://");
        let metrics_addr = extra.contains(&"--metrics-listen").then(|| {
            read("metrics on http://")
                .trim_end_matches("/metrics")
                .to_string()
        });
        Server {
            child,
            addr,
            metrics_addr,
        }
    }

    /// One HTTP/1.1 request; returns the status and the body as JSON (a string if not JSON).
    pub fn call(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, Json) {
        request(&self.addr, method, path, token, body)
    }

    pub fn tenant(&self, name: &str) -> String {
        let (status, body) = self.call(
            "POST",
            "/v1/tenants",
            ADMIN,
            &json!({"name": name}).to_string(),
        );
        assert_eq!(status, 201, "{body}");
        let (status, body) = self.call("POST", &format!("/v1/tenants/{name}/tokens"), ADMIN, "");
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    pub fn apply(&self, token: &str, yaml: &str) {
        let (status, body) = self.call("POST", "/v1/definitions", token, yaml);
        assert_eq!(status, 201, "{body}");
    }

    pub fn start(&self, token: &str, query: &str, workflow: &str, url: &str) -> (u16, Json) {
        let request = json!({"workflow": workflow, "input": {"id": 7}, "services": {"svc": url}});
        self.call(
            "POST",
            &format!("/v1/executions{query}"),
            token,
            &request.to_string(),
        )
    }

    /// Polls until the execution is final (or panics after `timeout`).
    pub fn wait_final(&self, token: &str, id: &str, timeout: Duration) -> Json {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.call("GET", &format!("/v1/executions/{id}"), token, "");
            assert_eq!(status, 200, "{body}");
            if !matches!(body["status"].as_str(), Some("running" | "compensating")) {
                return body;
            }
            assert!(Instant::now() < deadline, "{id} still running: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn workflow(name: &str) -> String {
    format!(
        "apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: {name}
spec:
  steps:
    - step: 1
      name: fetch
      api: svc
      endpoint: /orders/{{id}}
      method: GET
"
    )
}

#[test]
fn two_tenants_run_workflows_and_cannot_see_each_other() {
    let orca = Orca::new();
    let mock = Mock::start();
    mock.on("/orders/7", Reply::json(json!({"amount": 1200})));
    let server = Server::launch(&orca);
    let a = server.tenant("alpha");
    let b = server.tenant("beta");
    server.apply(&a, &workflow("orders"));
    server.apply(&b, &workflow("orders"));

    let (status, body) = server.call("GET", "/v1/definitions", "nope", "");
    assert_eq!(status, 401, "{body}");

    let (status, done) = server.start(&a, "?wait=10s", "orders", &mock.url);
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["steps"][0]["result"], json!({"amount": 1200}));
    let (status, started) = server.start(&b, "", "orders", &mock.url);
    assert_eq!(status, 202, "{started}");
    let b_id = started["id"].as_str().unwrap();
    assert_eq!(
        server.wait_final(&b, b_id, Duration::from_secs(10))["status"],
        "completed"
    );

    let a_id = done["id"].as_str().unwrap();
    let (status, _) = server.call("GET", &format!("/v1/executions/{a_id}"), &b, "");
    assert_eq!(status, 404);
    let (status, _) = server.call("GET", &format!("/v1/executions/{b_id}"), &a, "");
    assert_eq!(status, 404);
    let (_, listed) = server.call("GET", "/v1/executions", &a, "");
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    // Metrics name every tenant's workflows: only the admin (or metrics) token reads them.
    for token in ["", a.as_str()] {
        let (status, body) = server.call("GET", "/metrics", token, "");
        assert_eq!(status, 401, "{body}");
    }
    let (status, metrics) = server.call("GET", "/metrics", ADMIN, "");
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("workflow_executions_total"),
        "{metrics}"
    );
}

#[test]
fn executions_in_flight_complete_after_the_server_is_killed_and_restarted() {
    let orca = Orca::new();
    let mock = Mock::start();
    let gate = Gate::new();
    mock.on("/orders/7", Reply::json(json!({"ok": true})).gate(&gate));
    let mut server = Server::launch(&orca);
    let a = server.tenant("alpha");
    server.apply(&a, &workflow("orders"));
    let ids: Vec<String> = (0..5)
        .map(|_| {
            let (status, body) = server.start(&a, "", "orders", &mock.url);
            assert_eq!(status, 202, "{body}");
            body["id"].as_str().unwrap().to_string()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.requests_to("/orders/7").len() < ids.len() {
        assert!(Instant::now() < deadline, "the calls never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no checkpoint, no lease released.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    gate.release();

    let server = Server::launch(&orca);
    for id in &ids {
        let done = server.wait_final(&a, id, Duration::from_secs(10));
        assert_eq!(done["status"], "completed", "{done}");
    }
}

#[test]
fn sigterm_drains_and_a_restarted_server_finishes_the_work() {
    let orca = Orca::new();
    let mock = Mock::start();
    let gate = Gate::new();
    mock.on("/orders/7", Reply::json(json!({"ok": true})).gate(&gate));
    let mut server = Server::launch_with(&orca, &["--grace", "300ms"]);
    let a = server.tenant("alpha");
    server.apply(&a, &workflow("orders"));
    let (status, body) = server.start(&a, "", "orders", &mock.url);
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while mock.requests_to("/orders/7").is_empty() {
        assert!(Instant::now() < deadline, "the call never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.terminate();
    gate.release();

    let server = Server::launch(&orca);
    let done = server.wait_final(&a, &id, Duration::from_secs(10));
    assert_eq!(done["status"], "completed", "{done}");
}

#[test]
fn the_cli_talks_to_the_server() {
    let orca = Orca::new();
    let mock = Mock::start();
    mock.on("/orders/7", Reply::json(json!({"amount": 3})));
    let server = Server::launch(&orca);
    let token = server.tenant("alpha");
    let url = format!("http://{}", server.addr);
    let env = [
        ("ORCA_SERVER", url.as_str()),
        ("ORCA_TOKEN", token.as_str()),
    ];
    let file = orca.write("orders.yaml", &workflow("orders"));

    let applied = orca.run_env(&["apply", "-f", &file], &env);
    applied.expect_code(0);
    assert!(
        applied
            .stdout
            .contains("SequentialOrchestration/orders applied (version 1)"),
        "{}",
        applied.stdout
    );
    let exe = std::env::current_exe().unwrap();
    let wasm = exe
        .ancestors()
        .nth(3)
        .unwrap()
        .join("guests/aggregate.wasm");
    let pushed = orca.run_env(&["components", "push", wasm.to_str().unwrap()], &env);
    pushed.expect_code(0);
    assert!(pushed.stdout.starts_with("sha256:"), "{}", pushed.stdout);
    let not_wasm = orca.run_env(&["components", "push", &file], &env);
    not_wasm.expect_code(2);
    assert!(not_wasm.stderr.contains("400"), "{}", not_wasm.stderr);

    let service = format!("svc={}", mock.url);
    let started = orca.run_env(
        &[
            "start",
            "orders",
            "--input",
            r#"{"id": 7}"#,
            "--service",
            &service,
            "--wait",
            "10s",
        ],
        &env,
    );
    started.expect_code(0);
    let execution = started.json();
    assert_eq!(execution["status"], "completed");
    let id = execution["id"].as_str().unwrap();

    let listed = orca.run_env(&["get", "executions"], &env);
    listed.expect_code(0);
    assert!(listed.stdout.starts_with("ID "), "{}", listed.stdout);
    assert!(listed.stdout.contains(id) && listed.stdout.contains("completed"));
    let described = orca.run_env(&["describe", "execution", id], &env);
    described.expect_code(0);
    assert!(
        described.stdout.contains("Status:    completed"),
        "{}",
        described.stdout
    );
    assert!(described.stdout.contains("fetch"), "{}", described.stdout);
    // Already final: the server refuses with 409, the CLI exits 2 with its message.
    let cancelled = orca.run_env(&["cancel", id], &env);
    cancelled.expect_code(2);
    assert!(cancelled.stderr.contains("409"), "{}", cancelled.stderr);
    let refused = orca.run_env(
        &["get", "executions"],
        &[("ORCA_SERVER", url.as_str()), ("ORCA_TOKEN", "wrong")],
    );
    refused.expect_code(2);
    assert!(refused.stderr.contains("401"), "{}", refused.stderr);
}

#[test]
fn metrics_scraped_from_the_server_pass_promtool_and_the_specifications_rules() {
    use crate::metrics::{WORKFLOW, check_metrics, check_recording_rules, samples};
    let mock = Mock::start();
    mock.on("/charge", Reply::json(json!({"id": 1})));
    mock.on("/refund", Reply::json(json!({})));
    mock.on("/confirm", Reply::json(json!({})));
    mock.on("/ship", Reply::status(500));
    let orca = Orca::new();
    let server = Server::launch_with(&orca, &["--metrics-listen", "127.0.0.1:0"]);
    let token = server.tenant("acme");
    server.apply(&token, WORKFLOW);
    for (input, status) in [
        (json!({"ship": false, "confirm": true}), "completed"),
        (json!({"ship": false, "confirm": false}), "completed"),
        (json!({"ship": true, "confirm": true}), "compensated"),
    ] {
        let request = json!({
            "workflow": "metered",
            "input": input,
            "services": {"payments": mock.url, "shipping": mock.url},
        });
        let (code, body) = server.call(
            "POST",
            "/v1/executions?wait=20s",
            &token,
            &request.to_string(),
        );
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], status, "{body}");
    }
    // On their own listener metrics need no token, and the API's listener no longer has them.
    let (code, body) = server.call("GET", "/metrics", ADMIN, "");
    assert_eq!(code, 404, "{body}");
    let metrics_addr = server
        .metrics_addr
        .as_deref()
        .expect("--metrics-listen's address");
    let (code, scrape) = request(metrics_addr, "GET", "/metrics", "", "");
    assert_eq!(code, 200);
    let (code, _) = request(metrics_addr, "GET", "/v1/executions", &token, "");
    assert_eq!(code, 404, "the metrics listener serves nothing else");
    let text = scrape.as_str().expect("the text format").to_string();
    let file = orca.write("scrape.prom", &text);
    check_metrics(&file);
    let totals = samples(&text);
    assert_eq!(
        totals[r#"workflow_executions_total{status="completed",workflow_id="metered"}"#],
        2.0
    );
    check_recording_rules(&orca, &totals);
}
