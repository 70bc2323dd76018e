//! `orca`: run, check and inspect workflows from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::{Parser, Subcommand};
use orca_runtime::definition::{DefinitionSet, LoadError, Source};
use orca_runtime::engine::Bindings;
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::invoke::{Dispatcher, Invoker};
use orca_runtime::metrics::{Metered, Metrics};
use orca_runtime::progress::{Both, StderrProgress};
use orca_runtime::runner::{RunError, Runner, WorkflowSource};
use orca_runtime::store::kv::KvStore;
use orca_runtime::store::{self, ExecutionStore, ListFilter, StoreConfig, StoreError};
use orca_runtime::wasm::{ComponentBlobs, HostServices, WasmHost, bind_components};
use orca_runtime::{plan, services, view};

#[derive(Parser)]
#[command(
    name = "orca",
    version,
    about = "API orchestration with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// List or show stored executions.
    Executions {
        #[command(subcommand)]
        command: ExecutionsCommand,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ORCA_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(execute(cli.command)) {
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
            plan::validate(&set)?;
            let plan = plan::compile(&set, workflow.as_deref())?;
            let input = parse_input(&input)?;
            let overrides: BTreeMap<String, String> = services.into_iter().collect();
            let bindings =
                services::resolve(&plan.services, &set, &overrides, |k| std::env::var(k).ok());
            let store = open_stores(store.store.as_deref(), Some(&set)).await?;
            let Host {
                runner,
                wasm,
                metrics,
            } = host(store, max_body_bytes)?;
            let components = bind_components(&set, &wasm)?;
            let source = WorkflowSource {
                name: plan.workflow_id.clone(),
                sources: set.sources.clone(),
            };
            let bindings = Bindings {
                tenant: "default".to_string(),
                services: bindings,
                components,
            };
            let execution = runner.run(source, &plan, input, bindings).await?;
            if let Some(path) = metrics_out {
                write_metrics(&path, &metrics)?;
            }
            print_json(&view::execution(&execution));
            Ok(execution.status.exit_code() as u8)
        }
        Command::Resume {
            id,
            services,
            max_body_bytes,
            metrics_out,
            store,
        } => {
            let store = open_stores(store.store.as_deref(), None).await?;
            let Host {
                runner, metrics, ..
            } = host(store, max_body_bytes)?;
            let overrides: BTreeMap<String, String> = services.into_iter().collect();
            let execution = runner.resume(&id, &overrides).await?;
            if let Some(path) = metrics_out {
                write_metrics(&path, &metrics)?;
            }
            print_json(&view::execution(&execution));
            Ok(execution.status.exit_code() as u8)
        }
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
                let runner = host(store, 0)?.runner;
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

fn host(
    (store, kv): (Arc<dyn ExecutionStore>, Arc<dyn KvStore>),
    max_body_bytes: usize,
) -> Result<Host, Failure> {
    let http: Arc<dyn Invoker> = Arc::new(
        HttpInvoker::new(HttpConfig {
            max_body_bytes,
            ..HttpConfig::default()
        })
        .context("creating the HTTP client")?,
    );
    let data = data_dir();
    let wasm = Arc::new(
        WasmHost::new(
            ComponentBlobs::new(data.join("components")),
            HostServices {
                http: http.clone(),
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
    let metrics = Metrics::new();
    let invoker = Metered::new(Arc::new(dispatcher), metrics.clone());
    let runner = Runner::new(store, Arc::new(invoker))
        .with_progress(Arc::new(Both(StderrProgress, metrics.clone())));
    Ok(Host {
        runner,
        wasm,
        metrics,
    })
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
