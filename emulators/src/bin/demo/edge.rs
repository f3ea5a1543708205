//! An edge device in the demo: a cluster outside AWS with no access key, only a device
//! certificate its owner's CA issued (as cert-manager would write it), exchanged by the
//! operator for a Roles Anywhere session that fetches the ECR token.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use emulators::aws::{AwsEmulator, RolesAnywhereConfig, ACCESS_KEY_ID};
use emulators::device_pki::{self, DeviceCa, DeviceCert, DeviceSpec};
use emulators::k8s::K8sEmulator;
use emulators::operator::OperatorChild;
use emulators::wait::poll;
use serde_json::{json, Value};

use super::cluster::{condition, create_namespace, secret_ok, POLL, SECRET_NAME, WAIT};
use super::say::{detail, ms, section, step};

/// The operator's own namespace in the demo (POD_NAMESPACE): the role grants live there.
pub(crate) const OPERATOR_NAMESPACE: &str = "ecr-creds-refresher";

const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/edge-fleet";
const PROFILE: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/edge-ecr-pull";
const ROLE: &str = "arn:aws:iam::123456789012:role/edge-ecr-pull";

const EDGE_CR: &str = r#"apiVersion: ecr.creds.dev/v1alpha1
kind: ECRPullSecret
metadata:
  name: edge-device
spec:
  secretName: ecr-pull
  namespaces: [edge-apps]
  registries: [123456789012.dkr.ecr.us-east-1.amazonaws.com]
  aws:
    rolesAnywhere:        # no access key: a certificate from the fleet's own CA
      trustAnchorArn: arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/edge-fleet
      profileArn: arn:aws:rolesanywhere:us-east-1:123456789012:profile/edge-ecr-pull
      roleArn: arn:aws:iam::123456789012:role/edge-ecr-pull
      certificateSecretRef: {name: device-cert, namespace: edge-system}
"#;

/// The device's certificate Secret, its grants, the CR, and the pull secret it gives.
pub(crate) async fn edge_device_pulls_with_a_certificate(
    k8s: &K8sEmulator,
    aws: &AwsEmulator,
    operator: &OperatorChild,
) -> Result<(), String> {
    section("Edge device: IAM Roles Anywhere, no access key");
    let root = DeviceCa::root("edge fleet CA").map_err(|e| format!("demo CA: {e}"))?;
    let trust = RolesAnywhereConfig::new(ANCHOR, PROFILE, ROLE, root.der());
    aws.update_config(|c| c.roles_anywhere = Some(trust.clone()));
    let device = root
        .issue(&DeviceSpec::new(
            device_pki::P256_PKCS8,
            device_pki::P256_SEC1,
            4242,
        ))
        .map_err(|e| format!("device certificate: {e}"))?;
    step("The fake AWS trusts a demo CA (the trust anchor) for role edge-ecr-pull.");
    device_secret_and_grants(k8s, &root, &device)?;
    let cr: Value =
        serde_yaml::from_str(EDGE_CR).map_err(|e| format!("the edge CR is not valid YAML: {e}"))?;
    let applied_at = Instant::now();
    k8s.apply("ecrpullsecrets", cr)
        .map_err(|e| format!("the emulator refused the edge ECRPullSecret: {e}"))?;
    step("Applied this ECRPullSecret:");
    for line in EDGE_CR.lines() {
        println!("      {line}");
    }
    let cr = poll(WAIT, POLL, async || {
        let cr = k8s.get("ecrpullsecrets", None, "edge-device")?;
        let ready = condition(&cr, "Ready").is_some_and(|c| c["status"] == "True");
        (ready && secret_ok(k8s, "edge-apps")).then_some(cr)
    })
    .await
    .ok_or_else(|| {
        format!(
            "edge-device was not Ready within {WAIT:?}; operator log:\n{}",
            operator.log_tail(20)
        )
    })?;
    step(&format!(
        "edge-apps/{SECRET_NAME} written {} after the CR was applied",
        ms(applied_at.elapsed())
    ));
    let serials = trust.accepted_serials();
    if serials != [device.serial.clone()] {
        return Err(format!(
            "expected one CreateSession with serial {}, the fake AWS saw {serials:?}",
            device.serial
        ));
    }
    detail(&format!(
        "CreateSession verified the signature of certificate serial {} against the trust anchor",
        device.serial
    ));
    let signer = ecr_signer(aws)?;
    if signer == ACCESS_KEY_ID {
        return Err("the ECR call was signed with the operator's own access key".into());
    }
    detail(&format!(
        "GetAuthorizationToken was signed with the session's key {}…, not the operator's {}",
        &signer[..signer.len().min(8)],
        ACCESS_KEY_ID
    ));
    detail(&format!(
        "status.credentialSources: {}",
        cr["status"]["credentialSources"]
    ));
    Ok(())
}

/// The device's certificate Secret (granted to the CR) and the role granted to the CR.
fn device_secret_and_grants(
    k8s: &K8sEmulator,
    root: &DeviceCa,
    device: &DeviceCert,
) -> Result<(), String> {
    for ns in ["edge-system", "edge-apps"] {
        create_namespace(k8s, ns, json!({}))?;
    }
    k8s.apply(
        "secrets",
        json!({"metadata": {"name": "device-cert", "namespace": "edge-system",
                            "annotations": {"ecr.creds.dev/allowed-ecrpullsecrets": "edge-device"}},
               "type": "kubernetes.io/tls",
               "data": {"tls.crt": STANDARD.encode(&device.cert_pem),
                        "tls.key": STANDARD.encode(&device.key_pem),
                        "ca.crt": STANDARD.encode(root.pem())}}),
    )
    .map_err(|e| format!("cannot create the device certificate Secret: {e}"))?;
    step(&format!(
        "edge-system/device-cert: a kubernetes.io/tls Secret as cert-manager writes it (ECDSA P-256, serial {}), granted to edge-device",
        device.serial
    ));
    k8s.apply(
        "configmaps",
        json!({"metadata": {"name": "ecr-creds-refresher-role-grants", "namespace": OPERATOR_NAMESPACE},
               "data": {"edge-device": ROLE}}),
    )
    .map_err(|e| format!("cannot grant the role: {e}"))?;
    detail(
        "a cluster admin granted edge-device the role (ConfigMap ecr-creds-refresher-role-grants)",
    );
    Ok(())
}

/// The access key id of the last ECR call's signature.
fn ecr_signer(aws: &AwsEmulator) -> Result<String, String> {
    let headers = aws.last_headers("ecr").ok_or("ECR was never called")?;
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("the ECR call had no Authorization header")?;
    let credential = auth.split("Credential=").nth(1).unwrap_or_default();
    Ok(credential.split('/').next().unwrap_or_default().to_string())
}
