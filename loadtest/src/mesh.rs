//! `shoal-loadtest gen`: a synthetic mesh as Istio YAML, and the edits the churn scenario
//! makes to it. One file per service (`ns-N/svc-I.yaml`), so an edit rewrites one file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The shape of a synthetic mesh.
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct MeshSpec {
    /// Services in the mesh.
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Endpoints (pods) per service.
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// Namespaces the services are spread over.
    #[arg(long, default_value_t = 10)]
    pub namespaces: usize,
    /// Fraction of services with a DestinationRule (two subsets, pods labelled v1/v2).
    #[arg(long, default_value_t = 0.1)]
    pub dr_fraction: f64,
    /// Fraction of services with a VirtualService (a weighted split, plus a header match).
    #[arg(long, default_value_t = 0.1)]
    pub vs_fraction: f64,
    /// Fraction of namespaces with a Sidecar limiting egress to their own namespace (and
    /// `istio-system`).
    #[arg(long, default_value_t = 0.0)]
    pub sidecar_fraction: f64,
    /// Services in `istio-system`, which every proxy sees (Sidecars included).
    #[arg(long, default_value_t = 0)]
    pub global_services: usize,
    /// A Pod for every endpoint (on 100 nodes), not only where subsets need labels: the
    /// workloads ztunnels receive.
    #[arg(long)]
    pub pods: bool,
    /// Every namespace is ambient with a waypoint for its services (Gateway `waypoint` of
    /// class `istio-waypoint`), for fleets with waypoint proxies.
    #[arg(long)]
    pub waypoints: bool,
}

/// Index of the first global service (in `istio-system`).
pub const GLOBAL_BASE: usize = 1_000_000;

/// The name of every namespace's waypoint (`--waypoints`).
pub const WAYPOINT: &str = "waypoint";

impl Default for MeshSpec {
    fn default() -> Self {
        MeshSpec {
            services: 1000,
            endpoints: 10,
            namespaces: 10,
            dr_fraction: 0.1,
            vs_fraction: 0.1,
            sidecar_fraction: 0.0,
            global_services: 0,
            pods: false,
            waypoints: false,
        }
    }
}

/// Whether item `i` of `n` falls in the first `fraction` (spread evenly).
fn picked(i: usize, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    let every = (1.0 / fraction).round().max(1.0) as usize;
    i.is_multiple_of(every)
}

impl MeshSpec {
    pub fn namespace_of(&self, service: usize) -> String {
        if service >= GLOBAL_BASE {
            return "istio-system".to_string();
        }
        format!("ns-{}", service % self.namespaces.max(1))
    }

    /// Index of global service `g`.
    pub fn global(&self, g: usize) -> usize {
        GLOBAL_BASE + g
    }

    /// Whether namespace `ns-N` has a Sidecar limiting its egress.
    pub fn has_sidecar(&self, ns: usize) -> bool {
        picked(ns, self.sidecar_fraction)
    }

    /// Whether proxies of namespace `ns-N` see a service.
    pub fn sees(&self, ns: &str, service: usize) -> bool {
        let index = ns.strip_prefix("ns-").and_then(|n| n.parse().ok());
        service >= GLOBAL_BASE
            || !index.is_some_and(|n| self.has_sidecar(n))
            || self.namespace_of(service) == ns
    }

    pub fn host(&self, service: usize) -> String {
        format!(
            "svc-{service}.{}.svc.cluster.local",
            self.namespace_of(service)
        )
    }

    pub fn has_dr(&self, service: usize) -> bool {
        service < GLOBAL_BASE && picked(service, self.dr_fraction)
    }

    pub fn has_vs(&self, service: usize) -> bool {
        service < GLOBAL_BASE && picked(service, self.vs_fraction)
    }

    pub fn path(&self, dir: &Path, service: usize) -> PathBuf {
        dir.join(self.namespace_of(service))
            .join(format!("svc-{service}.yaml"))
    }

    /// The YAML of one service with `endpoints` endpoints and the given VirtualService
    /// weights: Service, EndpointSlice, Pods (when subsets need labels), DestinationRule,
    /// VirtualService.
    pub fn service_yaml(&self, i: usize, endpoints: usize, weights: (u32, u32)) -> String {
        self.service_yaml_drained(i, endpoints, weights, &[])
    }

    /// The node endpoint `e` of service `i` runs on (with `pods`: a hundred nodes).
    pub fn node_of(&self, i: usize, e: usize) -> usize {
        (i * 10 + e) % 100
    }

    /// As [`MeshSpec::service_yaml`], without the endpoints (and pods) on `drained` nodes,
    /// as Kubernetes leaves a service once those nodes are drained.
    pub fn service_yaml_drained(
        &self,
        i: usize,
        endpoints: usize,
        weights: (u32, u32),
        drained: &[usize],
    ) -> String {
        let kept: Vec<usize> = (0..endpoints)
            .filter(|e| !drained.contains(&self.node_of(i, *e)))
            .collect();
        let ns = self.namespace_of(i);
        let name = format!("svc-{i}");
        let ip = |e: usize| {
            let n = (i % 65_536) * 256 + e;
            format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
        };
        let mut y = String::new();
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  clusterIP: 172.{}.{}.{}\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n  - {{name: grpc, port: 7070, targetPort: 7070}}\n---\n",
            16 + ((i % 65_536) >> 16) % 16 + if i >= GLOBAL_BASE { 8 } else { 0 },
            (i >> 8) & 255,
            i & 255
        );
        let _ = write!(
            y,
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-abcde, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports:\n- {{name: http, port: 8080}}\n- {{name: grpc, port: 7070}}\n"
        );
        y.push_str(if kept.is_empty() {
            "endpoints: []\n"
        } else {
            "endpoints:\n"
        });
        for &e in &kept {
            let _ = writeln!(
                y,
                "- addresses: [{}]\n  zone: zone-{}\n  targetRef: {{kind: Pod, name: {name}-{e}}}",
                ip(e),
                e % 3
            );
        }
        y.push_str("---\n");
        let dr = self.has_dr(i);
        if dr || self.pods {
            for &e in &kept {
                let _ = write!(
                    y,
                    "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-{e}, namespace: {ns}, labels: {{app: {name}, version: v{}}}}}\nspec: {{nodeName: node-{}, serviceAccountName: {name}}}\nstatus: {{phase: Running, podIP: {}}}\n---\n",
                    1 + e % 2,
                    self.node_of(i, e),
                    ip(e)
                );
            }
        }
        if dr {
            let _ = write!(
                y,
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  host: {name}\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n---\n"
            );
        }
        if self.has_vs(i) {
            let (d1, d2) = if dr {
                ("subset: v1", "subset: v2")
            } else {
                ("port: {number: 80}", "port: {number: 80}")
            };
            let _ = write!(
                y,
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{name}]\n  http:\n  - match:\n    - headers: {{x-canary: {{exact: \"true\"}}}}\n    route:\n    - destination: {{host: {name}, {d2}}}\n  - route:\n    - destination: {{host: {name}, {d1}}}\n      weight: {}\n    - destination: {{host: {name}, {d2}}}\n      weight: {}\n---\n",
                weights.0, weights.1
            );
        }
        y
    }

    /// An ambient namespace whose services use its waypoint, and that waypoint.
    fn waypoint_yaml(ns: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{istio.io/dataplane-mode: ambient, istio.io/use-waypoint: {WAYPOINT}}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {WAYPOINT}, namespace: {ns}}}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]\n"
        )
    }

    fn sidecar_yaml(ns: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: {ns}}}\nspec:\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n"
        )
    }

    /// Writes the whole mesh under `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        for n in 0..self.namespaces.max(1) {
            let ns = format!("ns-{n}");
            std::fs::create_dir_all(dir.join(&ns))?;
            if self.waypoints {
                write_atomic(
                    &dir.join(&ns).join("waypoint.yaml"),
                    &Self::waypoint_yaml(&ns),
                )?;
            }
            if picked(n, self.sidecar_fraction) {
                write_atomic(
                    &dir.join(&ns).join("sidecar.yaml"),
                    &Self::sidecar_yaml(&ns),
                )?;
            }
        }
        for i in (0..self.services).chain((0..self.global_services).map(|g| self.global(g))) {
            write_atomic(
                &self.path(dir, i),
                &self.service_yaml(i, self.endpoints, (90, 10)),
            )?;
        }
        Ok(())
    }
}

/// Writes a file so that a watcher never sees it half written.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
