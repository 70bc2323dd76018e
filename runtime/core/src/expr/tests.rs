//! Expressions and templates: evaluation, macros, the budget, and refused input.

use super::*;
use serde_json::json;

fn scope() -> Scope {
    let mut s = Scope::new();
    s.set("input", json!({"id": "a/b 1", "n": 3}));
    s.set("step1", json!({"amount": 1500, "tags": ["x"]}));
    s
}

#[test]
fn seed_condition_compares_json_numbers() {
    let e = Expr::compile("step1.amount > 1000").unwrap();
    assert!(e.eval_bool(&scope()).unwrap());
    let mut low = scope();
    low.set("step1", json!({"amount": 999}));
    assert!(!e.eval_bool(&low).unwrap());
    assert_eq!(e.variables(), ["step1".to_string()]);
}

#[test]
fn integers_do_arithmetic_with_literals() {
    let e = Expr::compile("step1.amount + 1").unwrap();
    assert_eq!(e.eval(&scope()).unwrap(), json!(1501));
}

#[test]
fn missing_field_is_an_error_naming_the_expression() {
    let e = Expr::compile("step1.missing > 1").unwrap();
    let err = e.eval_bool(&scope()).unwrap_err();
    assert!(err.to_string().contains("step1.missing > 1"), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn non_boolean_condition_is_an_error() {
    let e = Expr::compile("step1.amount").unwrap();
    assert!(e.eval_bool(&scope()).is_err());
}

#[test]
fn syntax_errors_are_reported_at_compile_time() {
    let err = Expr::compile("step1.amount >").unwrap_err();
    assert_eq!(
        err,
        "`step1.amount >` is not a valid expression: the expression ends too early (at character 15)"
    );
}

#[test]
fn templates_mix_text_expressions_and_input_placeholders() {
    let t = Template::parse("/orders/{id}/n/${ input.n * 2 }", true).unwrap();
    let encoded = t.render(&scope(), |s| s.replace(' ', "%20")).unwrap();
    assert_eq!(encoded, "/orders/a/b%201/n/6");
    let t = Template::parse("${ {'a': 1}.a }", false).unwrap();
    assert_eq!(t.render_json(&scope()).unwrap(), json!(1));
    assert!(Template::parse("${ input.n ", false).is_err());
    let missing = Template::parse("/x/{nope}", true).unwrap();
    assert!(missing.render(&scope(), str::to_string).is_err());
}

#[test]
fn json_templates_keep_types_of_whole_expressions() {
    let t = JsonTemplate::parse(
        &json!({"amount": "${step1.amount}", "note": "n=${input.n}", "k": [1, "${step1.tags}"]}),
    )
    .unwrap();
    assert_eq!(
        t.render(&scope()).unwrap(),
        json!({"amount": 1500, "note": "n=3", "k": [1, ["x"]]})
    );
}

#[test]
fn macros_bind_their_own_variables() {
    let e = Expr::compile("[1, 2].all(w, w > 0) && input.items.exists(i, i.n == input.n)").unwrap();
    assert_eq!(e.variables(), ["input".to_string()]);
    let mut s = Scope::new();
    s.set("input", json!({"n": 2, "items": [{"n": 1}, {"n": 2}]}));
    assert!(e.eval_bool(&s).unwrap());
    let mapped = Expr::compile("input.items.map(i, i.n * 10).filter(x, x > 10)").unwrap();
    assert_eq!(mapped.eval(&s).unwrap(), json!([20]));
    assert!(
        Expr::compile("[1].exists_one(w, w == 1)")
            .unwrap()
            .variables()
            .is_empty()
    );
    // A name bound by a macro is still unknown outside it.
    let outside = Expr::compile("[1].all(w, w > 0) && w > 0").unwrap();
    assert_eq!(outside.variables(), ["w".to_string()]);
}

#[test]
fn nested_comprehensions_over_literals_are_refused_at_load() {
    let sixty = (0..60).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let nested = format!(
        "[{sixty}].all(a, [{sixty}].all(b, [{sixty}].all(c, [{sixty}].all(d, a + b + c + d >= 0))))"
    );
    let err = Expr::compile(&nested).unwrap_err();
    assert!(err.contains("over the budget of 1000000"), "{err}");
    // Two levels are fine.
    let two = format!("[{sixty}].all(a, [{sixty}].all(b, a + b >= 0))");
    assert!(
        Expr::compile(&two)
            .unwrap()
            .eval_bool(&Scope::new())
            .unwrap()
    );
}

#[test]
fn data_that_would_go_over_the_budget_fails_the_evaluation_before_it_runs() {
    let e = Expr::compile("input.xs.all(a, input.xs.all(b, a + b >= 0))").unwrap();
    let mut small = Scope::new();
    small.set("input", json!({"xs": (0..100).collect::<Vec<_>>()}));
    assert!(e.eval_bool(&small).unwrap());
    let mut large = Scope::new();
    large.set("input", json!({"xs": (0..2_000).collect::<Vec<_>>()}));
    let started = std::time::Instant::now();
    let err = e.eval_bool(&large).unwrap_err();
    assert!(err.message.contains("over the budget"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn results_larger_than_the_budget_are_refused() {
    let e = Expr::compile("input.xs.map(x, input.big)").unwrap();
    let mut s = Scope::new();
    s.set(
        "input",
        json!({"xs": (0..1_000).collect::<Vec<_>>(), "big": "x".repeat(64 << 10)}),
    );
    let err = e.eval(&s).unwrap_err();
    assert!(err.message.contains("larger than 10 MiB"), "{err}");
}

#[test]
fn overlong_expressions_are_refused_without_reaching_the_parser() {
    // Past column 65,535 the CEL parser's error formatting panics.
    let long = format!("{})", "true || ".repeat(9_000));
    let err = Expr::compile(&long).unwrap_err();
    assert!(err.contains("at most 4096"), "{err}");
    let at_limit = format!("{}true", "true||".repeat((MAX_SOURCE_BYTES - 4) / 6));
    assert!(Expr::compile(&at_limit).is_ok());
}
