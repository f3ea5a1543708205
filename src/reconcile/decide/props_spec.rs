//! Properties of CR spec parsing and validation: any JSON a user (or a buggy tool) can put
//! in `spec` is either refused with an error a user can read, or yields a valid spec; it
//! never panics, and an error never repeats a credential someone pasted into the wrong
//! field (errors go to the CR's status and to Events, which many can read).

use crate::reconcile::decide::fields::parse_duration;
use crate::reconcile::decide::spec::Spec;
use crate::reconcile::decide::validate::SpecPolicy;
use crate::reconcile::vocab::shown;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings shaped like credentials: an AWS secret access key (40 of base64's alphabet), an
/// access key id, a session token, an ECR authorization token.
fn secret_looking() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9/+]{40}",
        "AKIA[A-Z0-9]{16}",
        "FwoGZXIvYXdzE[A-Za-z0-9/+]{60,120}",
        "QVdTOmV5[A-Za-z0-9+/]{80,160}={0,2}",
    ]
}

/// A plausible spec: the real field names with good, bad and credential-shaped values.
fn spec_json() -> impl Strategy<Value = (Value, String)> {
    let word = prop_oneof!["[a-z0-9-]{1,20}", ".{0,30}", Just(String::new())];
    let duration = prop_oneof!["[0-9]{1,4}(h|m|s|ms)", ".{0,10}", Just("1h30m".to_string())];
    (
        word.clone(),
        prop::collection::vec(word.clone(), 0..4),
        prop::collection::vec(word.clone(), 0..3),
        prop::option::of(prop::collection::vec(word.clone(), 0..3)),
        prop::collection::vec(word.clone(), 0..3),
        (
            prop::option::of(duration.clone()),
            prop::option::of(duration),
        ),
        prop::option::of(word.clone()),
        secret_looking(),
        0usize..8,
    )
        .prop_map(
            |(name, nss, excl, sas, regs, (before, min), role, secret, slot)| {
                let mut spec = json!({
                    "secretName": name,
                    "namespaces": nss,
                    "excludeNamespaces": excl,
                    "serviceAccounts": sas,
                    "registries": regs,
                    "refresh": {"beforeExpiry": before, "minInterval": min},
                    "aws": {"roleArn": role, "roleSessionName": "s", "externalId": "x"},
                    "namespaceSelector": {"matchLabels": {"team": "a"},
                        "matchExpressions": [{"key": "env", "operator": "In", "values": ["p"]}]},
                });
                // The credential lands in one field a user could paste it into.
                let s = Value::String(secret.clone());
                match slot {
                    0 => spec["secretName"] = s,
                    1 => spec["namespaces"] = json!([s]),
                    2 => spec["registries"] = json!([s]),
                    3 => spec["aws"]["roleArn"] = s,
                    4 => spec["aws"]["roleSessionName"] = s,
                    5 => spec["refresh"]["beforeExpiry"] = s,
                    6 => spec["namespaceSelector"]["matchExpressions"][0]["operator"] = s,
                    _ => spec["excludeNamespaces"] = json!([s]),
                }
                (spec, secret)
            },
        )
}

/// A spec that validates under the default policy: every field set to a value it accepts,
/// so that breaking one field makes that field, and only it, the error.
fn valid_spec_json() -> impl Strategy<Value = Value> {
    let name = "[a-z][a-z0-9-]{0,20}[a-z0-9]";
    let pattern = prop_oneof!["[a-z][a-z0-9-]{0,10}[a-z0-9]", Just("team-*".to_string())];
    let registry = prop_oneof![
        "[0-9]{12}\\.dkr\\.ecr\\.(us-east-1|eu-west-1)\\.amazonaws\\.com",
        Just("public.ecr.aws".to_string()),
    ];
    (
        name,
        prop::collection::vec(pattern.clone(), 1..4),
        prop::collection::vec(pattern, 0..3),
        prop::option::of(prop::collection::vec(
            prop_oneof!["[a-z][a-z0-9]{0,8}", Just("*".to_string())],
            1..3,
        )),
        prop::collection::vec(registry, 0..3),
        // beforeExpiry up to 5h, minInterval 30s to 5h: together within a token's 12h.
        (1u32..=5, 1u32..=300).prop_map(|(h, m)| (format!("{h}h"), format!("{m}m"))),
        "arn:aws:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_-]{1,20}",
        "[a-z0-9][a-zA-Z0-9+=,.@_-]{1,30}",
        "[a-z][a-z0-9-]{0,10}[a-z0-9]",
    )
        .prop_map(
            |(name, nss, excl, sas, regs, (before, min), role, session, ns)| {
                json!({
                    "secretName": name,
                    "namespaces": nss,
                    "excludeNamespaces": excl,
                    "serviceAccounts": sas,
                    "registries": regs,
                    "region": "us-east-1",
                    "refresh": {"beforeExpiry": before, "minInterval": min},
                    "aws": {"roleArn": role, "roleSessionName": session, "externalId": "x",
                            "credentialsSecretRef": {"name": "aws-keys", "namespace": ns}},
                    "namespaceSelector": {"matchLabels": {"team": "a"},
                        "matchExpressions": [{"key": "env", "operator": "In", "values": ["p"]}]},
                })
            },
        )
}

/// Every field a user could paste a credential into and that validation reads, how to
/// put the credential there (so that it is the only invalid value), and the words the
/// error must name the field with.
const CREDENTIAL_FIELDS: &[(&str, &str)] = &[
    ("secretName", "spec.secretName"),
    ("namespaces", "namespace pattern"),
    ("excludeNamespaces", "namespace pattern"),
    ("registries", "spec.registries"),
    ("beforeExpiry", "spec.refresh.beforeExpiry"),
    ("minInterval", "spec.refresh.minInterval"),
    ("roleArn", "spec.aws.roleArn"),
    ("roleSessionName", "spec.aws.roleSessionName"),
    ("credentialsSecretRef.name", "spec.aws.credentialsSecretRef"),
    (
        "credentialsSecretRef.namespace",
        "spec.aws.credentialsSecretRef",
    ),
    ("selector operator", "spec.namespaceSelector"),
    ("selector key", "spec.namespaceSelector"),
];

/// `spec` with `secret` in `field` (one of [`CREDENTIAL_FIELDS`]).
fn with_credential_in(spec: Value, field: &str, secret: &str) -> Value {
    with_value_in(spec, field, Value::String(secret.to_string()))
}

/// `spec` with `s` in `field` (one of [`CREDENTIAL_FIELDS`]).
fn with_value_in(mut spec: Value, field: &str, s: Value) -> Value {
    match field {
        "secretName" => spec["secretName"] = s,
        "namespaces" => spec["namespaces"] = json!([s]),
        "excludeNamespaces" => spec["excludeNamespaces"] = json!([s]),
        "registries" => spec["registries"] = json!([s]),
        "beforeExpiry" => spec["refresh"]["beforeExpiry"] = s,
        "minInterval" => spec["refresh"]["minInterval"] = s,
        "roleArn" => spec["aws"]["roleArn"] = s,
        "roleSessionName" => spec["aws"]["roleSessionName"] = s,
        "credentialsSecretRef.name" => spec["aws"]["credentialsSecretRef"]["name"] = s,
        "credentialsSecretRef.namespace" => spec["aws"]["credentialsSecretRef"]["namespace"] = s,
        "selector operator" => spec["namespaceSelector"]["matchExpressions"][0]["operator"] = s,
        "selector key" => {
            // In with no values is refused, and the refusal names the key.
            spec["namespaceSelector"]["matchExpressions"][0] =
                json!({"key": s, "operator": "In", "values": []});
        }
        other => panic!("no field {other}"),
    }
    spec
}

/// Credentials as they are pasted: each contains a `/`, so no field accepts it (not even
/// a roleSessionName), and each looks like a credential to `shown`.
fn pasted_credential() -> impl Strategy<Value = String> {
    prop_oneof![
        // An AWS secret access key: 40 of base64's alphabet.
        "[A-Za-z0-9]{10}/[A-Za-z0-9+]{9}[0-9][A-Z][A-Za-z0-9/+]{18}",
        // An STS session token.
        "FwoGZXIvYXdzE[A-Za-z0-9+]{20}/[A-Za-z0-9/+]{40,100}",
        // An ECR authorization token (base64 of `AWS:<password>`).
        "QVdTOmV5[A-Za-z0-9+]{10}/[A-Za-z0-9+/]{70,150}={0,2}",
    ]
}

/// What the one-field properties check: the error names the field and withholds the value.
fn check_error_withholds(
    spec: &Value,
    field: &str,
    names: &str,
    secret: &str,
) -> Result<(), String> {
    let parsed: Spec = serde_json::from_value(spec.clone()).map_err(|e| e.to_string())?;
    let policy = SpecPolicy::default();
    let shown = match parsed.validate(&policy) {
        Ok(_) => return Err(format!("a credential in {field} was accepted: {spec}")),
        Err(e) => e.to_string(),
    };
    if !shown.contains(names) {
        return Err(format!(
            "a credential in {field} gave an error about something else: {shown}"
        ));
    }
    if shown.contains(secret) {
        return Err(format!(
            "the error repeats the credential in {field}: {shown}"
        ));
    }
    Ok(())
}

/// Redaction withholds what looks like a credential and nothing else: an error that
/// hides a short bad name, an ARN or a misspelt duration says nothing a user can act on.
/// (cargo-mutants: three `&&` to `||` mutants in `shown` withheld more and passed.)
#[test]
fn values_that_do_not_look_like_credentials_are_shown_as_they_are() {
    for value in [
        // Short, with capitals and digits.
        "Bad1_Name",
        // An ARN, however long and mixed.
        "arn:aws:iam::210987654321:role/EcrPull9",
        // Long, but with spaces: words, not a key.
        "6 Hours and 30 Minutes 2",
    ] {
        assert_eq!(shown(value), format!("{value:?}"));
    }
    for credential in [
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AKIAIOSFODNN7EXAMPLE",
        "QVdTOmV5SnpZWGxzYjJGa0lqb2lNVEl6TkRVMk56ZzVNQ0o5",
    ] {
        let s = shown(credential);
        assert!(s.contains("withheld") && !s.contains(credential), "{s}");
    }
}

/// Gap 2 of issue 21, deterministically: each field that can carry a credential, alone.
#[test]
fn a_credential_in_any_one_field_is_named_but_never_repeated() {
    const CREDENTIALS: &[&str] = &[
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "FwoGZXIvYXdzEBYaDHhBTk1ZbWx1c3RvbWVyIs8BaL+h/3E8q0QmExAMPLEsessionT0KEN",
        "QVdTOmV5SnpZWGxzYjJGa0lqb2lNVEl6TkRVMk56ZzVNQ0o5/ZXhhbXBsZQ==",
    ];
    let base = json!({
        "secretName": "pull", "namespaces": ["app"], "excludeNamespaces": ["skip"],
        "registries": ["123456789012.dkr.ecr.us-east-1.amazonaws.com"],
        "refresh": {"beforeExpiry": "6h", "minInterval": "1m"},
        "aws": {"roleArn": "arn:aws:iam::123456789012:role/puller", "roleSessionName": "ecr",
                "credentialsSecretRef": {"name": "aws-keys", "namespace": "ops"}},
        "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["p"]}]},
    });
    let parsed: Spec = serde_json::from_value(base.clone()).unwrap();
    parsed
        .validate(&SpecPolicy::default())
        .expect("the base spec is valid");
    let mut failures = Vec::new();
    for (field, names) in CREDENTIAL_FIELDS {
        for secret in CREDENTIALS {
            let spec = with_credential_in(base.clone(), field, secret);
            if let Err(e) = check_error_withholds(&spec, field, names, secret) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The generated valid specs are valid, and each field broken alone is the error.
#[test]
fn valid_specs_validate_and_each_broken_field_is_reached() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (valid_spec_json(), pasted_credential());
    for _ in 0..64 {
        let (spec, secret) = strategy.new_tree(&mut runner).unwrap().current();
        let parsed: Spec = serde_json::from_value(spec.clone()).unwrap();
        if let Err(e) = parsed.validate(&SpecPolicy::default()) {
            panic!("a generated valid spec is refused ({e}): {spec}");
        }
        for (field, names) in CREDENTIAL_FIELDS {
            let broken = with_credential_in(spec.clone(), field, &secret);
            check_error_withholds(&broken, field, names, &secret).unwrap();
        }
    }
}

/// Which way a spec went through parsing and validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Arm {
    NotASpec,
    Valid,
    Refused,
}

/// Parses and validates `v`; what a valid spec or a refusal must satisfy.
fn parse_or_refuse(v: Value) -> Result<Arm, TestCaseError> {
    let Ok(spec) = serde_json::from_value::<Spec>(v) else {
        return Ok(Arm::NotASpec);
    };
    match spec.validate(&SpecPolicy::default()) {
        Ok(valid) => {
            prop_assert!(!valid.secret_name.is_empty());
            prop_assert_eq!(&valid.secret_name, &spec.secret_name);
            prop_assert!(valid.min_interval >= SpecPolicy::default().min_interval_floor);
            Ok(Arm::Valid)
        }
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            Ok(Arm::Refused)
        }
    }
}

/// Any JSON, and valid specs with one random value anywhere: parsed, validated or
/// refused, never a panic. Both arms are counted: with arbitrary JSON alone the valid
/// arm was never reached (0 of 257 cases).
#[test]
fn any_json_spec_parses_or_fails_without_panicking() {
    use proptest::test_runner::{Config, TestRunner};
    use std::sync::Mutex;
    let seen = Mutex::new(std::collections::BTreeMap::<Arm, u32>::new());
    let strategy = prop_oneof![
        any_json(),
        valid_spec_json(),
        (
            valid_spec_json(),
            prop::sample::select(CREDENTIAL_FIELDS),
            any_json()
        )
            .prop_map(|(spec, field, junk)| { with_value_in(spec, field.0, junk) }),
    ];
    TestRunner::new(Config::with_cases(256))
        .run(&strategy, |v| {
            let arm = parse_or_refuse(v)?;
            *seen.lock().unwrap().entry(arm).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    for arm in [Arm::NotASpec, Arm::Valid, Arm::Refused] {
        assert!(
            seen.get(&arm).copied().unwrap_or(0) >= 20,
            "{arm:?} reached too rarely: {seen:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn validation_errors_are_readable_and_never_repeat_a_credential(
        (v, secret) in spec_json(),
    ) {
        let spec: Spec = serde_json::from_value(v).expect("the shape is the CRD's");
        let policy = SpecPolicy {
            default_registries: vec!["123456789012.dkr.ecr.us-east-1.amazonaws.com".into()],
            ..SpecPolicy::default()
        };
        if let Err(e) = spec.validate(&policy) {
            let shown = e.to_string();
            prop_assert!(shown.starts_with("spec.") || shown.contains("spec.")
                || shown.starts_with("namespace pattern") || shown.starts_with("no target"),
                "error does not name the field: {shown}");
            prop_assert!(!shown.contains(&secret), "error repeats the credential: {shown}");
        }
    }

    /// One field at a time carries the credential in an otherwise valid spec, so every
    /// field's error path is reached (with random words, validation mostly stopped at
    /// secretName, namespaces or registries first).
    #[test]
    fn a_credential_in_one_field_of_a_valid_spec_is_never_repeated(
        spec in valid_spec_json(),
        field in prop::sample::select(CREDENTIAL_FIELDS),
        secret in pasted_credential(),
    ) {
        let broken = with_credential_in(spec, field.0, &secret);
        if let Err(e) = check_error_withholds(&broken, field.0, field.1, &secret) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn duration_parsing_never_panics_and_round_trips_whole_units(
        s in ".{0,24}",
        n in 0u64..100_000,
        unit in prop::sample::select(vec![("h", 3600u64), ("m", 60), ("s", 1)]),
    ) {
        let _ = parse_duration(&s);
        prop_assert_eq!(
            parse_duration(&format!("{n}{}", unit.0)),
            Some(std::time::Duration::from_secs(n * unit.1))
        );
    }
}
