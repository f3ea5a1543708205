//! A Kubernetes Secret as the AWS side reads it. The Kubernetes side (`app::credentials`)
//! watches the Secret and publishes each version, parsed and checked, into a watch
//! channel; this side reads the latest, so a rotated key or a renewed certificate is used
//! from the next call on. Credentials Secrets (`credentials::secret`) and certificate
//! Secrets (`rolesanywhere::secret`) are both read through it.

use std::fmt;

use tokio::sync::watch;

use super::error::AwsError;

/// The latest version: `None` until the watch has read the Secret once, then what it
/// holds (`T`) or why it gives nothing (`E`, shown to users, so never a secret value).
pub(crate) type Published<T, E> = Option<Result<T, E>>;

/// The reading end; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct WatchedSecret<T, E> {
    rx: watch::Receiver<Published<T, E>>,
    /// `namespace/name`, for messages.
    origin: String,
}

// === impl WatchedSecret ===

impl<T, E> WatchedSecret<T, E> {
    /// A channel: the caller keeps the sender and publishes every version of the Secret.
    pub(crate) fn channel(origin: impl Into<String>) -> (watch::Sender<Published<T, E>>, Self) {
        let (tx, rx) = watch::channel(None);
        (
            tx,
            Self {
                rx,
                origin: origin.into(),
            },
        )
    }

    /// `namespace/name`.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Waits, at most `within`, until the watch has published a first version (present,
    /// missing or invalid), so a watch started a moment ago is not reported as missing.
    pub(crate) async fn first_version(&self, within: std::time::Duration) {
        let mut rx = self.rx.clone();
        let _ = tokio::time::timeout(within, rx.wait_for(Option::is_some)).await;
    }

    /// `read` applied to the latest version (the channel stays borrowed meanwhile: keep
    /// it short).
    pub(crate) fn with_latest<R>(&self, read: impl FnOnce(Option<&Result<T, E>>) -> R) -> R {
        read(self.rx.borrow().as_ref())
    }

    /// The error a reader gives when the Secret holds nothing usable: `why` names the
    /// Secret's problem, never a value.
    pub(crate) fn unusable(&self, why: impl fmt::Display) -> AwsError {
        AwsError::credentials("Kubernetes Secret", format!("{}: {why}", self.origin))
    }

    /// The error before the first version.
    pub(crate) fn not_read_yet(&self) -> AwsError {
        AwsError::credentials(
            "Kubernetes Secret",
            format!("{} has not been read yet", self.origin),
        )
    }
}
