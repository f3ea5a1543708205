//! One ECR (or ECR Public) GetAuthorizationToken with a provider's credentials,
//! reloading them once when AWS says they expired early.

use super::credentials::CredentialProvider;
use super::ecr::{AuthorizationToken, EcrClient};
use super::error::{AwsError, ErrorKind};
use aws_credential_types::Credentials;
use std::sync::atomic::{AtomicU64, Ordering};

/// One GetAuthorizationToken with `provider`'s credentials; when AWS says the session
/// credentials expired (revoked, or expired early), reload them once and try again.
/// `calls` counts the ECR calls made.
pub(crate) async fn fetch_token(
    ecr: &EcrClient,
    provider: &CredentialProvider,
    region: &str,
    public: bool,
    calls: &AtomicU64,
) -> Result<AuthorizationToken, AwsError> {
    let call = |credentials: Credentials| async move {
        calls.fetch_add(1, Ordering::Relaxed);
        if public {
            ecr.public_authorization_token(&credentials).await
        } else {
            ecr.authorization_token(&credentials, region).await
        }
    };
    let credentials = provider.credentials().await?;
    match call(credentials).await {
        Err(e) if e.kind() == Some(ErrorKind::ExpiredToken) => {
            provider.invalidate().await;
            call(provider.credentials().await?).await
        }
        other => other,
    }
}
