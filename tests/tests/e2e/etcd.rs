//! `shoal serve --etcd` against a real etcd (Debian's etcd-server, scripts/etcd.sh): a
//! mesh put as keys reaches proxies, every put and delete follows, an invalid value is
//! reported by key and field while its last good version serves; re-reads — after a
//! compaction, an etcd restart, an outage with changes shoal could not see — push only what
//! really changed; an outage keeps the last good config served and ready. And
//! `shoal validate --etcd`, over mTLS with etcd's own authentication too. Keys are written
//! with the etcd-client crate, not with shoal's code. Skips (saying so) without etcd.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use etcd_client::{Client, CompactionOptions};
use prost::Message;
use shoal_api::ResourceType;
use shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use shoal_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use shoal_tests::etcd::{Etcd, Tls};
use shoal_tests::validate;
use shoal_tests::xds::{DeltaStream, node};
use shoal_tests::{Shoal, eventually, http_get, start_shoal};

const PREFIX: &str = "/shoal/config";
const CART: &str = "outbound|80||cart.shop.svc.cluster.local";
const RATINGS: &str = "outbound|80||ratings.shop.svc.cluster.local";
const NODE: &str = "sidecar~10.1.0.9~client-0.shop~shop.svc.cluster.local";

fn key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{PREFIX}/{kind}/{namespace}/{name}")
}

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    )
}

/// An EndpointSlice as JSON (the other values are YAML).
fn endpoints(service: &str, ips: &[&str]) -> String {
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": "shop", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": ips.iter().map(|ip| serde_json::json!({"addresses": [ip]})).collect::<Vec<_>>(),
    })
    .to_string()
}

fn destination_rule(simple: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: cart, namespace: shop}}\nspec:\n  host: cart.shop.svc.cluster.local\n  trafficPolicy:\n    loadBalancer: {{simple: {simple}}}\n"
    )
}

/// etcd, or `None` (the test skips) when there is none.
async fn etcd() -> Option<Etcd> {
    let bin = shoal_tests::env::etcd()?;
    Some(Etcd::start(&bin).await.expect("etcd starts"))
}

async fn client(endpoint: &str) -> Client {
    tokio::time::timeout(Duration::from_secs(10), Client::connect([endpoint], None))
        .await
        .expect("etcd client within 10 s")
        .expect("etcd client")
}

/// Services `cart` (with a DestinationRule) and `ratings` of namespace `shop`, one
/// endpoint each.
async fn put_mesh(kv: &mut Client) {
    for (k, v) in [
        (key("Service", "shop", "cart"), service("cart")),
        (
            key("EndpointSlice", "shop", "cart-1"),
            endpoints("cart", &["10.1.0.1"]),
        ),
        (
            key("DestinationRule", "shop", "cart"),
            destination_rule("LEAST_REQUEST"),
        ),
        (key("Service", "shop", "ratings"), service("ratings")),
        (
            key("EndpointSlice", "shop", "ratings-1"),
            endpoints("ratings", &["10.1.0.2"]),
        ),
    ] {
        kv.put(k, v, None).await.expect("put");
    }
}

/// `shoal serve --etcd` on `etcd` (with an empty config directory beside, kept in the
/// returned handle).
async fn shoal(etcd: &Etcd) -> (Shoal, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = etcd.endpoint();
    let shoal = start_shoal(dir.path(), &["--etcd", &endpoint])
        .await
        .expect("shoal serving from etcd");
    (shoal, dir)
}

/// A delta stream with wildcard clusters and listeners and both services' endpoints.
async fn subscribe(shoal: &Shoal) -> DeltaStream {
    let requests: Vec<DeltaDiscoveryRequest> = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, ty)| DeltaDiscoveryRequest {
        node: (i == 0).then(|| node(NODE)),
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: if ty == ResourceType::Endpoint {
            vec![CART.to_string(), RATINGS.to_string()]
        } else {
            Vec::new()
        },
        ..Default::default()
    })
    .collect();
    let mut requests = requests.into_iter();
    let first = requests.next().expect("a first request");
    let s = DeltaStream::open(shoal.xds, first).await.expect("stream");
    for r in requests {
        s.send(r).await.expect("subscribe");
    }
    s
}

/// Responses until none comes for `quiet` (at most 100), each ACKed.
async fn drain(s: &mut DeltaStream, quiet: Duration) -> Vec<DeltaDiscoveryResponse> {
    s.drain(quiet, 100).await
}

/// What a client holds: (type URL, name) → version.
type Held = BTreeMap<(String, String), String>;

fn hold(held: &mut Held, responses: &[DeltaDiscoveryResponse]) {
    for r in responses {
        for res in &r.resources {
            held.insert((r.type_url.clone(), res.name.clone()), res.version.clone());
        }
        for name in &r.removed_resources {
            held.remove(&(r.type_url.clone(), name.clone()));
        }
    }
}

/// (type URL, name) of every resource sent or removed.
fn touched(responses: &[DeltaDiscoveryResponse]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in responses {
        for res in &r.resources {
            out.push((short(&r.type_url), res.name.clone()));
        }
        for name in &r.removed_resources {
            out.push((short(&r.type_url), format!("-{name}")));
        }
    }
    out.sort();
    out
}

fn short(type_url: &str) -> String {
    type_url.rsplit('.').next().unwrap_or_default().to_string()
}

fn endpoint_count(responses: &[DeltaDiscoveryResponse], cluster: &str) -> Option<usize> {
    responses
        .iter()
        .filter(|r| r.type_url == ResourceType::Endpoint.type_url())
        .flat_map(|r| &r.resources)
        .filter(|res| res.name == cluster)
        .filter_map(|res| res.resource.as_ref())
        .filter_map(|any| ClusterLoadAssignment::decode(any.value.as_slice()).ok())
        .map(|cla| cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum())
        .next_back()
}

async fn configz(shoal: &Shoal) -> serde_json::Value {
    shoal.json("/debug/configz").await.expect("configz")
}

async fn issue_mentioning(shoal: &Shoal, needle: &str) -> Option<String> {
    configz(shoal).await["issues"]
        .as_array()?
        .iter()
        .filter_map(|i| i["message"].as_str())
        .find(|m| m.contains(needle))
        .map(str::to_string)
}

/// A mesh put in etcd reaches a proxy; a changed EndpointSlice is an EDS-only push, a
/// changed DestinationRule a CDS push, the same value put again no push at all; an invalid
/// value is reported by key and field while the last good version serves; a key under no
/// kind is a warning; a delete removes the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_in_etcd_reaches_proxies_and_follows_every_change() {
    let Some(etcd) = etcd().await else {
        return;
    };
    let mut kv = client(&etcd.endpoint()).await;
    put_mesh(&mut kv).await;
    let (shoal, _dir) = shoal(&etcd).await;
    let mut s = subscribe(&shoal).await;
    let initial = drain(&mut s, Duration::from_secs(2)).await;
    let names = touched(&initial);
    for want in [
        ("Cluster", CART),
        ("Cluster", RATINGS),
        ("ClusterLoadAssignment", CART),
    ] {
        assert!(
            names.iter().any(|(t, n)| t == want.0 && n == want.1),
            "{want:?} in {names:?}\n{}",
            shoal.log()
        );
    }
    assert_eq!(endpoint_count(&initial, CART), Some(1));

    // A second endpoint (JSON): endpoints only.
    kv.put(
        key("EndpointSlice", "shop", "cart-1"),
        endpoints("cart", &["10.1.0.1", "10.1.0.3"]),
        None,
    )
    .await
    .expect("put");
    let pushed = drain(&mut s, Duration::from_secs(3)).await;
    assert_eq!(
        touched(&pushed),
        [("ClusterLoadAssignment".to_string(), CART.to_string())],
        "a scale changes endpoints only"
    );
    assert_eq!(endpoint_count(&pushed, CART), Some(2));

    // Another load balancer: the cluster changes.
    kv.put(
        key("DestinationRule", "shop", "cart"),
        destination_rule("RANDOM"),
        None,
    )
    .await
    .expect("put");
    let pushed = drain(&mut s, Duration::from_secs(3)).await;
    assert!(
        touched(&pushed).contains(&("Cluster".to_string(), CART.to_string())),
        "{:?}",
        touched(&pushed)
    );

    // The same value again: a new etcd revision, nothing for proxies.
    let revision = shoal.revision().await.expect("revision");
    kv.put(
        key("DestinationRule", "shop", "cart"),
        destination_rule("RANDOM"),
        None,
    )
    .await
    .expect("put");
    assert!(drain(&mut s, Duration::from_secs(2)).await.is_empty());
    assert_eq!(shoal.revision().await.expect("revision"), revision);

    // An invalid value: reported by key and field; the last good DestinationRule serves.
    kv.put(
        key("DestinationRule", "shop", "cart"),
        destination_rule("BOGUS"),
        None,
    )
    .await
    .expect("put");
    let issue = eventually(Duration::from_secs(20), "the issue", || {
        issue_mentioning(&shoal, "etcd:/shoal/config/DestinationRule/shop/cart")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    assert!(
        issue.contains("spec.trafficPolicy.loadBalancer.simple"),
        "{issue}"
    );
    assert!(
        drain(&mut s, Duration::from_secs(2)).await.is_empty(),
        "nothing changes for proxies"
    );
    assert_eq!(configz(&shoal).await["objects"]["DestinationRule"], 1);

    // A key under no kind shoal reads: a warning naming it, nothing else.
    kv.put(format!("{PREFIX}/ConfigMap/shop/settings"), "a: b", None)
        .await
        .expect("put");
    let warning = eventually(Duration::from_secs(20), "the warning", || {
        issue_mentioning(&shoal, "etcd:/shoal/config/ConfigMap/shop/settings")
    })
    .await
    .expect("the foreign key reported");
    assert!(warning.starts_with("warning:"), "{warning}");

    // Deleted: the cluster goes.
    kv.delete(key("Service", "shop", "ratings"), None)
        .await
        .expect("delete");
    let pushed = drain(&mut s, Duration::from_secs(3)).await;
    assert!(
        touched(&pushed).contains(&("Cluster".to_string(), format!("-{RATINGS}"))),
        "{:?}",
        touched(&pushed)
    );
    let status = &configz(&shoal).await["sources"]["etcd"];
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["stale"], false, "{status}");
}

/// `kill -STOP`/`-CONT` of a process (shoal falling behind its watch).
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Every way shoal has to read the prefix again costs proxies only what really changed:
/// its watch cancelled because its revision was compacted (shoal frozen while etcd moves
/// on), an etcd restart with nothing changed, and an outage during which the prefix
/// changed where shoal could not see it. Meanwhile shoal stays ready on its last good
/// config and says the source is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rereads_push_only_what_changed_and_an_outage_keeps_serving() {
    let Some(mut etcd) = etcd().await else {
        return;
    };
    let mut kv = client(&etcd.endpoint()).await;
    put_mesh(&mut kv).await;
    let (shoal, _dir) = shoal(&etcd).await;
    let mut s = subscribe(&shoal).await;
    let mut held = Held::new();
    hold(&mut held, &drain(&mut s, Duration::from_secs(2)).await);
    assert!(held.contains_key(&(
        ResourceType::Cluster.type_url().to_string(),
        CART.to_string()
    )));
    let revision = shoal.revision().await.expect("revision");

    // 1. Compaction. shoal is frozen while a key below the prefix changes hundreds of
    // times and etcd compacts its history: the watch cannot keep up, and etcd cancels it
    // once shoal reads again. The key is under no kind shoal reads: no config changes.
    let pid = shoal.pid.expect("pid");
    signal(pid, "-STOP");
    let churn = format!("{PREFIX}/ConfigMap/shop/churn");
    let mut last = 0;
    // More than the HTTP/2 window (2 MiB) and etcd's buffers (256 responses) hold.
    for i in 0..1000 {
        let value = format!("n: {i}\npad: {}\n", "x".repeat(8192));
        last = kv
            .put(churn.clone(), value, None)
            .await
            .expect("put")
            .header()
            .map_or(0, |h| h.revision());
    }
    kv.compact(last, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact");
    signal(pid, "-CONT");
    eventually(
        Duration::from_secs(30),
        "a re-read after the compaction",
        || async { (shoal.metric("shoal_etcd_resyncs_total").await.ok()? >= 1.0).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    let log = shoal.log();
    assert!(
        log.contains("etcd: reading the prefix again") && log.contains("was compacted"),
        "the watch was cancelled for the compaction: {log}"
    );
    let pushed = drain(&mut s, Duration::from_secs(3)).await;
    assert!(
        pushed.is_empty(),
        "the re-read pushed {:?}",
        touched(&pushed)
    );
    assert_eq!(
        shoal.revision().await.expect("revision"),
        revision,
        "no config change"
    );

    // 2. etcd restarts on the same data: shoal says it is stale, stays ready, serves on;
    // once back, it reads again and nothing changes.
    etcd.stop();
    eventually(
        Duration::from_secs(30),
        "the source to say it is stale",
        || async {
            configz(&shoal).await["sources"]["etcd"]["stale"]
                .as_bool()
                .filter(|s| *s)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    let (ready, _) = http_get(shoal.admin, "/ready", &[]).await.expect("ready");
    assert_eq!(ready, 200, "ready on the last good config");
    assert_eq!(
        shoal.metric("shoal_etcd_connected").await.expect("metric"),
        0.0
    );
    assert!(drain(&mut s, Duration::from_secs(1)).await.is_empty());
    let resyncs = shoal
        .metric("shoal_etcd_resyncs_total")
        .await
        .expect("metric");
    etcd.restart().await.expect("etcd restarts");
    eventually(
        Duration::from_secs(60),
        "a re-read after the restart",
        || async {
            let z = configz(&shoal).await;
            let again = shoal.metric("shoal_etcd_resyncs_total").await.ok()? > resyncs;
            (again && z["sources"]["etcd"]["connected"] == true).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    let pushed = drain(&mut s, Duration::from_secs(3)).await;
    assert!(
        pushed.is_empty(),
        "the re-read pushed {:?}",
        touched(&pushed)
    );
    assert_eq!(shoal.revision().await.expect("revision"), revision);

    // 3. An outage during which the prefix changes where shoal cannot see it (etcd on
    // another port): a scale, a deleted service, a value put again unchanged, and the
    // history compacted. Back on its port, shoal pushes exactly the scale and the removal.
    let resyncs = shoal
        .metric("shoal_etcd_resyncs_total")
        .await
        .expect("metric");
    let aside = std::net::SocketAddr::from(([127, 0, 0, 1], shoal_tests::free_port("127.0.0.1")));
    etcd.restart_at(aside).await.expect("etcd aside");
    {
        let mut aside = client(&format!("http://{aside}")).await;
        aside
            .put(
                key("EndpointSlice", "shop", "cart-1"),
                endpoints("cart", &["10.1.0.1", "10.1.0.4"]),
                None,
            )
            .await
            .expect("put");
        aside
            .delete(key("Service", "shop", "ratings"), None)
            .await
            .expect("delete");
        aside
            .delete(key("EndpointSlice", "shop", "ratings-1"), None)
            .await
            .expect("delete");
        let r = aside
            .put(
                key("DestinationRule", "shop", "cart"),
                destination_rule("LEAST_REQUEST"),
                None,
            )
            .await
            .expect("put");
        let at = r.header().map_or(0, |h| h.revision());
        aside.compact(at, None).await.expect("compact");
    }
    etcd.restart().await.expect("etcd back on its port");
    eventually(
        Duration::from_secs(60),
        "a re-read after the outage",
        || async { (shoal.metric("shoal_etcd_resyncs_total").await.ok()? > resyncs).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", shoal.log()));
    let pushed = drain(&mut s, Duration::from_secs(3)).await;
    let touched = touched(&pushed);
    assert!(
        !touched.contains(&("Cluster".to_string(), CART.to_string())),
        "the unchanged cart cluster was pushed again: {touched:?}"
    );
    assert!(
        touched.contains(&("Cluster".to_string(), format!("-{RATINGS}"))),
        "{touched:?}"
    );
    assert_eq!(endpoint_count(&pushed, CART), Some(2), "{touched:?}");
    for r in &pushed {
        for res in &r.resources {
            assert_ne!(
                held.get(&(r.type_url.clone(), res.name.clone())),
                Some(&res.version),
                "{} sent again unchanged",
                res.name
            );
        }
    }
    // Three objects changed: the cart EndpointSlice, ratings' Service and EndpointSlice.
    assert_eq!(shoal.revision().await.expect("revision"), revision + 3);
}

/// `shoal validate --etcd` reads the prefix once and reports as for files: by key and
/// field; it exits 1 on errors, 0 without, 2 when etcd cannot be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reads_the_prefix_and_names_keys_and_fields() {
    let Some(mut etcd) = etcd().await else {
        return;
    };
    let mut kv = client(&etcd.endpoint()).await;
    kv.put(key("Service", "shop", "cart"), service("cart"), None)
        .await
        .expect("put");
    kv.put(
        key("DestinationRule", "shop", "cart"),
        destination_rule("BOGUS"),
        None,
    )
    .await
    .expect("put");
    kv.put(format!("{PREFIX}/ConfigMap/shop/settings"), "a: b", None)
        .await
        .expect("put");
    kv.put("/elsewhere/Service/shop/x", "not read", None)
        .await
        .expect("put");
    let endpoint = etcd.endpoint();
    let (code, text) = validate(&["--etcd", &endpoint, "--warnings"]).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("error: etcd:/shoal/config/DestinationRule/shop/cart: DestinationRule shop/cart: spec.trafficPolicy.loadBalancer.simple"),
        "{text}"
    );
    assert!(
        text.contains("warning: etcd:/shoal/config/ConfigMap/shop/settings"),
        "{text}"
    );
    assert!(text.contains("3 etcd key(s) below /shoal/config"), "{text}");

    kv.put(
        key("DestinationRule", "shop", "cart"),
        destination_rule("RANDOM"),
        None,
    )
    .await
    .expect("put");
    let (code, text) = validate(&["--etcd", &endpoint]).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2 object(s) accepted, 0 error(s)"), "{text}");

    // Another prefix, beside a directory.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("svc.yaml"), service("ratings")).expect("write");
    let (code, text) = validate(&[
        &dir.path().display().to_string(),
        "--etcd",
        &endpoint,
        "--etcd-prefix",
        "/elsewhere/",
    ])
    .await;
    assert_eq!(
        code,
        Some(1),
        "the value under /elsewhere is no object: {text}"
    );
    assert!(
        text.contains("1 file(s), 1 etcd key(s) below /elsewhere"),
        "{text}"
    );

    etcd.stop();
    let (code, text) = validate(&["--etcd", &endpoint]).await;
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!("reading /shoal/config from etcd at {endpoint}")),
        "{text}"
    );
}

/// A CA, etcd's serving certificate (127.0.0.1) and a client certificate, as PEM files in
/// `dir`: (etcd's TLS, CA, client cert, client key).
fn certificates(
    dir: &Path,
) -> (
    Tls,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "etcd test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let leaf = |cn: &str, server: bool| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        if server {
            p.subject_alt_names = vec![SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]))];
        }
        let cert = p.signed_by(&key, &issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write pem");
        path
    };
    let ca_path = write("ca.pem", &ca_cert.pem());
    let (server_cert, server_key) = leaf("etcd", true);
    let (client_cert, client_key) = leaf("shoal", false);
    let tls = Tls {
        cert: write("server.pem", &server_cert),
        key: write("server-key.pem", &server_key),
        client_ca: ca_path.clone(),
    };
    (
        tls,
        ca_path,
        write("client.pem", &client_cert),
        write("client-key.pem", &client_key),
    )
}

/// A gRPC channel to `endpoint` over rustls, trusting `ca` and presenting `cert`/`key`.
fn mtls_channel(endpoint: &str, ca: &[u8], cert: &[u8], key: &[u8]) -> tonic::transport::Channel {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots.add(c.expect("CA PEM")).expect("a root");
    }
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key).expect("key PEM"))
    .expect("client certificate");
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http2()
        .build();
    tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect_with_connector_lazy(https)
}

/// Over TLS with a client certificate (etcd's `--client-cert-auth`) and etcd's own
/// authentication: `--etcd-ca`, `--etcd-cert`/`--etcd-key` and `--etcd-user` with
/// `--etcd-password-file` reach the prefix; without the password, etcd refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_and_a_password_reach_a_guarded_etcd() {
    let Some(bin) = shoal_tests::env::etcd() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (tls, ca, cert, client_key) = certificates(dir.path());
    let etcd = Etcd::start_with(&bin, Some(tls))
        .await
        .expect("etcd over TLS");
    let endpoint = etcd.endpoint();
    let read = |p: &Path| std::fs::read(p).expect("read pem");
    let mut kv = tokio::time::timeout(
        Duration::from_secs(10),
        Client::from_channel(
            etcd_client::Channel::Tonic(mtls_channel(
                &endpoint,
                &read(&ca),
                &read(&cert),
                &read(&client_key),
            )),
            None,
        ),
    )
    .await
    .expect("within 10 s")
    .expect("client over mTLS");
    kv.put(key("Service", "shop", "cart"), service("cart"), None)
        .await
        .expect("put");
    kv.user_add("root", "r00t-pass", None).await.expect("user");
    kv.user_grant_role("root", "root").await.expect("grant");
    kv.auth_enable().await.expect("auth on");

    let password = dir.path().join("password");
    std::fs::write(&password, "r00t-pass\n").expect("write");
    let (ca, cert, client_key, password) = (
        ca.display().to_string(),
        cert.display().to_string(),
        client_key.display().to_string(),
        password.display().to_string(),
    );
    let tls_flags = [
        "--etcd",
        &endpoint,
        "--etcd-ca",
        &ca,
        "--etcd-cert",
        &cert,
        "--etcd-key",
        &client_key,
    ];
    let mut with_password = tls_flags.to_vec();
    with_password.extend(["--etcd-user", "root", "--etcd-password-file", &password]);
    let (code, text) = validate(&with_password).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 etcd key(s) below /shoal/config"), "{text}");

    // The client certificate alone names a user (its CN) etcd does not know.
    let (code, text) = validate(&tls_flags).await;
    assert_eq!(code, Some(2), "{text}");
    // Without the CA, etcd's certificate is not trusted.
    let (code, text) = validate(&[
        "--etcd",
        &endpoint,
        "--etcd-user",
        "root",
        "--etcd-password-file",
        &password,
    ])
    .await;
    assert_eq!(code, Some(2), "{text}");
}
