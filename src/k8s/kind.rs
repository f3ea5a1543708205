//! Where each resource lives on the API server: group, version, plural and scope.

use super::params::encode_component;

/// A resource type's address. Paths are built here and nowhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kind {
    /// API group; empty for the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

pub(crate) const NAMESPACES: Kind = Kind::core("namespaces", false);
pub(crate) const SECRETS: Kind = Kind::core("secrets", true);
pub(crate) const SERVICE_ACCOUNTS: Kind = Kind::core("serviceaccounts", true);
pub(crate) const CONFIG_MAPS: Kind = Kind::core("configmaps", true);
pub(crate) const EVENTS: Kind = Kind::core("events", true);
pub(crate) const LEASES: Kind = Kind {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    namespaced: true,
};
/// The operator's own custom resource (see crd.yaml).
pub(crate) const ECR_PULL_SECRETS: Kind = Kind {
    group: crate::k8s::CRD_GROUP,
    version: crate::k8s::CRD_VERSION,
    plural: "ecrpullsecrets",
    namespaced: false,
};

// === impl Kind ===

impl Kind {
    const fn core(plural: &'static str, namespaced: bool) -> Self {
        Kind {
            group: "",
            version: "v1",
            plural,
            namespaced,
        }
    }

    /// `apiVersion` as written in objects: `v1` or `group/version`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection path. `ns` is ignored for cluster-scoped kinds; `None` on a
    /// namespaced kind addresses every namespace (list and watch only). Names are
    /// percent-encoded: they come from CRs and API answers, and a `/` or `..` in one must
    /// never address another object.
    pub(crate) fn collection(&self, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.namespaced => format!(
                "{}/namespaces/{}/{}",
                self.prefix(),
                encode_component(ns),
                self.plural
            ),
            _ => format!("{}/{}", self.prefix(), self.plural),
        }
    }

    /// One object's path.
    pub(crate) fn object(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}/{}", self.collection(ns), encode_component(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_group_paths() {
        assert_eq!(
            SECRETS.object(Some("a"), "s"),
            "/api/v1/namespaces/a/secrets/s"
        );
        assert_eq!(SECRETS.collection(None), "/api/v1/secrets");
        assert_eq!(
            NAMESPACES.object(Some("ignored"), "a"),
            "/api/v1/namespaces/a"
        );
        assert_eq!(
            LEASES.object(Some("op"), "l"),
            "/apis/coordination.k8s.io/v1/namespaces/op/leases/l"
        );
        assert_eq!(
            ECR_PULL_SECRETS.object(None, "x"),
            "/apis/ecr.creds.dev/v1alpha1/ecrpullsecrets/x"
        );
        assert_eq!(LEASES.api_version(), "coordination.k8s.io/v1");
        // A name from a CR or an answer cannot climb out of its place in the path.
        assert_eq!(
            SECRETS.object(Some("../kube-system"), "a/b"),
            "/api/v1/namespaces/..%2Fkube-system/secrets/a%2Fb"
        );
        assert_eq!(SECRETS.api_version(), "v1");
    }
}
