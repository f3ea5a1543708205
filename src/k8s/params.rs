//! What a request says besides its path: list and watch parameters, patch flavours,
//! delete preconditions, and the query string they become.

use serde::Serialize;

/// The field manager recorded on every write, so `managedFields` names us.
pub(crate) const FIELD_MANAGER: &str = "ecr-creds-refresher";

/// Query parameters of a list.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u32>,
    pub continue_token: Option<String>,
}

/// Query parameters of a watch.
#[derive(Clone, Debug, Default)]
pub(crate) struct WatchParams {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Opaque; where the watch starts.
    pub resource_version: String,
    /// The server ends the watch after this long; the client's idle timeout is a little
    /// longer.
    pub timeout_seconds: u32,
    pub bookmarks: bool,
}

/// `DeleteOptions.preconditions`: what the object must still be for a delete to apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Preconditions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// The patch flavours the API server takes, over any serialisable body (a typed body
/// serialises straight to bytes; a `serde_json::Value` first builds a map per object).
#[derive(Debug)]
pub(crate) enum Patch<'a, B: ?Sized = serde_json::Value> {
    /// RFC 7386 JSON merge patch.
    Merge(&'a B),
    /// RFC 6902 JSON patch; a `test` op makes it conditional.
    Json(&'a B),
}

impl<B: ?Sized> Clone for Patch<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: ?Sized> Copy for Patch<'_, B> {}

impl<B: ?Sized> Patch<'_, B> {
    pub(crate) fn content_type(&self) -> &'static str {
        match self {
            Patch::Merge(_) => "application/merge-patch+json",
            Patch::Json(_) => "application/json-patch+json",
        }
    }

    pub(crate) fn body(&self) -> &B {
        match self {
            Patch::Merge(v) | Patch::Json(v) => v,
        }
    }
}

/// Adds `fieldManager` so the server attributes our writes to us.
pub(crate) fn managed(path: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}fieldManager={FIELD_MANAGER}")
}

/// A query string builder with percent-encoding of values.
#[derive(Default)]
pub(crate) struct Query {
    parts: Vec<String>,
}

impl Query {
    pub(crate) fn opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.parts.push(format!("{key}={}", encode_component(v)));
        }
    }

    pub(crate) fn path(&self, base: &str) -> String {
        if self.parts.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", self.parts.join("&"))
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_percent_encoded() {
        assert_eq!(
            encode_component("app in (a,b),!x"),
            "app%20in%20%28a%2Cb%29%2C%21x"
        );
        let mut q = Query::default();
        q.opt("labelSelector", Some("a=b"));
        q.opt("limit", None);
        assert_eq!(
            q.path("/api/v1/secrets"),
            "/api/v1/secrets?labelSelector=a%3Db"
        );
    }
}
