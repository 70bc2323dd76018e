use std::collections::HashMap;

use super::*;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| vars.get(k).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(spec: &str) -> Result<StoreConfig, String> {
    StoreConfig::parse(spec, &no_env).map_err(|e| e.to_string())
}

fn seed_set(text: &str) -> DefinitionSet {
    DefinitionSet::load(vec![Source {
        name: "store.yaml".into(),
        text: text.into(),
    }])
    .unwrap()
}

const SEED: &str = r#"apiVersion: api.example.com/v1
kind: StateStore
metadata:
  name: orchestration-state-store
spec:
  type: "redis"
  endpoint: "redis:6379"
  ttl: "24h"
  persistence:
    enabled: true
    backend: "postgresql"
"#;

fn from_yaml(text: &str, env: &[(&str, &str)]) -> Result<StoreConfig, String> {
    StoreConfig::resolve(None, Some(&seed_set(text)), &env_of(env)).map_err(|e| e.to_string())
}

#[test]
fn flags_name_every_backend() {
    assert_eq!(parse("memory").unwrap(), StoreConfig::Memory);
    assert_eq!(
        parse("sqlite:/tmp/x.db").unwrap(),
        StoreConfig::Sqlite("/tmp/x.db".into())
    );
    assert_eq!(
        parse("sqlite:///tmp/x.db").unwrap(),
        StoreConfig::Sqlite("/tmp/x.db".into())
    );
    let StoreConfig::Postgres(pg) = parse("postgres://u@h/db?schema=orca_1").unwrap() else {
        panic!("not postgres");
    };
    assert_eq!(pg.url, "postgres://u@h/db");
    assert_eq!(pg.schema.as_deref(), Some("orca_1"));
    let StoreConfig::Postgres(pg) =
        parse("postgresql://u@h/db?connect_timeout=3&schema=s").unwrap()
    else {
        panic!("not postgres");
    };
    assert_eq!(pg.url, "postgresql://u@h/db?connect_timeout=3");

    let StoreConfig::Redis { redis, persistence } =
        parse("redis://127.0.0.1:6379/2?ttl=90s&prefix=t1:").unwrap()
    else {
        panic!("not redis");
    };
    assert_eq!(redis.url, "redis://127.0.0.1:6379/2");
    assert_eq!(redis.prefix, "t1:");
    assert_eq!(redis.ttl, Duration::from_secs(90));
    assert_eq!(persistence, None);
    let StoreConfig::Redis { redis, .. } = parse("redis://h").unwrap() else {
        panic!("not redis");
    };
    assert_eq!(
        (redis.prefix.as_str(), redis.ttl),
        ("orca:", DEFAULT_REDIS_TTL)
    );
}

#[test]
fn redis_persistence_comes_from_the_option_or_the_environment() {
    let env = env_of(&[(ENV_POSTGRES_URL, "postgresql://p@db/orca")]);
    let StoreConfig::Redis { persistence, .. } =
        StoreConfig::parse("redis://h?persistence=postgresql", &env).unwrap()
    else {
        panic!("not redis");
    };
    assert_eq!(persistence.unwrap().url, "postgresql://p@db/orca");
    let StoreConfig::Redis { persistence, .. } =
        parse("redis://h?persistence=postgresql%3A%2F%2Fq%40db2%2Fx%3Fschema%3Ds").unwrap()
    else {
        panic!("not redis");
    };
    let persistence = persistence.unwrap();
    assert_eq!(persistence.url, "postgresql://q@db2/x");
    assert_eq!(persistence.schema.as_deref(), Some("s"));
    let err = parse("redis://h?persistence=postgresql").unwrap_err();
    assert!(err.contains("ORCA_POSTGRES_URL"), "{err}");
}

#[test]
fn unknown_or_malformed_options_are_errors() {
    for (spec, expected) in [
        ("redis://h?tll=1h", "unknown option `tll`"),
        ("redis://h?ttl=soon", "ttl `soon`"),
        ("redis://h?ttl=0s", "at least 1ms"),
        ("postgresql://u@h/db?sslmod=x", "unknown option `sslmod`"),
        ("postgresql://u@h/db?schema=Bad-Name", "schema `Bad-Name`"),
        ("mysql://h", "not one Orca knows"),
        ("sqlite:", "name the database file"),
    ] {
        let err = parse(spec).unwrap_err();
        assert!(err.contains(expected), "{spec}: {err}");
    }
    let err = parse("postgresql://u:hunter2@h/db?nope=1").unwrap_err();
    assert!(!err.contains("hunter2") && err.contains("***"), "{err}");
}

#[test]
fn the_seed_state_store_is_redis_persisted_to_postgresql() {
    let env = [
        (ENV_REDIS_URL, "redis://127.0.0.1:6379"),
        (ENV_POSTGRES_URL, "postgresql://postgres@127.0.0.1/test"),
    ];
    let StoreConfig::Redis { redis, persistence } = from_yaml(SEED, &env).unwrap() else {
        panic!("not redis");
    };
    assert_eq!(redis.url, "redis://127.0.0.1:6379");
    assert_eq!(redis.ttl, Duration::from_secs(24 * 3600));
    assert_eq!(
        persistence.unwrap().url,
        "postgresql://postgres@127.0.0.1/test"
    );

    // Without overrides the document's own endpoint is used, with the scheme added, and the
    // database address is demanded.
    let err = from_yaml(SEED, &[]).unwrap_err();
    assert!(err.contains("store.yaml:"), "{err}");
    assert!(err.contains("spec.persistence"), "{err}");
    assert!(err.contains("ORCA_POSTGRES_URL"), "{err}");
    let StoreConfig::Redis { redis, .. } =
        from_yaml(SEED, &[(ENV_POSTGRES_URL, "postgresql://u@h/d")]).unwrap()
    else {
        panic!("not redis");
    };
    assert_eq!(redis.url, "redis://redis:6379");
}

#[test]
fn documents_reject_fields_their_type_does_not_use() {
    let doc = |spec: &str| format!("{}spec:\n{spec}", &SEED[..SEED.find("spec:").unwrap()]);
    let err = from_yaml(&doc("  type: sqlite\n  ttl: 1h\n"), &[]).unwrap_err();
    assert!(
        err.contains("spec.ttl") && err.contains("does not apply"),
        "{err}"
    );
    let err = from_yaml(&doc("  type: redis\n  endpoint: h:1\n  path: x\n"), &[]).unwrap_err();
    assert!(err.contains("spec.path"), "{err}");
    let err = from_yaml(&doc("  type: postgresql\n"), &[]).unwrap_err();
    assert!(err.contains("needs an endpoint"), "{err}");
    assert_eq!(
        from_yaml(&doc("  type: sqlite\n  path: /x/y.db\n"), &[]).unwrap(),
        StoreConfig::Sqlite("/x/y.db".into())
    );
    let StoreConfig::Postgres(pg) = from_yaml(
        &doc("  type: postgresql\n  endpoint: db:5432\n"),
        &[(ENV_POSTGRES_URL, "postgresql://u@h/d?schema=x")],
    )
    .unwrap() else {
        panic!("not postgres");
    };
    assert_eq!(
        (pg.url.as_str(), pg.schema.as_deref()),
        ("postgresql://u@h/d", Some("x"))
    );
    let StoreConfig::Redis { persistence, .. } = from_yaml(
        &doc("  type: redis\n  endpoint: h:1\n  persistence:\n    enabled: false\n"),
        &[],
    )
    .unwrap() else {
        panic!("not redis");
    };
    assert_eq!(persistence, None);
}

#[test]
fn the_flag_wins_then_the_document_then_the_default() {
    let set = seed_set(SEED);
    assert_eq!(
        StoreConfig::resolve(Some("memory"), Some(&set), &no_env).unwrap(),
        StoreConfig::Memory
    );
    assert_eq!(
        StoreConfig::resolve(None, None, &env_of(&[("XDG_DATA_HOME", "/data")])).unwrap(),
        StoreConfig::Sqlite("/data/orca/orca.db".into())
    );
    assert_eq!(
        StoreConfig::resolve(None, None, &env_of(&[("HOME", "/home/u")])).unwrap(),
        StoreConfig::Sqlite("/home/u/.local/share/orca/orca.db".into())
    );
}

#[test]
fn a_yaml_file_can_name_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.yaml");
    std::fs::write(&path, SEED).unwrap();
    let env = env_of(&[
        (ENV_REDIS_URL, "redis://127.0.0.1:6379?prefix=p:"),
        (ENV_POSTGRES_URL, "postgresql://u@h/d"),
    ]);
    let StoreConfig::Redis { redis, persistence } =
        StoreConfig::parse(path.to_str().unwrap(), &env).unwrap()
    else {
        panic!("not redis");
    };
    assert_eq!(redis.prefix, "p:");
    assert!(persistence.is_some());
    let other = dir.path().join("none.yaml");
    std::fs::write(
        &other,
        "apiVersion: orca.dev/v1\nkind: Services\nmetadata:\n  name: s\nspec:\n  services: {}\n",
    )
    .unwrap();
    let err = StoreConfig::parse(other.to_str().unwrap(), &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no StateStore document"), "{err}");
}

#[test]
fn debug_output_hides_passwords() {
    let pg = PostgresConfig::parse("postgresql://u:pw@h/d").unwrap();
    assert_eq!(format!("{pg:?}"), "postgresql://u:***@h/d");
    let (redis, _) = RedisConfig::parse("redis://:pw@h:1", None).unwrap();
    assert!(!format!("{redis:?}").contains("pw@"));
}
