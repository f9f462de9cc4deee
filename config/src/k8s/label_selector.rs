//! Kubernetes `LabelSelector` (`metav1.LabelSelector`): `matchLabels` and
//! `matchExpressions`, ANDed. Matching follows `metav1.LabelSelectorAsSelector`: `In` needs
//! the label with one of the values, `NotIn` its absence or another value, `Exists` and
//! `DoesNotExist` its presence or absence; an empty selector matches everything. A
//! requirement that Kubernetes would refuse (an unknown operator, values where none are
//! allowed or none where some are needed) matches nothing: validation reports it.

use serde::{Deserialize, Serialize};

use crate::meta::Labels;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: Labels,
    #[serde(default)]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry. The operator is kept as written so that validation can
/// name a wrong one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// `LabelSelectorOperator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl SelectorOperator {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "In" => Some(SelectorOperator::In),
            "NotIn" => Some(SelectorOperator::NotIn),
            "Exists" => Some(SelectorOperator::Exists),
            "DoesNotExist" => Some(SelectorOperator::DoesNotExist),
            _ => None,
        }
    }

    /// Whether the operator takes values (`In`, `NotIn`: at least one; the others none).
    pub fn takes_values(self) -> bool {
        matches!(self, SelectorOperator::In | SelectorOperator::NotIn)
    }
}

impl LabelSelectorRequirement {
    /// Whether `labels` meet the requirement; `false` for an invalid one.
    pub fn matches(&self, labels: &Labels) -> bool {
        let Some(op) = SelectorOperator::parse(&self.operator) else {
            return false;
        };
        if op.takes_values() == self.values.is_empty() {
            return false;
        }
        let value = labels.get(&self.key);
        match op {
            SelectorOperator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl LabelSelector {
    /// Whether `labels` meet every `matchLabels` entry and every `matchExpressions`
    /// requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn an_empty_selector_matches_everything() {
        let s = LabelSelector::default();
        assert!(s.matches(&Labels::new()));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn operators_follow_kubernetes() {
        let prod = labels(&[("env", "prod"), ("team", "a")]);
        let dev = labels(&[("env", "dev")]);
        let none = Labels::new();
        let cases = [
            (req("env", "In", &["prod", "stage"]), [true, false, false]),
            (req("env", "NotIn", &["prod"]), [false, true, true]),
            (req("team", "Exists", &[]), [true, false, false]),
            (req("team", "DoesNotExist", &[]), [false, true, true]),
            // Invalid requirements match nothing.
            (req("env", "In", &[]), [false, false, false]),
            (req("env", "NotIn", &[]), [false, false, false]),
            (req("env", "Exists", &["prod"]), [false, false, false]),
            (req("env", "Equals", &["prod"]), [false, false, false]),
        ];
        for (r, expect) in cases {
            let got = [&prod, &dev, &none].map(|l| r.matches(l));
            assert_eq!(got, expect, "{r:?}");
        }
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let s = LabelSelector {
            match_labels: labels(&[("env", "prod")]),
            match_expressions: vec![req("team", "In", &["a", "b"])],
        };
        assert!(s.matches(&labels(&[("env", "prod"), ("team", "b")])));
        assert!(!s.matches(&labels(&[("env", "prod"), ("team", "c")])));
        assert!(!s.matches(&labels(&[("env", "dev"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("team", "a")])));
    }
}
