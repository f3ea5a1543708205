//! Properties of CR spec parsing and validation: any JSON a user (or a buggy tool) can put
//! in `spec` is either refused with an error a user can read, or yields a valid spec; it
//! never panics, and an error never repeats a credential someone pasted into the wrong
//! field (errors go to the CR's status and to Events, which many can read).

use ecr_creds_refresher::reconcile::spec::{parse_duration, Spec, SpecPolicy};
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_json_spec_parses_or_fails_without_panicking(v in any_json()) {
        if let Ok(spec) = serde_json::from_value::<Spec>(v) {
            match spec.validate(&SpecPolicy::default()) {
                Ok(valid) => prop_assert!(!valid.secret_name.is_empty()),
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

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
