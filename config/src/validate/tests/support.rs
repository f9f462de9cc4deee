//! Shared helpers of the validation tests.

use crate::parse::{Outcome, parse_yaml};

/// Every finding of one document as `severity field: message`.
pub(crate) fn findings(yaml: &str) -> Vec<String> {
    parse_yaml("t.yaml", yaml)
        .into_iter()
        .flat_map(|d| match d.outcome {
            Outcome::Rejected { issues, .. } => issues,
            Outcome::Accepted { warnings, .. } => warnings,
            // A skipped document (not an object shoal reads) has nothing to report.
            Outcome::Skipped { .. } => Vec::new(),
        })
        .map(|i| {
            let sev = if i.is_error() { "error" } else { "warning" };
            format!("{sev} {}: {}", i.field, i.message)
        })
        .collect()
}

/// Whether some finding starts with `prefix`.
pub(crate) fn has(f: &[String], prefix: &str) -> bool {
    f.iter().any(|x| x.starts_with(prefix))
}
