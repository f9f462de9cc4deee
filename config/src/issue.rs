//! Validation and parse findings, each naming where it comes from.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::meta::ObjectKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// Where a document came from: a source id (a file path for the file source,
/// `kubernetes:KIND/NAMESPACE/NAME` for an object read from the API server) and the
/// document's position in it (`line` 0: the source is one object, with no position).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    pub source: Arc<str>,
    /// 1-based document index in the file.
    pub doc: usize,
    /// 1-based line where the document starts; 0 for a source that is one object.
    pub line: usize,
    /// 0-based item index when the document is a `List`.
    pub item: Option<usize>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return f.write_str(&self.source);
        }
        write!(f, "{}:{} (document {}", self.source, self.line, self.doc)?;
        if let Some(i) = self.item {
            write!(f, ", item {i}")?;
        }
        f.write_str(")")
    }
}

/// One finding: an error rejects the object, a warning does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub severity: Severity,
    pub origin: Option<Origin>,
    pub object: Option<ObjectKey>,
    /// Path of the offending field (`spec.http[0].route[1].weight`), empty for the whole doc.
    pub field: String,
    pub message: String,
    /// The Istio analysis message this finding is, when it is one of Istio's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<IstioCode>,
}

/// An Istio analysis message type (`istioctl analyze`, `status.validationMessages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IstioCode {
    /// `IST0101`.
    pub code: &'static str,
    /// `ReferencedResourceNotFound`.
    pub name: &'static str,
    /// The level Istio gives messages of this type: `ERROR`, `WARNING` or `INFO`.
    pub level: &'static str,
}

impl IstioCode {
    /// A resource being referenced does not exist.
    pub const REFERENCED_RESOURCE_NOT_FOUND: IstioCode = IstioCode {
        code: "IST0101",
        name: "ReferencedResourceNotFound",
        level: "ERROR",
    };
    /// More than one Sidecar of a namespace has no workload selector.
    pub const MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS: IstioCode = IstioCode {
        code: "IST0111",
        name: "MultipleSidecarsWithoutWorkloadSelectors",
        level: "ERROR",
    };

    /// Where Istio documents the message type.
    pub fn documentation_url(&self) -> String {
        format!(
            "https://istio.io/latest/docs/reference/config/analysis/{}/",
            self.code.to_ascii_lowercase()
        )
    }
}

impl Issue {
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            origin: None,
            object: None,
            field: field.into(),
            message: message.into(),
            code: None,
        }
    }

    /// The same finding, as Istio's analysis message `code`.
    pub fn istio(mut self, code: IstioCode) -> Self {
        self.code = Some(code);
        self
    }

    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(field, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn at(mut self, origin: Option<&Origin>, object: Option<&ObjectKey>) -> Self {
        if self.origin.is_none() {
            self.origin = origin.cloned();
        }
        if self.object.is_none() {
            self.object = object.cloned();
        }
        self
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: ")?;
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        if let Some(k) = &self.object {
            write!(f, "{k}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}
