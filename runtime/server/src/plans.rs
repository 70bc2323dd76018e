//! Workflows ready to start, kept per (tenant, workflow, version): a start of a cached
//! workflow reads nothing from the store, parses no YAML and compiles nothing.
//!
//! An entry holds what starting needs (the plan, the definitions an execution keeps for
//! resuming, the components bound) and watches for the changes that would make it wrong
//! (see [`orca_store::tenants::TenantStore::changes`]): a new version or the deletion of
//! its workflow, and any change to what every workflow of the tenant may use (services,
//! components, configuration). The watches are registered before the definitions are read,
//! so a change that lands while an entry is being made leaves it already stale, and the next
//! start makes it again. Other processes sharing the store tell this one of their changes the
//! same way. A running execution keeps the definitions it started with whatever happens
//! here: they are in its record.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use orca_core::definition::{DefinitionSet, Document, Kind};
use orca_core::engine::Bindings;
use orca_core::plan::Plan;
use orca_core::services;
use orca_runner::WorkflowSource;
use orca_runner::launch::{self, Launch, LaunchSettings};
use orca_store::Watch;
use orca_store::tenants::{shared_key, workflow_key};
use orca_wasm::bind_components;

use super::App;
use super::definitions::source_of;
use super::error::{ApiError, ApiResult};

/// What a start of one workflow version needs, made once.
pub(crate) struct Ready {
    pub(crate) plan: Arc<Plan>,
    pub(crate) source: WorkflowSource,
    /// The definitions the plan came from, for service bindings given with a start.
    set: DefinitionSet,
    components: BTreeMap<String, String>,
}

impl Ready {
    /// The bindings of one start: `services` given with it over the definitions' own.
    pub(crate) fn bindings(&self, tenant: &str, services: &BTreeMap<String, String>) -> Bindings {
        Bindings {
            tenant: tenant.to_string(),
            services: services::resolve(&self.plan.services, &self.set, services, |_| None),
            components: self.components.clone(),
        }
    }
}

/// The cache; one per server process.
#[derive(Default)]
pub(crate) struct Plans {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// Tenant, workflow, and the version asked for (`None`: the latest).
type Key = (String, String, Option<u32>);

struct Entry {
    ready: Arc<Ready>,
    watches: Vec<Watch>,
}

impl Entry {
    fn is_current(&self) -> bool {
        !self.watches.iter().any(Watch::has_changed)
    }
}

impl Plans {
    /// `workflow` of `tenant` (at `version`, or the latest) ready to start, made now if the
    /// cache has no current entry.
    pub(crate) async fn ready(
        &self,
        app: &App,
        tenant: &str,
        workflow: &str,
        version: Option<u32>,
    ) -> ApiResult<Arc<Ready>> {
        let key = (tenant.to_string(), workflow.to_string(), version);
        if let Some(ready) = self.cached(&key) {
            return Ok(ready);
        }
        let changes = app.tenants.changes();
        let mut watches = vec![changes.watch(&shared_key(tenant))];
        // A pinned version never changes; only its deletion (announced under the shared key
        // too) ends it.
        if version.is_none() {
            watches.push(changes.watch(&workflow_key(tenant, workflow)));
        }
        let ready = Arc::new(make(app, tenant, workflow, version).await?);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(
            key,
            Entry {
                ready: ready.clone(),
                watches,
            },
        );
        Ok(ready)
    }

    fn cached(&self, key: &Key) -> Option<Arc<Ready>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some(entry) if entry.is_current() => Some(entry.ready.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }
}

/// Reads the workflow's version and the latest of everything it may refer to, compiles it,
/// checks it against the server's limits and binds its components.
async fn make(app: &App, tenant: &str, name: &str, version: Option<u32>) -> ApiResult<Ready> {
    let workflow = app
        .tenants
        .definition(tenant, name, version)
        .await?
        .filter(|d| Kind::parse(&d.kind).is_some_and(Kind::is_workflow))
        .ok_or_else(|| ApiError::NotFound(format!("no workflow `{name}`")))?;
    let mut sources = vec![source_of(&workflow)];
    for doc in app.tenants.definitions(tenant).await? {
        let kind = Kind::parse(&doc.kind);
        if doc.name != workflow.name
            && kind.is_some_and(|k| !k.is_workflow() && k != Kind::PrometheusRule)
        {
            sources.push(source_of(&doc));
        }
    }
    let set = DefinitionSet::load(sources)?;
    let Launch { plan, source, .. } = launch::prepare(
        &set,
        LaunchSettings {
            workflow: Some(&workflow.name),
            tenant,
            services: &BTreeMap::new(),
            env: |_: &str| None,
        },
    )?;
    super::quotas::check(&app.config, &plan)?;
    for doc in set.of_kind(Kind::Component) {
        if let Document::Component(m) = &doc.document {
            let owned = match &m.spec.digest {
                Some(d) => app.tenants.component(tenant, &d.value).await?.is_some(),
                None => false,
            };
            if !owned {
                return Err(ApiError::BadRequest(format!(
                    "component `{}` names no component uploaded by this tenant",
                    doc.name
                )));
            }
        }
    }
    let wasm = app.wasm.clone();
    let (set, components) = tokio::task::spawn_blocking(move || {
        let bound = bind_components(&set, &wasm);
        bound.map(|components| (set, components))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Ready {
        plan: Arc::new(plan),
        source,
        set,
        components,
    })
}
