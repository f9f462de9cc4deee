//! `ProxyConfig`: checked as Istio does, and every setting reported as taking effect only
//! when the workload's proxy starts again (the injector and agent read it then; xDS does
//! not carry it).

use super::Validator;
use super::policy_target::{self, policy_target};
use crate::istio::{Attached, ProxyConfigSpec};

/// Image flavours Istio's injector knows.
const IMAGE_TYPES: [&str; 3] = ["default", "debug", "distroless"];

fn restart(v: &mut Validator, field: &str, what: &str) {
    v.warning(
        format!("spec.{field}"),
        format!(
            "{what} is read by the injector and the proxy agent when the workload starts: \
             restart the workload to apply a change (shoal does not act on it)"
        ),
    );
}

pub(super) fn proxy_config(v: &mut Validator, s: &ProxyConfigSpec) {
    policy_target(v, s.target(), policy_target::PROXY_CONFIG);
    if let Some(c) = s.concurrency {
        if c < 0 {
            v.error("spec.concurrency", format!("{c} must not be negative"));
        } else {
            restart(v, "concurrency", "the number of Envoy worker threads");
        }
    }
    for name in s.environment_variables.keys() {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            v.error(
                format!("spec.environmentVariables[{name}]"),
                "not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
            );
        }
    }
    if !s.environment_variables.is_empty() {
        restart(v, "environmentVariables", "the proxy's environment");
    }
    if let Some(img) = &s.image {
        match img.image_type.as_deref() {
            Some(t) if IMAGE_TYPES.contains(&t) => {
                restart(v, "image.imageType", "the proxy image");
            }
            Some(t) => v.error(
                "spec.image.imageType",
                format!("{t:?} is not one of {IMAGE_TYPES:?}"),
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::support::{findings, has};

    fn pc(spec: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {{name: p, namespace: ns}}\nspec:\n{spec}"
        )
    }

    #[test]
    fn settings_are_reported_as_needing_a_restart() {
        let f = findings(&pc(
            "  selector: {matchLabels: {app: web}}\n  concurrency: 2\n  environmentVariables: {ISTIO_META_X: y}\n  image: {imageType: distroless}\n",
        ));
        assert_eq!(f.len(), 3, "{f:#?}");
        for field in ["concurrency", "environmentVariables", "image.imageType"] {
            assert!(
                has(&f, &format!("warning spec.{field}: ")),
                "{field}: {f:#?}"
            );
        }
        assert!(
            f.iter().all(|l| l.contains("restart the workload")),
            "{f:#?}"
        );
    }

    #[test]
    fn bad_settings_are_errors() {
        let f = findings(&pc(
            "  selector: {matchLabels: {}}\n  concurrency: -1\n  environmentVariables: {\"1BAD\": x}\n  image: {imageType: fancy}\n  unknownField: 1\n",
        ));
        for want in [
            "error spec.selector.matchLabels: must not be empty",
            "error spec.concurrency: -1 must not be negative",
            "error spec.environmentVariables[1BAD]",
            "error spec.image.imageType: \"fancy\"",
            "warning spec.unknownField",
        ] {
            assert!(has(&f, want), "{want}\n{f:#?}");
        }
    }
}
