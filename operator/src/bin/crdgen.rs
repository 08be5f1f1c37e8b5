//! Writes the CRDs generated from the Rust types to `crds/` and to the Helm chart's
//! `charts/signpost/crds/` (or only to the directory given):
//!
//!     cargo run -p signpost-operator --bin crdgen
//!
//! Neither copy is edited by hand; `operator/tests/crds.rs` fails when either drifts.

use std::path::{Path, PathBuf};

fn main() {
    let dirs = match std::env::args().nth(1) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            vec![root.join("crds"), root.join("charts/signpost/crds")]
        }
    };
    for dir in &dirs {
        if let Err(e) = run(dir) {
            eprintln!("crdgen: {e}");
            std::process::exit(1);
        }
    }
}

fn run(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for crd in signpost_operator::crd::all() {
        let path = dir.join(signpost_operator::crd::file_name(&crd));
        let yaml = signpost_operator::crd::to_yaml(&crd).map_err(|e| format!("{e}"))?;
        std::fs::write(&path, yaml).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
