//! Compiled plans by workflow source.
//!
//! Resuming ten thousand executions of one workflow after a crash should compile it once, and
//! the executions should share one copy of its texts rather than each keep the copy it was
//! read back with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::WorkflowSource;
use orca_core::definition::LoadError;
use orca_core::plan::Plan;

/// Distinct workflow versions kept; a process rarely drives more, and past it the cache
/// starts over rather than grow without bound.
const CAPACITY: usize = 256;

#[derive(Default)]
pub(super) struct Plans {
    compiled: Mutex<HashMap<WorkflowSource, Arc<Plan>>>,
}

impl Plans {
    /// The plan of `workflow`, compiled once per distinct source. `workflow.sources` is
    /// replaced by the copy the cache shares.
    pub(super) fn compile(&self, workflow: &mut WorkflowSource) -> Result<Arc<Plan>, LoadError> {
        if let Some((known, plan)) = self.lock().get_key_value(workflow) {
            workflow.sources = known.sources.clone();
            return Ok(plan.clone());
        }
        // Compiled outside the lock: it takes a while, and two threads compiling the same
        // source at once only waste a little work.
        let plan = Arc::new(workflow.compile()?);
        let mut compiled = self.lock();
        if compiled.len() >= CAPACITY {
            compiled.clear();
        }
        compiled.insert(workflow.clone(), plan.clone());
        Ok(plan)
    }

    /// Makes a new execution of `workflow` share the cached copy of its texts, adding
    /// `plan` to the cache if this version is new.
    pub(super) fn share(&self, workflow: &mut WorkflowSource, plan: &Plan) {
        let mut compiled = self.lock();
        if let Some((known, _)) = compiled.get_key_value(workflow) {
            workflow.sources = known.sources.clone();
            return;
        }
        if compiled.len() >= CAPACITY {
            compiled.clear();
        }
        compiled.insert(workflow.clone(), Arc::new(plan.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkflowSource, Arc<Plan>>> {
        // Entries are inserted whole; a panic elsewhere cannot leave one half-written.
        self.compiled.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
