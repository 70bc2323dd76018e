//! Which store to open, from `--store` / `ORCA_STORE`, a `StateStore` document, or the default.
//!
//! What a workflow needs is in its YAML; where the servers are is deployment detail. So the
//! seed's `StateStore` (`endpoint: "redis:6379"`, a cluster DNS name) can be pointed elsewhere
//! without editing it:
//! - `ORCA_REDIS_URL` replaces a `redis` document's `endpoint`;
//! - `ORCA_POSTGRES_URL` replaces a `postgresql` document's `endpoint` and the
//!   `persistence.endpoint` of a persisted `redis` one.
//!
//! `--store` accepts `memory`, `sqlite:PATH`, `postgresql://…` (or `postgres://…`),
//! `redis://…`, or a YAML file holding a `StateStore` document. URL options Orca reads itself:
//! - postgresql: `schema=NAME` keeps Orca's tables in that schema (created if missing); every
//!   other option is passed to the driver, which rejects the ones it does not know.
//! - redis: `ttl=24h` (default 24h), `prefix=orca:` (key prefix, default `orca:`), and
//!   `persistence=postgresql` (persist to the database named by `ORCA_POSTGRES_URL`) or
//!   `persistence=<percent-encoded postgresql URL>`.
//!
//! Anything unknown or unused is an error rather than silently ignored.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::kv::{KvStore, MemoryKv};
use super::tenants::{SqliteTenants, TenantStore};
use super::tenants_pg::PostgresTenants;
use super::{
    ExecutionStore, GroupCommit, LayeredStore, MemoryStore, PostgresStore, RedisStore, SqliteStore,
    StoreError,
};
use orca_definition::{DefinitionSet, Document, Kind, LoadedDocument, Source};

mod document;

/// Overrides the `endpoint` of a `redis` StateStore document.
pub const ENV_REDIS_URL: &str = "ORCA_REDIS_URL";
/// Overrides the PostgreSQL endpoint of a StateStore document.
pub const ENV_POSTGRES_URL: &str = "ORCA_POSTGRES_URL";

/// How long Redis keeps an execution after its last write when nothing says otherwise: the
/// seed's value, long enough for any execution that is still being driven to be renewed.
pub const DEFAULT_REDIS_TTL: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_REDIS_PREFIX: &str = "orca:";

/// A store to open, fully resolved (no more environment lookups needed).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    Memory,
    Sqlite(PathBuf),
    Postgres(PostgresConfig),
    /// Redis alone (`persistence: None`) or in front of PostgreSQL.
    Redis {
        redis: RedisConfig,
        persistence: Option<PostgresConfig>,
    },
}

/// A PostgreSQL database to connect to.
#[derive(Clone, PartialEq)]
pub struct PostgresConfig {
    /// A `postgresql://` URL as the driver reads it, without Orca's own options.
    pub url: String,
    /// A plain lower-case identifier; Orca's tables live there instead of the search path's
    /// default schema.
    pub schema: Option<String>,
}

/// A Redis server and how Orca uses it.
#[derive(Clone, PartialEq)]
pub struct RedisConfig {
    /// A `redis://` URL without Orca's own options.
    pub url: String,
    /// Prepended to every key, so that several deployments (or tests) can share a server.
    pub prefix: String,
    /// Each execution expires this long after its last write. A running execution is
    /// rewritten at least at every lease renewal (10 s by default), so without persistence
    /// keep this well above that, or executions vanish while they run.
    pub ttl: Duration,
}

/// Environment lookups, injectable so tests need not mutate the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl StoreConfig {
    /// The store for a command: `flag` (`--store` / `ORCA_STORE`) if given, else the
    /// `StateStore` document of `set`, else the default SQLite file.
    pub fn resolve(
        flag: Option<&str>,
        set: Option<&DefinitionSet>,
        env: Env<'_>,
    ) -> Result<Self, StoreError> {
        if let Some(flag) = flag {
            return Self::parse(flag, env);
        }
        match set.and_then(|s| s.of_kind(Kind::StateStore).next()) {
            Some(doc) => Self::from_document(doc, env),
            None => Ok(Self::default_sqlite(env)),
        }
    }

    /// A `--store` value.
    pub fn parse(spec: &str, env: Env<'_>) -> Result<Self, StoreError> {
        if spec == "memory" {
            return Ok(StoreConfig::Memory);
        }
        if let Some(path) = spec
            .strip_prefix("sqlite://")
            .or_else(|| spec.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::Config(format!(
                    "store `{spec}`: name the database file, like sqlite:orca.db"
                )));
            }
            return Ok(StoreConfig::Sqlite(PathBuf::from(path)));
        }
        if is_postgres_url(spec) {
            return Ok(StoreConfig::Postgres(PostgresConfig::parse(spec)?));
        }
        if spec.starts_with("redis://") {
            let (redis, persistence) = RedisConfig::parse(spec, None)?;
            let persistence = match persistence.as_deref() {
                None => None,
                Some("postgresql") => Some(PostgresConfig::parse(
                    &env(ENV_POSTGRES_URL).ok_or_else(|| {
                        StoreError::Config(format!(
                            "store {redis:?}: `persistence=postgresql` needs {ENV_POSTGRES_URL} \
                             (or give the database URL, percent-encoded, as the option's value)"
                        ))
                    })?,
                )?),
                Some(url) => Some(PostgresConfig::parse(url)?),
            };
            return Ok(StoreConfig::Redis { redis, persistence });
        }
        if spec.ends_with(".yaml") || spec.ends_with(".yml") {
            return Self::from_file(spec, env);
        }
        Err(StoreError::Config(format!(
            "store `{spec}` is not one Orca knows: use memory, sqlite:PATH, postgresql://…, \
             redis://…, or a YAML file with a StateStore document"
        )))
    }

    /// The `StateStore` document in the YAML file at `path`.
    fn from_file(path: &str, env: Env<'_>) -> Result<Self, StoreError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StoreError::Config(format!("store {path}: cannot read: {e}")))?;
        let set = DefinitionSet::load(vec![Source {
            name: path.to_string(),
            text,
        }])
        .map_err(|e| StoreError::Config(e.to_string()))?;
        let doc = set.of_kind(Kind::StateStore).next().ok_or_else(|| {
            StoreError::Config(format!("store {path}: the file has no StateStore document"))
        })?;
        Self::from_document(doc, env)
    }

    /// A `StateStore` document, with the environment's endpoint overrides applied.
    pub fn from_document(doc: &LoadedDocument, env: Env<'_>) -> Result<Self, StoreError> {
        let Document::StateStore(manifest) = &doc.document else {
            return Err(StoreError::Config(format!(
                "{}: `{}` is a {}, not a StateStore",
                doc.position.file,
                doc.name,
                doc.kind.as_str()
            )));
        };
        document::config(&doc.position, &manifest.spec, env)
    }

    /// `$ORCA_HOME/orca.db`, else `$XDG_DATA_HOME/orca/orca.db`, else
    /// `~/.local/share/orca/orca.db`.
    pub fn default_sqlite(env: Env<'_>) -> Self {
        if let Some(home) = env("ORCA_HOME").filter(|h| !h.is_empty()) {
            return StoreConfig::Sqlite(PathBuf::from(home).join("orca.db"));
        }
        let base = env("XDG_DATA_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        StoreConfig::Sqlite(base.join("orca").join("orca.db"))
    }
}

/// Opens (connecting, creating and migrating as needed) the store `config` describes.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn ExecutionStore>, StoreError> {
    Ok(open_with_state(config).await?.0)
}

/// Batches committing at once behind [`GroupCommit`] for stores with a connection pool or a
/// multiplexed connection: while one batch waits for its commit the next is gathered and
/// sent, and a lone write need not wait behind a full batch. PostgreSQL flushes commits that
/// arrive together with one WAL sync, so more in flight raised throughput until about eight
/// (bench/FINDINGS.md); six leave two of its pool's eight connections for leases and reads.
const POOLED_IN_FLIGHT: usize = 6;

/// Opens the store `config` describes, and the component state kept in the same backend
/// (sharing its connections). Durable backends get their writes grouped ([`GroupCommit`]).
pub async fn open_with_state(
    config: &StoreConfig,
) -> Result<(Arc<dyn ExecutionStore>, Arc<dyn KvStore>), StoreError> {
    fn grouped<S: ExecutionStore + KvStore + 'static>(
        store: S,
        in_flight: usize,
    ) -> (Arc<dyn ExecutionStore>, Arc<dyn KvStore>) {
        let store = Arc::new(store);
        let executions = GroupCommit::new(store.clone(), in_flight);
        (Arc::new(executions), store)
    }
    Ok(match config {
        StoreConfig::Memory => (Arc::new(MemoryStore::new()), Arc::new(MemoryKv::new())),
        StoreConfig::Sqlite(path) => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(path))
                .await
                .map_err(|e| StoreError::backend("sqlite", e))??;
            // Its connection's thread already commits queued writes together.
            let store = Arc::new(store);
            (store.clone(), store)
        }
        StoreConfig::Postgres(pg) => grouped(PostgresStore::open(pg).await?, POOLED_IN_FLIGHT),
        StoreConfig::Redis {
            redis,
            persistence: None,
        } => grouped(RedisStore::open(redis).await?, POOLED_IN_FLIGHT),
        StoreConfig::Redis {
            redis,
            persistence: Some(pg),
        } => grouped(LayeredStore::open(redis, pg).await?, POOLED_IN_FLIGHT),
    })
}

/// Opens the server's tenant storage (tenants, tokens, definitions, component ownership)
/// beside the executions of `config`: in the SQLite file, in PostgreSQL (also when it is a
/// Redis store's persistence), or in a private in-memory database. A Redis store without
/// persistence has nowhere to keep them.
pub async fn open_tenants(config: &StoreConfig) -> Result<Arc<dyn TenantStore>, StoreError> {
    Ok(match config {
        StoreConfig::Memory => Arc::new(SqliteTenants::in_memory()?),
        StoreConfig::Sqlite(path) => Arc::new(SqliteTenants::open(path)?),
        StoreConfig::Postgres(pg)
        | StoreConfig::Redis {
            persistence: Some(pg),
            ..
        } => Arc::new(PostgresTenants::open(pg).await?),
        StoreConfig::Redis {
            persistence: None, ..
        } => {
            return Err(StoreError::Config(
                "`orca serve` keeps tenants in SQLite or PostgreSQL: give the Redis store a \
                 PostgreSQL persistence (`?persistence=postgresql`), or use another store"
                    .into(),
            ));
        }
    })
}

fn is_postgres_url(spec: &str) -> bool {
    spec.starts_with("postgresql://") || spec.starts_with("postgres://")
}

/// `url` with its password replaced, for messages.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

impl PostgresConfig {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |why: String| StoreError::Config(format!("store {}: {why}", redact(url)));
        if !is_postgres_url(url) {
            return Err(bad("a PostgreSQL URL starts with postgresql://".into()));
        }
        let mut parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let mut schema = None;
        let mut rest = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "schema" => schema = Some(value.into_owned()),
                _ => rest.push((key.into_owned(), value.into_owned())),
            }
        }
        if let Some(name) = &schema {
            let plain = name.len() <= 63
                && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return Err(bad(format!(
                    "schema `{name}`: use lower-case letters, digits and _ (at most 63)"
                )));
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        let url = parsed.to_string();
        // The driver knows its own options; ask it now so a typo fails before connecting.
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| bad(super::postgres::error_chain(&e)))?;
        Ok(PostgresConfig { url, schema })
    }

    /// The URL without its password, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.redacted())?;
        if let Some(schema) = &self.schema {
            write!(f, " (schema {schema})")?;
        }
        Ok(())
    }
}

impl RedisConfig {
    /// A `redis://` URL and the value of its `persistence` option, if any. `ttl` is the
    /// document's, which a `ttl` option in the URL overrides.
    pub fn parse(url: &str, ttl: Option<Duration>) -> Result<(Self, Option<String>), StoreError> {
        let bad = |why: String| StoreError::Config(format!("store {}: {why}", redact(url)));
        if !url.starts_with("redis://") {
            return Err(bad(
                "a Redis URL starts with redis:// (TLS is not supported in this build)".into(),
            ));
        }
        let mut parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let mut config = RedisConfig {
            url: String::new(),
            prefix: DEFAULT_REDIS_PREFIX.to_string(),
            ttl: ttl.unwrap_or(DEFAULT_REDIS_TTL),
        };
        let mut persistence = None;
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "ttl" => {
                    config.ttl = humantime::parse_duration(&value)
                        .map_err(|e| bad(format!("ttl `{value}`: {e}")))?;
                }
                "prefix" => config.prefix = value.into_owned(),
                "persistence" => persistence = Some(value.into_owned()),
                other => {
                    return Err(bad(format!(
                        "unknown option `{other}` (Orca reads ttl, prefix and persistence)"
                    )));
                }
            }
        }
        if config.ttl.as_millis() == 0 {
            return Err(bad("ttl must be at least 1ms".into()));
        }
        parsed.set_query(None);
        config.url = parsed.to_string();
        Ok((config, persistence))
    }

    /// The URL without its password, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (prefix `{}`, ttl {})",
            self.redacted(),
            self.prefix,
            humantime::format_duration(self.ttl)
        )
    }
}

#[cfg(test)]
mod tests;
