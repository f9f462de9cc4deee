//! Istio networking resources (`networking.istio.io` v1, with the v1beta1 and v1alpha3
//! aliases) and security resources (`security.istio.io` v1 and v1beta1), field names as in
//! Istio's API. Fields shoal does not act on yet are reported by the parser rather than
//! silently ignored.

mod destination_rule;
mod gateway;
mod policy_target;
mod proxy_config;
mod request_authentication;
mod security;
mod service_entry;
mod sidecar;
mod virtual_service;

pub use destination_rule::*;
pub use gateway::*;
pub use policy_target::*;
pub use proxy_config::*;
pub use request_authentication::*;
pub use security::*;
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;

use serde::{Deserialize, Serialize};

use crate::meta::{Labels, ObjectMeta};

/// A `metadata` + `spec` envelope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource<S> {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: S,
}

/// `WorkloadSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: Labels,
}

/// `PortSelector`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSelector {
    #[serde(default)]
    pub number: u32,
}

/// `StringMatch`: exactly one of exact, prefix or regex (RE2 syntax).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

/// The one match a `StringMatch` expresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatchKind<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Regex(&'a str),
}

impl StringMatch {
    /// `None` when no or several alternatives are set (a validation error).
    pub fn kind(&self) -> Option<StringMatchKind<'_>> {
        match (&self.exact, &self.prefix, &self.regex) {
            (Some(e), None, None) => Some(StringMatchKind::Exact(e)),
            (None, Some(p), None) => Some(StringMatchKind::Prefix(p)),
            (None, None, Some(r)) => Some(StringMatchKind::Regex(r)),
            _ => None,
        }
    }
}
