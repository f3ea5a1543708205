//! Who may call the fake AWS: the access keys it knows, and the answer AWS gives when a
//! signature is refused, in each service's protocol (ECR speaks JSON 1.1, STS the query
//! protocol's XML).

use std::collections::HashMap;
use std::sync::Mutex;

use http::StatusCode;
use time::OffsetDateTime;

use super::answers::{json_error, lock, xml_error, Answer};
use super::sigv4::{Key, Refusal};

/// The access keys the emulator accepts: long-term ones given to it (as IAM would have
/// issued them) and the temporary ones it issued itself (STS, IMDS, container endpoint).
#[derive(Default)]
pub(crate) struct Keys {
    table: Mutex<HashMap<String, Key>>,
}

// === impl Keys ===

impl Keys {
    /// Learns a long-term key. An id already known keeps its secret (IAM never changes a
    /// key's secret): false then, and a request signed with the other secret is refused.
    pub(crate) fn add(
        &self,
        access_key_id: &str,
        secret: &str,
        session_token: Option<&str>,
    ) -> bool {
        let mut table = lock(&self.table);
        if table.contains_key(access_key_id) {
            return false;
        }
        table.insert(
            access_key_id.to_string(),
            Key {
                secret: secret.to_string(),
                session_token: session_token.map(str::to_string),
                expires: None,
            },
        );
        true
    }

    /// Records temporary credentials the emulator handed out.
    pub(crate) fn issued(
        &self,
        access_key_id: &str,
        secret: &str,
        session_token: &str,
        expires: OffsetDateTime,
    ) {
        lock(&self.table).insert(
            access_key_id.to_string(),
            Key {
                secret: secret.to_string(),
                session_token: Some(session_token.to_string()),
                expires: Some(expires),
            },
        );
    }

    pub(crate) fn get(&self, access_key_id: &str) -> Option<Key> {
        lock(&self.table).get(access_key_id).cloned()
    }
}

/// How a service reports errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `{"__type": ...}` with `x-amzn-ErrorType` (ECR, ECR Public).
    Json,
    /// `<ErrorResponse><Error><Code>` (STS).
    Query,
}

/// AWS's answer to a refused signature: the codes each protocol uses for the same cause.
pub(crate) fn refused(refusal: &Refusal, protocol: Protocol) -> Answer {
    const INVALID_TOKEN: &str = "The security token included in the request is invalid.";
    let (status, json_code, query_code, message) = match refusal {
        Refusal::Missing => (
            // ECR answers 400 here, STS 403.
            if protocol == Protocol::Json {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::FORBIDDEN
            },
            "MissingAuthenticationTokenException",
            "MissingAuthenticationToken",
            "Missing Authentication Token".to_string(),
        ),
        Refusal::Incomplete(why) => (
            StatusCode::BAD_REQUEST,
            "IncompleteSignatureException",
            "IncompleteSignature",
            why.clone(),
        ),
        Refusal::UnknownKey | Refusal::InvalidToken => (
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            INVALID_TOKEN.to_string(),
        ),
        Refusal::ExpiredToken => (
            StatusCode::FORBIDDEN,
            "ExpiredTokenException",
            "ExpiredToken",
            "The security token included in the request is expired".to_string(),
        ),
        Refusal::Expired { request_time } => (
            StatusCode::BAD_REQUEST,
            "RequestExpired",
            "RequestExpired",
            format!(
                "Request has expired: {request_time} is more than 5 minutes from the server's time"
            ),
        ),
        Refusal::Mismatch(why) => (
            StatusCode::FORBIDDEN,
            // JSON services call it InvalidSignatureException; query services
            // SignatureDoesNotMatch.
            "InvalidSignatureException",
            "SignatureDoesNotMatch",
            why.clone(),
        ),
    };
    match protocol {
        Protocol::Json => json_error(status, json_code, &message),
        Protocol::Query => xml_error(status, query_code, &message),
    }
}
