//! `orca`: run, check and inspect workflows from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use orca_runtime::definition::{DefinitionSet, LoadError, Source};
use orca_runtime::engine::Status;
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::invoke::{Dispatcher, Invoker};
use orca_runtime::metrics::{Metered, Metrics};
use orca_runtime::progress::{Both, StderrProgress};
use orca_runtime::runner::launch::{self, Launch, LaunchSettings};
use orca_runtime::runner::{RunError, Runner};
use orca_runtime::store::kv::KvStore;
use orca_runtime::store::{self, ExecutionStore, ListFilter, StoreConfig, StoreError};
use orca_runtime::wasm::{ComponentBlobs, HostServices, WasmHost, bind_components};
use orca_runtime::{plan, server, services, view};

mod client;

#[derive(Parser)]
#[command(
    name = "orca",
    version,
    about = "API orchestration with WebAssembly plugins"
)]
struct Cli {
    /// Log lines (on stderr) as human-readable text or as JSON objects, one per line.
    /// `ORCA_LOG` sets the level filter (default `warn`; `orca serve` logs at `info`).
    #[arg(
        long,
        env = "ORCA_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    /// Export spans over OTLP/HTTP to the collector at this base URL (spans go to
    /// URL/v1/traces). Overrides OTEL_EXPORTER_OTLP_ENDPOINT (and
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), which turn export on without this flag. Without
    /// either, nothing is exported.
    #[cfg(feature = "otel")]
    #[arg(long, value_name = "URL", global = true)]
    otel_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// Where executions are kept: `sqlite:PATH` (default: ~/.local/share/orca/orca.db),
    /// `postgresql://…`, `redis://…[?ttl=24h&prefix=orca:&persistence=postgresql]`, a YAML
    /// file with a StateStore document, or `memory` (gone when the process exits).
    /// ORCA_REDIS_URL and ORCA_POSTGRES_URL override a StateStore document's endpoints.
    #[arg(long, env = "ORCA_STORE", global = true)]
    store: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Check definition files: exit 0 when every document is valid, 2 with the first problem.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a workflow and print the execution as JSON; exit 0 only if it completed.
    Run {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Which workflow to run when the files hold more than one.
        #[arg(long)]
        workflow: Option<String>,
        /// Execution input: JSON text, or @FILE.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Bind a service name to a base URL: NAME=URL (repeatable).
        #[arg(long = "service", value_parser = services::parse_binding)]
        services: Vec<(String, String)>,
        /// Fail a step whose response body is larger than this many bytes.
        #[arg(long, default_value_t = 10 * 1024 * 1024)]
        max_body_bytes: usize,
        /// Write the run's Prometheus metrics (text format) to this file when it ends.
        #[arg(long)]
        metrics_out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print the compiled plan as a Mermaid flowchart.
    Graph {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Continue a running execution (for example after a crash) from its last checkpoint.
    Resume {
        id: String,
        /// Override a stored service binding: NAME=URL (repeatable).
        #[arg(long = "service", value_parser = services::parse_binding)]
        services: Vec<(String, String)>,
        #[arg(long, default_value_t = 10 * 1024 * 1024)]
        max_body_bytes: usize,
        /// Write the run's Prometheus metrics (text format) to this file when it ends.
        #[arg(long)]
        metrics_out: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Serve the multi-tenant HTTP API (see README, "Server").
    Serve {
        /// Address to listen on; port 0 picks a free port. The address is printed on stdout
        /// as `listening on http://ADDR`.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The token that may create tenants and tenant tokens.
        #[arg(long, env = "ORCA_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
        /// On SIGTERM or ctrl-c, how long in-flight executions may run on before they are
        /// stopped at their last checkpoint.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Largest component upload, in bytes.
        #[arg(long, default_value_t = 32 * 1024 * 1024)]
        max_component_bytes: usize,
        /// Executions one tenant may have running at once; more are refused with 429.
        #[arg(long, default_value_t = 100)]
        max_running_per_tenant: usize,
        /// Ceiling on a component's per-call memory (`spec.limits.memory`), in bytes.
        #[arg(long, default_value_t = 256 << 20)]
        max_call_memory_bytes: u64,
        /// Ceiling on a component's per-call deadline (`spec.limits.deadline`).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        max_call_deadline: std::time::Duration,
        /// A host pattern components may be granted (repeatable; like `*.example.com` or
        /// `10.0.0.5:8080`). Without any, components may be granted any host.
        #[arg(long = "allow-egress")]
        allow_egress: Vec<String>,
        /// Fail a step whose response body is larger than this many bytes.
        #[arg(long, default_value_t = 10 * 1024 * 1024)]
        max_body_bytes: usize,
        /// Serve `/metrics` on this address of its own, without a token (and not on
        /// `--listen`); for a scraper on a private network.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// The token a scraper presents (`Authorization: Bearer`) for `/metrics` on
        /// `--listen`; the admin token is accepted too.
        #[arg(long, env = "ORCA_METRICS_TOKEN", hide_env_values = true)]
        metrics_token: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Apply definition files on a server (all documents of a file, or none).
    Apply {
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Manage components on a server.
    Components {
        #[command(subcommand)]
        command: ComponentsCommand,
    },
    /// Start an execution on a server and print its id (or, with --wait, the execution).
    Start {
        workflow: String,
        /// Execution input: JSON text, or @FILE.
        #[arg(long, default_value = "{}")]
        input: String,
        /// Bind a service name to a base URL: NAME=URL (repeatable).
        #[arg(long = "service", value_parser = services::parse_binding)]
        services: Vec<(String, String)>,
        /// Wait up to this long (like `30s`) for the execution to end.
        #[arg(long)]
        wait: Option<String>,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// List a server's executions.
    Get {
        #[command(subcommand)]
        command: GetCommand,
    },
    /// Show one execution on a server, step by step.
    Describe {
        #[command(subcommand)]
        command: DescribeCommand,
    },
    /// Cancel an execution on a server: it stops and compensates.
    Cancel {
        id: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// List or show stored executions.
    Executions {
        #[command(subcommand)]
        command: ExecutionsCommand,
    },
}

#[derive(Subcommand)]
enum ComponentsCommand {
    /// Upload a component (.wasm) and print its digest.
    Push {
        file: PathBuf,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

#[derive(Subcommand)]
enum GetCommand {
    Executions {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

#[derive(Subcommand)]
enum DescribeCommand {
    Execution {
        id: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

#[derive(Subcommand)]
enum ExecutionsCommand {
    List {
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
    Show {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Exit codes: 0 success, 1 the execution did not complete, 2 bad input, 3 runtime failure.
enum Failure {
    BadInput(String),
    Runtime(anyhow::Error),
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Self {
        Failure::BadInput(e.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Runtime(e)
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        match e {
            RunError::NotFound(_) | RunError::NotRunning { .. } | RunError::Leased { .. } => {
                Failure::BadInput(e.to_string())
            }
            other => Failure::Runtime(other.into()),
        }
    }
}

/// An engine allocates many small, short-lived values per step (records, JSON, requests);
/// mimalloc serves them several times faster than the system allocator, with less
/// fragmentation across the threads that free what others allocated.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tracing = match init_tracing(&cli) {
        Ok(guard) => guard,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let code = run(cli.command);
    // After `run`, which drops the async runtime and with it the tasks whose spans were still
    // open.
    tracing.finish();
    code
}

fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(execute(command)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::BadInput(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Log lines on stderr as `--log-format` says and, built with `otel` and given an endpoint,
/// spans exported over OTLP.
fn init_tracing(cli: &Cli) -> Result<TracingGuard, String> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORCA_LOG")
        .unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // The level filter belongs to the log lines, not to the whole subscriber: exported spans
    // are at `info`, below the logs' default `warn`.
    let logs: BoxedLayer = match cli.log_format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        // Spans' fields (execution, step, component, ...) come along on every line.
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    #[cfg(feature = "otel")]
    let (export, telemetry) = otel_export(cli)?.unzip();
    #[cfg(not(feature = "otel"))]
    let export: Option<BoxedLayer> = None;
    let layers: Vec<BoxedLayer> = std::iter::once(logs).chain(export).collect();
    tracing_subscriber::registry().with(layers).init();

    #[cfg(not(feature = "otel"))]
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        tracing::info!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this orca was built without the `otel` \
             feature: no spans are exported"
        );
    }
    Ok(TracingGuard {
        #[cfg(feature = "otel")]
        telemetry,
    })
}

/// The exporting layer when `--otel-endpoint` or the OTLP variables name a collector.
#[cfg(feature = "otel")]
fn otel_export(
    cli: &Cli,
) -> Result<Option<(BoxedLayer, orca_runtime::telemetry::Telemetry)>, String> {
    use orca_runtime::telemetry::{Endpoint, Telemetry};
    use tracing_subscriber::Layer as _;

    let Some(endpoint) = Endpoint::resolve(cli.otel_endpoint.as_deref(), |k| std::env::var(k).ok())
    else {
        return Ok(None);
    };
    let telemetry = Telemetry::start(&endpoint).map_err(|e| e.to_string())?;
    Ok(Some((telemetry.layer().boxed(), telemetry)))
}

/// What must outlive the work whose spans it exports.
struct TracingGuard {
    #[cfg(feature = "otel")]
    telemetry: Option<orca_runtime::telemetry::Telemetry>,
}

impl TracingGuard {
    /// Sends the spans still buffered: they go out in batches every few seconds, and a short
    /// `orca run` ends before the first.
    fn finish(self) {
        #[cfg(feature = "otel")]
        if let Some(telemetry) = self.telemetry
            && let Err(e) = telemetry.shutdown()
        {
            tracing::warn!("{e}");
        }
    }
}

async fn execute(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Validate { files } => {
            for file in &files {
                let set = load(std::slice::from_ref(file))?;
                let plans = plan::validate(&set)?;
                let kinds: Vec<String> = set
                    .documents
                    .iter()
                    .map(|d| format!("{} {}", d.kind.as_str(), d.name))
                    .collect();
                println!("ok: {}: {}", file.display(), kinds.join(", "));
                let _ = plans;
            }
            Ok(0)
        }
        Command::Graph { files, workflow } => {
            let set = load(&files)?;
            let plan = plan::compile(&set, workflow.as_deref())?;
            print!("{}", plan::to_mermaid(&plan));
            Ok(0)
        }
        Command::Run {
            files,
            workflow,
            input,
            services,
            max_body_bytes,
            metrics_out,
            store,
        } => {
            let set = load(&files)?;
            let overrides: BTreeMap<String, String> = services.into_iter().collect();
            let Launch {
                plan,
                source,
                mut bindings,
            } = launch::prepare(
                &set,
                LaunchSettings {
                    workflow: workflow.as_deref(),
                    tenant: "default",
                    services: &overrides,
                    env: |k: &str| std::env::var(k).ok(),
                },
            )?;
            let input = parse_input(&input)?;
            let store = open_stores(store.store.as_deref(), Some(&set)).await?;
            let executions = store.0.clone();
            let Host {
                runner,
                wasm,
                metrics,
            } = host(store, max_body_bytes, true)?;
            bindings.components = bind_components(&set, &wasm)?;
            let execution = runner.run(source, &plan, input, bindings).await;
            executions.flush().await;
            let execution = execution?;
            if let Some(path) = metrics_out {
                write_metrics(&path, &metrics)?;
            }
            print_json(&view::execution(&execution));
            Ok(exit_code(execution.status))
        }
        Command::Resume {
            id,
            services,
            max_body_bytes,
            metrics_out,
            store,
        } => {
            let store = open_stores(store.store.as_deref(), None).await?;
            let executions = store.0.clone();
            let Host {
                runner, metrics, ..
            } = host(store, max_body_bytes, true)?;
            let overrides: BTreeMap<String, String> = services.into_iter().collect();
            let execution = runner.resume(&id, &overrides).await;
            executions.flush().await;
            let execution = execution?;
            if let Some(path) = metrics_out {
                write_metrics(&path, &metrics)?;
            }
            print_json(&view::execution(&execution));
            Ok(exit_code(execution.status))
        }
        Command::Serve {
            listen,
            admin_token,
            grace,
            max_component_bytes,
            max_running_per_tenant,
            max_call_memory_bytes,
            max_call_deadline,
            allow_egress,
            max_body_bytes,
            metrics_listen,
            metrics_token,
            store,
        } => {
            let config = server::ServerConfig {
                admin_token_sha256: admin_token.as_deref().map(server::sha256_hex),
                max_component_bytes,
                max_running_per_tenant,
                max_call_memory_bytes,
                max_call_deadline,
                egress_ceiling: (!allow_egress.is_empty()).then_some(allow_egress),
                metrics_token_sha256: metrics_token.as_deref().map(server::sha256_hex),
                metrics_elsewhere: metrics_listen.is_some(),
                ..server::ServerConfig::default()
            };
            let listen = Listen {
                api: listen,
                metrics: metrics_listen,
            };
            serve(&listen, config, grace, max_body_bytes, store).await
        }
        Command::Apply { files, client } => client::Client::new(client)?.apply(&files).await,
        Command::Components {
            command: ComponentsCommand::Push { file, client },
        } => client::Client::new(client)?.push_component(&file).await,
        Command::Start {
            workflow,
            input,
            services,
            wait,
            client,
        } => {
            let input = parse_input(&input)?;
            client::Client::new(client)?
                .start(&workflow, input, services, wait.as_deref())
                .await
        }
        Command::Get {
            command:
                GetCommand::Executions {
                    workflow,
                    status,
                    limit,
                    client,
                },
        } => {
            client::Client::new(client)?
                .get_executions(workflow, status, limit)
                .await
        }
        Command::Describe {
            command: DescribeCommand::Execution { id, client },
        } => client::Client::new(client)?.describe_execution(&id).await,
        Command::Cancel { id, client } => client::Client::new(client)?.cancel(&id).await,
        Command::Executions { command } => match command {
            ExecutionsCommand::List {
                workflow,
                status,
                limit,
                store,
            } => {
                let store = open_store(store.store.as_deref(), None).await?;
                let rows = store
                    .list(&ListFilter {
                        workflow_id: workflow,
                        status,
                        limit: Some(limit),
                    })
                    .await
                    .context("listing executions")?;
                println!("{:<38} {:<32} {:<20} STARTED", "ID", "WORKFLOW", "STATUS");
                for row in rows {
                    println!(
                        "{:<38} {:<32} {:<20} {}",
                        row.id,
                        row.workflow_id,
                        row.status,
                        format_time(row.created_at_ms)
                    );
                }
                Ok(0)
            }
            ExecutionsCommand::Show { id, store } => {
                let store = open_stores(store.store.as_deref(), None).await?;
                let runner = host(store, 0, false)?.runner;
                let record = runner.load(&id).await?;
                print_json(&view::execution(&record.execution));
                Ok(0)
            }
        },
    }
}

/// The Wasm host and the runner around it, for one CLI command.
struct Host {
    runner: Runner,
    wasm: Arc<WasmHost>,
    metrics: Metrics,
}

/// `stderr_progress`: print each step's progress (the CLI's runs), besides counting it.
fn host(
    (store, kv): (Arc<dyn ExecutionStore>, Arc<dyn KvStore>),
    max_body_bytes: usize,
    stderr_progress: bool,
) -> Result<Host, Failure> {
    let http: Arc<dyn Invoker> = Arc::new(
        HttpInvoker::new(HttpConfig {
            max_body_bytes,
            ..HttpConfig::default()
        })
        .context("creating the HTTP client")?,
    );
    let metrics = Metrics::new();
    let data = data_dir();
    // Guests' HTTP calls go through the same client and are metered like HTTP steps.
    let guest_http: Arc<dyn Invoker> = Arc::new(Metered::new(http.clone(), metrics.clone()));
    let wasm = Arc::new(
        WasmHost::new(
            ComponentBlobs::new(data.join("components")),
            HostServices {
                http: guest_http,
                kv,
            },
            Some(&data.join("cache")),
        )
        .context("starting the Wasm host")?,
    );
    let dispatcher = Dispatcher {
        http,
        component: Some(wasm.clone()),
    };
    let invoker = Metered::new(Arc::new(dispatcher), metrics.clone());
    let runner = Runner::new(store, Arc::new(invoker));
    let runner = if stderr_progress {
        runner.with_progress(Arc::new(Both(StderrProgress, metrics.clone())))
    } else {
        runner.with_progress(Arc::new(metrics.clone()))
    };
    Ok(Host {
        runner,
        wasm,
        metrics,
    })
}

/// Where `orca serve` listens.
struct Listen {
    api: String,
    metrics: Option<String>,
}

async fn bind(address: &str, flag: &str) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Failure::BadInput(format!("{flag} {address}: {e}")))
}

async fn serve(
    listen: &Listen,
    config: server::ServerConfig,
    grace: std::time::Duration,
    max_body_bytes: usize,
    store: StoreArgs,
) -> Result<u8, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let store_config =
        StoreConfig::resolve(store.store.as_deref(), None, &env).map_err(store_failure)?;
    let tenants: Arc<dyn server::TenantStore> = match &store_config {
        StoreConfig::Memory => Arc::new(server::SqliteTenants::in_memory().map_err(store_failure)?),
        StoreConfig::Sqlite(path) => {
            Arc::new(server::SqliteTenants::open(path).map_err(store_failure)?)
        }
        StoreConfig::Postgres(pg)
        | StoreConfig::Redis {
            persistence: Some(pg),
            ..
        } => Arc::new(
            server::PostgresTenants::open(pg)
                .await
                .map_err(store_failure)?,
        ),
        StoreConfig::Redis {
            persistence: None, ..
        } => {
            return Err(Failure::BadInput(
                "`orca serve` keeps tenants in SQLite or PostgreSQL: give the Redis store a \
                 PostgreSQL persistence (`?persistence=postgresql`), or use another store"
                    .into(),
            ));
        }
    };
    let (executions, kv) = store::open_with_state(&store_config)
        .await
        .map_err(store_failure)?;
    let Host {
        runner,
        wasm,
        metrics,
    } = host((executions.clone(), kv), max_body_bytes, false)?;
    let app = server::App::new(config, tenants, executions.clone(), runner, wasm, metrics);
    let listener = bind(&listen.api, "--listen").await?;
    let metrics = match &listen.metrics {
        Some(address) => Some(bind(address, "--metrics-listen").await?),
        None => None,
    };
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("listening on http://{addr}");
    if let Some(metrics) = &metrics {
        let addr = metrics.local_addr().context("reading the bound address")?;
        println!("metrics on http://{addr}/metrics");
    }
    let served = server::serve(app, listener, metrics, grace, shutdown_signal()).await;
    executions.flush().await;
    served.context("serving")?;
    Ok(0)
}

/// The process exit code for a final status: 0 only for `completed`.
fn exit_code(status: Status) -> u8 {
    if status == Status::Completed { 0 } else { 1 }
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    eprintln!("shutting down: finishing in-flight executions");
}

/// Orca's files: `$ORCA_HOME`, else `$XDG_DATA_HOME/orca`, else `~/.local/share/orca`.
fn data_dir() -> PathBuf {
    if let Ok(home) = std::env::var("ORCA_HOME") {
        return PathBuf::from(home);
    }
    std::env::var("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|_| PathBuf::from("."))
        .join("orca")
}

fn write_metrics(path: &std::path::Path, metrics: &Metrics) -> Result<(), Failure> {
    std::fs::write(path, metrics.render())
        .with_context(|| format!("writing metrics to {}", path.display()))?;
    Ok(())
}

fn load(files: &[PathBuf]) -> Result<DefinitionSet, Failure> {
    let mut sources = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::BadInput(format!("{}: cannot read: {e}", file.display())))?;
        sources.push(Source {
            name: file.display().to_string(),
            text,
        });
    }
    Ok(DefinitionSet::load(sources)?)
}

fn parse_input(text: &str) -> Result<serde_json::Value, Failure> {
    let (origin, body) = match text.strip_prefix('@') {
        Some(path) => (
            path.to_string(),
            std::fs::read_to_string(path)
                .map_err(|e| Failure::BadInput(format!("--input @{path}: cannot read: {e}")))?,
        ),
        None => ("--input".to_string(), text.to_string()),
    };
    serde_json::from_str(&body).map_err(|e| {
        Failure::BadInput(format!(
            "{origin}: not valid JSON: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// The store from `--store`/`ORCA_STORE`, else a `StateStore` document, else the default file.
async fn open_store(
    flag: Option<&str>,
    set: Option<&DefinitionSet>,
) -> Result<Arc<dyn ExecutionStore>, Failure> {
    Ok(open_stores(flag, set).await?.0)
}

/// The execution store and, in the same backend, the components' state.
async fn open_stores(
    flag: Option<&str>,
    set: Option<&DefinitionSet>,
) -> Result<(Arc<dyn ExecutionStore>, Arc<dyn KvStore>), Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let config = StoreConfig::resolve(flag, set, &env).map_err(store_failure)?;
    store::open_with_state(&config).await.map_err(store_failure)
}

/// Wrong settings are the user's to fix (exit 2); an unreachable server is a runtime failure.
fn store_failure(error: StoreError) -> Failure {
    match error {
        StoreError::Config(message) => Failure::BadInput(message),
        other => Failure::Runtime(anyhow!(other)),
    }
}

/// Prints to stdout; a closed pipe (`orca run … | head`) is not an error worth a panic.
fn print_json(value: &serde_json::Value) {
    use std::io::Write;
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            let _ = writeln!(std::io::stdout(), "{text}");
        }
        Err(e) => eprintln!("error: cannot print the execution: {e}"),
    }
}

fn format_time(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}
