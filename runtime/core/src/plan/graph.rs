//! The plan as a Mermaid flowchart, so a user can see what the engine will run.

use std::fmt::Write;

use super::{Call, Condition, Join, Plan, Work};

pub fn to_mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart TD\n");
    let id = |n: usize| format!("n{n}");
    for &root in &plan.roots {
        let _ = writeln!(out, "    start((start)) --> {}", id(root));
    }
    for (i, node) in plan.nodes.iter().enumerate() {
        let label = match &node.work {
            Work::Call(c) => format!("{}<br/>{}", node.name, call_text(c)),
            Work::Pass(_) => format!("{}<br/>pass", node.name),
            Work::Wait(d) => format!("{}<br/>wait {}s", node.name, d.as_secs_f64()),
            Work::Choice { .. } => format!("{}<br/>choice", node.name),
            Work::Succeed => format!("{}<br/>succeed", node.name),
            Work::Fail { error, .. } => format!("{}<br/>fail: {error}", node.name),
            Work::Fork => "fork".to_string(),
            Work::Collect => format!("{}<br/>join", node.name),
        };
        let label = match &node.condition {
            Some(Condition::Expression(e)) => escape(&format!("{label}<br/>if {}", e.source())),
            Some(Condition::Component(c)) => {
                escape(&format!("{label}<br/>if component {}", c.component))
            }
            None => escape(&label),
        };
        let shape = match node.work {
            Work::Choice { .. } => format!("{{\"{label}\"}}"),
            Work::Fork | Work::Collect => format!("[[\"{label}\"]]"),
            _ => format!("[\"{label}\"]"),
        };
        let _ = writeln!(out, "    {}{shape}", id(i));
        if let Some(comp) = &node.compensation {
            let label = comp
                .label()
                .map(str::to_string)
                .unwrap_or_else(|| format!("undo {}", node.name));
            let _ = writeln!(
                out,
                "    {}c[/\"{}<br/>{}\"/]",
                id(i),
                escape(&label),
                escape(&call_text(comp))
            );
            let _ = writeln!(out, "    {} -. compensate .-> {}c", id(i), id(i));
        }
        match &node.work {
            Work::Choice { rules, default } => {
                for (expr, target) in rules {
                    let _ = writeln!(
                        out,
                        "    {} -- \"{}\" --> {}",
                        id(i),
                        escape(expr.source()),
                        id(*target)
                    );
                }
                if let Some(d) = default {
                    let _ = writeln!(out, "    {} -- default --> {}", id(i), id(*d));
                }
            }
            _ => {
                for &next in &node.next {
                    let _ = writeln!(out, "    {} --> {}", id(i), id(next));
                }
            }
        }
        if node.next.is_empty() && !matches!(node.work, Work::Choice { .. } | Work::Fail { .. }) {
            let ends_inside = plan.nodes.iter().any(|n| matches!(&n.join, Join::AllOf(g) if g.iter().flatten().any(|&m| m == i) && matches!(n.work, Work::Collect)));
            if !ends_inside {
                let _ = writeln!(out, "    {} --> done((end))", id(i));
            }
        }
    }
    out
}

fn call_text(call: &Call) -> String {
    match call {
        Call::Http(h) => format!("{} {} {}", h.method, h.service, h.endpoint.source()),
        Call::Component(c) => format!("component {}", c.component),
    }
}

fn escape(text: &str) -> String {
    text.replace('"', "#quot;")
}
