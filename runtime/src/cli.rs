//! The command line: every command and flag `orca` takes (the README lists them).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use orca_runtime::services;

use crate::client;

#[derive(Parser)]
#[command(
    name = "orca",
    version,
    about = "API orchestration with WebAssembly plugins"
)]
pub(crate) struct Cli {
    /// Log lines (on stderr) as human-readable text or as JSON objects, one per line.
    /// `ORCA_LOG` sets the level filter (default `warn`; `orca serve` logs at `info`).
    #[arg(
        long,
        env = "ORCA_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub(crate) log_format: LogFormat,
    /// Export spans over OTLP/HTTP to the collector at this base URL (spans go to
    /// URL/v1/traces). Overrides OTEL_EXPORTER_OTLP_ENDPOINT (and
    /// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), which turn export on without this flag. Without
    /// either, nothing is exported.
    #[cfg(feature = "otel")]
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) otel_endpoint: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Clone)]
pub(crate) struct StoreArgs {
    /// Where executions are kept: `sqlite:PATH` (default: ~/.local/share/orca/orca.db),
    /// `postgresql://…`, `redis://…[?ttl=24h&prefix=orca:&persistence=postgresql]`, a YAML
    /// file with a StateStore document, or `memory` (gone when the process exits).
    /// ORCA_REDIS_URL and ORCA_POSTGRES_URL override a StateStore document's endpoints.
    #[arg(long, env = "ORCA_STORE", global = true)]
    pub(crate) store: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// How long an execution's lease lasts without renewal: after a crash (or a
        /// partition) other servers take the execution over once it has run out.
        #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
        lease: std::time::Duration,
        /// How often a server renews the leases of the executions it drives; shorter than
        /// `--lease`, so that a renewal or two may fail without losing them.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        lease_renewal: std::time::Duration,
        /// How often a server looks for executions to take over (leases that ran out, or
        /// were handed over by a server shutting down).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        sweep_every: std::time::Duration,
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
        /// Wait for the execution to end and print it like `orca run` (exit 0 if it
        /// completed): up to DURATION (like `30s`), or without one until it ends.
        #[arg(long, value_name = "DURATION", num_args = 0..=1)]
        wait: Option<Option<String>>,
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
    /// Follow an execution on a server: its progress lines on stderr (as `orca run` prints
    /// them) until it ends; exit 0 if it completed.
    Watch {
        id: String,
        #[command(flatten)]
        client: client::ClientArgs,
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
pub(crate) enum ComponentsCommand {
    /// Upload a component (.wasm) and print its digest.
    Push {
        file: PathBuf,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum GetCommand {
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
pub(crate) enum DescribeCommand {
    Execution {
        id: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum ExecutionsCommand {
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
