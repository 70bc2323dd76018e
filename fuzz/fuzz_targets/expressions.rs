//! CEL expressions and `${ … }` templates: compiled as a definition would, then evaluated
//! against a small execution's variables. Never a panic; an evaluation stays within its budget.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orca_core::expr::{Expr, JsonTemplate, Scope, Template};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut scope = Scope::new();
    scope.set(
        "input",
        json!({"id": "o-1", "amount": 1500, "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]}),
    );
    scope.set("step1", json!({"amount": 1500, "tags": ["x", "y"]}));
    scope.set(
        "steps",
        json!({"step1": {"status": 200, "body": {"ok": true}}}),
    );
    if let Ok(expr) = Expr::compile(text) {
        let _ = expr.eval(&scope);
    }
    if let Ok(template) = Template::parse(text, true) {
        let _ = template.render(&scope, str::to_string);
    }
    if let Ok(template) = JsonTemplate::parse(&json!({"value": text, "list": [text]})) {
        let _ = template.render(&scope);
    }
});
