//! Local mode: the operator fed from a directory of manifests instead of the Kubernetes API.
//! It compiles the directory, serves the configs over [`crate::distribution`], watches the
//! directory and recompiles on change (incrementally), so only routers whose config changed
//! get a new snapshot.
//!
//! A change that cannot be read — broken YAML, a document admission refuses — changes nothing:
//! the last good configs stay served and the error is logged until the directory is fixed.
//! A router whose own object has errors keeps its last good config too; a router whose object
//! is removed stops being served.
//!
//! The directory is polled (file list, sizes and modification times) rather than watched
//! with inotify: polling every 200 ms costs a few `stat` calls and behaves the same on every
//! filesystem, including the bind mounts and ConfigMap volumes (symlink swaps) it is used with.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::admission::Admission;
use crate::compiler::{Compiler, Diagnostic, Options, RouterOutput, Severity};
use crate::distribution::{self, Configs, Distribution};
use crate::manifests;

/// The master secret for peer keys: from `file` (64 hex digits, or 32 raw bytes) when given;
/// otherwise from `default_file`, which is created (0600, random) when absent, so that configs
/// and their versions stay the same across restarts.
pub fn key_master(file: Option<&Path>, default_file: &Path) -> Result<[u8; 32], String> {
    let path = match file {
        Some(f) => f,
        None => {
            if !default_file.exists() {
                let mut key = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                    .map_err(|_| "the system random generator failed".to_string())?;
                crate::identity::write_atomic(default_file, hex::encode(key).as_bytes(), 0o600)
                    .map_err(|e| e.to_string())?;
                tracing::info!("created a new key master in {}", default_file.display());
            }
            default_file
        }
    };
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(key);
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|e| {
        format!(
            "{}: not a key master ({e}): it must hold 64 hex digits or 32 raw bytes",
            path.display()
        )
    })?;
    Ok(key)
}

/// What one look at the directory produced.
#[derive(Debug)]
pub enum Reload {
    /// The manifests were read and compiled; these routers' versions changed (added ones
    /// included) and these were removed.
    Compiled {
        changed: Vec<String>,
        removed: Vec<String>,
        /// Routers kept on their last good config because their own objects have errors.
        kept: Vec<String>,
        diagnostics: Vec<Diagnostic>,
    },
    /// The manifests could not be used; the last good configs are still served.
    Refused { errors: Vec<String> },
}

/// The file list of a directory with each file's size and modification time: when it changes,
/// something was edited, added or removed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DirStamp(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl DirStamp {
    pub fn read(dir: &Path) -> Self {
        let files = manifests::manifest_files(dir).unwrap_or_default();
        Self(
            files
                .into_iter()
                .map(|f| {
                    let meta = std::fs::metadata(&f).ok();
                    let len = meta.as_ref().map_or(0, |m| m.len());
                    let mtime = meta.and_then(|m| m.modified().ok());
                    (f, len, mtime)
                })
                .collect(),
        )
    }
}

/// The compiler and its last good output for one manifest directory.
pub struct LocalMode {
    dir: PathBuf,
    admission: Admission,
    compiler: Compiler,
    served: Configs,
    /// The directory as it was when last read.
    stamp: DirStamp,
}

impl LocalMode {
    pub fn new(dir: &Path, options: Options) -> Self {
        Self {
            dir: dir.to_path_buf(),
            admission: Admission::new(),
            compiler: Compiler::new(options),
            served: Configs::new(),
            stamp: DirStamp::default(),
        }
    }

    /// The configs to serve: the last good compile.
    pub fn served(&self) -> &Configs {
        &self.served
    }

    /// Reads and compiles the directory; on success the result becomes what [`Self::served`]
    /// returns.
    pub fn reload(&mut self) -> Reload {
        // Stamped before reading: an edit made while reading is seen by the next poll.
        self.stamp = DirStamp::read(&self.dir);
        let documents = match manifests::read_documents(&self.dir) {
            Ok(d) => d,
            Err(e) => {
                return Reload::Refused {
                    errors: vec![e.to_string()],
                };
            }
        };
        let intent = match manifests::decode(&documents, &self.admission) {
            Ok(intent) => intent,
            Err(errors) => {
                return Reload::Refused {
                    errors: errors.iter().map(ToString::to_string).collect(),
                };
            }
        };
        let compiled = self.compiler.compile(&intent);
        let next = distribution::next_served(&self.served, compiled.routers, |name| {
            intent
                .routers
                .iter()
                .any(|r| r.metadata.name.as_deref() == Some(name))
        });
        self.served = next.configs;
        Reload::Compiled {
            changed: next.changed,
            removed: next.removed,
            kept: next.kept,
            diagnostics: compiled.diagnostics,
        }
    }
}

/// Logs what a reload did.
pub fn log_reload(reload: &Reload, served: &BTreeMap<String, Arc<RouterOutput>>) {
    match reload {
        Reload::Refused { errors } => {
            for e in errors {
                tracing::error!("{e}");
            }
            tracing::error!(
                "the manifests cannot be used; still serving the last good configs ({} routers) \
                 until they are fixed",
                served.len()
            );
        }
        Reload::Compiled {
            changed,
            removed,
            kept,
            diagnostics,
        } => {
            for d in diagnostics {
                match d.severity {
                    Severity::Error => tracing::error!("{d}"),
                    Severity::Warning => tracing::warn!("{d}"),
                }
            }
            for name in kept {
                tracing::warn!(
                    router = name.as_str(),
                    "router has errors; it keeps its last good config"
                );
            }
            tracing::info!(
                routers = served.len(),
                changed = changed.len(),
                removed = removed.len(),
                "compiled: {}",
                if changed.is_empty() {
                    "no config changed".to_string()
                } else {
                    format!("new versions for {}", changed.join(", "))
                }
            );
        }
    }
}

/// Polls the directory every `poll` and, after each change, recompiles and publishes the routers
/// whose config changed, until `shutdown` completes. Call [`LocalMode::reload`] and publish
/// once first, so that routers are served before the first poll.
pub async fn watch(
    mut local: LocalMode,
    distribution: Distribution,
    poll: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let dir = local.dir.clone();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        if DirStamp::read(&dir) == local.stamp {
            continue;
        }
        // Compiling a large chain takes a while: keep the runtime's threads free for streams.
        let (back, reload) = match tokio::task::spawn_blocking(move || {
            let reload = local.reload();
            (local, reload)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("the compiler stopped: {e}");
                return;
            }
        };
        local = back;
        log_reload(&reload, local.served());
        if matches!(&reload, Reload::Compiled { changed, removed, .. }
            if !changed.is_empty() || !removed.is_empty())
        {
            distribution.publish(local.served().clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "\
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: hub-1}
spec:
  role: hub
  interfaces:
    - {name: wan, role: wan, neighborhood: internet, vector: broadband, addresses: [198.51.100.1/24]}
    - {name: lan, role: lan, addresses: [10.100.0.1/16], networks: [{name: dc, prefixes: [10.100.0.0/16]}]}
";
    const STORE: &str = "\
apiVersion: signpost.dev/v1alpha1
kind: Router
metadata: {name: store-1}
spec:
  role: edge
  interfaces:
    - {name: wan, role: wan, neighborhood: internet, vector: broadband, addresses: [203.0.113.10/24]}
    - {name: lan, role: lan, addresses: [10.1.0.1/24], networks: [{name: pos, prefixes: [10.1.0.0/24]}]}
";
    const TENANT: &str = "\
apiVersion: signpost.dev/v1alpha1
kind: Tenant
metadata: {name: pos}
spec: {networks: [pos]}
";

    fn options() -> Options {
        Options {
            key_master: [7; 32],
            key_epoch: 0,
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write manifest");
    }

    fn changed(reload: &Reload) -> Vec<String> {
        match reload {
            Reload::Compiled { changed, .. } => changed.clone(),
            Reload::Refused { errors } => panic!("refused: {errors:?}"),
        }
    }

    #[test]
    fn the_key_master_is_created_once_and_read_as_hex_or_raw() {
        let dir = tempfile::tempdir().expect("tempdir");
        let default = dir.path().join("key-master");
        let first = key_master(None, &default).expect("create");
        assert_eq!(key_master(None, &default).ok(), Some(first));
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [9u8; 32]).expect("write");
        assert_eq!(key_master(Some(&raw), &default).ok(), Some([9; 32]));
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "not hex\n").expect("write");
        let err = key_master(Some(&bad), &default).err().unwrap_or_default();
        assert!(err.contains("64 hex digits or 32 raw bytes"), "{err}");
    }

    #[test]
    fn a_broken_manifest_keeps_the_last_good_configs() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "hub.yaml", HUB);
        write(dir.path(), "store.yaml", STORE);
        let mut local = LocalMode::new(dir.path(), options());
        assert_eq!(changed(&local.reload()), ["hub-1", "store-1"]);
        let before = local.served().clone();

        write(dir.path(), "store.yaml", "kind: Router\n  bad: [indent\n");
        match local.reload() {
            Reload::Refused { errors } => {
                assert!(
                    errors.iter().any(|e| e.contains("store.yaml")),
                    "{errors:?}"
                )
            }
            other => panic!("a broken file was used: {other:?}"),
        }
        assert_eq!(local.served(), &before);

        // Admission refusals count as broken too: half a directory is not what the user meant.
        write(
            dir.path(),
            "store.yaml",
            &STORE.replace("role: edge", "role: sideways"),
        );
        assert!(matches!(local.reload(), Reload::Refused { .. }));
        assert_eq!(local.served(), &before);
    }

    #[test]
    fn a_change_gives_new_versions_only_where_configs_changed_and_removal_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "hub.yaml", HUB);
        write(dir.path(), "store.yaml", STORE);
        let mut local = LocalMode::new(dir.path(), options());
        local.reload();
        let stamp = DirStamp::read(dir.path());
        write(dir.path(), "tenant.yaml", TENANT);
        assert_ne!(DirStamp::read(dir.path()), stamp);
        let reload = local.reload();
        assert_eq!(
            changed(&reload),
            ["store-1"],
            "the hub has no tenant on its LAN"
        );

        std::fs::remove_file(dir.path().join("store.yaml")).expect("rm");
        match local.reload() {
            Reload::Compiled { removed, .. } => assert_eq!(removed, ["store-1"]),
            other => panic!("{other:?}"),
        }
        assert!(!local.served().contains_key("store-1"));
    }
}
