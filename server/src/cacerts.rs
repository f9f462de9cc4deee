//! Istio's plug-in CA from the cluster: the `cacerts` Secret of the root namespace
//! (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`), which istiod mounts as
//! files. shoal writes it into its CA directory before the CA loads (so the CA signs with
//! the operator's intermediate), and again whenever the Secret changes, where the CA's
//! periodic check picks it up as it does an edit of the files.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

/// The Secret's name and the files it holds, as Istio names them.
pub const NAME: &str = "cacerts";
const FILES: [&str; 4] = [
    "ca-cert.pem",
    "ca-key.pem",
    "root-cert.pem",
    "cert-chain.pem",
];

#[derive(Debug, thiserror::Error)]
pub enum CacertsError {
    #[error("reading Secret {namespace}/{NAME}: {source}")]
    Read {
        namespace: String,
        source: kube::Error,
    },
    #[error(
        "Secret {namespace}/{NAME} lacks {missing:?} (Istio's plug-in CA needs all of {FILES:?})"
    )]
    Incomplete {
        namespace: String,
        missing: Vec<&'static str>,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The plug-in files of a Secret; an error names what is missing.
fn files(namespace: &str, secret: &Secret) -> Result<Vec<(&'static str, Vec<u8>)>, CacertsError> {
    let data = secret.data.clone().unwrap_or_default();
    // `cert-chain.pem` may be empty: a root plugged in as the signing CA has no chain
    // above it (the CA itself checks what the files hold).
    let missing: Vec<&'static str> = FILES
        .into_iter()
        .filter(|f| {
            data.get(*f)
                .is_none_or(|v| v.0.is_empty() && *f != "cert-chain.pem")
        })
        .collect();
    if !missing.is_empty() {
        return Err(CacertsError::Incomplete {
            namespace: namespace.to_string(),
            missing,
        });
    }
    Ok(FILES
        .into_iter()
        .filter_map(|f| data.get(f).map(|v| (f, v.0.clone())))
        .collect())
}

/// Writes the files into `dir` (each replaced whole, the key readable by shoal only);
/// returns whether anything changed.
fn write(dir: &Path, files: &[(&'static str, Vec<u8>)]) -> Result<bool, CacertsError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CacertsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut changed = false;
    for (name, bytes) in files {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|b| b == *bytes) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        #[cfg(unix)]
        if *name == "ca-key.pem" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        changed = true;
    }
    Ok(changed)
}

/// Before the CA loads: writes the Secret's files into `dir` when the Secret exists.
/// `Ok(false)`: there is no such Secret (the CA uses its directory as it is).
pub async fn install(client: &Client, namespace: &str, dir: &Path) -> Result<bool, CacertsError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get_opt(NAME)
        .await
        .map_err(|source| CacertsError::Read {
            namespace: namespace.to_string(),
            source,
        })?;
    let Some(secret) = secret else {
        return Ok(false);
    };
    write(dir, &files(namespace, &secret)?)?;
    tracing::info!(secret = %format!("{namespace}/{NAME}"), dir = %dir.display(), "plug-in CA read from the cluster");
    Ok(true)
}

/// Keeps `dir` equal to the Secret while running (a rotation by the operator).
pub async fn follow(client: Client, namespace: String, dir: PathBuf) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let stream = watcher::watcher(
        api,
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
    )
    .default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let secret = match event {
            Ok(Event::Apply(s) | Event::InitApply(s)) => s,
            Ok(Event::Delete(_)) => {
                tracing::warn!("Secret {namespace}/{NAME} deleted; the CA keeps its current files");
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "watching {NAME}; retrying");
                continue;
            }
        };
        match files(&namespace, &secret).and_then(|f| write(&dir, &f)) {
            Ok(true) => tracing::info!("plug-in CA files updated from Secret {namespace}/{NAME}"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "plug-in CA Secret refused; the CA keeps its current files")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(keys: &[&str]) -> Secret {
        Secret {
            data: Some(
                keys.iter()
                    .map(|k| (k.to_string(), ByteString(format!("{k} bytes").into_bytes())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn an_incomplete_secret_is_refused_by_name_and_a_complete_one_written_once() {
        let err = files("istio-system", &secret(&["ca-cert.pem", "ca-key.pem"]));
        assert!(
            matches!(&err, Err(CacertsError::Incomplete { missing, .. }) if *missing == ["root-cert.pem", "cert-chain.pem"]),
            "{err:?}"
        );
        let mut rooted = secret(&FILES);
        if let Some(d) = rooted.data.as_mut() {
            d.insert("cert-chain.pem".into(), ByteString(Vec::new()));
        }
        assert!(
            files("istio-system", &rooted).is_ok(),
            "a root signs with no chain"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let all = files("istio-system", &secret(&FILES)).unwrap_or_else(|e| panic!("{e}"));
        assert!(write(dir.path(), &all).unwrap_or_else(|e| panic!("{e}")));
        assert!(
            !write(dir.path(), &all).unwrap_or_else(|e| panic!("{e}")),
            "unchanged"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("root-cert.pem")).unwrap_or_default(),
            "root-cert.pem bytes"
        );
    }
}
