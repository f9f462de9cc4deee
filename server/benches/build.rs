//! Snapshot build cost: a full view from scratch, the incremental path after one endpoint
//! change (model patch, EDS translation, snapshot patch, the shared delta response), and
//! encoding per resource. Figures and commands are in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prost::Message;
use shoal::pipeline::resources;
use shoal::synthetic;
use shoal_api::pb::envoy::config::cluster::v3::Cluster;
use shoal_api::pb::envoy::config::core::v3::Node;
use shoal_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use shoal_api::pb::envoy::config::route::v3::RouteConfiguration;
use shoal_api::{Resource, ResourceType, wire};
use shoal_cache::diff::{self, Known};
use shoal_cache::snapshot::Patch;
use shoal_cache::subscription::{Interner, Subscription};
use shoal_cache::{Snapshot, Trigger, View};
use shoal_config::ConfigStore;
use shoal_config::parse::parse_yaml;
use shoal_translate::{MeshOptions, Proxy, Translator, ViewKey};

const SIZES: [(usize, usize); 2] = [(1_000, 10), (10_000, 10)];

fn store(services: usize, endpoints: usize) -> ConfigStore {
    let mut store = ConfigStore::new();
    for (file, text) in synthetic::mesh(services, endpoints) {
        store.apply(&file, parse_yaml(&file, &text));
    }
    store
}

fn key(tr: &Translator) -> ViewKey {
    let node = Node {
        id: "sidecar~10.200.0.1~client-0.ns-0~ns-0.svc.cluster.local".into(),
        ..Default::default()
    };
    ViewKey::for_proxy(tr.model(), &Proxy::from_node(Some(&node)).unwrap())
}

fn label(services: usize, endpoints: usize) -> String {
    format!(
        "{}k_services_{}k_endpoints",
        services / 1000,
        services * endpoints / 1000
    )
}

fn full_view(c: &mut Criterion) {
    let mut g = c.benchmark_group("full_view");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for (s, e) in SIZES {
        let config = store(s, e).snapshot();
        g.bench_with_input(
            BenchmarkId::from_parameter(label(s, e)),
            &config,
            |b, config| {
                b.iter(|| {
                    let mut tr = Translator::new(config.clone(), MeshOptions::default());
                    let k = key(&tr);
                    Snapshot::initial(&resources(tr.build(&k)), Trigger::default())
                })
            },
        );
    }
    g.finish();
}

fn endpoint_change(c: &mut Criterion) {
    let mut g = c.benchmark_group("endpoint_change");
    g.sample_size(50);
    for (s, e) in SIZES {
        let mut st = store(s, e);
        let mut tr = Translator::new(st.snapshot(), MeshOptions::default());
        let k = key(&tr);
        let view = View::new(
            "bench",
            Snapshot::initial(&resources(tr.build(&k)), Trigger::default()),
        );
        let interner = Interner::default();
        let eds_names: BTreeSet<Arc<str>> = view
            .current()
            .get(ResourceType::Endpoint)
            .wildcard
            .keys()
            .cloned()
            .collect();
        let sub = Subscription::new(false, interner.intern(eds_names));
        // Scale service 5 (it has subsets) up and down by one endpoint, alternately.
        let files = [synthetic::service(5, e, 1), synthetic::service(5, e, 0)];
        let mut flip = 0usize;
        g.bench_function(BenchmarkId::from_parameter(label(s, e)), |b| {
            b.iter(|| {
                flip ^= 1;
                let changes = st.apply("svc-5.yaml", parse_yaml("svc-5.yaml", &files[flip ^ 1]));
                let delta = tr.update(st.snapshot(), &changes);
                let upserts = tr
                    .endpoints(&k, &delta.endpoint_hosts)
                    .into_iter()
                    .map(|r| (ResourceType::Endpoint, r))
                    .collect();
                let before = view.current();
                view.publish(before.patched(
                    &Patch {
                        upserts,
                        removals: vec![],
                    },
                    Trigger::default(),
                ));
                let after = view.current();
                let known = Known::At {
                    snapshot: before,
                    sub: sub.clone(),
                };
                let d = diff::delta(
                    &view,
                    ResourceType::Endpoint,
                    &known,
                    &after,
                    &sub,
                    &BTreeSet::new(),
                );
                assert!(!d.upserts.is_empty());
                wire::delta_response(
                    ResourceType::Endpoint.type_url(),
                    "",
                    d.upserts.iter(),
                    d.removed.iter().map(|n| n.as_ref()),
                )
            })
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut tr = Translator::new(store(200, 10).snapshot(), MeshOptions::default());
    let k = key(&tr);
    let out = tr.build(&k);
    let pick = |ty: ResourceType, name: &str| {
        out.resources[&ty]
            .iter()
            .find(|r| r.name.as_ref() == name)
            .unwrap()
            .body
            .clone()
    };
    let cluster = Cluster::decode(pick(
        ResourceType::Cluster,
        "outbound|80|v1|svc-0.ns-0.svc.cluster.local",
    ))
    .unwrap();
    let cla = ClusterLoadAssignment::decode(pick(
        ResourceType::Endpoint,
        "outbound|80||svc-1.ns-1.svc.cluster.local",
    ))
    .unwrap();
    let routes = RouteConfiguration::decode(pick(ResourceType::Route, "80")).unwrap();
    let mut g = c.benchmark_group("encode");
    g.bench_function("cluster", |b| b.iter(|| Resource::encode("c", &cluster)));
    g.bench_function("cluster_load_assignment_10_endpoints", |b| {
        b.iter(|| Resource::encode("e", &cla))
    });
    g.bench_function(
        format!("route_config_{}_virtual_hosts", routes.virtual_hosts.len()),
        |b| b.iter(|| Resource::encode("r", &routes)),
    );
    g.finish();
}

criterion_group!(benches, encode, endpoint_change, full_view);
criterion_main!(benches);
