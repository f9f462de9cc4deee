use super::*;
use shoal_config::istio::{LocalityDistribute, LocalityFailover};

/// (name, locality, labels) of an endpoint.
type Ep<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

fn loc(s: &str) -> Locality {
    Locality::parse(s)
}

fn client(s: &str) -> ClientLocality {
    ClientLocality {
        locality: loc(s),
        labels: Vec::new(),
    }
}

/// (priority, locality, weight, endpoint names) of each group.
fn run(
    eps: &[Ep<'_>],
    c: &ClientLocality,
    policy: Option<Policy<'_>>,
) -> Vec<(u32, String, u32, Vec<String>)> {
    let locs: Vec<Locality> = eps.iter().map(|(_, l, _)| loc(l)).collect();
    let labels: Vec<Labels> = eps
        .iter()
        .map(|(_, _, ls)| {
            ls.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    let items = eps
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| Placed {
            locality: &locs[i],
            labels: &labels[i],
            weight: 1,
            endpoint: name.to_string(),
        })
        .collect();
    place(items, Some(c), policy)
        .into_iter()
        .map(|g| {
            let l = &g.locality;
            (
                g.priority,
                format!("{}/{}/{}", l.region, l.zone, l.subzone),
                g.weight,
                g.endpoints,
            )
        })
        .collect()
}

fn failover(rules: &[(&str, &str)], priority: &[&str]) -> LocalityLbSetting {
    LocalityLbSetting {
        failover: rules
            .iter()
            .map(|(f, t)| LocalityFailover {
                from: f.to_string(),
                to: t.to_string(),
            })
            .collect(),
        failover_priority: priority.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

const EPS: &[Ep<'static>] = &[
    ("a", "r1/z1/s1", &[]),
    ("b", "r1/z1/s2", &[]),
    ("c", "r1/z2/s1", &[]),
    ("d", "r2/z1/s1", &[]),
    ("e", "r3/z1/s1", &[]),
];

#[test]
fn patterns_match_like_istio() {
    let l = loc("us-west/zone1/sub1");
    for (p, want) in [
        ("us-west", true),
        ("us-west/*", true),
        ("us-west/zone1", true),
        ("us-west/zone1/*", true),
        ("us-west/zone1/sub1", true),
        ("us-west/zone2", false),
        ("*", true),
        ("us-east/*", false),
    ] {
        assert_eq!(matches(&l, p), want, "{p}");
    }
}

#[test]
fn no_outlier_detection_means_no_failover() {
    assert_eq!(Policy::of(None, None), None);
    let od = OutlierDetection::default();
    let off = LocalityLbSetting {
        enabled: Some(false),
        ..Default::default()
    };
    assert_eq!(Policy::of(Some(&off), Some(&od)), None);
    assert!(matches!(
        Policy::of(None, Some(&od)),
        Some(Policy::Failover(_))
    ));
    // Without a policy every endpoint is in priority 0, grouped by locality.
    let out = run(EPS, &client("r1/z1/s1"), None);
    assert!(out.iter().all(|g| g.0 == 0), "{out:?}");
    assert_eq!(out.len(), 5);
}

#[test]
fn default_failover_ranks_by_shared_locality() {
    let s = LocalityLbSetting::default();
    let out = run(EPS, &client("r1/z1/s1"), Some(Policy::Failover(&s)));
    let prio: Vec<(u32, &str)> = out
        .iter()
        .flat_map(|g| g.3.iter().map(move |e| (g.0, e.as_str())))
        .collect();
    assert_eq!(prio, [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (3, "e")]);
    assert!(!Policy::Failover(&s).weighs_localities());
}

#[test]
fn failover_regions_go_before_other_regions() {
    let s = failover(&[("r1", "r3")], &[]);
    let out = run(
        &[("d", "r2/z1/s1", &[]), ("e", "r3/z1/s1", &[])],
        &client("r1/z1/s1"),
        Some(Policy::Failover(&s)),
    );
    // r3 (named) takes priority 0 among what is left, r2 comes after; renumbered from 0.
    assert_eq!(out[0].3, ["e"]);
    assert_eq!(out[0].0, 0);
    assert_eq!(out[1].3, ["d"]);
    assert_eq!(out[1].0, 1);
    assert!(Policy::Failover(&s).weighs_localities());
}

#[test]
fn failover_priority_ranks_by_labels_first() {
    let eps: &[Ep<'_>] = &[
        ("same-net-same-zone", "r1/z1/", &[("net", "n1")]),
        ("same-net-other-region", "r2/z9/", &[("net", "n1")]),
        ("other-net-same-zone", "r1/z1/", &[("net", "n2")]),
    ];
    let mut c = client("r1/z1/");
    c.labels = vec![("net".into(), "n1".into())];
    // Labels only: the network decides, locality does not.
    let s = failover(&[], &["net", topology::REGION]);
    let out = run(eps, &c, Some(Policy::Failover(&s)));
    let first: Vec<&str> = out[0].3.iter().map(String::as_str).collect();
    assert_eq!(first, ["same-net-same-zone"], "{out:?}");
    assert_eq!(out[1].3, ["same-net-other-region"]);
    assert_eq!(out[2].3, ["other-net-same-zone"]);
    assert_eq!(
        out.iter().map(|g| g.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "{out:?}"
    );
    // A fixed value overrides the client's own.
    let s = failover(&[], &["net=n2"]);
    let out = run(eps, &c, Some(Policy::Failover(&s)));
    assert_eq!(out[0].3, ["other-net-same-zone"], "{out:?}");
    // With failover as well, locality ranks within each label rank.
    let s = failover(&[("r1", "r2")], &["net"]);
    let out = run(eps, &c, Some(Policy::Failover(&s)));
    let order: Vec<&str> = out.iter().map(|g| g.3[0].as_str()).collect();
    assert_eq!(
        order,
        [
            "same-net-same-zone",
            "same-net-other-region",
            "other-net-same-zone"
        ]
    );
}

#[test]
fn distribute_reweighs_and_drops_localities() {
    let s = LocalityLbSetting {
        distribute: vec![
            LocalityDistribute {
                from: "r9/*".into(),
                to: [("r9/*".to_string(), 100)].into(),
            },
            LocalityDistribute {
                from: "r1/z1/*".into(),
                to: [("r1/z1/*".to_string(), 80), ("r2/*".to_string(), 20)].into(),
            },
        ],
        ..Default::default()
    };
    let out = run(EPS, &client("r1/z1/s1"), Some(Policy::Distribute(&s)));
    let got: Vec<(String, u32)> = out.iter().map(|g| (g.1.clone(), g.2)).collect();
    // r1/z1 has two localities sharing 80 by their weights; r2 gets 20; r1/z2 and r3 none.
    assert_eq!(
        got,
        [
            ("r1/z1/s1".to_string(), 40),
            ("r1/z1/s2".to_string(), 40),
            ("r2/z1/s1".to_string(), 20)
        ]
    );
    // A client no rule is for keeps the plain weights.
    let out = run(EPS, &client("r5/z1/s1"), Some(Policy::Distribute(&s)));
    assert_eq!(out.len(), 5);
    assert!(out.iter().all(|g| g.2 == 1));
}
