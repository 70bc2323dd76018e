//! The Grafana dashboard in `monitoring/` is valid JSON and queries only metrics Orca exports
//! (or the specification's recorded series).

use std::collections::BTreeSet;

use orca_runtime::metrics::Metrics;

/// Series a query may name: every exported family (histograms with their suffixes) and the
/// series recorded by `07-PrometheusRule.yaml`.
fn known_series() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = [
        "orchestration:workflow_executions_total",
        "orchestration:workflow_duration_seconds",
    ]
    .map(String::from)
    .into();
    for name in Metrics::new().family_names() {
        for suffix in ["", "_bucket", "_sum", "_count"] {
            known.insert(format!("{name}{suffix}"));
        }
    }
    known
}

/// Metric names in a PromQL expression: identifiers (with `:`) that are not functions,
/// keywords, labels or label values.
fn metric_names(expr: &str) -> Vec<String> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "rate",
        "by",
        "histogram_quantile",
        "le",
        "workflow_id",
        "status",
        "service",
        "status_class",
        "component",
        "outcome",
    ];
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let word = &tail[..end];
        let in_string = rest[..start].matches('"').count() % 2 == 1;
        // `5m` in `[5m]`, `0.95`: a word glued to a number is a unit or exponent, not a name.
        let in_range =
            rest[..start].ends_with(|c: char| c == '[' || c.is_ascii_digit() || c == '.');
        if !in_string && !in_range && !NOT_METRICS.contains(&word) && !word.starts_with('$') {
            names.push(word.to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_dashboard_query_uses_an_exported_metric() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../monitoring/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("valid JSON");
    let known = known_series();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    let mut checked = 0;
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("an expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "no metric in `{expr}`");
            for name in names {
                assert!(
                    known.contains(&name),
                    "panel `{}` queries `{name}`, which Orca does not export",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 12);
    assert!(metric_names("sum(rate(bogus_total[5m])) by (workflow_id)") == ["bogus_total"]);
}
