//! The one rule for names a user gives to things that are stored and addressed: definitions
//! (`metadata.name` of every kind, components included), tenants and services. It is
//! Kubernetes' DNS-1123 subdomain rule, which users of manifests already know: lowercase
//! letters, digits, `-` and `.`, starting and ending with a letter or digit, at most 253
//! characters. Such a name is safe in a URL path, a key, a file name and a log line.

/// The longest name: a DNS subdomain's limit.
pub const MAX_NAME_LEN: usize = 253;

/// The rule in a sentence, for error messages and hints.
pub const NAME_RULE: &str = "a name is 1 to 253 lowercase letters, digits, `-` or `.`, starting \
     and ending with a letter or digit (Kubernetes' DNS-1123 subdomain rule)";

/// Whether `name` follows the rule; the error says what is wrong with it.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "the name is {} characters long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "`{}` holds {}, which a name cannot",
            name.escape_debug(),
            describe(bad)
        ));
    }
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    for label in name.split('.') {
        let (Some(first), Some(last)) = (label.chars().next(), label.chars().last()) else {
            return Err(format!("`{name}` has an empty part between dots"));
        };
        if !alphanumeric(first) || !alphanumeric(last) {
            return Err(format!(
                "`{name}`: each part between dots must start and end with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// Whether `name` follows the rule.
pub fn is_valid_name(name: &str) -> bool {
    check_name(name).is_ok()
}

fn describe(c: char) -> String {
    match c {
        'A'..='Z' => format!("the capital letter `{c}` (use lowercase)"),
        '_' => "`_` (use `-`)".to_string(),
        c if c.is_control() => format!("the control character {:?}", c),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_subdomain_names_pass() {
        for name in [
            "a",
            "order-saga",
            "v1.orders",
            "0",
            "a-b.c-d",
            &"a".repeat(253),
        ] {
            assert!(is_valid_name(name), "{name}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("../../etc", "`/`"),
            ("a/b", "`/`"),
            ("line\nbreak", "control character"),
            ("a\u{0}b", "control character"),
            ("Orders", "capital letter"),
            ("my_flow", "use `-`"),
            ("-a", "start and end"),
            ("a-", "start and end"),
            ("a..b", "empty part"),
            ("a.", "empty part"),
        ];
        for (name, reason) in cases {
            let error = check_name(name).unwrap_err();
            assert!(error.contains(reason), "{name:?}: {error}");
        }
        let long = "a".repeat(100_000);
        assert!(check_name(&long).unwrap_err().contains("at most 253"));
    }
}
