//! The server's ceilings on what a workflow's components may ask for: per-call memory and
//! deadline, and the hosts they may be granted (egress). A definition
//! over a ceiling is refused when applied (and again when started, in case the ceilings were
//! lowered since), so what runs never exceeds them, resumed executions included.

use super::ServerConfig;
use super::error::{ApiError, ApiResult};
use orca_core::component::Grants;
use orca_core::plan::{Call, ComponentCall, Condition, Plan, Work};

pub(super) fn check(config: &ServerConfig, plan: &Plan) -> ApiResult<()> {
    for node in &plan.nodes {
        if let Work::Call(Call::Component(call)) = &node.work {
            check_call(config, plan, call)?;
        }
        if let Some(Condition::Component(call)) = &node.condition {
            check_call(config, plan, call)?;
        }
        if let Some(Call::Component(call)) = &node.compensation {
            check_call(config, plan, call)?;
        }
    }
    Ok(())
}

/// Whether the grant `pattern` reaches nothing the ceiling does not: it is one of the
/// ceiling's patterns, or a single host and port (or the default ports) the ceiling allows.
fn within(pattern: &str, ceiling: &[String]) -> bool {
    if ceiling.iter().any(|c| c.eq_ignore_ascii_case(pattern)) {
        return true;
    }
    if pattern.contains('*') {
        return false;
    }
    let allowed = Grants {
        http: ceiling.to_vec(),
        ..Grants::default()
    };
    let (host, ports) = match pattern.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !host.contains(']') => {
            match port.parse::<u16>() {
                Ok(port) => (host, vec![port]),
                Err(_) => return false,
            }
        }
        _ => (pattern, vec![80, 443]),
    };
    let host = host.to_ascii_lowercase();
    ports
        .into_iter()
        .all(|port| allowed.allows_host(&host, port))
}

fn check_call(config: &ServerConfig, plan: &Plan, call: &ComponentCall) -> ApiResult<()> {
    const MIB: u64 = 1 << 20;
    let limits = &call.limits;
    if limits.memory_bytes > config.max_call_memory_bytes {
        return Err(ApiError::BadRequest(format!(
            "workflow `{}`: component `{}` asks for {} MiB of memory per call; this server allows \
             at most {} MiB (lower `spec.limits.memory`)",
            plan.workflow_id,
            call.component,
            limits.memory_bytes.div_ceil(MIB),
            config.max_call_memory_bytes / MIB
        )));
    }
    let ceiling_ms = config.max_call_deadline.as_millis() as u64;
    if limits.deadline_ms > ceiling_ms {
        return Err(ApiError::BadRequest(format!(
            "workflow `{}`: component `{}` asks for a {} ms deadline per call; this server allows \
             at most {ceiling_ms} ms (lower `spec.limits.deadline`)",
            plan.workflow_id, call.component, limits.deadline_ms
        )));
    }
    if let Some(ceiling) = &config.egress_ceiling
        && let Some(grant) = call.grants.http.iter().find(|g| !within(g, ceiling))
    {
        return Err(ApiError::BadRequest(format!(
            "workflow `{}`: component `{}` is granted `{grant}`, which this server does not allow \
             (allowed: {})",
            plan.workflow_id,
            call.component,
            if ceiling.is_empty() {
                "no hosts".to_string()
            } else {
                ceiling.join(", ")
            }
        )));
    }
    Ok(())
}
