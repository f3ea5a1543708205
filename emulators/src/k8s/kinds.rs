//! The table of resource kinds the emulator serves. Custom resources are rows like any other:
//! adding a CRD to the emulator is adding a row here, or registering its YAML.

use std::sync::Arc;

use serde_json::Value;

/// One served resource kind, with the server-side behaviours that differ between kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSpec {
    /// API group; "" for the core group (served under /api/v1).
    pub group: &'static str,
    /// API version, e.g. "v1".
    pub version: &'static str,
    /// The URL segment and RBAC resource name, e.g. "secrets".
    pub plural: &'static str,
    /// The object's `kind`, e.g. "Secret".
    pub kind: &'static str,
    /// Lives in a namespace (false: cluster-scoped).
    pub namespaced: bool,
    /// A `/status` subresource: writes to the main resource ignore `status`, writes to
    /// `/status` change only `status`, and `metadata.generation` follows spec only.
    pub has_status: bool,
    /// Whether the server keeps `metadata.generation` (custom resources do; Secrets,
    /// ServiceAccounts and the like do not).
    pub tracks_generation: bool,
    /// Custom resources: strategic merge patch is refused with 415, list items carry
    /// kind/apiVersion, and DELETE answers with the deleted object.
    pub custom: bool,
    /// Strategic-merge list keys: (JSON path of a list, merge key). Lists not named here
    /// are atomic (replaced whole), as `+listType=atomic` lists are on the real server.
    pub merge_lists: &'static [(&'static str, &'static str)],
    /// kubectl short names served in discovery (`ns`, `sa`, `ecrps`).
    pub short_names: &'static [&'static str],
}

// === impl KindSpec ===

impl KindSpec {
    /// "v1" or "group/version", the apiVersion of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// "secrets" or "ecrpullsecrets.ecr.creds.dev": the name used in error messages and
    /// by the direct (in-process) API.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The collection path, e.g. `/api/v1/namespaces/x/secrets`.
    pub fn collection_path(&self, ns: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match ns {
            Some(ns) if self.namespaced => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            _ => format!("{prefix}/{}", self.plural),
        }
    }
}

pub(crate) const NAMESPACES: KindSpec = KindSpec {
    group: "",
    version: "v1",
    plural: "namespaces",
    kind: "Namespace",
    namespaced: false,
    has_status: true,
    tracks_generation: false,
    custom: false,
    merge_lists: &[],
    short_names: &["ns"],
};

pub(crate) const SECRETS: KindSpec = KindSpec {
    group: "",
    version: "v1",
    plural: "secrets",
    kind: "Secret",
    namespaced: true,
    has_status: false,
    tracks_generation: false,
    custom: false,
    merge_lists: &[],
    short_names: &[],
};

/// `secrets` merges by name; `imagePullSecrets` has no patch strategy in k8s.io/api
/// (`+listType=atomic`), so strategic merge replaces it whole.
pub(crate) const SERVICE_ACCOUNTS: KindSpec = KindSpec {
    group: "",
    version: "v1",
    plural: "serviceaccounts",
    kind: "ServiceAccount",
    namespaced: true,
    has_status: false,
    tracks_generation: false,
    custom: false,
    merge_lists: &[("secrets", "name")],
    short_names: &["sa"],
};

/// The operator reads one, its role grants, in its own namespace.
pub(crate) const CONFIG_MAPS: KindSpec = KindSpec {
    group: "",
    version: "v1",
    plural: "configmaps",
    kind: "ConfigMap",
    namespaced: true,
    has_status: false,
    tracks_generation: false,
    custom: false,
    merge_lists: &[],
    short_names: &["cm"],
};

pub(crate) const EVENTS: KindSpec = KindSpec {
    group: "",
    version: "v1",
    plural: "events",
    kind: "Event",
    namespaced: true,
    has_status: false,
    tracks_generation: false,
    custom: false,
    merge_lists: &[],
    short_names: &["ev"],
};

/// The same Event kind, served again by events.k8s.io.
pub(crate) const EVENTS_V1: KindSpec = KindSpec {
    group: "events.k8s.io",
    ..EVENTS
};

pub(crate) const LEASES: KindSpec = KindSpec {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    kind: "Lease",
    namespaced: true,
    has_status: false,
    tracks_generation: false,
    custom: false,
    merge_lists: &[],
    short_names: &[],
};

pub(crate) const ECR_PULL_SECRETS: KindSpec = KindSpec {
    group: "ecr.creds.dev",
    version: "v1alpha1",
    plural: "ecrpullsecrets",
    kind: "ECRPullSecret",
    namespaced: false,
    has_status: true,
    tracks_generation: true,
    custom: true,
    merge_lists: &[],
    short_names: &["ecrps"],
};

/// Every kind the emulator serves by default.
pub const DEFAULT_KINDS: &[KindSpec] = &[
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
    CONFIG_MAPS,
    EVENTS,
    EVENTS_V1,
    LEASES,
    ECR_PULL_SECRETS,
];

/// The kinds served by one emulator, looked up by URL parts or by name, with the
/// structural schema of those registered from a CRD.
#[derive(Debug, Clone)]
pub(crate) struct KindTable {
    kinds: Vec<KindSpec>,
    schemas: Vec<Option<Arc<Value>>>,
}

/// Why a CRD could not be registered.
#[derive(Debug)]
pub(crate) enum CrdError {
    Parse(serde_yaml::Error),
    Shape(String),
}

impl std::fmt::Display for CrdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrdError::Parse(e) => write!(f, "parsing the CRD YAML: {e}"),
            CrdError::Shape(m) => write!(f, "reading the CRD: {m}"),
        }
    }
}

impl std::error::Error for CrdError {}

fn leak(s: &str) -> &'static str {
    // A handful of CRDs per test process: leaking their names keeps KindSpec `Copy`.
    Box::leak(s.to_string().into_boxed_str())
}

// === impl KindTable ===

impl KindTable {
    pub(crate) fn new(kinds: Vec<KindSpec>) -> Self {
        let schemas = vec![None; kinds.len()];
        KindTable { kinds, schemas }
    }

    /// The structural schema of a kind registered from a CRD.
    pub(crate) fn schema(&self, idx: usize) -> Option<&Value> {
        self.schemas.get(idx).and_then(|s| s.as_deref())
    }

    /// Registers every served version of every CustomResourceDefinition in `yaml`
    /// (multi-document allowed): an existing row gets the schema and the CRD's scope and
    /// status subresource; an unknown kind becomes a new row.
    pub(crate) fn register_crd_yaml(&mut self, yaml: &str) -> Result<(), CrdError> {
        use serde::Deserialize;
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let crd = Value::deserialize(doc).map_err(CrdError::Parse)?;
            if crd.is_null()
                || crd.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition")
            {
                continue;
            }
            let field = |p: &str| {
                crd.pointer(p)
                    .and_then(Value::as_str)
                    .ok_or_else(|| CrdError::Shape(format!("missing {p}")))
            };
            let group = field("/spec/group")?;
            let plural = field("/spec/names/plural")?;
            let kind = field("/spec/names/kind")?;
            let namespaced = field("/spec/scope")? == "Namespaced";
            let versions = crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .ok_or_else(|| CrdError::Shape("missing /spec/versions".into()))?;
            for v in versions {
                if v.get("served") == Some(&Value::Bool(false)) {
                    continue;
                }
                let version = v
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| CrdError::Shape("a version without a name".into()))?;
                let has_status = v.pointer("/subresources/status").is_some();
                let schema = v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new);
                let idx = match self.by_url(group, version, plural) {
                    Some(i) => i,
                    None => {
                        self.kinds.push(KindSpec {
                            group: leak(group),
                            version: leak(version),
                            plural: leak(plural),
                            kind: leak(kind),
                            namespaced,
                            has_status,
                            tracks_generation: true,
                            custom: true,
                            merge_lists: &[],
                            short_names: &[],
                        });
                        self.schemas.push(None);
                        self.kinds.len() - 1
                    }
                };
                let shorts: Vec<&'static str> = crd
                    .pointer("/spec/names/shortNames")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(leak)
                    .collect();
                if !shorts.is_empty() {
                    self.kinds[idx].short_names = Box::leak(shorts.into_boxed_slice());
                }
                self.kinds[idx].namespaced = namespaced;
                self.kinds[idx].has_status = has_status;
                self.schemas[idx] = schema;
            }
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.kinds.len()
    }

    pub(crate) fn get(&self, idx: usize) -> &KindSpec {
        &self.kinds[idx]
    }

    pub(crate) fn by_url(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.kinds
            .iter()
            .position(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// By "plural" (core group first) or "plural.group".
    pub(crate) fn by_name(&self, name: &str) -> Option<usize> {
        self.kinds
            .iter()
            .position(|k| k.group.is_empty() && k.plural == name)
            .or_else(|| self.kinds.iter().position(|k| k.qualified() == name))
            .or_else(|| self.kinds.iter().position(|k| k.plural == name))
    }

    pub(crate) fn namespaces(&self) -> Option<usize> {
        self.by_url("", "v1", "namespaces")
    }

    pub(crate) fn service_accounts(&self) -> Option<usize> {
        self.by_url("", "v1", "serviceaccounts")
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &KindSpec)> {
        self.kinds.iter().enumerate()
    }
}
