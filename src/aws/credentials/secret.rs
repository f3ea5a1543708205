//! Static keys kept in a Kubernetes Secret. The Kubernetes side (watching the Secret) is
//! wired by the caller, which pushes each parsed version into a watch channel; this side
//! only reads the latest value, so a rotated key is used from the next call on.

use crate::aws::error::AwsError;
use crate::aws::watched_secret::{Published, WatchedSecret};
use aws_credential_types::Credentials;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::collections::BTreeMap;

pub(crate) const ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub(crate) const SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub(crate) const SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";

/// The latest state of the credentials Secret: None until first read, `Err(reason)` when
/// it is missing or invalid (the reason is shown to the user, so it never holds a value).
pub(crate) type SecretState = Published<Credentials, String>;

/// The reading end; cheap to clone.
pub(crate) type SecretCredentials = WatchedSecret<Credentials, String>;

// === impl SecretCredentials ===

impl SecretCredentials {
    /// The current credentials.
    pub(crate) fn current(&self) -> Result<Credentials, AwsError> {
        self.with_latest(|latest| match latest {
            Some(Ok(c)) => Ok(c.clone()),
            Some(Err(reason)) => Err(self.unusable(reason)),
            None => Err(self.not_read_yet()),
        })
    }

    /// The access key id in use, to notice a rotation.
    pub(crate) fn access_key_id(&self) -> Option<String> {
        self.with_latest(|latest| match latest {
            Some(Ok(c)) => Some(c.access_key_id().to_string()),
            _ => None,
        })
    }
}

/// Parses a Secret's `data` map (base64 values, as the API returns them). Errors name the
/// key and the problem, never the value.
pub(crate) fn credentials_from_secret_data(
    data: &BTreeMap<String, String>,
) -> Result<Credentials, String> {
    let read = |key: &str, required: bool| -> Result<Option<String>, String> {
        let Some(encoded) = data.get(key) else {
            return if required {
                Err(format!("key {key} is missing"))
            } else {
                Ok(None)
            };
        };
        let raw = STANDARD
            .decode(encoded.trim())
            .map_err(|_| format!("key {key} is not valid base64"))?;
        let text = String::from_utf8(raw).map_err(|_| format!("key {key} is not UTF-8 text"))?;
        let text = text.trim();
        if text.is_empty() {
            return if required {
                Err(format!("key {key} is empty"))
            } else {
                Ok(None)
            };
        }
        if text.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("key {key} contains spaces or control characters"));
        }
        Ok(Some(text.to_string()))
    };
    let access_key_id = read(ACCESS_KEY_ID, true)?.unwrap_or_default();
    let secret_access_key = read(SECRET_ACCESS_KEY, true)?.unwrap_or_default();
    let session_token = read(SESSION_TOKEN, false)?;
    Ok(Credentials::new(
        access_key_id,
        secret_access_key,
        session_token,
        None,
        "kubernetes-secret",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), STANDARD.encode(v)))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn first_version_waits_for_the_watch_but_not_forever() {
        let (tx, read) = SecretCredentials::channel("ns/keys");
        let waiting = {
            let read = read.clone();
            tokio::spawn(async move { read.first_version(std::time::Duration::from_secs(5)).await })
        };
        tx.send_replace(Some(Err("key AWS_SECRET_ACCESS_KEY is missing".into())));
        waiting.await.unwrap();
        let err = read.current().unwrap_err().to_string();
        assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");

        let (_tx, never) = SecretCredentials::channel("ns/other");
        let started = tokio::time::Instant::now();
        never.first_version(std::time::Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(5));
        assert!(never.current().is_err());
    }

    #[test]
    fn keys_decode_into_credentials() {
        let c = credentials_from_secret_data(&data(&[
            (ACCESS_KEY_ID, "AKIAEXAMPLE"),
            (SECRET_ACCESS_KEY, "secret/key+\n"),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id(), "AKIAEXAMPLE");
        assert_eq!(c.secret_access_key(), "secret/key+");
        assert_eq!(c.session_token(), None);
        let c = credentials_from_secret_data(&data(&[
            (ACCESS_KEY_ID, "ASIA"),
            (SECRET_ACCESS_KEY, "s"),
            (SESSION_TOKEN, "tok"),
        ]))
        .unwrap();
        assert_eq!(c.session_token(), Some("tok"));
    }

    #[test]
    fn missing_empty_and_invalid_keys_are_named_without_values() {
        let err =
            credentials_from_secret_data(&data(&[(SECRET_ACCESS_KEY, "topsecret")])).unwrap_err();
        assert_eq!(err, "key AWS_ACCESS_KEY_ID is missing");
        let err = credentials_from_secret_data(&data(&[
            (ACCESS_KEY_ID, "AKIA"),
            (SECRET_ACCESS_KEY, " "),
        ]))
        .unwrap_err();
        assert_eq!(err, "key AWS_SECRET_ACCESS_KEY is empty");
        let mut d = data(&[(ACCESS_KEY_ID, "AKIA")]);
        d.insert(SECRET_ACCESS_KEY.into(), "%%%topsecret".into());
        let err = credentials_from_secret_data(&d).unwrap_err();
        assert_eq!(err, "key AWS_SECRET_ACCESS_KEY is not valid base64");
        let err = credentials_from_secret_data(&data(&[
            (ACCESS_KEY_ID, "AKIA"),
            (SECRET_ACCESS_KEY, "top secret"),
        ]))
        .unwrap_err();
        assert!(!err.contains("top secret"), "{err}");
    }

    #[test]
    fn the_reader_sees_each_published_version() {
        let (tx, creds) = SecretCredentials::channel("ops/aws-keys");
        let err = creds.current().unwrap_err().to_string();
        assert!(err.contains("ops/aws-keys has not been read yet"), "{err}");
        tx.send_replace(Some(Err("key AWS_ACCESS_KEY_ID is missing".into())));
        assert!(creds
            .current()
            .unwrap_err()
            .to_string()
            .contains("AWS_ACCESS_KEY_ID is missing"));
        tx.send_replace(Some(Ok(Credentials::new("AKIA1", "s", None, None, "t"))));
        assert_eq!(creds.current().unwrap().access_key_id(), "AKIA1");
        tx.send_replace(Some(Ok(Credentials::new("AKIA2", "s", None, None, "t"))));
        assert_eq!(creds.access_key_id().as_deref(), Some("AKIA2"));
    }

    #[test]
    fn debug_never_shows_the_secret_key() {
        let (tx, creds) = SecretCredentials::channel("ops/aws-keys");
        tx.send_replace(Some(Ok(Credentials::new(
            "AKIA1",
            "very-secret-key",
            Some("sess-tok".into()),
            None,
            "t",
        ))));
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("very-secret-key") && !shown.contains("sess-tok"),
            "{shown}"
        );
    }
}
