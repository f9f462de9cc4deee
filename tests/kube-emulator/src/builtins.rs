//! The built-in kinds the emulator serves: group, version, resource, kind, short names and
//! scope as kube-apiserver's discovery has them, and whether they have the status subresource.

pub(crate) struct Builtin {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub short: &'static [&'static str],
    pub namespaced: bool,
    pub status: bool,
}

const APPS: &str = "apps";
const RBAC: &str = "rbac.authorization.k8s.io";

pub(crate) const BUILTINS: &[Builtin] = &[
    b("", "namespaces", "Namespace", &["ns"], false, true),
    b("", "pods", "Pod", &["po"], true, true),
    b("", "services", "Service", &["svc"], true, true),
    b("", "nodes", "Node", &["no"], false, true),
    b("", "secrets", "Secret", &[], true, false),
    b("", "configmaps", "ConfigMap", &["cm"], true, false),
    b("", "endpoints", "Endpoints", &["ep"], true, false),
    b(
        "",
        "serviceaccounts",
        "ServiceAccount",
        &["sa"],
        true,
        false,
    ),
    Builtin {
        group: "discovery.k8s.io",
        ..b("", "endpointslices", "EndpointSlice", &[], true, false)
    },
    Builtin {
        group: "apiextensions.k8s.io",
        ..b(
            "",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            &["crd", "crds"],
            false,
            true,
        )
    },
    Builtin {
        group: "apps",
        ..b("", "deployments", "Deployment", &["deploy"], true, true)
    },
    Builtin {
        group: "coordination.k8s.io",
        ..b("", "leases", "Lease", &[], true, false)
    },
    Builtin {
        group: "authentication.k8s.io",
        ..b("", "tokenreviews", "TokenReview", &[], false, false)
    },
    Builtin {
        group: "admissionregistration.k8s.io",
        ..b(
            "",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            &[],
            false,
            false,
        )
    },
    Builtin {
        group: "admissionregistration.k8s.io",
        ..b(
            "",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            &[],
            false,
            false,
        )
    },
    b(APPS, "statefulsets", "StatefulSet", &["sts"], true, true),
    b(APPS, "daemonsets", "DaemonSet", &["ds"], true, true),
    b(APPS, "replicasets", "ReplicaSet", &["rs"], true, true),
    b(
        "policy",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        &["pdb"],
        true,
        true,
    ),
    Builtin {
        version: "v2",
        ..b(
            "autoscaling",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            &["hpa"],
            true,
            true,
        )
    },
    b(
        "networking.k8s.io",
        "networkpolicies",
        "NetworkPolicy",
        &["netpol"],
        true,
        false,
    ),
    b(RBAC, "clusterroles", "ClusterRole", &[], false, false),
    b(
        RBAC,
        "clusterrolebindings",
        "ClusterRoleBinding",
        &[],
        false,
        false,
    ),
    b(RBAC, "roles", "Role", &[], true, false),
    b(RBAC, "rolebindings", "RoleBinding", &[], true, false),
];

const fn b(
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    short: &'static [&'static str],
    namespaced: bool,
    status: bool,
) -> Builtin {
    Builtin {
        group,
        version: "v1",
        plural,
        kind,
        short,
        namespaced,
        status,
    }
}
