//! Metrics under the specification's names, checked by promtool against its recording rules.
//!
//! Real runs (completed, failed, compensated) write their metrics with `--metrics-out`;
//! `promtool check metrics` lints the scrape, and `promtool test rules` evaluates the
//! specification's `PrometheusRule` (taken verbatim from the seed file) over series built from
//! the scraped values.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::json;

use crate::support::{Mock, Orca, Reply, seed, services};

pub(crate) const WORKFLOW: &str = r#"apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: metered
spec:
  steps:
    - name: charge
      api: payments
      endpoint: /charge
      compensation: {api: payments, endpoint: /refund}
    - name: ship
      api: shipping
      endpoint: /ship
      condition: "input.ship"
    - name: confirm
      api: payments
      endpoint: /confirm
      condition: "input.confirm"
"#;

/// Parses `name{labels} value` lines of the text format into (series, value).
pub(crate) fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

pub(crate) fn promtool() -> &'static str {
    "promtool"
}

#[test]
fn metrics_pass_promtool_and_the_specifications_rules_record_them() {
    let mock = Mock::start();
    mock.on("/charge", Reply::json(json!({"id": 1})));
    mock.on("/refund", Reply::json(json!({})));
    mock.on("/confirm", Reply::json(json!({})));
    mock.on("/ship", Reply::status(500));
    let orca = Orca::new();
    let workflow = orca.write("metered.yaml", WORKFLOW);
    // completed x2, compensated x1 (ship fails after charge), and each writes its own scrape.
    let runs = [
        (json!({"ship": false, "confirm": true}), 0),
        (json!({"ship": false, "confirm": false}), 0),
        (json!({"ship": true, "confirm": true}), 1),
    ];
    let mut totals: BTreeMap<String, f64> = BTreeMap::new();
    for (n, (input, code)) in runs.iter().enumerate() {
        let out_file = orca.dir.path().join(format!("metrics-{n}.prom"));
        let mut args = vec![
            "run".to_string(),
            workflow.clone(),
            "--input".into(),
            input.to_string(),
            "--metrics-out".into(),
            out_file.display().to_string(),
        ];
        args.extend(services(&mock.url, &["payments", "shipping"]));
        orca.run(&args).expect_code(*code);
        check_metrics(&out_file);
        for (series, value) in samples(&std::fs::read_to_string(&out_file).unwrap()) {
            *totals.entry(series).or_default() += value;
        }
    }

    let get = |series: &str| {
        totals
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("no {series} in {totals:#?}"))
    };
    assert_eq!(
        get(r#"workflow_executions_total{status="completed",workflow_id="metered"}"#),
        2.0
    );
    assert_eq!(
        get(r#"workflow_executions_total{status="compensated",workflow_id="metered"}"#),
        1.0
    );
    assert_eq!(
        get(r#"workflow_duration_seconds_count{workflow_id="metered"}"#),
        3.0
    );
    // charge x3 + confirm x1 completed; ship failed once; the refund is the sixth call.
    assert_eq!(
        get(r#"workflow_steps_executed_total{workflow_id="metered"}"#),
        4.0
    );
    assert_eq!(
        get(r#"workflow_steps_failed_total{workflow_id="metered"}"#),
        1.0
    );
    assert_eq!(
        get(r#"workflow_api_calls_total{workflow_id="metered"}"#),
        6.0
    );
    assert_eq!(
        get(r#"workflow_compensations_total{outcome="completed",workflow_id="metered"}"#),
        1.0
    );
    assert_eq!(
        get(r#"orca_api_calls_total{service="payments",status_class="2xx"}"#),
        5.0
    );
    assert_eq!(
        get(r#"orca_api_calls_total{service="shipping",status_class="5xx"}"#),
        1.0
    );

    check_recording_rules(&orca, &totals);
}

/// Lints a scrape with `promtool check metrics`.
pub(crate) fn check_metrics(file: impl AsRef<std::path::Path>) {
    let check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("promtool is installed (Debian package `prometheus`)");
    assert!(
        check.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Runs `promtool test rules` with the specification's rules over series that grow by the
/// scraped `totals` every minute, expecting 2 completed and 1 compensated execution.
pub(crate) fn check_recording_rules(orca: &Orca, totals: &BTreeMap<String, f64>) {
    // The specification's rules, verbatim, as a Prometheus rule file.
    let rule_doc = std::fs::read_to_string(seed("07-PrometheusRule.yaml")).unwrap();
    let groups = &rule_doc[rule_doc
        .find("  groups:")
        .expect("the seed has spec.groups")..];
    let rules_file = orca.write("rules.yaml", &unindent(groups, 2));

    // Series that grow by the scraped totals every minute for ten minutes.
    let mut series = String::new();
    for (name, value) in totals {
        if name.starts_with("workflow_executions_total")
            || name.starts_with("workflow_duration_seconds_bucket")
        {
            series.push_str(&format!(
                "      - series: '{name}'\n        values: '0+{value}x10'\n"
            ));
        }
    }
    // rate over 5m of a counter growing `n` per minute is n/60 per second.
    let executions = |status: &str, n: f64| {
        format!(
            "          - labels: 'orchestration:workflow_executions_total{{status=\"{status}\",workflow_id=\"metered\"}}'\n            value: {}\n",
            n / 60.0
        )
    };
    let p95_micros = (expected_p95(totals) * 1e6).round();
    let test = format!(
        r#"rule_files:
  - {rules_file}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
{series}    promql_expr_test:
      - expr: orchestration:workflow_executions_total
        eval_time: 10m
        exp_samples:
{completed}{compensated}      # p95 in whole microseconds, so float rounding cannot differ
      - expr: round(orchestration:workflow_duration_seconds * 1000000)
        eval_time: 10m
        exp_samples:
          - labels: '{{workflow_id="metered"}}'
            value: {p95_micros}
"#,
        completed = executions("completed", 2.0),
        compensated = executions("compensated", 1.0),
    );
    let test_file = orca.write("rules_test.yaml", &test);
    let out = Command::new(promtool())
        .args(["test", "rules", &test_file])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}{}\n--- test file\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `histogram_quantile(0.95, …)` gives for these cumulative bucket counts: linear
/// interpolation inside the bucket where the 95th percentile falls.
fn expected_p95(totals: &BTreeMap<String, f64>) -> f64 {
    let mut buckets: Vec<(f64, f64)> = totals
        .iter()
        .filter_map(|(name, count)| {
            let labels = name.strip_prefix("workflow_duration_seconds_bucket{")?;
            let le = labels.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, *count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().unwrap().1;
    let rank = 0.95 * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (bound, count) in buckets {
        if count >= rank {
            assert!(bound.is_finite(), "every run fits in a finite bucket");
            return lower + (bound - lower) * (rank - below) / (count - below);
        }
        (lower, below) = (bound, count);
    }
    unreachable!("the +Inf bucket holds every observation")
}

fn unindent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| l.get(by..).unwrap_or(l.trim_start()))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
