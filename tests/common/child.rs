//! The operator BINARY as a child process, for the tests of what only a process shows:
//! signals, exit codes, several replicas. The launcher is the one `demo` and `bench` use
//! (`emulators::operator`); here it gets the test profile's binary, the operator's
//! namespace and metrics. Each replica can sit behind its own logging reverse proxy
//! ([`Proxy`], from the emulators crate).

use emulators::aws::{AwsEmulator, AwsEmulatorConfig};
use emulators::k8s::{EmulatorConfig, K8sEmulator};

pub(crate) use emulators::operator::{free_port, Launch, OperatorChild};
pub(crate) use emulators::proxy::{Logged, Proxy};

use super::OPERATOR_NAMESPACE;

/// The operator binary of this test profile.
pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_ecr-creds-refresher");
/// The Lease's name (the operator's default), in [`OPERATOR_NAMESPACE`].
pub(crate) const LEASE: &str = "ecr-creds-refresher";

/// Both emulators; the Kubernetes one with these namespaces (plus `default` and the
/// operator's).
pub(crate) async fn emulators(namespaces: &[&str]) -> (K8sEmulator, AwsEmulator) {
    let mut ns = vec!["default".to_string(), OPERATOR_NAMESPACE.to_string()];
    ns.extend(namespaces.iter().map(|s| s.to_string()));
    let k8s = K8sEmulator::start(EmulatorConfig {
        namespaces: ns,
        ..EmulatorConfig::default()
    })
    .await
    .expect("start the Kubernetes emulator");
    let aws = AwsEmulator::start(AwsEmulatorConfig::default())
        .await
        .expect("start the AWS emulator");
    (k8s, aws)
}

/// The test binary as replica `name` against `api_server` and `aws`: POD_NAMESPACE is
/// [`OPERATOR_NAMESPACE`], metrics are served, logs at `info`. Add flags, then `spawn`.
pub(crate) fn operator(name: &str, api_server: String, aws: &AwsEmulator) -> Launch {
    Launch::new(BINARY, api_server, aws.url())
        .pod_name(name)
        .pod_namespace(OPERATOR_NAMESPACE)
        .metrics(true)
}

/// The flags of a replica that takes part in leader election.
pub(crate) fn leader_elect_args() -> [&'static str; 3] {
    [
        "--leader-elect",
        "--leader-election-namespace",
        OPERATOR_NAMESPACE,
    ]
}

/// The Lease's current holder ("" when released or absent).
pub(crate) fn lease_holder(k8s: &K8sEmulator) -> String {
    k8s.get("leases", Some(OPERATOR_NAMESPACE), LEASE)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .unwrap_or_default()
}
