//! Writes the CRDs generated from the Rust types to `crds/` (or the directory given):
//!
//!     cargo run -p signpost-operator --bin crdgen
//!
//! `crds/` is never edited by hand; the `crds_are_current` test fails when it drifts.

use std::path::PathBuf;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds"));
    if let Err(e) = run(&dir) {
        eprintln!("crdgen: {e}");
        std::process::exit(1);
    }
}

fn run(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    for crd in signpost_operator::crd::all() {
        let path = dir.join(signpost_operator::crd::file_name(&crd));
        let yaml = signpost_operator::crd::to_yaml(&crd).map_err(|e| format!("{e}"))?;
        std::fs::write(&path, yaml).map_err(|e| format!("writing {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
