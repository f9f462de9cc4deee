//! The resource registry: built-in kinds and those that CustomResourceDefinitions add.

use serde_json::Value;

use crate::builtins::BUILTINS;
use crate::error::Error;

/// `jsonPath`-addressed column of a CRD's `additionalPrinterColumns`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
}

/// One served resource (one storage), with every version it is served at.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ResourceDef {
    pub group: String,
    /// Served versions, most preferred first.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Has the `status` subresource.
    pub status: bool,
    /// Owned by a CustomResourceDefinition (strategic merge patch unsupported, deletes return
    /// the object).
    pub custom: bool,
    /// Only `create` is served (TokenReview).
    pub create_only: bool,
    pub printer_columns: Vec<PrinterColumn>,
}

impl ResourceDef {
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    /// `pods` or `virtualservices.networking.istio.io`: counters, forbids and messages use it.
    pub fn qualified(&self) -> String {
        crate::error::qualified(&self.group, &self.plural)
    }

    pub fn group_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

pub(crate) const CRD_GROUP: &str = "apiextensions.k8s.io";
pub(crate) const CRD_PLURAL: &str = "customresourcedefinitions";

/// All resources currently served, built-ins first, then CRDs in creation order.
#[derive(Clone, Debug)]
pub(crate) struct Registry {
    defs: Vec<ResourceDef>,
}

impl Registry {
    pub fn builtin() -> Self {
        let defs = BUILTINS
            .iter()
            .map(|x| ResourceDef {
                group: x.group.to_string(),
                versions: vec![x.version.to_string()],
                plural: x.plural.to_string(),
                singular: x.kind.to_ascii_lowercase(),
                kind: x.kind.to_string(),
                list_kind: format!("{}List", x.kind),
                short_names: x.short.iter().map(|s| s.to_string()).collect(),
                categories: if matches!(
                    x.plural,
                    "pods"
                        | "services"
                        | "deployments"
                        | "statefulsets"
                        | "daemonsets"
                        | "replicasets"
                        | "horizontalpodautoscalers"
                ) {
                    vec!["all".to_string()]
                } else {
                    Vec::new()
                },
                namespaced: x.namespaced,
                status: x.status,
                custom: false,
                create_only: x.plural == "tokenreviews",
                printer_columns: Vec::new(),
            })
            .collect();
        Registry { defs }
    }

    pub fn all(&self) -> &[ResourceDef] {
        &self.defs
    }

    /// The resource served at `group/version` under this plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.plural == plural && d.serves(version))
    }

    pub fn find_storage(&self, group: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.plural == plural)
    }

    /// The resource of an object's `apiVersion` and `kind`.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<(&ResourceDef, String)> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.defs
            .iter()
            .find(|d| d.group == group && d.kind == kind && d.serves(version))
            .map(|d| (d, version.to_string()))
    }

    /// kubectl-style name resolution: `pods`, `pod`, `Pod`, `po`, optionally `.group` or
    /// `.version.group`; a `/status` suffix is split off and returned.
    pub fn resolve(&self, name: &str) -> Result<(&ResourceDef, Option<String>), Error> {
        let (base, sub) = match name.split_once('/') {
            Some((b, s)) => (b, Some(s.to_string())),
            None => (name, None),
        };
        let (short, group) = base.split_once('.').unwrap_or((base, ""));
        let lower = short.to_ascii_lowercase();
        let matches = |d: &&ResourceDef| {
            (d.plural == lower
                || d.singular == lower
                || d.kind.eq_ignore_ascii_case(short)
                || d.short_names.contains(&lower))
                && (group.is_empty()
                    || d.group == group
                    || group
                        .split_once('.')
                        .is_some_and(|(v, g)| d.group == g && d.serves(v)))
        };
        let found: Vec<&ResourceDef> = self.defs.iter().filter(matches).collect();
        match found.as_slice() {
            [] => Err(Error::UnknownResource(name.to_string())),
            [one] => Ok((one, sub)),
            many => {
                // kubectl prefers the core group; anything else must be qualified.
                if let Some(core) = many.iter().find(|d| d.group.is_empty()) {
                    return Ok((core, sub));
                }
                Err(Error::AmbiguousResource(
                    name.to_string(),
                    many.iter().map(|d| d.qualified()).collect(),
                ))
            }
        }
    }

    /// Registers (or re-registers) the resource a CustomResourceDefinition describes.
    pub fn register_crd(&mut self, def: ResourceDef) {
        if let Some(existing) = self
            .defs
            .iter_mut()
            .find(|d| d.group == def.group && d.plural == def.plural)
        {
            *existing = def;
        } else {
            self.defs.push(def);
        }
    }

    pub fn unregister(&mut self, group: &str, plural: &str) {
        self.defs
            .retain(|d| !(d.custom && d.group == group && d.plural == plural));
    }

    /// API groups (not the core one) with their versions, most preferred first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for d in self.defs.iter().filter(|d| !d.group.is_empty()) {
            let entry = match out.iter_mut().find(|(g, _)| *g == d.group) {
                Some(e) => e,
                None => {
                    out.push((d.group.clone(), Vec::new()));
                    let last = out.len() - 1;
                    &mut out[last]
                }
            };
            for v in &d.versions {
                if !entry.1.contains(v) {
                    entry.1.push(v.clone());
                }
            }
        }
        for (_, versions) in &mut out {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }
}

/// Kubernetes version ordering: GA > beta > alpha, then by major, then by minor; names that
/// are not of that form sort last.
pub(crate) fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match num.parse::<u32>() {
        Ok(n) => (level, major, n),
        Err(_) => (0, 0, 0),
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The resource a CustomResourceDefinition object defines, or why it is invalid.
pub(crate) fn crd_def(crd: &Value) -> Result<ResourceDef, String> {
    let group = str_at(crd, &["spec", "group"]).ok_or("spec.group: Required value")?;
    let plural =
        str_at(crd, &["spec", "names", "plural"]).ok_or("spec.names.plural: Required value")?;
    let kind = str_at(crd, &["spec", "names", "kind"]).ok_or("spec.names.kind: Required value")?;
    let name = str_at(crd, &["metadata", "name"]).unwrap_or("");
    if name != format!("{plural}.{group}") {
        return Err(format!(
            "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let namespaced = match str_at(crd, &["spec", "scope"]) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        _ => return Err("spec.scope: Unsupported value: must be Namespaced or Cluster".into()),
    };
    let strings = |path: &[&str]| -> Vec<String> {
        let mut cur = crd;
        for p in path {
            match cur.get(p) {
                Some(v) => cur = v,
                None => return Vec::new(),
            }
        }
        cur.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut versions = Vec::new();
    let mut status = false;
    let mut printer_columns = Vec::new();
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .ok_or("spec.versions: Required value")?
    {
        let vname = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("spec.versions[].name: Required value")?;
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        versions.push(vname.to_string());
        status |= v.pointer("/subresources/status").is_some();
        if printer_columns.is_empty() {
            for c in v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(n), Some(p)) = (
                    c.get("name").and_then(Value::as_str),
                    c.get("jsonPath").and_then(Value::as_str),
                ) {
                    printer_columns.push(PrinterColumn {
                        name: n.to_string(),
                        type_: c
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("string")
                            .to_string(),
                        json_path: p.to_string(),
                    });
                }
            }
        }
    }
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    Ok(ResourceDef {
        group: group.to_string(),
        versions,
        plural: plural.to_string(),
        singular: str_at(crd, &["spec", "names", "singular"])
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_ascii_lowercase()),
        kind: kind.to_string(),
        list_kind: str_at(crd, &["spec", "names", "listKind"])
            .map(str::to_string)
            .unwrap_or_else(|| format!("{kind}List")),
        short_names: strings(&["spec", "names", "shortNames"]),
        categories: strings(&["spec", "names", "categories"]),
        namespaced,
        status,
        custom: true,
        create_only: false,
        printer_columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kubernetes() {
        let mut v = vec!["v1alpha3", "v1", "v1beta1", "v2beta1", "v2", "foo"];
        v.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta1", "v1alpha3", "foo"]);
    }

    #[test]
    fn resolves_kubectl_names() -> Result<(), Error> {
        let r = Registry::builtin();
        assert_eq!(r.resolve("po")?.0.plural, "pods");
        assert_eq!(r.resolve("Pod")?.0.plural, "pods");
        assert_eq!(r.resolve("pods/status")?.1.as_deref(), Some("status"));
        assert_eq!(
            r.resolve("leases.coordination.k8s.io")?.0.group,
            "coordination.k8s.io"
        );
        assert!(r.resolve("widgets").is_err());
        for (name, group, plural, namespaced) in [
            ("sts", "apps", "statefulsets", true),
            ("ds", "apps", "daemonsets", true),
            ("rs", "apps", "replicasets", true),
            ("pdb", "policy", "poddisruptionbudgets", true),
            ("hpa", "autoscaling", "horizontalpodautoscalers", true),
            ("netpol", "networking.k8s.io", "networkpolicies", true),
            (
                "clusterrole",
                "rbac.authorization.k8s.io",
                "clusterroles",
                false,
            ),
            (
                "ClusterRoleBinding",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                false,
            ),
            ("roles", "rbac.authorization.k8s.io", "roles", true),
            (
                "rolebinding",
                "rbac.authorization.k8s.io",
                "rolebindings",
                true,
            ),
        ] {
            let d = r.resolve(name)?.0;
            assert_eq!(
                (d.group.as_str(), d.plural.as_str(), d.namespaced),
                (group, plural, namespaced)
            );
        }
        assert!(
            r.find("autoscaling", "v2", "horizontalpodautoscalers")
                .is_some()
        );
        Ok(())
    }
}
