//! What every end-to-end test needs: the `orca` binary, a programmable HTTP mock, and a way to
//! run `orca` against a private store and read what it printed.
//!
//! Each test starts its own mock on `127.0.0.1:0` and works in its own temporary directory, so
//! tests run in parallel without seeing each other.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

/// The directory of the seed examples from the specification.
pub const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/spec");

/// The path of a seed example, e.g. `seed("01-SequentialOrchestration.yaml")`.
pub fn seed(name: &str) -> String {
    let path = Path::new(SEEDS).join(name);
    assert!(path.is_file(), "seed example {} is missing", path.display());
    path.display().to_string()
}

// ---------------------------------------------------------------------------------------------
// The binary

/// The `orca` binary next to this test's own executable (`<target>/<profile>/deps/e2e-…` ->
/// `<target>/<profile>/orca`), built once with cargo when it is not there. `ORCA_BIN` overrides.
pub fn orca_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("ORCA_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test binary knows its path");
        let deps = exe.parent().expect("the test binary is in a directory");
        let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
            deps.parent().expect("deps/ has a parent")
        } else {
            deps
        };
        let bin = profile_dir.join(format!("orca{}", std::env::consts::EXE_SUFFIX));
        if !bin.is_file() {
            build_orca(profile_dir);
        }
        assert!(
            bin.is_file(),
            "{} is missing: build it with `cargo build -p orca-runtime --bin orca`",
            bin.display()
        );
        bin
    })
}

/// `cargo build -p orca-runtime --bin orca` into the target directory these tests were built in.
fn build_orca(profile_dir: &Path) {
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory is inside the target directory");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug");
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "-p",
            "orca-runtime",
            "--bin",
            "orca",
            "--manifest-path",
        ])
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    eprintln!(
        "e2e: building the orca binary into {}",
        target_dir.display()
    );
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "cargo build of the orca binary failed");
}

// ---------------------------------------------------------------------------------------------
// Running orca

/// A test's private directory and store; every `orca` it runs uses `<dir>/orca.db`.
pub struct Orca {
    pub dir: tempfile::TempDir,
}

/// What one `orca` invocation did.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Stdout as JSON (the execution of `run`, `resume` and `executions show`).
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics with everything printed unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Default for Orca {
    fn default() -> Self {
        Orca {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }
}

impl Orca {
    pub fn new() -> Self {
        Orca::default()
    }

    pub fn store(&self) -> String {
        format!("sqlite:{}", self.dir.path().join("orca.db").display())
    }

    /// Writes `text` to `<dir>/<name>` and returns the path.
    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("the temporary directory is writable");
        path.display().to_string()
    }

    /// `orca ARGS` with this test's store and none of the caller's `ORCA_*` settings.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(orca_bin());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ORCA_") {
                command.env_remove(key);
            }
        }
        command
            .args(args)
            .env("ORCA_STORE", self.store())
            .env("XDG_DATA_HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    /// Runs `orca ARGS` to the end (killed after 30 s so a hang fails instead of blocking).
    pub fn run<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Outcome {
        run_command(self.command(args))
    }

    /// Runs `orca ARGS` with extra environment variables.
    pub fn run_env<S: AsRef<std::ffi::OsStr>>(&self, args: &[S], env: &[(&str, &str)]) -> Outcome {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        run_command(command)
    }
}

fn run_command(mut command: Command) -> Outcome {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orca starts");
    let stdout = reader(child.stdout.take().expect("piped stdout"));
    let stderr = reader(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for orca") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "orca did not finish within 30 s; stderr so far:\n{}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn reader(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// A spawned `orca` whose stderr lines arrive on a channel as it prints them.
pub struct Running {
    pub child: Child,
    pub stderr: mpsc::Receiver<String>,
}

impl Drop for Running {
    /// A test that fails half-way must not leave `orca` behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// The next stderr line, or a panic after `timeout`.
    pub fn next_line(&self, timeout: Duration) -> String {
        self.stderr
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no stderr line from orca within {timeout:?}: {e}"))
    }
}

impl Orca {
    /// Starts `orca ARGS` without waiting for it (stdout is discarded).
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Running {
        Running::start(self.command(args))
    }
}

impl Running {
    /// Starts `command` (stdout discarded); its stderr lines arrive on a channel.
    pub fn start(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("orca starts");
        let pipe = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, stderr: rx }
    }
}

/// The execution id from the first progress line, `execution <ID> of <WORKFLOW> started`.
pub fn execution_id(first_line: &str) -> String {
    let rest = first_line
        .strip_prefix("execution ")
        .unwrap_or_else(|| panic!("not a start line: {first_line}"));
    let (id, tail) = rest
        .split_once(' ')
        .unwrap_or_else(|| panic!("not a start line: {first_line}"));
    assert!(tail.ends_with("started"), "not a start line: {first_line}");
    id.to_string()
}

/// `--service NAME=URL` for each name.
pub fn services(url: &str, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| ["--service".to_string(), format!("{n}={url}")])
        .collect()
}

/// The step called `name` in an execution's JSON.
#[track_caller]
pub fn step<'a>(execution: &'a Json, name: &str) -> &'a Json {
    execution["steps"]
        .as_array()
        .expect("steps is a list")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step `{name}` in {execution:#}"))
}

/// The number of attempts recorded for a step (or compensation) JSON.
pub fn attempts(step: &Json) -> usize {
    step["attempts"].as_array().map_or(0, Vec::len)
}

// ---------------------------------------------------------------------------------------------
// The mock services

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path as sent, percent-encoding included.
    pub path: String,
    pub idempotency_key: Option<String>,
    pub content_type: Option<String>,
    /// The body as JSON (`Json::Null` when empty, a string when not JSON).
    pub body: Json,
    /// Arrival time.
    pub at: Instant,
    /// Arrival order across every mock of the process.
    pub seq: u64,
}

/// Opens a [`Reply::gate`]d response: every request held by the gate proceeds.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new(watch::channel(false).0))
    }
}

impl Gate {
    pub fn new() -> Self {
        Gate::default()
    }

    pub fn release(&self) {
        self.0.send_replace(true);
    }
}

/// Holds requests until `parties` of them (on any path sharing it) have arrived.
#[derive(Clone)]
pub struct Barrier {
    parties: usize,
    arrived: Arc<watch::Sender<usize>>,
    timeout: Duration,
}

impl Barrier {
    /// After `timeout` without the others, a request is answered 500 (so a test fails
    /// instead of hanging).
    pub fn new(parties: usize, timeout: Duration) -> Self {
        Barrier {
            parties,
            arrived: Arc::new(watch::channel(0).0),
            timeout,
        }
    }
}

/// How the mock answers one request.
#[derive(Clone)]
pub struct Reply {
    status: u16,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    delay: Option<Duration>,
    gate: Option<Gate>,
    barrier: Option<Barrier>,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: Json) -> Self {
        Reply {
            status: 200,
            body: serde_json::to_vec(&body).expect("JSON serializes"),
            headers: vec![("content-type".into(), "application/json".into())],
            delay: None,
            gate: None,
            barrier: None,
        }
    }

    /// `status` with a small JSON error body.
    pub fn status(status: u16) -> Self {
        Reply::json(json!({"error": format!("mock answered {status}")})).with_status(status)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Answers only once `gate` is released (or after 20 s, with 500).
    pub fn gate(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }

    /// Answers only once every party of `barrier` has arrived (or 500 after its timeout).
    pub fn barrier(mut self, barrier: &Barrier) -> Self {
        self.barrier = Some(barrier.clone());
        self
    }
}

struct Route {
    script: VecDeque<Reply>,
    default: Reply,
}

struct MockState {
    requests: Mutex<Vec<Recorded>>,
    routes: Mutex<HashMap<String, Route>>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// An HTTP server on `127.0.0.1:<free port>` that records every request and answers each path
/// as the test programmed it (unprogrammed paths: 404).
pub struct Mock {
    pub url: String,
    state: Arc<MockState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Mock {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener.set_nonblocking(true).expect("non-blocking socket");
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        let state = Arc::new(MockState {
            requests: Mutex::new(Vec::new()),
            routes: Mutex::new(HashMap::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let _ = axum::serve(listener, app).await;
        });
        Mock {
            url,
            state,
            runtime: Some(runtime),
        }
    }

    /// Answers every request to `path` with `reply` (after any scripted replies).
    pub fn on(&self, path: &str, reply: Reply) -> &Self {
        let mut routes = self.state.routes.lock().unwrap();
        match routes.get_mut(path) {
            Some(route) => route.default = reply,
            None => {
                routes.insert(
                    path.to_string(),
                    Route {
                        script: VecDeque::new(),
                        default: reply,
                    },
                );
            }
        }
        self
    }

    /// Answers the next requests to `path` with `replies` in order, then as `on` said.
    pub fn script(&self, path: &str, replies: Vec<Reply>) -> &Self {
        let mut routes = self.state.routes.lock().unwrap();
        let route = routes.entry(path.to_string()).or_insert_with(|| Route {
            script: VecDeque::new(),
            default: Reply::status(404),
        });
        route.script.extend(replies);
        self
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The paths requested so far, in arrival order.
    pub fn paths(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.path).collect()
    }

    /// The requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until `done(requests)` holds; false after `timeout`.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Recorded]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.state.requests.lock().unwrap()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn handle(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let path = uri.path().to_string();
    let parsed = if body.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&body).into_owned()))
    };
    state.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        idempotency_key: header("idempotency-key"),
        content_type: header("content-type"),
        body: parsed,
        at: Instant::now(),
        seq: SEQUENCE.fetch_add(1, Ordering::SeqCst),
    });
    let reply = {
        let mut routes = state.routes.lock().unwrap();
        match routes.get_mut(&path) {
            Some(route) => route
                .script
                .pop_front()
                .unwrap_or_else(|| route.default.clone()),
            None => Reply::status(404),
        }
    };
    if let Some(barrier) = &reply.barrier {
        barrier.arrived.send_modify(|n| *n += 1);
        let mut arrived = barrier.arrived.subscribe();
        let parties = barrier.parties;
        let met = tokio::time::timeout(barrier.timeout, arrived.wait_for(|n| *n >= parties)).await;
        if !matches!(met, Ok(Ok(_))) {
            return plain(500, "barrier timed out: the other requests never arrived");
        }
    }
    if let Some(gate) = &reply.gate {
        let mut open = gate.0.subscribe();
        let opened = tokio::time::timeout(Duration::from_secs(20), open.wait_for(|o| *o)).await;
        if !matches!(opened, Ok(Ok(_))) {
            return plain(500, "gate never released");
        }
    }
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from(reply.body.clone()))
        .expect("a valid response")
}

fn plain(status: u16, text: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("a valid status"))
        .body(Body::from(text))
        .expect("a valid response")
}
