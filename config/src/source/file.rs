//! The file source: a directory tree of multi-document YAML files, watched for changes.
//!
//! Files ending in `.yaml`/`.yml` anywhere below the root are read (hidden files and
//! directories are skipped, as are editor backups). A change to a file re-reads that file
//! only; anything else (a directory appearing, a ConfigMap's symlink swap, a lost event)
//! triggers a rescan that compares content hashes, so only files that really changed are
//! re-parsed.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{ConfigSource, SourceError, SourceUpdate};
use crate::parse::{ParsedDoc, parse_yaml, unreadable};

/// Cheap content fingerprint to tell whether a file really changed.
fn fingerprint(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// An editor's scratch file (`.x.yaml.swp`, `.#x`): never config, never worth a rescan.
/// Kubernetes' `..data` symlinks are not scratch files: their swap is how a mounted
/// ConfigMap changes.
fn is_scratch(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| (n.starts_with('.') && !n.starts_with("..")) || n.ends_with('~'))
}

/// How long the watcher waits for a burst of file events to settle before reading.
const SETTLE: Duration = Duration::from_millis(30);

#[derive(Debug, Clone)]
pub struct FileSource {
    root: PathBuf,
}

fn is_yaml(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n.ends_with('~'));
    !hidden
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        )
}

/// Every YAML file below `root`, sorted (so duplicate definitions resolve the same way
/// every time).
pub fn list_files(root: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| SourceError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with('.'));
            // Follow symlinks (Kubernetes mounts ConfigMaps through them).
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() && !hidden {
                stack.push(path);
            } else if meta.is_file() && is_yaml(&path) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and parses one file; a file that cannot be read yields one rejected document.
pub fn read_file(path: &Path) -> (u64, Vec<ParsedDoc>) {
    let (fp, docs) = read_file_if_changed(path, None);
    (fp, docs.unwrap_or_default())
}

/// Reads a file and parses it unless its content still has fingerprint `known`.
fn read_file_if_changed(path: &Path, known: Option<u64>) -> (u64, Option<Vec<ParsedDoc>>) {
    let source = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            let fp = fingerprint(&bytes);
            if known == Some(fp) {
                return (fp, None);
            }
            match String::from_utf8(bytes) {
                Ok(text) => (fp, Some(parse_yaml(&source, &text))),
                Err(e) => (
                    fp,
                    Some(vec![unreadable(&source, &format!("not UTF-8: {e}"))]),
                ),
            }
        }
        Err(e) => (
            0,
            Some(vec![unreadable(&source, &format!("cannot read: {e}"))]),
        ),
    }
}

impl FileSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileSource { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the whole tree once (for `shoal validate` and the initial load).
    pub fn load(&self) -> Result<Vec<(String, Vec<ParsedDoc>)>, SourceError> {
        Ok(list_files(&self.root)?
            .into_iter()
            .map(|p| (p.display().to_string(), read_file(&p).1))
            .collect())
    }

    async fn watch(self, tx: mpsc::Sender<SourceUpdate>) -> Result<(), SourceError> {
        let root_s = self.root.display().to_string();
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(move |ev| {
            let _ = ev_tx.send(ev);
        })
        .map_err(|e| SourceError::Watch {
            path: root_s.clone(),
            message: e.to_string(),
        })?;
        watcher
            .watch(&self.root, RecursiveMode::Recursive)
            .map_err(|e| SourceError::Watch {
                path: root_s.clone(),
                message: e.to_string(),
            })?;

        // Initial state, then the watch loop.
        let mut known: BTreeMap<PathBuf, u64> = BTreeMap::new();
        self.rescan(&mut known, &tx).await?;
        tx.send(SourceUpdate::Synced {
            source_kind: "files",
        })
        .await
        .map_err(|_| SourceError::Closed)?;

        while let Some(first) = ev_rx.recv().await {
            let mut events = vec![first];
            // Let a burst (an editor's write-rename-chmod, a `cp -r`) settle.
            loop {
                match tokio::time::timeout(SETTLE, ev_rx.recv()).await {
                    Ok(Some(ev)) => events.push(ev),
                    Ok(None) => return Ok(()),
                    Err(_) => break,
                }
            }
            let mut files = BTreeSet::new();
            let mut full = false;
            for ev in events {
                match ev {
                    // Reads (ours included) change nothing.
                    Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => {}
                    Ok(ev) if !ev.need_rescan() => {
                        for p in ev.paths {
                            if is_yaml(&p) && !p.is_dir() {
                                files.insert(p);
                            } else if !is_scratch(&p) {
                                full = true;
                            }
                        }
                    }
                    _ => full = true,
                }
            }
            if full {
                self.rescan(&mut known, &tx).await?;
            } else {
                for p in files {
                    self.refresh(&p, &mut known, &tx).await?;
                }
            }
        }
        Ok(())
    }

    async fn refresh(
        &self,
        path: &Path,
        known: &mut BTreeMap<PathBuf, u64>,
        tx: &mpsc::Sender<SourceUpdate>,
    ) -> Result<(), SourceError> {
        let source = path.display().to_string();
        if !path.is_file() {
            if known.remove(path).is_some() {
                tx.send(SourceUpdate::Remove { source })
                    .await
                    .map_err(|_| SourceError::Closed)?;
            }
            return Ok(());
        }
        let (fingerprint, docs) = read_file_if_changed(path, known.get(path).copied());
        let Some(docs) = docs else { return Ok(()) };
        known.insert(path.to_path_buf(), fingerprint);
        tracing::debug!(file = %source, docs = docs.len(), "config file changed");
        tx.send(SourceUpdate::Apply { source, docs })
            .await
            .map_err(|_| SourceError::Closed)
    }

    async fn rescan(
        &self,
        known: &mut BTreeMap<PathBuf, u64>,
        tx: &mpsc::Sender<SourceUpdate>,
    ) -> Result<(), SourceError> {
        let files = list_files(&self.root)?;
        let present: BTreeSet<&PathBuf> = files.iter().collect();
        let gone: Vec<PathBuf> = known
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for p in gone {
            self.refresh(&p, known, tx).await?;
        }
        for p in &files {
            self.refresh(p, known, tx).await?;
        }
        Ok(())
    }
}

impl ConfigSource for FileSource {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn run(
        self: Box<Self>,
        tx: mpsc::Sender<SourceUpdate>,
    ) -> Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>> {
        Box::pin((*self).watch(tx))
    }
}
