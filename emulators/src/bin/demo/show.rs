//! What the operator wrote, printed as `kubectl` would show it: the Secret (decoded,
//! masked), the ServiceAccounts, the CR's columns and status, and the registry check.

use emulators::k8s::K8sEmulator;
use emulators::operator::OperatorChild;
use emulators::registry::Registry;
use emulators::wait::poll;
use serde_json::{json, Value};

use super::cluster::{condition, dockerconfig, secret_ok, CR_NAME, POLL, SECRET_NAME, WAIT};
use super::say::{detail, mask, print_map, section, step};

/// The token's check at the real registry: RegistryVerified=True.
pub(crate) async fn show_verification(
    k8s: &K8sEmulator,
    operator: &OperatorChild,
    registry: &Registry,
) -> Result<(), String> {
    let verified = poll(WAIT, POLL, async || {
        let cr = k8s.get("ecrpullsecrets", None, CR_NAME)?;
        condition(&cr, "RegistryVerified").filter(|c| c["status"] != "Unknown")
    })
    .await
    .ok_or_else(|| {
        format!(
            "no registry check reported within {WAIT:?}; operator log:\n{}",
            operator.log_tail(20)
        )
    })?;
    if verified["status"] != "True" {
        return Err(format!(
            "the registry did not accept the token: {}; registry log:\n{}",
            verified,
            registry.log()
        ));
    }
    step(&format!(
        "The token was verified at the registry: GET /v2/ answered 200 (RegistryVerified=True: {})",
        verified["message"].as_str().unwrap_or_default()
    ));
    Ok(())
}

pub(crate) fn show_secret(k8s: &K8sEmulator, ns: &str) -> Result<(), String> {
    let secret = k8s
        .get("secrets", Some(ns), SECRET_NAME)
        .ok_or_else(|| format!("Secret {ns}/{SECRET_NAME} vanished"))?;
    section(&format!(
        "Secret {ns}/{SECRET_NAME} (kubectl get secret -n {ns} {SECRET_NAME} -o yaml, decoded)"
    ));
    println!("  type: {}", secret["type"].as_str().unwrap_or("?"));
    println!("  labels:");
    print_map(&secret["metadata"]["labels"], "    ");
    println!("  annotations:");
    print_map(&secret["metadata"]["annotations"], "    ");
    let mut config = dockerconfig(&secret)?;
    if let Some(auths) = config["auths"].as_object_mut() {
        for entry in auths.values_mut() {
            for key in ["password", "auth"] {
                if let Some(v) = entry[key].as_str().map(mask) {
                    entry[key] = Value::String(v);
                }
            }
        }
    }
    println!("  data[.dockerconfigjson], base64-decoded (password and auth masked):");
    let pretty = serde_json::to_string_pretty(&config).unwrap_or_default();
    for line in pretty.lines() {
        println!("    {line}");
    }
    let others: Vec<String> = ["team-b", "team-c"]
        .iter()
        .filter(|n| secret_ok(k8s, n))
        .map(|n| format!("{n}/{SECRET_NAME}"))
        .collect();
    println!("  (the same Secret is in {})", others.join(" and "));
    Ok(())
}

pub(crate) fn show_service_accounts(k8s: &K8sEmulator, ns: &str) -> Result<(), String> {
    for sa in ["default", "builder"] {
        let obj = k8s
            .get("serviceaccounts", Some(ns), sa)
            .ok_or_else(|| format!("ServiceAccount {ns}/{sa} vanished"))?;
        section(&format!("ServiceAccount {ns}/{sa}"));
        let names: Vec<String> = obj["imagePullSecrets"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|e| e["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        println!("  imagePullSecrets:");
        for n in &names {
            let note = if n == SECRET_NAME {
                "added by the operator"
            } else {
                "was already there: kept"
            };
            println!("    - name: {n:<16} # {note}");
        }
        if !names.iter().any(|n| n == SECRET_NAME) {
            return Err(format!(
                "ServiceAccount {ns}/{sa} did not get {SECRET_NAME}"
            ));
        }
        if sa == "default" && !names.iter().any(|n| n == "dockerhub-creds") {
            return Err(format!(
                "ServiceAccount {ns}/{sa} lost its dockerhub-creds entry"
            ));
        }
        println!("  annotations:");
        print_map(&obj["metadata"]["annotations"], "    ");
    }
    detail("the annotation records what the operator owns, so it only ever removes its own entry");
    Ok(())
}

pub(crate) fn show_cr(k8s: &K8sEmulator) -> Result<(), String> {
    let cr = k8s
        .get("ecrpullsecrets", None, CR_NAME)
        .ok_or("the ECRPullSecret vanished")?;
    let status = &cr["status"];
    let state = |type_: &str| {
        condition(&cr, type_)
            .and_then(|c| c["status"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    section("kubectl get ecrps");
    println!("  NAME            SECRET    READY  NAMESPACES  VERIFIED  EXPIRES               AGE");
    println!(
        "  {:<15} {:<9} {:<6} {:<11} {:<9} {:<21} {}",
        CR_NAME,
        cr["spec"]["secretName"].as_str().unwrap_or(""),
        state("Ready"),
        status["syncedNamespaces"].to_string(),
        state("RegistryVerified"),
        status["expiresAt"].as_str().unwrap_or(""),
        age(&cr["metadata"]["creationTimestamp"])
    );
    section(&format!(
        "kubectl get ecrps {CR_NAME} -o yaml (status only)"
    ));
    let yaml = serde_yaml::to_string(&json!({"status": status})).unwrap_or_default();
    for line in yaml.lines() {
        println!("  {line}");
    }
    Ok(())
}

/// `kubectl`'s AGE column, in seconds (the demo is short).
fn age(created: &Value) -> String {
    let parsed = created.as_str().and_then(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    });
    match parsed {
        Some(t) => format!(
            "{}s",
            (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0)
        ),
        None => "?".into(),
    }
}
