//! The `coordination.k8s.io/v1` Lease as leader election reads and writes it, and the
//! `metav1.MicroTime` format of its timestamps.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::types::ObjectMeta;

/// A `coordination.k8s.io/v1` Lease, as much of it as a whole-object PUT must carry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Lease {
    /// `coordination.k8s.io/v1` on writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `Lease` on writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Carries the `resourceVersion` that makes a PUT conditional.
    pub metadata: ObjectMeta,
    /// Who holds the lease, and since when.
    #[serde(default)]
    pub spec: LeaseSpec,
}

/// `spec` of a Lease. Fields we do not model (e.g. `strategy`, `preferredHolder` of
/// coordinated leader election) are kept in `extra` so our PUTs do not erase them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeaseSpec {
    /// The holder's identity; absent or empty when the lease is free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// How long candidates wait, after they last saw the record change, before taking
    /// over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    /// When the current holder took the lease. MicroTime: RFC 3339 with exactly six
    /// fractional digits, kept as the server's string: expiry never reads it (leader
    /// election measures expiry on its own monotonic clock, `runtime::leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    /// When the holder last renewed; a MicroTime, never read for expiry either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// How many times the lease changed hands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i32>,
    /// The fields we do not model, written back as they were read.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

// === impl LeaseSpec ===

impl LeaseSpec {
    /// The holder, `None` when the lease is free (absent or empty `holderIdentity`).
    pub(crate) fn holder(&self) -> Option<&str> {
        self.holder_identity.as_deref().filter(|h| !h.is_empty())
    }
}

/// A `metav1.MicroTime`: UTC, exactly six fractional digits, e.g.
/// `2026-11-26T21:00:00.123456Z`.
pub(crate) fn micro_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall() -> OffsetDateTime {
        time::macros::datetime!(2026-11-26 21:00:00.123456789 UTC)
    }

    #[test]
    fn micro_time_has_exactly_six_fractional_digits_in_utc() {
        assert_eq!(micro_time(wall()), "2026-11-26T21:00:00.123456Z");
        let offset = time::macros::datetime!(2026-11-26 23:00:00.5 +02:00);
        assert_eq!(micro_time(offset), "2026-11-26T21:00:00.500000Z");
    }
}
