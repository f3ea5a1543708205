//! End to end, the operator's main job: the right Secret in the right namespaces, the
//! ServiceAccounts pointed at it, status and events, new namespaces and ServiceAccounts
//! served at once, one ECR call per credential group, and `--once`.

mod common;

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cr_over_list_glob_selector_and_exclude_gets_a_valid_pull_secret_in_each_namespace() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["app-one", "team-a", "team-b", "team-skip", "other"] {
        env.namespace(ns, &[]).await;
    }
    env.namespace("labelled", &[("env", "prod")]).await;
    env.service_account("app-one", "default", &["foreign-cred"]);
    env.start_operator().await;

    env.cr(
        "main",
        json!({
            "secretName": "ecr-pull",
            "namespaces": ["app-one", "team-*"],
            "namespaceSelector": {"matchLabels": {"env": "prod"}},
            "excludeNamespaces": ["team-skip"],
        }),
    );
    let cr = env.wait_ready("main").await;
    env.settle(std::time::Duration::from_millis(300)).await;

    let targets = ["app-one", "labelled", "team-a", "team-b"];
    let host = registry(REGION);
    for ns in targets {
        let secret = env.secret(ns, "ecr-pull").expect("Secret in target");
        assert_eq!(secret["type"], DOCKERCONFIG_TYPE, "{ns}");
        assert_eq!(secret["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
        let ann = &secret["metadata"]["annotations"];
        assert_eq!(ann[OWNER_ANNOTATION], "main");
        assert_eq!(ann["ecr.creds.dev/registries"], host.as_str());
        for key in ["expires-at", "refresh-at", "checksum"] {
            assert!(
                ann[format!("ecr.creds.dev/{key}")].is_string(),
                "{ns}: {key} annotation"
            );
        }
        let auths = docker_config(&secret)["auths"].clone();
        let keys: Vec<&String> = auths.as_object().unwrap().keys().collect();
        assert_eq!(keys, [&host], "{ns}: keyed by bare host");
        let entry = &auths[&host];
        assert_eq!(entry["username"], "AWS");
        let password = entry["password"].as_str().unwrap();
        assert!(!password.is_empty());
        assert_eq!(
            entry["auth"].as_str().unwrap(),
            B64.encode(format!("AWS:{password}"))
        );
    }
    for ns in ["team-skip", "other", "default", "kube-system"] {
        assert!(env.secret(ns, "ecr-pull").is_none(), "{ns} is not a target");
    }

    // The default ServiceAccounts point at it; a foreign entry is kept, ahead of ours.
    assert_eq!(
        env.pull_secrets("app-one", "default"),
        ["foreign-cred", "ecr-pull"]
    );
    let sa = env.sa("app-one", "default").unwrap();
    assert_eq!(
        sa["metadata"]["annotations"][SA_OWNED_ANNOTATION],
        "ecr-pull"
    );
    for ns in ["labelled", "team-a", "team-b"] {
        assert_eq!(env.pull_secrets(ns, "default"), ["ecr-pull"], "{ns}");
    }
    assert!(env.pull_secrets("other", "default").is_empty());

    // Status.
    let status = &cr["status"];
    let ready = ready_condition(&cr).unwrap();
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "TokenFetched");
    assert_eq!(ready["observedGeneration"], cr["metadata"]["generation"]);
    assert_eq!(status["targetNamespaces"], 4);
    assert_eq!(status["syncedNamespaces"], 4);
    assert_eq!(status["failedNamespaces"], 0);
    let expires = OffsetDateTime::parse(status["expiresAt"].as_str().unwrap(), &Rfc3339).unwrap();
    let left = expires - OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::hours(11) && left <= time::Duration::hours(12),
        "expiresAt {expires} is the token's"
    );

    // One event on first success, in namespace default, not one per namespace.
    let events = env.events_for("main");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["metadata"]["namespace"], "default");
    assert_eq!(events[0]["reason"], "TokenFetched");
    assert_eq!(events[0]["type"], "Normal");
    assert_eq!(env.aws.calls().ecr, 1);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_and_service_accounts_that_appear_or_stop_matching_are_followed() {
    let env = Env::start().await;
    env.cr(
        "dyn",
        json!({
            "secretName": "ecr-pull",
            "namespaces": ["dyn-*"],
            "namespaceSelector": {"matchLabels": {"pull": "ecr"}},
            "serviceAccounts": ["*"],
        }),
    );
    env.wait_ready("dyn").await;

    // A new namespace matching the glob, and one matching the selector. Each is served
    // on its own event, not at a later resync: its Secret's create reaches the API server
    // within a second of the event reaching the operator (`env.namespace` returns once
    // the operator's cache has the namespace). Measured on the API server's clock from
    // there, the watch lag and this test's own polling are not counted.
    for (ns, labels) in [("dyn-one", vec![]), ("labelled-x", vec![("pull", "ecr")])] {
        env.namespace(ns, &labels).await;
        let seen = std::time::SystemTime::now();
        env.wait_secret(ns, "ecr-pull").await;
        // The log takes a request once its handler returns, just after the store holds
        // the Secret: wait for the record rather than read the log at once.
        let created = wait_for(format!("the create in {ns} logged"), WAIT, || {
            env.k8s
                .requests_timed()
                .into_iter()
                .find(|(_, r)| {
                    r.verb == "create"
                        && r.resource == "secrets"
                        && r.namespace.as_deref() == Some(ns)
                        && r.code < 300
                })
                .map(|(at, _)| at)
                .ok_or_else(|| "not yet".to_string())
        })
        .await;
        let after = created.duration_since(seen).unwrap_or_default();
        assert!(
            after < std::time::Duration::from_secs(1),
            "{ns} was served {after:?} after the operator saw it"
        );
    }
    wait_until("default SAs patched", WAIT, || {
        env.pull_secrets("dyn-one", "default") == ["ecr-pull"]
            && env.pull_secrets("labelled-x", "default") == ["ecr-pull"]
    })
    .await;

    // A ServiceAccount created later is patched too (serviceAccounts ["*"]).
    env.service_account("dyn-one", "builder", &["builder-own"]);
    wait_until("builder SA patched", WAIT, || {
        env.pull_secrets("dyn-one", "builder") == ["builder-own", "ecr-pull"]
    })
    .await;

    // A namespace that stops matching loses our Secret and our entry, not foreign ones.
    env.settle(std::time::Duration::from_millis(200)).await;
    env.service_account("labelled-x", "default", &["ecr-pull", "mine"]);
    env.namespace("labelled-x", &[("pull", "no")]).await;
    wait_until("Secret removed from labelled-x", WAIT, || {
        env.secret("labelled-x", "ecr-pull").is_none()
    })
    .await;
    wait_until("our SA entry removed from labelled-x", WAIT, || {
        env.pull_secrets("labelled-x", "default") == ["mine"]
    })
    .await;
    let sa = env.sa("labelled-x", "default").unwrap();
    let owned = sa["metadata"]["annotations"][SA_OWNED_ANNOTATION]
        .as_str()
        .unwrap_or("");
    assert!(!owned.contains("ecr-pull"), "ownership dropped: {owned:?}");
    // The rest stays served.
    assert!(env.secret("dyn-one", "ecr-pull").is_some());
    // The status follows once the reconcile after the label change has written it.
    let cr = env.wait_synced("dyn", 1).await;
    assert_eq!(cr["status"]["targetNamespaces"], 1);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ecr_call_serves_every_cr_and_namespace_of_one_region() {
    let mut env = Env::emulators(Options::default()).await;
    let namespaces = ["n1", "n2", "n3", "n4"];
    for ns in namespaces {
        env.namespace(ns, &[]).await;
    }
    for (cr, secret) in [("a", "pull-a"), ("b", "pull-b"), ("c", "pull-c")] {
        env.cr(cr, json!({"secretName": secret, "namespaces": ["n*"]}));
    }
    env.start_operator().await;
    for cr in ["a", "b", "c"] {
        let cr = env.wait_ready(cr).await;
        assert_eq!(cr["status"]["syncedNamespaces"], 4);
    }
    for ns in namespaces {
        let names: BTreeSet<String> = env.pull_secrets(ns, "default").into_iter().collect();
        assert_eq!(
            names,
            ["pull-a", "pull-b", "pull-c"]
                .map(String::from)
                .into_iter()
                .collect()
        );
    }
    assert_eq!(env.aws.calls().ecr, 1, "one call for 3 CRs x 4 namespaces");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ecr_call_per_region_when_crs_span_two_regions() {
    let mut env = Env::emulators(Options::default()).await;
    for ns in ["r1", "r2"] {
        env.namespace(ns, &[]).await;
    }
    env.cr(
        "east",
        json!({"secretName": "east", "namespaces": ["r*"], "region": "us-east-1"}),
    );
    env.cr(
        "west",
        json!({"secretName": "west", "namespaces": ["r*"], "region": "eu-west-1"}),
    );
    env.cr(
        "west-too",
        json!({"secretName": "west-too", "namespaces": ["r1"], "region": "eu-west-1"}),
    );
    env.start_operator().await;
    for cr in ["east", "west", "west-too"] {
        env.wait_ready(cr).await;
    }
    let hosts = |name: &str| -> Vec<String> {
        let secret = env.secret("r1", name).unwrap();
        docker_config(&secret)["auths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(hosts("east"), [registry("us-east-1")]);
    assert_eq!(hosts("west"), [registry("eu-west-1")]);
    assert_eq!(hosts("west-too"), [registry("eu-west-1")]);
    assert_eq!(env.aws.calls().ecr, 2, "one call per region");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_counts_crs_and_those_not_ready() {
    let env = Env::emulators(Options::default()).await;
    env.namespace("once-a", &[]).await;
    env.cr(
        "good-1",
        json!({"secretName": "one", "namespaces": ["once-a"]}),
    );
    env.cr(
        "good-2",
        json!({"secretName": "two", "namespaces": ["once-*"]}),
    );

    let running = env.start_once().await;
    let (total, failed) = running.run_once(WAIT).await.expect("caches fill");
    assert_eq!((total, failed), (2, 0));
    assert!(env.secret("once-a", "one").is_some());
    assert!(env.secret("once-a", "two").is_some());

    // A CR that cannot be served fails the run.
    env.cr(
        "missing-ns",
        json!({"secretName": "three", "namespaces": ["does-not-exist"]}),
    );
    let running = env.start_once().await;
    let (total, failed) = running.run_once(WAIT).await.expect("caches fill");
    assert_eq!((total, failed), (3, 1));
    let ready = env.ready("missing-ns").unwrap();
    assert_eq!(ready["status"], "False");
    env.shutdown().await;
}

/// The fake ECR's token lifetime in the refresh test: the default `beforeExpiry` is half
/// of it, 3 s, so a refresh at half-life and one at expiry are 3 s apart, more than any
/// scheduling delay on a loaded machine.
const SHORT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_tokens_are_refreshed_before_expiry_without_touching_service_accounts() {
    let mut env = Env::emulators(Options {
        token_lifetime: SHORT_LIFETIME,
        ..Options::default()
    })
    .await;
    env.namespace("rf", &[]).await;
    env.cr(
        "rf",
        json!({"secretName": "ecr-pull", "namespaces": ["rf"], "refresh": {"minInterval": "1s"}}),
    );
    env.start_operator().await;
    let cr = env.wait_ready("rf").await;
    let first = env.wait_secret("rf", "ecr-pull").await;
    wait_until("SA patched", WAIT, || {
        env.pull_secrets("rf", "default") == ["ecr-pull"]
    })
    .await;
    let sa_version = env.sa("rf", "default").unwrap()["metadata"]["resourceVersion"].clone();
    let expires = |s: &serde_json::Value| {
        OffsetDateTime::parse(
            s["metadata"]["annotations"]["ecr.creds.dev/expires-at"]
                .as_str()
                .unwrap(),
            &Rfc3339,
        )
        .unwrap()
    };
    let old_expiry = expires(&first);

    // Half the lifetime (3 s) later the Secret gets a new token, before the old expires.
    let refreshed = wait_for("Secret refreshed", WAIT, || {
        let s = env.secret("rf", "ecr-pull").unwrap();
        if s["data"] != first["data"] {
            Ok(s)
        } else {
            Err("same token".into())
        }
    })
    .await;
    // When the API server answered the refresh write (its own clock, not this test's
    // polling): at the default beforeExpiry, half the lifetime before the old expiry. The
    // fake ECR's expiresAt is whole seconds, so the operator's half-life is 2.5 to 3 s
    // before `old_expiry`; a refresh at expiry (or at any margin under 1.5 s) fails here.
    // The log takes a request once its handler returns, just after the store holds the
    // new token: wait for the record rather than read the log at once.
    let written = wait_for("the refresh logged as a write", WAIT, || {
        env.k8s
            .requests_timed()
            .into_iter()
            .find(|(_, r)| {
                matches!(r.verb.as_str(), "update" | "patch")
                    && r.resource == "secrets"
                    && r.name.as_deref() == Some("ecr-pull")
                    && r.code < 300
            })
            .map(|(at, _)| OffsetDateTime::from(at))
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    let half_life = time::Duration::try_from(SHORT_LIFETIME / 2).unwrap();
    let earliest = old_expiry - half_life - time::Duration::milliseconds(50);
    let latest = old_expiry - half_life / 2;
    assert!(
        earliest <= written && written < latest,
        "refreshed at {written}, {} before the old expiry {old_expiry}: want half the \
         lifetime ({half_life}) before it, within {}",
        old_expiry - written,
        half_life / 2
    );
    assert!(expires(&refreshed) > old_expiry);
    let auths = docker_config(&refreshed)["auths"].clone();
    assert_ne!(
        auths[registry(REGION)]["password"],
        docker_config(&first)["auths"][registry(REGION)]["password"]
    );

    // Status follows; Ready never flipped, so no new event; the SA was left alone.
    let later = wait_for("status shows the new expiry", WAIT, || {
        let cr = env.get_cr("rf").unwrap();
        let at = cr["status"]["expiresAt"].as_str().unwrap_or("").to_string();
        match OffsetDateTime::parse(&at, &Rfc3339) {
            Ok(t) if t > old_expiry => Ok(cr),
            _ => Err(cr["status"].to_string()),
        }
    })
    .await;
    assert_eq!(
        ready_condition(&later).unwrap()["lastTransitionTime"],
        ready_condition(&cr).unwrap()["lastTransitionTime"],
        "Ready never flipped: {} then {}; events {:?}",
        cr["status"],
        later["status"],
        env.events_for("rf")
    );
    assert_eq!(env.events_for("rf").len(), 1);
    assert_eq!(
        env.sa("rf", "default").unwrap()["metadata"]["resourceVersion"],
        sa_version
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_the_secret_moves_the_secret_and_the_service_account_entry() {
    let env = Env::start().await;
    env.namespace("mv", &[]).await;
    env.service_account("mv", "default", &["foreign"]);
    env.cr(
        "mv",
        json!({"secretName": "old-name", "namespaces": ["mv"]}),
    );
    env.wait_ready("mv").await;
    wait_until("old entry added", WAIT, || {
        env.pull_secrets("mv", "default") == ["foreign", "old-name"]
    })
    .await;

    env.patch_cr(
        "mv",
        json!({"spec": {"secretName": "new-name", "registries": [registry(REGION), registry("eu-west-1")]}}),
    )
    .await;
    let cr = env.wait_ready("mv").await;
    assert_eq!(cr["metadata"]["generation"], 2);
    wait_until("old Secret removed", WAIT, || {
        env.secret("mv", "old-name").is_none()
    })
    .await;
    wait_for("entries moved", WAIT, || {
        let names = env.pull_secrets("mv", "default");
        if names == ["foreign", "new-name"] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    let sa = env.sa("mv", "default").unwrap();
    assert_eq!(
        sa["metadata"]["annotations"][SA_OWNED_ANNOTATION],
        "new-name"
    );
    let secret = env.secret("mv", "new-name").unwrap();
    let hosts: BTreeSet<String> = docker_config(&secret)["auths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        hosts,
        [registry(REGION), registry("eu-west-1")]
            .into_iter()
            .collect()
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_writes_each_secret_and_service_account_exactly_once() {
    let env = Env::start().await;
    const N: usize = 40;
    for i in 0..N {
        env.namespace(&format!("bulk-{i:02}"), &[]).await;
    }
    env.cr(
        "bulk",
        json!({"secretName": "ecr-pull", "namespaces": ["bulk-*"]}),
    );
    env.wait_synced("bulk", N).await;
    env.settle(std::time::Duration::from_millis(300)).await;
    let ok = |verb: &str, resource: &str| {
        env.requests_where(|r| r.verb == verb && r.resource == resource && r.code < 300)
            .len()
    };
    assert_eq!(ok("create", "secrets"), N);
    assert_eq!(ok("patch", "secrets") + ok("update", "secrets"), 0);
    assert_eq!(
        ok("patch", "serviceaccounts") + ok("update", "serviceaccounts"),
        N
    );
    assert_eq!(env.aws.calls().ecr, 1);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_operator_environment_and_cr_shape_are_served_and_key_rotation_applies() {
    let ecr_auth = |env: &Env| {
        env.aws
            .last_headers("ecr")
            .and_then(|h| h.get("authorization").cloned())
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let host = registry("eu-west-1");
    let mut env = Env::emulators(Options {
        token_lifetime: std::time::Duration::from_secs(4),
        env: vec![
            ("AWS_CREDENTIALS_SECRET_NAME".into(), "aws-creds".into()),
            ("AWS_CREDENTIALS_SECRET_NAMESPACE".into(), "ops".into()),
            ("REGISTRY".into(), host.clone()),
        ],
        ..Options::default()
    })
    .await;
    env.namespace("ops", &[]).await;
    env.namespace("ref-app", &[]).await;
    let keys = |id: &str| {
        std::collections::BTreeMap::from([
            ("AWS_ACCESS_KEY_ID", id.to_string()),
            ("AWS_SECRET_ACCESS_KEY", format!("{id}-secret")),
        ])
    };
    env.foreign_secret("ops", "aws-creds", "Opaque", keys("AKIAGLOBALONE"));
    // The reference operator's spec: only secretName and namespaces.
    env.cr(
        "reference",
        json!({"secretName": "ecr-registry-secret", "namespaces": ["ref-app"]}),
    );
    env.start_operator().await;
    env.wait_ready("reference").await;
    let secret = env.wait_secret("ref-app", "ecr-registry-secret").await;
    let auths = docker_config(&secret)["auths"].clone();
    let keys_seen: Vec<&String> = auths.as_object().unwrap().keys().collect();
    assert_eq!(keys_seen, [&host], "REGISTRY names the host");
    let auth = ecr_auth(&env);
    assert!(
        auth.contains("Credential=AKIAGLOBALONE/") && auth.contains("/eu-west-1/ecr/"),
        "signed with the Secret's key for the registry's region: {auth}"
    );

    // Rotated keys are used from the next token fetch on, without a restart. (A CR
    // refreshing every couple of seconds makes that fetch come soon: the reference CR
    // has the default 1 m floor between refreshes.)
    env.foreign_secret("ops", "aws-creds", "Opaque", keys("AKIAGLOBALTWO"));
    env.cr(
        "fast",
        json!({"secretName": "fast", "namespaces": ["ref-app"], "refresh": {"minInterval": "1s"}}),
    );
    wait_until("a refresh signed with the rotated key", WAIT, || {
        ecr_auth(&env).contains("Credential=AKIAGLOBALTWO/")
    })
    .await;
    env.wait_ready("fast").await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_public_and_private_registries_share_one_secret_with_one_call_each() {
    let env = Env::start().await;
    env.namespace("pub", &[]).await;
    env.cr(
        "mixed",
        json!({"secretName": "ecr-pull", "namespaces": ["pub"],
               "registries": [registry(REGION), "public.ecr.aws"]}),
    );
    env.wait_ready("mixed").await;
    let secret = env.wait_secret("pub", "ecr-pull").await;
    let auths = docker_config(&secret)["auths"].clone();
    let hosts: BTreeSet<String> = auths.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        hosts,
        [registry(REGION), "public.ecr.aws".to_string()]
            .into_iter()
            .collect()
    );
    for host in &hosts {
        assert_eq!(auths[host]["username"], "AWS", "{host}");
    }
    let calls = env.aws.calls();
    assert_eq!((calls.ecr, calls.ecr_public), (1, 1));
    env.shutdown().await;
}
