//! The `.dockerconfigjson` payload: exactly the format registries and runtimes accept.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::registry::RegistryHost;

/// The data key of a `kubernetes.io/dockerconfigjson` Secret.
pub(crate) const DATA_KEY: &str = ".dockerconfigjson";
pub(crate) const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// One registry's credentials, as docker and containerd read them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AuthEntry {
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

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DockerConfig {
    auths: BTreeMap<String, serde_json::Value>,
}

/// The registries only: every entry holds a password.
impl std::fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerConfig")
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct DockerConfigOut<'a> {
    auths: &'a BTreeMap<String, AuthEntry>,
}

/// The base64 value of `data[".dockerconfigjson"]` for these entries, keyed by bare host.
/// Deterministic (sorted keys), so the same token always yields the same bytes.
pub(crate) fn encode(entries: &BTreeMap<String, AuthEntry>) -> String {
    // Serialising a map of strings cannot fail.
    let json = serde_json::to_vec(&DockerConfigOut { auths: entries }).unwrap_or_default();
    B64.encode(json)
}

/// Marks the checksum format we write: FNV-1a 64 over 8-byte words. A checksum without
/// it is the first format, FNV-1a 64 byte by byte, still found on Secrets written before;
/// hashing byte by byte took 50 µs of a ~8.5 KB value in the size-optimised build, eight
/// times what words take.
const CHECKSUM_WORDS: &str = "w8-";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The checksum of a data value, as we write it in its annotation. It detects hand edits
/// of a Secret we wrote; it is an integrity marker, not a security control (the value
/// itself is in the Secret).
pub(crate) fn checksum(data_value: &str) -> String {
    format!("{CHECKSUM_WORDS}{:016x}", fnv_words(data_value.as_bytes()))
}

/// Whether `sum` is the checksum of `data_value`, in either format.
pub(crate) fn checksum_matches(data_value: &str, sum: &str) -> bool {
    match sum.strip_prefix(CHECKSUM_WORDS) {
        Some(hex) => hex == format!("{:016x}", fnv_words(data_value.as_bytes())),
        None => sum == format!("{:016x}", fnv_bytes(data_value.as_bytes())),
    }
}

/// FNV-1a 64, one byte at a time: the first checksum format.
fn fnv_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// FNV-1a 64 over little-endian 8-byte words, then the bytes left over.
fn fnv_words(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut h = FNV_OFFSET;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(FNV_PRIME);
    }
    words
        .remainder()
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// Whether a foreign Secret's payload holds only registries among `hosts` (keys with or
/// without a scheme), so a CR that opts in may adopt it without taking over credentials
/// for registries it does not serve (the reference operator's Secrets look like this).
pub(crate) fn holds_only(data_value: &str, hosts: &[String]) -> bool {
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

/// Why a `.dockerconfigjson` value cannot be edited.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FormatError {
    Base64,
    /// Not a JSON object, `auths` not an object, or a key twice (which one would a
    /// runtime read?).
    Json(String),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::Base64 => f.write_str("the value is not base64"),
            FormatError::Json(e) => write!(f, "the value is not a docker config object: {e}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// A docker config as someone else wrote it, for editing a few `auths` entries: every
/// other entry and top-level key keeps its bytes and its place.
pub(crate) struct RawConfig {
    /// Top-level keys in order; `auths` among them holds a placeholder.
    fields: Vec<(String, Box<RawValue>)>,
    auths: Vec<(String, Box<RawValue>)>,
}

/// Keys only: `auths` entries hold passwords, and other top-level keys may too
/// (`credHelpers` configs, proxies with credentials).
impl std::fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |members: &[(String, Box<RawValue>)]| -> Vec<String> {
            members.iter().map(|(k, _)| k.clone()).collect()
        };
        f.debug_struct("RawConfig")
            .field("fields", &keys(&self.fields))
            .field("auths", &keys(&self.auths))
            .finish_non_exhaustive()
    }
}

/// A JSON object's members in order, values unparsed.
struct Ordered(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    if !seen.insert(key.clone()) {
                        return Err(A::Error::custom(format!("key {key:?} appears twice")));
                    }
                    out.push((key, value));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Members)
    }
}

// === impl RawConfig ===

impl RawConfig {
    /// `{"auths":{}}`.
    pub(crate) fn empty() -> RawConfig {
        RawConfig {
            fields: Vec::new(),
            auths: Vec::new(),
        }
    }

    /// Reads a base64 `.dockerconfigjson` value.
    pub(crate) fn decode(value: &str) -> Result<RawConfig, FormatError> {
        let bytes = B64.decode(value.trim()).map_err(|_| FormatError::Base64)?;
        let json = |e: serde_json::Error| FormatError::Json(e.to_string());
        let Ordered(fields) = serde_json::from_slice(&bytes).map_err(json)?;
        let auths = match fields.iter().find(|(k, _)| k == "auths") {
            Some((_, raw)) => serde_json::from_str::<Ordered>(raw.get()).map_err(json)?.0,
            None => Vec::new(),
        };
        Ok(RawConfig { fields, auths })
    }

    /// The `auths` entries, raw.
    pub(crate) fn auths(&self) -> &[(String, Box<RawValue>)] {
        &self.auths
    }

    /// Whether an entry serves `host` (keyed bare, or with a scheme or trailing slash).
    pub(crate) fn has_entry_for(&self, host: &str) -> bool {
        self.auths.iter().any(|(k, _)| same_registry(k, host))
    }

    /// Sets the entry keyed `host`, in place if it exists; `drop_variants` also removes
    /// entries keyed by another spelling of the host (taken over). Returns the entry's
    /// JSON as written.
    pub(crate) fn set_entry(
        &mut self,
        host: &str,
        entry: &AuthEntry,
        drop_variants: bool,
    ) -> String {
        // Serialising a struct of strings cannot fail.
        let json = serde_json::to_string(entry).unwrap_or_default();
        if drop_variants {
            self.auths
                .retain(|(k, _)| k == host || !same_registry(k, host));
        }
        let Ok(raw) = RawValue::from_string(json.clone()) else {
            return json;
        };
        match self.auths.iter_mut().find(|(k, _)| k == host) {
            Some((_, value)) => *value = raw,
            None => self.auths.push((host.to_string(), raw)),
        }
        json
    }

    /// Removes the entry keyed exactly `host`.
    pub(crate) fn remove_entry(&mut self, host: &str) {
        self.auths.retain(|(k, _)| k != host);
    }

    /// The base64 value, with `auths` where it was (or last when there was none).
    pub(crate) fn encode(&self) -> String {
        let object = |members: &mut dyn Iterator<Item = (&str, &str)>| {
            let body: Vec<String> = members
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k)))
                .collect();
            format!("{{{}}}", body.join(","))
        };
        let auths = object(&mut self.auths.iter().map(|(k, v)| (k.as_str(), v.get())));
        let mut top: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if k == "auths" {
                        auths.as_str()
                    } else {
                        v.get()
                    },
                )
            })
            .collect();
        if !self.fields.iter().any(|(k, _)| k == "auths") {
            top.push(("auths", &auths));
        }
        B64.encode(object(&mut top.into_iter()))
    }
}

/// Whether auths key `key` names registry `host`.
fn same_registry(key: &str, host: &str) -> bool {
    key == host || RegistryHost::parse(key).is_some_and(|h| h.host == host)
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

    /// An entry of someone else's (with a password) and a proxy with credentials.
    const N8_CONFIG: &str = r#"{"auths":{"ghcr.io":{"username":"bot","password":"n8-ghcr-password","auth":"Ym90Om44LWdoY3ItcGFzc3dvcmQ="}},"proxies":{"default":{"httpProxy":"http://u:n8-proxy-password@p"}}}"#;

    fn assert_no_password(shown: &str) {
        assert!(shown.contains("ghcr.io"), "{shown}");
        for secret in ["n8-ghcr-password", "Ym90Om44", "n8-proxy-password"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn n8_docker_config_debug_shows_no_password() {
        let cfg: DockerConfig = serde_json::from_str(N8_CONFIG).unwrap();
        assert_no_password(&format!("{cfg:?}"));
        assert_no_password(&format!("{cfg:#?}"));
    }

    #[test]
    fn n8_raw_config_debug_shows_no_password() {
        let raw = RawConfig::decode(&B64.encode(N8_CONFIG)).unwrap();
        assert_no_password(&format!("{raw:?}"));
        assert_no_password(&format!("{raw:#?}"));
    }

    #[test]
    fn checksum_changes_with_content() {
        assert_ne!(checksum("a"), checksum("b"));
        assert_eq!(checksum("a").len(), CHECKSUM_WORDS.len() + 16);
        let long = "x".repeat(8_000) + "yz";
        assert_ne!(checksum(&long), checksum(&(long.clone() + "z")));
        assert_ne!(checksum(&long), checksum(&long.replacen('x', "w", 1)));
    }

    /// Secrets written before the word-wise format carry FNV-1a 64 byte by byte; they
    /// stay intact (the published test vector of "a" pins that format).
    #[test]
    fn checksums_of_either_format_match_their_value_only() {
        assert!(checksum_matches("a", "af63dc4c8601ec8c"));
        assert!(!checksum_matches("b", "af63dc4c8601ec8c"));
        for value in ["", "a", "0123456789abcdef-and-some", &"QUJD".repeat(2_000)] {
            assert!(checksum_matches(value, &checksum(value)), "{value}");
            assert!(!checksum_matches(&format!("{value}!"), &checksum(value)));
        }
        let long = "0123456789abcdef";
        let first_format = format!("{:016x}", fnv_bytes(long.as_bytes()));
        assert!(checksum_matches(long, &first_format));
        assert!(
            !checksum_matches(long, &format!("{CHECKSUM_WORDS}{first_format}")),
            "formats do not mix"
        );
    }
}
