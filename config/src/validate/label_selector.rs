//! A Kubernetes `LabelSelector` with the API server's rules (`ValidateLabelSelector`):
//! `matchLabels` keys and values valid labels; each `matchExpressions` entry a valid key, a
//! known operator (`In`, `NotIn`, `Exists`, `DoesNotExist`), values for `In` and `NotIn`
//! (at least one, each a valid label value) and none for `Exists` and `DoesNotExist`.

use super::Validator;
use super::virtual_service::{is_label_key, is_label_value};
use crate::k8s::{LabelSelector, SelectorOperator};

pub(crate) fn label_selector(v: &mut Validator, field: &str, s: &LabelSelector) {
    v.labels(&format!("{field}.matchLabels"), &s.match_labels);
    for (i, r) in s.match_expressions.iter().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        if r.key.is_empty() {
            v.error(format!("{f}.key"), "required");
        } else if !is_label_key(&r.key) {
            v.error(
                format!("{f}.key"),
                format!("{:?} is not a valid label key", r.key),
            );
        }
        let Some(op) = SelectorOperator::parse(&r.operator) else {
            v.error(
                format!("{f}.operator"),
                format!(
                    "unknown operator {:?} (In, NotIn, Exists or DoesNotExist)",
                    r.operator
                ),
            );
            continue;
        };
        match (op.takes_values(), r.values.is_empty()) {
            (true, true) => v.error(
                format!("{f}.values"),
                format!("operator {} needs at least one value", r.operator),
            ),
            (false, false) => v.error(
                format!("{f}.values"),
                format!("must be empty for operator {}", r.operator),
            ),
            _ => {}
        }
        for (j, val) in r.values.iter().enumerate() {
            if !is_label_value(val) {
                v.error(
                    format!("{f}.values[{j}]"),
                    format!("{val:?} is not a valid label value"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn issues(yaml: &str) -> Vec<String> {
        let s: LabelSelector = serde_saphyr::from_str(yaml).unwrap();
        let mut v = Validator::default();
        label_selector(&mut v, "sel", &s);
        v.issues.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn valid_selectors_have_no_findings() {
        assert!(issues("{}").is_empty());
        assert!(
            issues(
                "matchLabels: {env: prod, kubernetes.io/metadata.name: web}\nmatchExpressions:\n- {key: team, operator: In, values: [a, b]}\n- {key: tier, operator: NotIn, values: ['']}\n- {key: example.com/x, operator: Exists}\n- {key: y, operator: DoesNotExist, values: []}\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn operators_and_values_follow_kubernetes() {
        let found = issues(
            "matchLabels: {'bad key': x, ok: 'bad value'}\nmatchExpressions:\n- {key: a, operator: In}\n- {key: b, operator: NotIn, values: []}\n- {key: c, operator: Exists, values: [x]}\n- {key: d, operator: DoesNotExist, values: [x]}\n- {key: e, operator: Equals, values: [x]}\n- {operator: Exists}\n- {key: '-x', operator: In, values: ['not valid!']}\n",
        );
        let expect = [
            "sel.matchLabels.bad key",
            "sel.matchLabels.ok",
            "sel.matchExpressions[0].values: operator In needs at least one value",
            "sel.matchExpressions[1].values: operator NotIn needs at least one value",
            "sel.matchExpressions[2].values: must be empty for operator Exists",
            "sel.matchExpressions[3].values: must be empty for operator DoesNotExist",
            "sel.matchExpressions[4].operator: unknown operator \"Equals\"",
            "sel.matchExpressions[5].key: required",
            "sel.matchExpressions[6].key",
            "sel.matchExpressions[6].values[0]",
        ];
        assert_eq!(found.len(), expect.len(), "{found:#?}");
        for e in expect {
            assert!(found.iter().any(|f| f.contains(e)), "{e}: {found:#?}");
        }
    }
}
