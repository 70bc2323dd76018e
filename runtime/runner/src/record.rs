//! What the store keeps of an execution: the engine's record and the definition it runs.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use orca_core::cached_json::CachedJson;
use orca_core::definition::{DefinitionSet, LoadError, Source};
use orca_core::engine::Execution;
use orca_core::plan::{self, Plan};

/// What is stored per execution: the engine's record and the definition it runs, so that
/// resuming needs nothing but the id even if the YAML files changed or are gone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub workflow: WorkflowSource,
    pub execution: Execution,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkflowSource {
    /// The workflow's name among the documents of `sources`.
    pub name: Arc<str>,
    pub sources: Sources,
}

impl WorkflowSource {
    pub fn compile(&self) -> Result<Plan, LoadError> {
        let set = DefinitionSet::load(self.sources.to_vec())?;
        plan::compile(&set, Some(&self.name))
    }
}

/// The texts of a workflow version, shared by every execution of it, with their JSON made
/// once: every save writes them into the record, and escaping the same YAML again on each
/// save was the largest single cost of a save. Their hash is made once too: every new
/// execution looks its version up among the compiled plans.
#[derive(Clone, PartialEq, Eq)]
pub struct Sources {
    pub(crate) list: CachedJson<Vec<Source>>,
    hash: u64,
}

impl From<Vec<Source>> for Sources {
    fn from(list: Vec<Source>) -> Self {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&list);
        Sources {
            list: CachedJson::new(list),
            hash,
        }
    }
}

impl std::hash::Hash for Sources {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl std::ops::Deref for Sources {
    type Target = [Source];
    fn deref(&self) -> &[Source] {
        &self.list
    }
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.list.fmt(f)
    }
}

impl Serialize for Sources {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.list.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Sources {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Source>::deserialize(deserializer).map(Sources::from)
    }
}

/// Whose execution a stored record is, read without decoding the rest of it ("" when the
/// record does not say, as records written before tenants existed do not).
pub fn tenant_of(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Record {
        execution: Owner,
    }
    #[derive(serde::Deserialize)]
    struct Owner {
        #[serde(default)]
        tenant: String,
    }
    serde_json::from_slice::<Record>(body).map_or_else(|_| String::new(), |r| r.execution.tenant)
}
