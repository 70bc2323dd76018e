//! One way to make an execution ready to start, for `orca run` and `orca serve` alike: the
//! workflow compiled once (every workflow of its set checked with it), its services bound,
//! and the definitions it keeps for resuming. Its components are bound by the caller's Wasm
//! host ([`Launch::bindings`]), after the definitions are known to be good. Exit codes and
//! HTTP statuses are the callers'; this returns the load error.

use std::collections::BTreeMap;

use orca_core::definition::{DefinitionSet, LoadError};
use orca_core::engine::Bindings;
use orca_core::plan::{self, Plan};
use orca_core::services;

use crate::WorkflowSource;

/// An execution ready for [`crate::Runner::run`] or [`crate::Runner::start`].
pub struct Launch {
    pub plan: Plan,
    pub source: WorkflowSource,
    pub bindings: Bindings,
}

/// Where the parts of a launch come from besides the definitions.
pub struct LaunchSettings<'a, E> {
    /// The workflow to run; `None`: the set's only one.
    pub workflow: Option<&'a str>,
    pub tenant: &'a str,
    /// Service bindings given with the request or on the command line, over the set's own.
    pub services: &'a BTreeMap<String, String>,
    /// The environment (`ORCA_SERVICE_<NAME>`), or nothing for a server.
    pub env: E,
}

/// Compiles `settings.workflow` of `set` and binds its services.
pub fn prepare<E>(set: &DefinitionSet, settings: LaunchSettings<'_, E>) -> Result<Launch, LoadError>
where
    E: Fn(&str) -> Option<String>,
{
    let plan = plan::compile_checked(set, settings.workflow)?;
    let services = services::resolve(&plan.services, set, settings.services, settings.env);
    let source = WorkflowSource {
        name: plan.workflow_id.clone(),
        sources: set.sources.clone().into(),
    };
    Ok(Launch {
        plan,
        source,
        bindings: Bindings {
            tenant: settings.tenant.to_string(),
            services,
            components: BTreeMap::new(),
        },
    })
}
