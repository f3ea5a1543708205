//! Objects, pages and errors shared by the machine's and the driver's tests.

use std::fmt;

use crate::k8s::types::{ApiStatus, ListMeta, ObjectList, ObjectMeta, Resource};

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Obj {
    pub(super) metadata: ObjectMeta,
    pub(super) v: u32,
}

impl Resource for Obj {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

pub(super) fn obj(name: &str, rv: &str, v: u32) -> Obj {
    Obj {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        },
        v,
    }
}

/// The names of listed keys, in order.
pub(super) fn key_names(keys: &[crate::runtime::store::ObjectKey]) -> Vec<&str> {
    keys.iter().map(|k| &*k.name).collect()
}

pub(super) fn names(objs: &[Obj]) -> Vec<&str> {
    objs.iter()
        .map(|o| o.metadata.name.as_deref().unwrap())
        .collect()
}

pub(super) fn page(items: Vec<Obj>, rv: Option<&str>, cont: Option<&str>) -> ObjectList<Obj> {
    ObjectList {
        metadata: ListMeta {
            resource_version: rv.map(String::from),
            continue_token: cont.map(String::from),
        },
        items,
    }
}

#[derive(Debug, PartialEq)]
pub(super) struct FakeError(pub(super) u16);

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fake HTTP {}", self.0)
    }
}

impl std::error::Error for FakeError {}

pub(super) fn status(code: u16, reason: &str) -> ApiStatus {
    ApiStatus {
        status: "Failure".into(),
        message: "m".into(),
        reason: reason.into(),
        code,
    }
}
