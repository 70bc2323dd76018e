//! Binding service names to base URLs.
//!
//! Workflows name services (`api: order-service`); where they live is deployment detail.
//! A binding comes from, in order of precedence: `--service NAME=URL`, the environment
//! (`ORCA_SERVICE_ORDER_SERVICE=http://…`), a `Services` document, and finally `http://NAME`,
//! which is what cluster DNS resolves in Kubernetes-style deployments.

use std::collections::{BTreeMap, BTreeSet};

use crate::definition::{DefinitionSet, Document};

/// The environment variable that binds `service`.
pub fn env_var(service: &str) -> String {
    let name: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ORCA_SERVICE_{name}")
}

/// Binds every name in `needed`, and every name a document or flag binds (so templates can
/// read `services['name']` for services no step calls directly, such as a component's API).
pub fn resolve(
    needed: &BTreeSet<String>,
    set: &DefinitionSet,
    overrides: &BTreeMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut from_documents = BTreeMap::new();
    for doc in &set.documents {
        if let Document::Services(m) = &doc.document {
            for (name, url) in &m.spec.services {
                from_documents.insert(name.clone(), url.value.clone());
            }
        }
    }
    needed
        .iter()
        .chain(from_documents.keys())
        .chain(overrides.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|name| {
            let url = overrides
                .get(name)
                .cloned()
                .or_else(|| env(&env_var(name)))
                .or_else(|| from_documents.get(name).cloned())
                .unwrap_or_else(|| format!("http://{name}"));
            (name.clone(), url)
        })
        .collect()
}

/// Parses `NAME=URL` from the command line.
pub fn parse_binding(text: &str) -> Result<(String, String), String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=URL"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    let name = name.trim();
    crate::definition::check_name(name).map_err(|why| format!("service {why}"))?;
    Ok((name.to_string(), url.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::Source;

    #[test]
    fn bindings_name_a_service_by_the_naming_rule() {
        assert_eq!(
            parse_binding("pay=http://127.0.0.1:1").unwrap(),
            ("pay".to_string(), "http://127.0.0.1:1".to_string())
        );
        assert!(
            parse_binding("Pay_Svc=http://x")
                .unwrap_err()
                .contains("capital")
        );
        assert!(parse_binding("pay=ftp://x").is_err());
    }

    #[test]
    fn precedence_is_flag_then_env_then_document_then_dns_name() {
        let set = DefinitionSet::load(vec![Source {
            name: "s.yaml".into(),
            text: "apiVersion: orca.dev/v1\nkind: Services\nmetadata: {name: local}\nspec:\n  services:\n    a: http://doc-a\n    b: http://doc-b\n    c: http://doc-c\n".into(),
        }])
        .unwrap();
        let needed: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
        let overrides = BTreeMap::from([("a".to_string(), "http://flag-a".to_string())]);
        let env = |k: &str| {
            (k == "ORCA_SERVICE_B" || k == "ORCA_SERVICE_A").then(|| "http://env".to_string())
        };
        let bound = resolve(&needed, &set, &overrides, env);
        assert_eq!(bound["a"], "http://flag-a");
        assert_eq!(bound["b"], "http://env");
        assert_eq!(bound["c"], "http://doc-c");
        assert_eq!(bound["d"], "http://d");
        assert_eq!(env_var("order-service"), "ORCA_SERVICE_ORDER_SERVICE");
        assert!(parse_binding("x=ftp://a").is_err() && parse_binding("nope").is_err());
    }
}
