//! Registry verification against a real registry: Debian's `docker-registry` (the CNCF
//! distribution registry v2) on loopback, with TLS from a CA made in the test and htpasswd
//! auth for user `AWS` and the password the fake ECR issues. The operator reaches it
//! through ECR_REGISTRY_ENDPOINT_URL and trusts its CA through AWS_CA_BUNDLE, exactly as a
//! user configures it. Each case: the Secret is written whatever the registry says, Ready
//! keeps its meaning, and RegistryVerified tells the registry's answer.

mod common;

use serde_json::{json, Value};

use common::*;
use emulators::registry::{Registry, TestCa};

/// The one password the fake ECR issues here (of ECR's size), so the registry can be set
/// up to accept it.
static PASSWORD: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(emulators::aws::ecr_password);
const CR: &str = "verified";

/// Emulators whose ECR issues [`PASSWORD`], and an operator that checks tokens at
/// `registry_url` trusting `ca_file`.
async fn env_with(registry_url: &str, ca_file: &str, verify: bool) -> Env {
    let options = Options {
        verify_registries: true,
        token_password: Some(PASSWORD.clone()),
        metrics: true,
        env: vec![
            ("ECR_REGISTRY_ENDPOINT_URL".into(), registry_url.into()),
            ("AWS_CA_BUNDLE".into(), ca_file.into()),
        ],
        ..Options::default()
    };
    let mut env = Env::emulators(options).await;
    env.namespace("apps", &[]).await;
    env.start_operator().await;
    env.cr(
        CR,
        json!({"secretName": "ecr-pull", "namespaces": ["apps"],
               "registries": [registry(REGION)], "verify": verify}),
    );
    env
}

fn condition<'a>(cr: &'a Value, type_: &str) -> Option<&'a Value> {
    cr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Waits for RegistryVerified with `status` and `reason`; the CR.
async fn wait_verified(env: &Env, status: &str, reason: &str) -> Value {
    wait_for(format!("RegistryVerified={status} {reason}"), WAIT, || {
        let cr = env.get_cr(CR).ok_or("CR absent")?;
        match condition(&cr, "RegistryVerified") {
            Some(c) if c["status"] == status && c["reason"] == reason => Ok(cr),
            _ => Err(format!("status: {}", cr["status"])),
        }
    })
    .await
}

/// What every case shares: Ready=True and the Secret written, with the registry's
/// answer for the one host in status.
async fn assert_written_and_reported(env: &Env, cr: &Value, result: &str) {
    env.wait_ready(CR).await;
    let secret = env.wait_secret("apps", "ecr-pull").await;
    assert!(secret_auths(&secret).contains_key(&registry(REGION)));
    let hosts = cr["status"]["registries"]
        .as_array()
        .expect("status.registries");
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["host"], registry(REGION));
    assert_eq!(hosts[0]["result"], result);
    assert!(hosts[0]["checkedAt"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    let text = cr["status"].to_string();
    assert!(
        !text.contains(PASSWORD.as_str()),
        "no token in status: {text}"
    );
}

/// Events are recorded after the status write; wait for the one the change emits.
async fn wait_event(env: &Env, reason: &str, type_: &str) {
    wait_for(format!("a {type_} event {reason}"), WAIT, || {
        let events = env.events_for(CR);
        if events
            .iter()
            .any(|e| e["reason"] == reason && e["type"] == type_)
        {
            Ok(())
        } else {
            Err(format!("events: {events:?}"))
        }
    })
    .await;
}

async fn metrics(env: &Env) -> String {
    let addr = env.operator().metrics_addr.expect("metrics served");
    String::from_utf8_lossy(&get(addr, "/metrics").await.expect("scrape").body).into_owned()
}

#[tokio::test]
async fn the_right_token_is_verified_at_the_registry() {
    let registry_peer = Registry::start(&PASSWORD).expect("docker-registry starts");
    let env = env_with(
        &registry_peer.url,
        registry_peer.ca_file.to_str().unwrap(),
        true,
    )
    .await;
    let cr = wait_verified(&env, "True", "Verified").await;
    assert_written_and_reported(&env, &cr, "Verified").await;
    // The one request, in the registry's own access log (proof the check reached it).
    assert!(
        registry_peer.log().contains("GET /v2/"),
        "{}",
        registry_peer.log()
    );
    wait_event(&env, "Verified", "Normal").await;
    let text = metrics(&env).await;
    assert!(
        text.contains("ecr_creds_refresher_registry_checks_total{result=\"Verified\"}"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "ecr_creds_refresher_registry_verified_timestamp_seconds{{ecrpullsecret=\"{CR}\"}}"
        )),
        "{text}"
    );
    env.shutdown().await;
}

#[tokio::test]
async fn a_token_the_registry_refuses_is_unauthorized() {
    let registry_peer = Registry::start("another-password").expect("docker-registry starts");
    let env = env_with(
        &registry_peer.url,
        registry_peer.ca_file.to_str().unwrap(),
        true,
    )
    .await;
    let cr = wait_verified(&env, "False", "Unauthorized").await;
    assert_written_and_reported(&env, &cr, "Unauthorized").await;
    wait_event(&env, "Unauthorized", "Warning").await;
    assert!(metrics(&env)
        .await
        .contains("ecr_creds_refresher_registry_checks_total{result=\"Unauthorized\"}"));
    env.shutdown().await;
}

#[tokio::test]
async fn a_stopped_registry_is_unreachable() {
    let mut registry_peer = Registry::start(&PASSWORD).expect("docker-registry starts");
    registry_peer.stop();
    let env = env_with(
        &registry_peer.url,
        registry_peer.ca_file.to_str().unwrap(),
        true,
    )
    .await;
    let cr = wait_verified(&env, "False", "Unreachable").await;
    assert_written_and_reported(&env, &cr, "Unreachable").await;
    env.shutdown().await;
}

#[tokio::test]
async fn a_registry_behind_an_untrusted_ca_is_a_tls_error() {
    let registry_peer = Registry::start(&PASSWORD).expect("docker-registry starts");
    let other = TestCa::new("not-the-registry-ca").unwrap();
    let wrong_ca = std::env::temp_dir().join(format!("wrong-ca-{}.pem", std::process::id()));
    std::fs::write(&wrong_ca, other.pem()).unwrap();
    let env = env_with(&registry_peer.url, wrong_ca.to_str().unwrap(), true).await;
    let cr = wait_verified(&env, "False", "TLSError").await;
    assert_written_and_reported(&env, &cr, "TLSError").await;
    let message = condition(&cr, "RegistryVerified").unwrap()["message"].to_string();
    assert!(
        message.contains("AWS_CA_BUNDLE"),
        "says what to fix: {message}"
    );
    env.shutdown().await;
    let _ = std::fs::remove_file(wrong_ca);
}

#[tokio::test]
async fn verify_false_checks_nothing_and_says_so() {
    // A registry that would refuse: were it asked, the condition would be False.
    let registry_peer = Registry::start("another-password").expect("docker-registry starts");
    let env = env_with(
        &registry_peer.url,
        registry_peer.ca_file.to_str().unwrap(),
        false,
    )
    .await;
    let cr = wait_verified(&env, "Unknown", "Disabled").await;
    env.wait_ready(CR).await;
    let hosts = cr["status"]["registries"].as_array().map_or(0, Vec::len);
    assert_eq!(hosts, 0, "{}", cr["status"]);
    assert!(
        !registry_peer.log().contains("/v2/"),
        "the registry was asked: {}",
        registry_peer.log()
    );
    env.shutdown().await;
}
