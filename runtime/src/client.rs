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
        if !response.status().is_success() {
            return Err(error_of(response).await);
        }
        let text = response.text().await.context("reading the response")?;
        Ok(serde_json::from_str(&text).unwrap_or(Json::String(text)))
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

    /// Starts `workflow`; with `wait`, waits for the end (up to the duration given, or
    /// for good) and prints the execution like `orca run`, else prints its id.
    pub(crate) async fn start(
        &self,
        workflow: &str,
        input: Json,
        services: Vec<(String, String)>,
        wait: Option<Option<String>>,
    ) -> Result<u8, Failure> {
        let services: serde_json::Map<String, Json> = services
            .into_iter()
            .map(|(k, v)| (k, Json::String(v)))
            .collect();
        let body = json!({ "workflow": workflow, "input": input, "services": services });
        let deadline = match &wait {
            Some(Some(text)) => {
                let wait = humantime::parse_duration(text)
                    .map_err(|e| Failure::BadInput(format!("--wait {text}: {e} (try `30s`)")))?;
                Some(tokio::time::Instant::now() + wait)
            }
            _ => None,
        };
        let path = match &wait {
            Some(_) => format!("/v1/executions?wait={}", wait_param(deadline)),
            None => "/v1/executions".to_string(),
        };
        let mut reply = self
            .send(
                reqwest::Method::POST,
                &path,
                Some((body.to_string().into_bytes(), "application/json")),
            )
            .await?;
        if wait.is_none() {
            println!("{}", reply["id"].as_str().unwrap_or_default());
            return Ok(0);
        }
        let id = reply["id"].as_str().unwrap_or_default().to_string();
        // The server answers a wait within a minute at most: wait again until the end or
        // the deadline.
        while !is_final(&reply) && deadline.is_none_or(|d| tokio::time::Instant::now() < d) {
            let path = format!(
                "/v1/executions/{}?wait={}",
                encode(&id),
                wait_param(deadline)
            );
            reply = self.send(reqwest::Method::GET, &path, None).await?;
        }
        if !is_final(&reply) && reply.get("steps").is_none() {
            reply = self
                .send(
                    reqwest::Method::GET,
                    &format!("/v1/executions/{}", encode(&id)),
                    None,
                )
                .await?;
        }
        print_json(&reply);
        Ok(if reply["status"] == "completed" { 0 } else { 1 })
    }

    /// Follows the execution's event stream, printing its progress lines on stderr, and
    /// reconnects where it left off if the connection drops (a server restarting).
    pub(crate) async fn watch(&self, id: &str) -> Result<u8, Failure> {
        use eventsource_stream::Eventsource;
        use futures_util::StreamExt;

        let url = format!("{}/v1/executions/{}/events", self.base, encode(id));
        let mut last: Option<String> = None;
        let mut reconnects = 0;
        loop {
            let mut request = self.http.get(&url).header("accept", "text/event-stream");
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(last) = &last {
                request = request.header("last-event-id", last);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) if last.is_some() && reconnects < RECONNECTS => {
                    reconnects += 1;
                    tracing::debug!(error = %e, "event stream: connecting again");
                    tokio::time::sleep(RECONNECT_AFTER).await;
                    continue;
                }
                Err(e) => {
                    return Err(Failure::Runtime(
                        anyhow::Error::new(e).context(format!("cannot reach {url}")),
                    ));
                }
            };
            if !response.status().is_success() {
                return Err(error_of(response).await);
            }
            let mut events = response.bytes_stream().eventsource();
            while let Some(event) = events.next().await {
                let Ok(event) = event else { break };
                reconnects = 0;
                last = Some(event.id.clone());
                let data: Json = serde_json::from_str(&event.data).unwrap_or(Json::Null);
                if event.event == "execution.ended" {
                    eprintln!("{}", orca_runtime::events::ended_line(id, &data));
                    return Ok(if data["status"] == "completed" { 0 } else { 1 });
                }
                if let Some(line) = orca_runtime::events::line(&event.event, &data) {
                    eprintln!("{line}");
                }
            }
            // Ended before the execution did: the server went away.
            reconnects += 1;
            if reconnects > RECONNECTS {
                return Err(Failure::Runtime(anyhow::anyhow!(
                    "the event stream of {id} keeps ending before the execution does"
                )));
            }
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
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

/// How often, and how far apart, `orca watch` connects again after its stream dropped.
const RECONNECTS: u32 = 30;
const RECONNECT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A failed answer: a 4xx is the user's to fix (exit 2), anything else a failure.
async fn error_of(response: reqwest::Response) -> Failure {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let json: Json = serde_json::from_str(&text).unwrap_or(Json::String(text));
    let message = json["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| json.to_string());
    let message = format!("{status}: {message}");
    if status.is_client_error() {
        Failure::BadInput(message)
    } else {
        Failure::Runtime(anyhow::anyhow!(message))
    }
}

fn is_final(execution: &Json) -> bool {
    execution.get("steps").is_some()
        && !matches!(
            execution["status"].as_str(),
            Some("running" | "compensating")
        )
}

/// The `?wait=` of one request: what is left before `deadline`, at most what a server
/// grants (a minute).
fn wait_param(deadline: Option<tokio::time::Instant>) -> String {
    let most = std::time::Duration::from_secs(60);
    let left = deadline.map_or(most, |d| {
        d.saturating_duration_since(tokio::time::Instant::now())
    });
    format!("{}ms", left.min(most).as_millis().max(1))
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
