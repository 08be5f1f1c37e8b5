//! The last-known-good config on disk: the last snapshot this router applied, so that it comes
//! back up configured when the operator is unreachable.
//!
//! One file, `last-known-good.pb` in the router's state directory: a `signpost.v1.Snapshot`
//! (version + config, the config's bytes exactly as received) — `protoc --decode
//! signpost.v1.Snapshot` reads it. It is replaced atomically (write a temporary file beside it,
//! fsync, rename, fsync the directory), so a crash leaves the old file or the new one, never a
//! mix. On load it passes the same checks as a snapshot from the stream (it decodes, hashes to
//! its version, names this router).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use super::snapshot::{self, Checked, RawSnapshot};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "last-known-good.pb";

/// The last-known-good file of one router.
#[derive(Clone, Debug)]
pub struct LastKnownGood {
    path: PathBuf,
}

impl LastKnownGood {
    /// The file in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored snapshot, checked for `router`. `Ok(None)` when there is none yet.
    pub fn load(&self, router: &str) -> Result<Option<Checked>, String> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let raw = RawSnapshot::decode(bytes.as_slice()).map_err(|e| {
            format!(
                "{}: not a last-known-good file ({e}); it is replaced by the next config",
                self.path.display()
            )
        })?;
        snapshot::check(raw, router)
            .map(Some)
            .map_err(|r| format!("{}: {}", self.path.display(), r.error))
    }

    /// Replaces the stored snapshot.
    pub fn store(&self, version: &str, encoded: &[u8]) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)
            .map_err(|e| format!("creating the directory of {}: {e}", self.path.display()))?;
        let bytes = RawSnapshot::new(version, encoded.to_vec()).encode_to_vec();
        write_atomic(&self.path, &bytes, 0o644)
    }
}

/// Writes `bytes` to `path` through a file beside it (created with `mode`): write, fsync,
/// rename, fsync the directory — a crash leaves the old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| fail("writing beside", e))?;
    f.write_all(bytes).map_err(|e| fail("writing beside", e))?;
    f.sync_all().map_err(|e| fail("syncing beside", e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| fail("replacing", e))?;
    if let Ok(d) = fs::File::open(dir) {
        // The rename's durability; the data itself is already synced.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use signpost_proto::v1::RouterConfig;

    use super::*;

    fn encoded(router: &str) -> (String, Vec<u8>) {
        let bytes = RouterConfig {
            router: router.into(),
            key_epoch: 1,
            ..Default::default()
        }
        .encode_to_vec();
        (snapshot::version_of(&bytes), bytes)
    }

    #[test]
    fn stored_then_loaded_and_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lkg = LastKnownGood::in_dir(&dir.path().join("state"));
        assert_eq!(lkg.load("store-1"), Ok(None));
        let (v1, c1) = encoded("store-1");
        lkg.store(&v1, &c1).expect("store");
        let loaded = lkg.load("store-1").expect("load").expect("present");
        assert_eq!(
            (loaded.version.as_str(), loaded.encoded.as_slice()),
            (v1.as_str(), &c1[..])
        );
        let mut c2 = c1.clone();
        c2.extend_from_slice(&[0x60, 0x02]); // key_epoch again: the last value wins
        let v2 = snapshot::version_of(&c2);
        lkg.store(&v2, &c2).expect("store");
        let loaded = lkg.load("store-1").expect("load").expect("present");
        assert_eq!(loaded.version, v2);
        assert_eq!(loaded.config.key_epoch, 2);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, [FILE_NAME]);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lkg = LastKnownGood::in_dir(dir.path());
        let (v, c) = encoded("store-1");
        lkg.store(&v, &c).expect("store");
        let mut bytes = fs::read(lkg.path()).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        fs::write(lkg.path(), &bytes).expect("write");
        let err = lkg.load("store-1").err().unwrap_or_default();
        assert!(err.contains("damaged or cut short"), "{err}");
        fs::write(lkg.path(), b"\xff\xff\xff").expect("write");
        let err = lkg.load("store-1").err().unwrap_or_default();
        assert!(err.contains("not a last-known-good file"), "{err}");
    }

    #[test]
    fn another_routers_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lkg = LastKnownGood::in_dir(dir.path());
        let (v, c) = encoded("store-2");
        lkg.store(&v, &c).expect("store");
        let err = lkg.load("store-1").err().unwrap_or_default();
        assert!(err.contains("is for router `store-2`"), "{err}");
    }
}
