//! The form a client asked to see an answer's object in (`Accept`): whole, or as
//! `PartialObjectMetadata` (`application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`),
//! as the real server transforms the answers of gets and writes alike. A client writing a
//! 9 KB Secret need not read it back.

use http::{header, HeaderMap};
use serde_json::{json, Value};

/// How one request's answer object is shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AnswerForm {
    Whole,
    /// `PartialObjectMetadata` of this `meta.k8s.io` version.
    Metadata(&'static str),
}

// === impl AnswerForm ===

impl AnswerForm {
    /// The first media range of `Accept` this emulator serves. Like the real server it
    /// walks the ranges in order and skips what it cannot serve (`as=Table`, protobuf);
    /// unlike it, nothing acceptable means the whole object, not 406.
    pub(super) fn from_headers(headers: &HeaderMap) -> AnswerForm {
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        for range in accept {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            if !matches!(media, "application/json" | "application/*" | "*/*") {
                continue;
            }
            let (mut as_, mut group, mut version) = (None, None, None);
            for param in parts {
                match param.split_once('=') {
                    Some(("as", v)) => as_ = Some(v),
                    Some(("g", v)) => group = Some(v),
                    Some(("v", v)) => version = Some(v),
                    _ => {}
                }
            }
            match (as_, group, version) {
                (None, _, _) => return AnswerForm::Whole,
                (Some("PartialObjectMetadata"), Some("meta.k8s.io"), Some("v1")) => {
                    return AnswerForm::Metadata("v1")
                }
                (Some("PartialObjectMetadata"), Some("meta.k8s.io"), Some("v1beta1")) => {
                    return AnswerForm::Metadata("v1beta1")
                }
                _ => {}
            }
        }
        AnswerForm::Whole
    }

    /// `object` in this form. A `Status` (an error, a delete's answer) is never transformed.
    pub(super) fn shape(self, object: Value) -> Value {
        match self {
            AnswerForm::Whole => object,
            AnswerForm::Metadata(_) if object["kind"] == "Status" => object,
            AnswerForm::Metadata(version) => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": format!("meta.k8s.io/{version}"),
                "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AnswerForm;
    use http::{header, HeaderMap, HeaderValue};
    use serde_json::json;

    fn form(accept: &str) -> AnswerForm {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        AnswerForm::from_headers(&h)
    }

    #[test]
    fn the_first_servable_range_decides() {
        let metadata = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(form(metadata), AnswerForm::Metadata("v1"));
        assert_eq!(
            form(&format!("{metadata},application/json")),
            AnswerForm::Metadata("v1")
        );
        assert_eq!(
            form(&format!("application/json, {metadata}")),
            AnswerForm::Whole
        );
        // kubectl's table request falls back to JSON.
        assert_eq!(
            form("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
            AnswerForm::Whole
        );
        // Another group is not the metadata form.
        assert_eq!(
            form("application/json;as=PartialObjectMetadata;g=example.com;v=v1"),
            AnswerForm::Whole
        );
        assert_eq!(
            AnswerForm::from_headers(&HeaderMap::new()),
            AnswerForm::Whole
        );
    }

    #[test]
    fn metadata_form_keeps_only_the_metadata_and_never_touches_a_status() {
        let secret = json!({"kind": "Secret", "apiVersion": "v1",
            "metadata": {"name": "s", "resourceVersion": "7"}, "data": {"k": "dg=="}});
        let shaped = AnswerForm::Metadata("v1").shape(secret);
        assert_eq!(
            shaped,
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"name": "s", "resourceVersion": "7"}})
        );
        let status = json!({"kind": "Status", "status": "Failure", "code": 409});
        assert_eq!(AnswerForm::Metadata("v1").shape(status.clone()), status);
    }
}
