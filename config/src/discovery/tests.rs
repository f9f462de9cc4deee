use super::*;
use crate::ConfigStore;
use crate::parse::parse_yaml;

fn ns(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n---\n"
    )
}

fn svc(name: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n"
    )
}

fn vs(name: &str, namespace: &str, labels: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}\nspec:\n  hosts: [{name}.example]\n  http: [{{route: [{{destination: {{host: {name}.example}}}}]}}]\n---\n"
    )
}

fn selector(yaml: &str) -> LabelSelector {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn scope(selectors: &[&str], revision: Option<&str>) -> DiscoveryScope {
    DiscoveryScope {
        selectors: selectors.iter().map(|s| selector(s)).collect(),
        revision: revision.map(str::to_string),
        root_namespace: "istio-system".into(),
    }
}

fn names(view: &ConfigSnapshot, kind: Kind) -> Vec<String> {
    view.of_kind(kind)
        .map(|(k, _)| format!("{}/{}", k.namespace, k.name))
        .collect()
}

fn changed(c: &ChangeSet) -> Vec<String> {
    c.keys
        .iter()
        .map(|k| format!("{}:{}/{}", k.kind, k.namespace, k.name))
        .collect()
}

#[test]
fn without_selectors_or_revision_everything_passes() {
    let mut store = ConfigStore::new();
    let c = store.apply("a", parse_yaml("a", &(svc("a", "x") + &svc("b", "y"))));
    let mut scoped = Scoped::new(scope(&[], None));
    let (view, out) = scoped.update(&store.snapshot(), &c);
    assert_eq!(names(&view, Kind::Service), ["x/a", "y/b"]);
    assert_eq!(out, c);
}

#[test]
fn selectors_admit_labelled_namespaces_and_the_root_namespace() {
    let mut store = ConfigStore::new();
    let yaml = ns("prod", "env: prod")
        + &ns("dev", "env: dev")
        + &svc("a", "prod")
        + &svc("b", "dev")
        + &svc("c", "nowhere")
        + &svc("d", "istio-system")
        + &ns("by-name", "");
    let c = store.apply("a", parse_yaml("a", &yaml));
    let mut scoped = Scoped::new(scope(
        &[
            "matchLabels: {env: prod}",
            "matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [by-name]}]",
        ],
        None,
    ));
    let (view, _) = scoped.update(&store.snapshot(), &c);
    // A namespace without its Namespace object is not selected; the root one always is.
    assert_eq!(names(&view, Kind::Service), ["istio-system/d", "prod/a"]);
    // Namespaces themselves (cluster-scoped) stay visible.
    assert_eq!(names(&view, Kind::Namespace).len(), 3);
    let selected: Vec<&str> = scoped
        .selected_namespaces()
        .map(|s| s.iter().map(|n| n.as_ref()).collect())
        .unwrap_or_default();
    assert_eq!(selected, ["by-name", "istio-system", "prod"]);
}

#[test]
fn a_relabelled_namespace_joins_and_leaves_with_all_its_objects() {
    let mut store = ConfigStore::new();
    let objects = svc("a", "team") + &vs("r", "team", "");
    store.apply("objects", parse_yaml("objects", &objects));
    let c = store.apply("ns", parse_yaml("ns", &ns("team", "mesh: 'off'")));
    let mut scoped = Scoped::new(scope(&["matchLabels: {mesh: 'on'}"], None));
    let (view, _) = scoped.update(&store.snapshot(), &c);
    assert!(names(&view, Kind::Service).is_empty());

    let c = store.apply("ns", parse_yaml("ns", &ns("team", "mesh: 'on'")));
    let (view, out) = scoped.update(&store.snapshot(), &c);
    assert_eq!(names(&view, Kind::Service), ["team/a"]);
    assert_eq!(
        changed(&out),
        ["Service:team/a", "Namespace:/team", "VirtualService:team/r"]
    );

    // An edit inside the namespace passes through while it is in.
    let c = store.apply("objects", parse_yaml("objects", &svc("a", "team")));
    let (view, out) = scoped.update(&store.snapshot(), &c);
    assert_eq!(changed(&out), ["VirtualService:team/r"]);
    assert!(names(&view, Kind::VirtualService).is_empty());

    let c = store.apply("ns", parse_yaml("ns", &ns("team", "mesh: 'off'")));
    let (view, out) = scoped.update(&store.snapshot(), &c);
    assert!(names(&view, Kind::Service).is_empty());
    assert_eq!(changed(&out), ["Service:team/a", "Namespace:/team"]);

    // Changes in a namespace out of the mesh change nothing in the view.
    let c = store.apply("objects", parse_yaml("objects", &objects));
    let (_, out) = scoped.update(&store.snapshot(), &c);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_revision_reads_its_own_and_unlabelled_config_only() {
    let mut store = ConfigStore::new();
    let yaml = vs("mine", "a", "istio.io/rev: canary")
        + &vs("other", "a", "istio.io/rev: stable")
        + &vs("everyone", "a", "")
        + &svc("s", "a");
    let c = store.apply("a", parse_yaml("a", &yaml));
    let mut scoped = Scoped::new(scope(&[], Some("canary")));
    let (view, _) = scoped.update(&store.snapshot(), &c);
    assert_eq!(names(&view, Kind::VirtualService), ["a/everyone", "a/mine"]);
    assert_eq!(names(&view, Kind::Service), ["a/s"]);

    // Relabelling moves an object between revisions.
    let c = store.apply(
        "a",
        parse_yaml(
            "a",
            &(vs("mine", "a", "istio.io/rev: stable")
                + &vs("other", "a", "istio.io/rev: stable")
                + &vs("everyone", "a", "")
                + &svc("s", "a")),
        ),
    );
    let (view, out) = scoped.update(&store.snapshot(), &c);
    assert_eq!(names(&view, Kind::VirtualService), ["a/everyone"]);
    assert_eq!(changed(&out), ["VirtualService:a/mine"]);
}

#[test]
fn changing_the_scope_reports_exactly_what_came_and_went() {
    let mut store = ConfigStore::new();
    let yaml =
        ns("prod", "env: prod") + &ns("dev", "env: dev") + &svc("a", "prod") + &svc("b", "dev");
    let c = store.apply("a", parse_yaml("a", &yaml));
    let full = store.snapshot();
    let mut scoped = Scoped::new(scope(&[], None));
    scoped.update(&full, &c);
    let (view, out) = scoped.set_scope(scope(&["matchLabels: {env: prod}"], None), &full);
    assert_eq!(names(&view, Kind::Service), ["prod/a"]);
    assert_eq!(changed(&out), ["Service:dev/b"]);
    let (view, out) = scoped.set_scope(scope(&[], None), &full);
    assert_eq!(names(&view, Kind::Service), ["dev/b", "prod/a"]);
    assert_eq!(changed(&out), ["Service:dev/b"]);
    // Back to everything: later updates pass through.
    let c = store.apply("b", parse_yaml("b", &svc("c", "dev")));
    let (view, out) = scoped.update(&store.snapshot(), &c);
    assert_eq!(names(&view, Kind::Service).len(), 3);
    assert_eq!(changed(&out), ["Service:dev/c"]);
}
