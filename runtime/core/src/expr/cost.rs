//! What an expression may cost, found from its syntax tree.
//!
//! CEL has no loops of its own, but its macros (`all`, `exists`, `exists_one`, `map`,
//! `filter`) expand into comprehensions, and comprehensions nest: four nested ones over a
//! 60-element list run 13 million iterations. A workflow's author may be a hostile tenant, so
//! every expression gets a budget of iterations. The bound is an upper bound computed before
//! evaluation: at load time from the list literals alone (an expression that would go over the
//! budget whatever the data is refused there), and at run time with the sizes of the values
//! it reads (an execution whose data would take it over fails that step instead of running).

use cel::common::ast::{EntryExpr, Expr as Ast, IdedExpr};
use serde_json::Value as Json;

/// Longest expression source, in bytes. Real conditions and mappings are a line or two; the
/// bound also keeps every column the CEL parser reports within what it can format (it
/// panics past 65,535).
pub const MAX_SOURCE_BYTES: usize = 4096;

/// Most comprehension iterations one evaluation may run. At well under a microsecond each,
/// an evaluation stays within tens of milliseconds; 10,000 elements mapped with a nested
/// lookup into 100 others is within it.
pub const MAX_ITERATIONS: u64 = 1_000_000;

/// Largest result of one evaluation, in bytes of JSON: as large as a response body may be
/// by default, so passing a response through a template is never refused, while a result
/// built by repeating shared values (which CEL holds by reference) cannot fill memory.
pub const MAX_RESULT_BYTES: usize = 10 << 20;

/// What the tree says, found once when the expression compiles.
#[derive(Debug, Clone, Default)]
pub(super) struct Shape {
    /// The top-level variables it reads: identifiers not bound by a comprehension.
    pub(super) variables: Vec<String>,
    /// Whether it holds a comprehension, so its cost depends on the data.
    pub(super) loops: bool,
}

impl Shape {
    pub(super) fn of(tree: &IdedExpr) -> Shape {
        let mut shape = Shape::default();
        let mut bound = Vec::new();
        shape.walk(tree, &mut bound);
        shape.variables.sort();
        shape.variables.dedup();
        shape
    }

    fn walk<'a>(&mut self, node: &'a IdedExpr, bound: &mut Vec<&'a str>) {
        match &node.expr {
            Ast::Ident(name) => {
                if !name.starts_with('@') && !bound.contains(&name.as_str()) {
                    self.variables.push(name.clone());
                }
            }
            Ast::Comprehension(c) => {
                self.loops = true;
                self.walk(&c.iter_range, bound);
                self.walk(&c.accu_init, bound);
                let depth = bound.len();
                bound.push(&c.accu_var);
                self.walk(&c.result, bound);
                bound.push(&c.iter_var);
                if let Some(second) = &c.iter_var2 {
                    bound.push(second);
                }
                self.walk(&c.loop_cond, bound);
                self.walk(&c.loop_step, bound);
                bound.truncate(depth);
            }
            _ => each_child(node, |child| self.walk(child, bound)),
        }
    }
}

/// Calls `f` on every direct child of `node` (a comprehension's parts included).
fn each_child<'a>(node: &'a IdedExpr, mut f: impl FnMut(&'a IdedExpr)) {
    match &node.expr {
        Ast::Unspecified | Ast::Ident(_) | Ast::Literal(_) => {}
        Ast::Call(call) => {
            if let Some(target) = &call.target {
                f(target);
            }
            call.args.iter().for_each(f);
        }
        Ast::Comprehension(c) => {
            for part in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                f(part);
            }
        }
        Ast::List(list) => list.elements.iter().for_each(f),
        Ast::Map(map) => map.entries.iter().for_each(|e| entry(&e.expr, &mut f)),
        Ast::Struct(s) => s.entries.iter().for_each(|e| entry(&e.expr, &mut f)),
        Ast::Select(select) => f(&select.operand),
    }
}

fn entry<'a>(entry: &'a EntryExpr, f: &mut impl FnMut(&'a IdedExpr)) {
    match entry {
        EntryExpr::StructField(field) => f(&field.value),
        EntryExpr::MapEntry(pair) => {
            f(&pair.key);
            f(&pair.value);
        }
    }
}

/// How long a list a range that is not a literal may be: at most the longest list, map or
/// string in the data it reads (a range is a part of the data, or built from parts of it).
#[derive(Debug, Clone, Copy)]
pub(super) enum Unknown {
    /// At load: the data is not known yet; count such a range as empty, which gives the least
    /// the expression can cost.
    Empty,
    /// At run time: the longest container in the values read.
    AtMost(u64),
}

/// The most comprehension iterations evaluating `tree` can take.
pub(super) fn iterations(tree: &IdedExpr, unknown: Unknown) -> u64 {
    cost(tree, 1, unknown)
}

/// Iterations of `node` when it is evaluated `times` times.
fn cost(node: &IdedExpr, times: u64, unknown: Unknown) -> u64 {
    match &node.expr {
        Ast::Comprehension(c) => {
            let per_element = times.saturating_mul(range_len(&c.iter_range, unknown));
            cost(&c.iter_range, times, unknown)
                .saturating_add(cost(&c.accu_init, times, unknown))
                .saturating_add(per_element)
                .saturating_add(cost(&c.loop_cond, per_element, unknown))
                .saturating_add(cost(&c.loop_step, per_element, unknown))
                .saturating_add(cost(&c.result, times, unknown))
        }
        _ => {
            let mut total = 0u64;
            each_child(node, |child| {
                total = total.saturating_add(cost(child, times, unknown));
            });
            total
        }
    }
}

/// The most elements a comprehension's range can have.
fn range_len(range: &IdedExpr, unknown: Unknown) -> u64 {
    match &range.expr {
        Ast::List(list) => list.elements.len() as u64,
        Ast::Map(map) => map.entries.len() as u64,
        // `a + b` of lists: both.
        Ast::Call(call) if call.func_name == "_+_" && call.target.is_none() => call
            .args
            .iter()
            .map(|arg| range_len(arg, unknown))
            .fold(0, u64::saturating_add),
        // `map` and `filter` give at most one element per element of their range.
        Ast::Comprehension(inner) => range_len(&inner.iter_range, unknown),
        _ => match unknown {
            Unknown::Empty => 0,
            Unknown::AtMost(n) => n,
        },
    }
}

/// The length of the longest array, object or string inside `value`.
pub(super) fn longest_container(value: &Json) -> u64 {
    match value {
        Json::Array(items) => items
            .iter()
            .map(longest_container)
            .fold(items.len() as u64, u64::max),
        Json::Object(fields) => fields
            .values()
            .map(longest_container)
            .fold(fields.len() as u64, u64::max),
        Json::String(s) => s.len() as u64,
        Json::Null | Json::Bool(_) | Json::Number(_) => 0,
    }
}

/// The size of `value` as JSON, give or take quoting, or `None` past `limit`: counted before
/// the value is turned into JSON, since a list of a million references to one long string
/// is small in CEL and enormous once written out.
pub(super) fn json_size_within(value: &cel::Value, limit: usize) -> Option<usize> {
    let mut total = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        total = total.saturating_add(match value {
            cel::Value::List(items) => {
                stack.extend(items.iter());
                2 + items.len()
            }
            cel::Value::Map(map) => {
                for (key, item) in map.map.iter() {
                    let key_len = match key {
                        cel::objects::Key::String(s) => s.len(),
                        _ => 20,
                    };
                    total = total.saturating_add(key_len + 4);
                    stack.push(item);
                }
                2
            }
            cel::Value::String(s) => s.len() + 2,
            cel::Value::Bytes(b) => b.len() * 2 + 2,
            _ => 24,
        });
        if total > limit {
            return None;
        }
    }
    Some(total)
}
