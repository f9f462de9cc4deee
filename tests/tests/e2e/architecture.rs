//! The crate edges ARCHITECTURE.md states are the ones the manifests declare, in both
//! directions, and the heavy dependencies stay where they belong. Reads `cargo metadata`
//! (offline, workspace members only); starts no shoal process.
//!
//! The table it checks is the one under the heading `### Crate edges` in ARCHITECTURE.md:
//! one row per workspace crate, the crate in backticks in the first cell, the workspace
//! crates it depends on (normal dependencies; dev- and build-dependencies are not edges)
//! in backticks in the second, or `—` for none. Any other cell is free text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Dependencies only these crates may have (any kind): `kube` talks to Kubernetes, which
/// only the config sources and the server wiring should; `openraft` is the shard group's.
const CONFINED: &[(&str, &[&str])] = &[
    ("kube", &["shoal-config", "shoal"]),
    ("openraft", &["shoal-shard"]),
];

type Edges = BTreeMap<String, BTreeSet<String>>;

#[test]
fn architecture_md_states_the_crate_edges_of_the_manifests() {
    let root = shoal_tests::env::workspace_root();
    let packages = workspace_packages(&root);
    let members: BTreeSet<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let manifests: Edges = packages
        .iter()
        .map(|p| {
            let deps = p
                .deps
                .iter()
                .filter(|d| d.normal && members.contains(d.name.as_str()))
                .map(|d| d.name.clone())
                .collect();
            (p.name.clone(), deps)
        })
        .collect();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md"))
        .unwrap_or_else(|e| panic!("reading ARCHITECTURE.md: {e}"));
    let stated = stated_edges(&doc);

    let mut wrong = Vec::new();
    for (name, deps) in &manifests {
        let Some(says) = stated.get(name) else {
            wrong.push(format!("{name}: a workspace crate missing from the table"));
            continue;
        };
        for d in deps.difference(says) {
            wrong.push(format!(
                "{name} depends on {d}, which the table does not say"
            ));
        }
        for d in says.difference(deps) {
            wrong.push(format!(
                "{name} does not depend on {d}, which the table says"
            ));
        }
    }
    for name in stated.keys().filter(|n| !manifests.contains_key(*n)) {
        wrong.push(format!("{name}: in the table but not a workspace crate"));
    }
    assert!(
        wrong.is_empty(),
        "ARCHITECTURE.md (### Crate edges) and the Cargo.toml files disagree:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn kube_and_openraft_stay_in_their_crates() {
    let packages = workspace_packages(&shoal_tests::env::workspace_root());
    let mut wrong = Vec::new();
    for p in &packages {
        for d in &p.deps {
            for (dep, allowed) in CONFINED {
                let is_it = d.name == *dep || d.name.starts_with(&format!("{dep}-"));
                if is_it && !allowed.contains(&p.name.as_str()) {
                    wrong.push(format!(
                        "{} depends on {} (only {allowed:?} may)",
                        p.name, d.name
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The parser of the table, on a table of its own.
#[test]
fn the_table_parser_reads_cells_and_dashes() {
    let doc = "# A\n\n### Crate edges\n\nSome words.\n\n| crate | depends on | note |\n| --- | --- | --- |\n| `a` | — | x |\n| `b` | `a`, `c` | uses `d` |\n\nAfter: | `z` | `a` |\n";
    let edges = stated_edges(doc);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(edges.len(), 2, "{edges:?}");
    assert_eq!(edges["a"], names(&[]));
    assert_eq!(edges["b"], names(&["a", "c"]));
}

/// Rows of the first table under `### Crate edges`: crate → the crates it depends on.
fn stated_edges(doc: &str) -> Edges {
    let section = doc
        .split_once("\n### Crate edges\n")
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no `### Crate edges` heading"))
        .1;
    let table = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let mut edges = Edges::new();
    for row in table {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // "| a | b |" splits into ["", a, b, ""]; the header and the rule have no backticks.
        let (Some(krate), Some(deps)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(krate) = backticked(krate).into_iter().next() else {
            continue;
        };
        let previous = edges.insert(krate.clone(), backticked(deps).into_iter().collect());
        assert!(previous.is_none(), "{krate} has two rows");
    }
    assert!(!edges.is_empty(), "no rows under `### Crate edges`");
    edges
}

/// The words between backticks.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

struct Package {
    name: String,
    deps: Vec<Dep>,
}

struct Dep {
    name: String,
    /// A normal dependency (not dev or build).
    normal: bool,
}

/// The workspace members and their declared dependencies, from `cargo metadata`.
fn workspace_packages(root: &Path) -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--no-deps",
        ])
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("running cargo metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cargo metadata output: {e}"));
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"].as_str().is_some_and(|id| members.contains(id)))
        .map(|p| Package {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            deps: p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| Dep {
                    name: d["name"].as_str().unwrap_or_default().to_string(),
                    normal: d["kind"].is_null(),
                })
                .collect(),
        })
        .collect()
}
