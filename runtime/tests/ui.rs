//! User-facing load errors as snapshots: each `ui/invalid/NAME.yaml` must fail with exactly the
//! message in `NAME.err`. Run with `ORCA_BLESS=1` to rewrite the `.err` files after a deliberate
//! change, then review the diff.

use std::path::Path;

use orca_runtime::definition::{DefinitionSet, Source};
use orca_runtime::plan;

#[test]
fn invalid_definitions_fail_with_their_expected_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/invalid");
    let bless = std::env::var_os("ORCA_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "the ui cases are missing");
    let mut mismatches = Vec::new();
    for case in &cases {
        let name = format!("invalid/{}", case.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(case).unwrap();
        let error = DefinitionSet::load(vec![Source {
            name: name.clone(),
            text,
        }])
        .and_then(|set| plan::validate(&set).map(|_| ()))
        .expect_err(&format!("{name} should not load"));
        let actual = format!("{error}\n");
        let expected_path = case.with_extension("err");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            mismatches.push(format!(
                "{name}\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
