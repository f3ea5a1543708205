//! Kubernetes Events about our CR. The CR is cluster-scoped, so its events live in
//! namespace `default`, as kubectl describe looks for them there.

use serde_json::json;
use time::OffsetDateTime;

use crate::k8s::kind::{ECR_PULL_SECRETS, EVENTS};
use crate::k8s::Client;
use crate::reconcile::decide::spec::EcrPullSecret;
use crate::reconcile::decide::status::EventType;
use crate::reconcile::vocab::format_time;

/// Where events about cluster-scoped objects are written.
pub(crate) const EVENT_NAMESPACE: &str = "default";

/// Writes core/v1 Events; failures are logged, never fatal.
#[derive(Clone, Debug)]
pub(crate) struct EventRecorder {
    client: Client,
    instance: String,
}

impl EventRecorder {
    pub(crate) fn new(client: Client, instance: impl Into<String>) -> Self {
        EventRecorder {
            client,
            instance: instance.into(),
        }
    }

    /// Records one event. `message` must already be free of secrets (ours always are:
    /// they come from typed errors that never echo credentials).
    pub(crate) async fn record(
        &self,
        cr: &EcrPullSecret,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let now = OffsetDateTime::now_utc();
        let cr_name = cr.metadata.name.as_deref().unwrap_or_default();
        // client-go names events <object>.<unix nanos in hex>.
        let name = format!("{cr_name}.{:x}", now.unix_timestamp_nanos());
        let ts = format_time(now);
        let body = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": EVENT_NAMESPACE},
            "involvedObject": {
                "apiVersion": ECR_PULL_SECRETS.api_version(),
                "kind": "ECRPullSecret",
                "name": cr_name,
                "uid": cr.metadata.uid,
                "resourceVersion": cr.metadata.resource_version,
            },
            "reason": reason,
            "message": truncate(message, 1024),
            "type": type_.as_str(),
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "source": {"component": "ecr-creds-refresher"},
            "reportingComponent": "ecr-creds-refresher",
            "reportingInstance": self.instance,
        });
        if let Err(error) = self
            .client
            .create::<_, serde_json::Value>(&EVENTS.collection(Some(EVENT_NAMESPACE)), &body)
            .await
        {
            tracing::warn!(%error, cr = cr_name, reason, "could not record an event");
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
