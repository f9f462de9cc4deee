//! How the Kubernetes API server names and serves each custom kind shoal reads: what a
//! CustomResourceDefinition states (group, names, categories, versions, printer columns).
//! The facts are Istio's and the Gateway API's, so that `kubectl get vs`, `kubectl get
//! istio-io` or `kubectl get gtw` behave as they do with those projects' own CRDs.
//! [`crate::crds`] renders the CRDs from this table; built-in kinds are not in it.

use crate::meta::Kind;

pub const ISTIO_NETWORKING: &str = "networking.istio.io";
pub const ISTIO_SECURITY: &str = "security.istio.io";
pub const GATEWAY_API: &str = "gateway.networking.k8s.io";
pub const MULTICLUSTER: &str = "multicluster.x-k8s.io";

/// How `kubectl get` formats a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    /// A timestamp, shown as an age.
    Date,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Date => "date",
        }
    }
}

/// A column `kubectl get` shows besides the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub json_path: &'static str,
    pub column_type: ColumnType,
}

const fn text(name: &'static str, json_path: &'static str) -> Column {
    Column {
        name,
        json_path,
        column_type: ColumnType::String,
    }
}

/// The object's age. A CRD that lists columns must list this one too.
const AGE: Column = Column {
    name: "Age",
    json_path: ".metadata.creationTimestamp",
    column_type: ColumnType::Date,
};

/// A custom kind as the API server serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomResource {
    pub kind: Kind,
    pub group: &'static str,
    /// The `kind:` of its objects.
    pub name: &'static str,
    /// The resource name in URLs (`/apis/GROUP/VERSION/namespaces/NS/PLURAL`).
    pub plural: &'static str,
    pub short_names: &'static [&'static str],
    /// Groups of kinds `kubectl get CATEGORY` lists together.
    pub categories: &'static [&'static str],
    /// Versions served, newest first; each is one [`crate::parse::kind_for`] reads.
    pub versions: &'static [&'static str],
    /// The version objects are stored at (one of `versions`).
    pub storage: &'static str,
    /// What `kubectl get` shows (nothing listed: name and age).
    pub columns: &'static [Column],
}

impl CustomResource {
    /// The lower-case kind, as `kubectl get virtualservice` accepts it.
    pub fn singular(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    /// The CRD's name: `PLURAL.GROUP`.
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

// Istio serves v1, v1beta1 and v1alpha3 of its networking kinds (security kinds: v1 and
// v1beta1) with one schema. It stores v1alpha3 (v1beta1); shoal stores v1, and objects read
// back at any served version are the same. Going back to an Istio release that does not
// serve v1 then needs the stored objects migrated first (the API server refuses a CRD that
// drops a version objects are stored at).
const NETWORKING_VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SECURITY_VERSIONS: &[&str] = &["v1", "v1beta1"];
const NETWORKING: &[&str] = &["istio-io", "networking-istio-io"];
const SECURITY: &[&str] = &["istio-io", "security-istio-io"];
const GATEWAY: &[&str] = &["gateway-api"];

const fn networking(
    kind: Kind,
    name: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    columns: &'static [Column],
) -> CustomResource {
    CustomResource {
        kind,
        group: ISTIO_NETWORKING,
        name,
        plural,
        short_names,
        categories: NETWORKING,
        versions: NETWORKING_VERSIONS,
        storage: "v1",
        columns,
    }
}

const fn security(
    kind: Kind,
    name: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    columns: &'static [Column],
) -> CustomResource {
    CustomResource {
        group: ISTIO_SECURITY,
        categories: SECURITY,
        versions: SECURITY_VERSIONS,
        ..networking(kind, name, plural, short_names, columns)
    }
}

/// A Gateway API kind; `versions[0]` is stored.
const fn gateway_api(
    kind: Kind,
    name: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    versions: &'static [&'static str],
    columns: &'static [Column],
) -> CustomResource {
    let storage = match versions.first() {
        Some(v) => *v,
        None => "",
    };
    CustomResource {
        kind,
        group: GATEWAY_API,
        name,
        plural,
        short_names,
        categories: GATEWAY,
        versions,
        storage,
        columns,
    }
}

const HOSTNAMES: &[Column] = &[text("Hostnames", ".spec.hostnames"), AGE];

/// Every custom kind shoal reads. The Gateway API's `GatewayClass` is not among them: shoal
/// takes the Gateways whose `gatewayClassName` is `istio` without reading any class object.
pub const CUSTOM_RESOURCES: [CustomResource; 17] = [
    networking(
        Kind::VirtualService,
        "VirtualService",
        "virtualservices",
        &["vs"],
        &[
            text("Gateways", ".spec.gateways"),
            text("Hosts", ".spec.hosts"),
            AGE,
        ],
    ),
    networking(
        Kind::DestinationRule,
        "DestinationRule",
        "destinationrules",
        &["dr"],
        &[text("Host", ".spec.host"), AGE],
    ),
    networking(Kind::Gateway, "Gateway", "gateways", &["gw"], &[]),
    networking(
        Kind::ServiceEntry,
        "ServiceEntry",
        "serviceentries",
        &["se"],
        &[
            text("Hosts", ".spec.hosts"),
            text("Location", ".spec.location"),
            text("Resolution", ".spec.resolution"),
            AGE,
        ],
    ),
    networking(Kind::Sidecar, "Sidecar", "sidecars", &[], &[]),
    networking(
        Kind::WorkloadEntry,
        "WorkloadEntry",
        "workloadentries",
        &["we"],
        &[AGE, text("Address", ".spec.address")],
    ),
    // Istio serves ProxyConfig at v1beta1 only.
    CustomResource {
        versions: &["v1beta1"],
        storage: "v1beta1",
        ..networking(Kind::ProxyConfig, "ProxyConfig", "proxyconfigs", &[], &[])
    },
    security(
        Kind::AuthorizationPolicy,
        "AuthorizationPolicy",
        "authorizationpolicies",
        &["ap"],
        &[text("Action", ".spec.action"), AGE],
    ),
    security(
        Kind::PeerAuthentication,
        "PeerAuthentication",
        "peerauthentications",
        &["pa"],
        &[text("Mode", ".spec.mtls.mode"), AGE],
    ),
    security(
        Kind::RequestAuthentication,
        "RequestAuthentication",
        "requestauthentications",
        &["ra"],
        &[],
    ),
    gateway_api(
        Kind::KubeGateway,
        "Gateway",
        "gateways",
        &["gtw"],
        &["v1", "v1beta1"],
        &[
            text("Class", ".spec.gatewayClassName"),
            text("Address", ".status.addresses[*].value"),
            text(
                "Programmed",
                r#".status.conditions[?(@.type=="Programmed")].status"#,
            ),
            AGE,
        ],
    ),
    gateway_api(
        Kind::HttpRoute,
        "HTTPRoute",
        "httproutes",
        &[],
        &["v1", "v1beta1"],
        HOSTNAMES,
    ),
    gateway_api(
        Kind::GrpcRoute,
        "GRPCRoute",
        "grpcroutes",
        &[],
        &["v1", "v1alpha2"],
        HOSTNAMES,
    ),
    gateway_api(
        Kind::ReferenceGrant,
        "ReferenceGrant",
        "referencegrants",
        &["refgrant"],
        &["v1beta1", "v1alpha2"],
        &[AGE],
    ),
    gateway_api(
        Kind::TlsRoute,
        "TLSRoute",
        "tlsroutes",
        &[],
        &["v1alpha2"],
        &[AGE],
    ),
    gateway_api(
        Kind::TcpRoute,
        "TCPRoute",
        "tcproutes",
        &[],
        &["v1alpha2"],
        &[AGE],
    ),
    // The Multi-Cluster Services API's (an MCS implementation usually installs it).
    CustomResource {
        kind: Kind::ServiceExport,
        group: MULTICLUSTER,
        name: "ServiceExport",
        plural: "serviceexports",
        short_names: &["svcex"],
        categories: &["multicluster"],
        versions: &["v1alpha1"],
        storage: "v1alpha1",
        columns: &[AGE],
    },
];

/// The custom resource of `kind`; `None` for built-in kinds.
pub fn custom_resource(kind: Kind) -> Option<&'static CustomResource> {
    CUSTOM_RESOURCES.iter().find(|r| r.kind == kind)
}
