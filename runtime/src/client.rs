//! The CLI's client side of `orca serve`: `apply`, `components push`, `start`, `get`,
//! `describe` and `cancel`, with kubectl-like output.

use std::path::Path;

use anyhow::Context;
use serde_json::{Value as Json, json};

use crate::Failure;

/// Where the server is and who we are.
#[derive(clap::Args, Clone)]
pub(crate) struct ClientArgs {
    /// The server's base URL.
    #[arg(long, env = "ORCA_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// A tenant token (created with `POST /v1/tenants/{tenant}/tokens`).
    #[arg(long, env = "ORCA_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(args: ClientArgs) -> Result<Self, Failure> {
        let http = reqwest::Client::builder()
            .build()
            .context("creating the HTTP client")?;
        Ok(Client {
            http,
            base: args.server.trim_end_matches('/').to_string(),
            token: args.token,
        })
    }

    /// Sends the request; a 4xx is the user's to fix (exit 2), anything else a failure.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<Json, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((bytes, content_type)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let text = response.text().await.context("reading the response")?;
        let json: Json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        if status.is_success() {
            return Ok(json);
        }
        let message = json["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| json.to_string());
        let message = format!("{status}: {message}");
        if status.is_client_error() {
            Err(Failure::BadInput(message))
        } else {
            Err(Failure::Runtime(anyhow::anyhow!(message)))
        }
    }

    pub(crate) async fn apply(&self, files: &[std::path::PathBuf]) -> Result<u8, Failure> {
        for file in files {
            let text = read(file)?;
            let applied = self
                .send(
                    reqwest::Method::POST,
                    "/v1/definitions",
                    Some((text, "application/yaml")),
                )
                .await
                .map_err(|e| prefix(e, file))?;
            for doc in applied["applied"].as_array().into_iter().flatten() {
                println!(
                    "{}/{} applied (version {})",
                    doc["kind"].as_str().unwrap_or_default(),
                    doc["name"].as_str().unwrap_or_default(),
                    doc["version"]
                );
            }
        }
        Ok(0)
    }

    pub(crate) async fn push_component(&self, file: &Path) -> Result<u8, Failure> {
        let bytes = read(file)?;
        let meta = self
            .send(
                reqwest::Method::POST,
                "/v1/components",
                Some((bytes, "application/wasm")),
            )
            .await?;
        println!("{}", meta["digest"].as_str().unwrap_or_default());
        Ok(0)
    }

    pub(crate) async fn start(
        &self,
        workflow: &str,
        input: Json,
        services: Vec<(String, String)>,
        wait: Option<&str>,
    ) -> Result<u8, Failure> {
        let services: serde_json::Map<String, Json> = services
            .into_iter()
            .map(|(k, v)| (k, Json::String(v)))
            .collect();
        let body = json!({ "workflow": workflow, "input": input, "services": services });
        let path = match wait {
            Some(wait) => format!("/v1/executions?wait={wait}"),
            None => "/v1/executions".to_string(),
        };
        let reply = self
            .send(
                reqwest::Method::POST,
                &path,
                Some((body.to_string().into_bytes(), "application/json")),
            )
            .await?;
        if reply.get("steps").is_some() {
            print_json(&reply);
            return Ok(if reply["status"] == "completed" { 0 } else { 1 });
        }
        println!("{}", reply["id"].as_str().unwrap_or_default());
        Ok(0)
    }

    pub(crate) async fn get_executions(
        &self,
        workflow: Option<String>,
        status: Option<String>,
        limit: usize,
    ) -> Result<u8, Failure> {
        let mut query = vec![format!("limit={limit}")];
        if let Some(w) = workflow {
            query.push(format!("workflow={}", encode(&w)));
        }
        if let Some(s) = status {
            query.push(format!("status={}", encode(&s)));
        }
        let path = format!("/v1/executions?{}", query.join("&"));
        let list = self.send(reqwest::Method::GET, &path, None).await?;
        println!("{:<38} {:<28} {:<20} CREATED", "ID", "WORKFLOW", "STATUS");
        for row in list["items"].as_array().into_iter().flatten() {
            println!(
                "{:<38} {:<28} {:<20} {}",
                row["id"].as_str().unwrap_or_default(),
                row["workflow"].as_str().unwrap_or_default(),
                row["status"].as_str().unwrap_or_default(),
                format_ms(row["created_at_ms"].as_i64())
            );
        }
        Ok(0)
    }

    pub(crate) async fn describe_execution(&self, id: &str) -> Result<u8, Failure> {
        let e = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/executions/{}", encode(id)),
                None,
            )
            .await?;
        let field = |name: &str| match &e[name] {
            Json::String(s) => s.clone(),
            Json::Null => "-".to_string(),
            other => other.to_string(),
        };
        println!("Id:        {}", field("id"));
        println!("Workflow:  {}", field("workflow"));
        println!("Status:    {}", field("status"));
        println!("Started:   {}", format_ms(e["started_at_ms"].as_i64()));
        println!("Duration:  {} ms", field("duration_ms"));
        println!("API calls: {}", field("api_calls"));
        if !e["error"].is_null() {
            println!("Error:     {}", field("error"));
        }
        println!("Steps:");
        println!(
            "  {:<28} {:<14} {:<9} DURATION",
            "NAME", "STATUS", "ATTEMPTS"
        );
        for step in e["steps"].as_array().into_iter().flatten() {
            let attempts = step["attempts"].as_array().map_or(0, Vec::len);
            let duration: i64 = step["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["duration_ms"].as_i64())
                .sum();
            println!(
                "  {:<28} {:<14} {:<9} {duration} ms",
                step["name"].as_str().unwrap_or_default(),
                step["status"].as_str().unwrap_or_default(),
                attempts
            );
        }
        if !e["output"].is_null() {
            println!("Output:");
            print_json(&e["output"]);
        }
        Ok(0)
    }

    pub(crate) async fn cancel(&self, id: &str) -> Result<u8, Failure> {
        self.send(
            reqwest::Method::POST,
            &format!("/v1/executions/{}/cancel", encode(id)),
            None,
        )
        .await?;
        println!("execution {id} cancelling");
        Ok(0)
    }
}

fn read(file: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(file)
        .map_err(|e| Failure::BadInput(format!("{}: cannot read: {e}", file.display())))
}

fn prefix(e: Failure, file: &Path) -> Failure {
    match e {
        Failure::BadInput(m) => Failure::BadInput(format!("{}: {m}", file.display())),
        other => other,
    }
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn format_ms(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
        )
        .to_string(),
        None => "-".to_string(),
    }
}

fn print_json(value: &Json) {
    if let Ok(text) = serde_json::to_string_pretty(value) {
        println!("{text}");
    }
}
