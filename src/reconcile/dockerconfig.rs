//! The `.dockerconfigjson` payload: exactly the format registries and runtimes accept.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::registry::RegistryHost;

/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub const DATA_KEY: &str = ".dockerconfigjson";
pub const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// One registry's credentials, as docker and containerd read them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEntry {
    pub username: String,
    pub password: String,
    /// base64("username:password"): ECR hands this out ready-made.
    pub auth: String,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEntry")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DockerConfig {
    auths: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize)]
struct DockerConfigOut<'a> {
    auths: &'a BTreeMap<String, AuthEntry>,
}

/// The base64 value of `data[".dockerconfigjson"]` for these entries, keyed by bare host.
/// Deterministic (sorted keys), so the same token always yields the same bytes.
pub fn encode(entries: &BTreeMap<String, AuthEntry>) -> String {
    // Serialising a map of strings cannot fail.
    let json = serde_json::to_vec(&DockerConfigOut { auths: entries }).unwrap_or_default();
    B64.encode(json)
}

/// FNV-1a 64 of the data value, hex. It detects hand edits of a Secret we wrote; it is an
/// integrity marker, not a security control (the value itself is in the Secret).
pub fn checksum(data_value: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data_value.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Whether a foreign Secret's payload holds only registries among `hosts` (keys with or
/// without a scheme), so a CR that opts in may adopt it without taking over credentials
/// for registries it does not serve (the reference operator's Secrets look like this).
pub fn holds_only(data_value: &str, hosts: &[String]) -> bool {
    let Ok(bytes) = B64.decode(data_value.trim()) else {
        return false;
    };
    let Ok(cfg) = serde_json::from_slice::<DockerConfig>(&bytes) else {
        return false;
    };
    !cfg.auths.is_empty()
        && cfg
            .auths
            .keys()
            .all(|k| RegistryHost::parse(k).is_some_and(|h| hosts.contains(&h.host)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuthEntry {
        AuthEntry {
            username: "AWS".into(),
            password: "pw".into(),
            auth: B64.encode("AWS:pw"),
        }
    }

    #[test]
    fn payload_is_bare_host_keyed_docker_config() {
        let mut m = BTreeMap::new();
        m.insert(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com".to_string(),
            entry(),
        );
        let value = encode(&m);
        let json: serde_json::Value = serde_json::from_slice(&B64.decode(&value).unwrap()).unwrap();
        let e = &json["auths"]["123456789012.dkr.ecr.us-east-1.amazonaws.com"];
        assert_eq!(e["username"], "AWS");
        assert_eq!(e["password"], "pw");
        assert_eq!(e["auth"], B64.encode("AWS:pw"));
        assert_eq!(encode(&m), value, "deterministic");
        assert!(holds_only(
            &value,
            &["123456789012.dkr.ecr.us-east-1.amazonaws.com".to_string()]
        ));
        assert!(!format!("{:?}", entry()).contains("pw\""));
    }

    #[test]
    fn only_secrets_within_the_crs_registries_are_adoptable() {
        let ours = ["123456789012.dkr.ecr.us-east-1.amazonaws.com".to_string()];
        let mixed = B64.encode(
            r#"{"auths":{"https://123456789012.dkr.ecr.us-east-1.amazonaws.com":{},"docker.io":{}}}"#,
        );
        assert!(!holds_only(&mixed, &ours));
        let reference = B64.encode(
            r#"{"auths":{"https://123456789012.dkr.ecr.us-east-1.amazonaws.com":{"auth":"x"}}}"#,
        );
        assert!(holds_only(&reference, &ours));
        let other_account = B64
            .encode(r#"{"auths":{"210987654321.dkr.ecr.us-east-1.amazonaws.com":{"auth":"x"}}}"#);
        assert!(!holds_only(&other_account, &ours), "ECR, but not this CR's");
        assert!(!holds_only("not base64!", &ours));
        assert!(!holds_only(&B64.encode("{}"), &ours));
    }

    #[test]
    fn checksum_changes_with_content() {
        assert_ne!(checksum("a"), checksum("b"));
        assert_eq!(checksum("a").len(), 16);
    }
}
