//! The emulator's CreateSession against an independent client: AWS's Python
//! `iam-rolesanywhere-session` (botocore + cryptography), over TLS with the emulator's
//! rcgen certificate as the trusted CA. If the emulator accepted only what our own
//! signer makes, a shared misreading of the signing process would pass unnoticed.
//!
//! Python is `.venv/bin/python` at the repository root (created by `make test` with
//! tests/rolesanywhere/requirements.txt), or $ROLESANYWHERE_PYTHON. A missing client FAILS
//! the test: skipping would hide it.

use emulators::aws::{AwsEmulator, AwsEmulatorConfig, RolesAnywhereConfig};
use emulators::device_pki::{self, DeviceCa, DeviceCert, DeviceSpec};
use std::path::{Path, PathBuf};
use std::process::Command;

const ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/ta-py";
const PROFILE: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:profile/p-py";
const ROLE: &str = "arn:aws:iam::123456789012:role/edge-ecr-pull";

fn python() -> PathBuf {
    let path = std::env::var_os("ROLESANYWHERE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "python not found at {}: run `make venv` (tests/rolesanywhere/requirements.txt) or set ROLESANYWHERE_PYTHON",
        path.display()
    );
    path
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the Python client for `device` (chain as a separate file, as its API takes it);
/// its exit status and output.
fn run_client(
    emu: &AwsEmulator,
    dir: &Path,
    device: &DeviceCert,
    chain_pem: Option<&str>,
) -> (bool, String) {
    let tls_ca = dir.join("emulator-ca.pem");
    std::fs::write(&tls_ca, pem("CERTIFICATE", &emu.certificate_der().unwrap())).unwrap();
    let leaf = dir.join("device.crt");
    std::fs::write(&leaf, pem("CERTIFICATE", &device.cert_der)).unwrap();
    let key = dir.join("device.key");
    std::fs::write(&key, &device.key_pem).unwrap();
    let mut cmd = Command::new(python());
    cmd.arg(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rolesanywhere/create_session.py"),
    )
    .arg(format!("localhost:{}", emu.addr().port()))
    .arg(&tls_ca)
    .arg(&leaf)
    .arg(&key)
    .env("ROLESANYWHERE_TRUST_ANCHOR_ARN", ANCHOR)
    .env("ROLESANYWHERE_PROFILE_ARN", PROFILE)
    .env("ROLESANYWHERE_ROLE_ARN", ROLE);
    if let Some(chain) = chain_pem {
        let path = dir.join("chain.pem");
        std::fs::write(&path, chain).unwrap();
        cmd.arg(path);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_independent_python_client_gets_credentials_for_rsa_p256_and_p384_devices() {
    let root = DeviceCa::root("edge fleet CA").unwrap();
    let ra = RolesAnywhereConfig::new(ANCHOR, PROFILE, ROLE, root.der());
    let emu = AwsEmulator::start(AwsEmulatorConfig {
        tls: true,
        roles_anywhere: Some(ra.clone()),
        ..AwsEmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = Dir(std::env::temp_dir().join(format!("ra-python-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let intermediate = root.intermediate("edge issuing CA").unwrap();
    let cases = [
        (
            &root,
            DeviceSpec::new(device_pki::RSA_2048_PKCS8, device_pki::RSA_2048_PKCS1, 71),
            false,
        ),
        (
            &root,
            DeviceSpec::new(device_pki::P256_PKCS8, device_pki::P256_SEC1, 72),
            false,
        ),
        (
            &root,
            DeviceSpec::new(device_pki::P384_PKCS8, device_pki::P384_SEC1, 73),
            false,
        ),
        (
            &intermediate,
            DeviceSpec::new(device_pki::P256_PKCS8, device_pki::P256_PKCS8, 74),
            true,
        ),
    ];
    for (ca, spec, with_chain) in cases {
        let device = ca.issue(&spec).unwrap();
        let chain = with_chain.then(|| intermediate.pem());
        let (ok, out) =
            tokio::task::block_in_place(|| run_client(&emu, &dir.0, &device, chain.as_deref()));
        assert!(ok, "serial {}: {out}", device.serial);
        assert!(out.trim().starts_with("ASIA"), "{out}");
        assert_eq!(ra.accepted_serials().last(), Some(&device.serial));
    }
    // And what it must refuse from the same client: a device of another CA.
    let stranger = DeviceCa::root("edge fleet CA").unwrap();
    let device = stranger
        .issue(&DeviceSpec::new(
            device_pki::P256_PKCS8,
            device_pki::P256_PKCS8,
            75,
        ))
        .unwrap();
    let (ok, out) = tokio::task::block_in_place(|| run_client(&emu, &dir.0, &device, None));
    assert!(
        !ok && out.contains("403") && out.contains("Untrusted"),
        "{out}"
    );
    assert_eq!(ra.accepted_serials(), ["71", "72", "73", "74"]);
}
