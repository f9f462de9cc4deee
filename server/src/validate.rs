//! `shoal validate [DIR] [--etcd ENDPOINTS]`: everything `serve` would reject or warn
//! about, without serving. A directory is read as `serve --config-dir` reads it, an etcd
//! prefix once, as `serve --etcd` reads it at start.

use std::process::ExitCode;

use anyhow::Context;
use shoal_config::parse::ParsedDoc;
use shoal_config::source::file::FileSource;
use shoal_config::{ConfigStore, Severity};

use crate::cli::ValidateArgs;

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    // Every unit of config (a file, an etcd key) with its documents, and what was read.
    let mut units: Vec<(String, Vec<ParsedDoc>)> = Vec::new();
    let mut read = Vec::new();
    if let Some(dir) = &args.dir {
        if !dir.is_dir() {
            anyhow::bail!("{} is not a directory", dir.display());
        }
        let files = FileSource::new(dir).load()?;
        read.push(format!("{} file(s)", files.len()));
        units.extend(files);
    }
    if let Some(connection) = crate::config::etcd_connection(&args.etcd)? {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (revision, keys) = runtime
            .block_on(shoal_config::source::etcd::load(&connection))
            .with_context(|| {
                format!(
                    "reading {} from etcd at {}",
                    connection.prefix,
                    connection.endpoints.join(",")
                )
            })?;
        read.push(format!(
            "{} etcd key(s) below {} at revision {revision}",
            keys.len(),
            connection.prefix
        ));
        units.extend(keys.into_iter().map(|(key, doc)| (key, vec![doc])));
    }
    let mut store = ConfigStore::new();
    let mut skipped = std::collections::BTreeMap::<String, usize>::new();
    for (name, docs) in units {
        for d in &docs {
            if let shoal_config::parse::Outcome::Skipped { api_version, kind } = &d.outcome {
                *skipped.entry(format!("{api_version} {kind}")).or_default() += 1;
            }
        }
        store.apply(&name, docs);
    }
    let mut issues = store.issues();
    issues.extend(shoal_config::analyze::analyze(&store.snapshot()));
    if let Some(path) = &args.mesh_config {
        issues.extend(mesh_config_issues(path)?);
    }
    if let Some(path) = &args.mesh_networks {
        issues.extend(mesh_networks_issues(path)?);
    }
    let errors = issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .count();
    let warnings = issues.len() - errors;
    for i in &issues {
        if i.severity == Severity::Error || args.warnings {
            println!("{i}");
        }
    }
    for (kind, n) in &skipped {
        println!("note: skipped {n} object(s) of kind {kind} (not served by shoal)");
    }
    let snap = store.snapshot();
    println!(
        "{}, {} object(s) accepted, {errors} error(s), {warnings} warning(s){}",
        read.join(", "),
        snap.len(),
        if warnings > 0 && !args.warnings {
            " (--warnings to list them)"
        } else {
            ""
        }
    );
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The findings about a MeshNetworks file, each naming the file: an entry `serve` would
/// leave out is an error.
fn mesh_networks_issues(path: &std::path::Path) -> anyhow::Result<Vec<shoal_config::Issue>> {
    file_issues(
        "--mesh-networks",
        path,
        |text| match shoal_config::mesh_networks::parse(text) {
            Ok((_, left_out)) => left_out
                .into_iter()
                .map(|i| shoal_config::Issue::error(i.field, i.message))
                .collect(),
            Err(e) => vec![shoal_config::Issue::error("", e.to_string())],
        },
    )
}

/// The findings about a MeshConfig file, each naming the file.
fn mesh_config_issues(path: &std::path::Path) -> anyhow::Result<Vec<shoal_config::Issue>> {
    use shoal_config::mesh_config::{MeshConfigError, parse};
    file_issues("--mesh-config", path, |text| match parse(text) {
        Ok((_, warnings)) => warnings,
        Err(MeshConfigError::Invalid { field, message }) => {
            vec![shoal_config::Issue::error(field, message)]
        }
        Err(e) => vec![shoal_config::Issue::error("", e.to_string())],
    })
}

/// What `check` finds in the file `path` (given as `flag`), each finding naming the file.
fn file_issues(
    flag: &str,
    path: &std::path::Path,
    check: impl FnOnce(&str) -> Vec<shoal_config::Issue>,
) -> anyhow::Result<Vec<shoal_config::Issue>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))?;
    let origin = shoal_config::Origin {
        source: path.display().to_string().into(),
        doc: 1,
        line: 1,
        item: None,
    };
    Ok(check(&text)
        .into_iter()
        .map(|i| i.at(Some(&origin), None))
        .collect())
}
