//! `orca`: run, check and inspect workflows from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::Parser;
use orca_runtime::definition::{DefinitionSet, LoadError, Source};
use orca_runtime::engine::Status;
use orca_runtime::metrics::Metrics;
use orca_runtime::runner::launch::{self, Launch, LaunchSettings};
use orca_runtime::runner::{LeaseSettings, RunError};
use orca_runtime::store::kv::KvStore;
use orca_runtime::store::{self, ExecutionStore, ListFilter, StoreConfig, StoreError};
use orca_runtime::wasm::bind_components;
use orca_runtime::{plan, server, view};

mod cli;
mod client;
mod logging;
mod serve;

use cli::{Cli, Command, ComponentsCommand, DescribeCommand, ExecutionsCommand, GetCommand};
use logging::init_tracing;
use serve::{Host, Listen, host, serve};

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
            lease,
            lease_renewal,
            sweep_every,
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
                sweep_every,
                ..server::ServerConfig::default()
            };
            let listen = Listen {
                api: listen,
                metrics: metrics_listen,
            };
            if lease_renewal >= lease || sweep_every.is_zero() {
                return Err(Failure::BadInput(format!(
                    "--lease-renewal ({}) must be shorter than --lease ({}), and --sweep-every \
                     more than 0",
                    humantime::format_duration(lease_renewal),
                    humantime::format_duration(lease)
                )));
            }
            let lease = LeaseSettings {
                duration: lease,
                renew_every: lease_renewal,
            };
            serve(&listen, config, grace, lease, max_body_bytes, store).await
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
                .start(&workflow, input, services, wait)
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
        Command::Watch { id, client } => client::Client::new(client)?.watch(&id).await,
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

/// The process exit code for a final status: 0 only for `completed`.
fn exit_code(status: Status) -> u8 {
    if status == Status::Completed { 0 } else { 1 }
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
