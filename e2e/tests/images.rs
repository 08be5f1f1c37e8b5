//! The container images' Dockerfiles (`deploy/docker/`), checked without a Docker engine:
//! every `cargo build` they run names packages and binaries the workspace has, every binary
//! they copy out is one those commands build, the entrypoint is one of them, and the build
//! context `.dockerignore` leaves holds a workspace cargo can resolve with `--locked`, and
//! each image's runtime stage has the shared libraries its binaries link (`ldd`).
//!
//! Nothing here builds an image (there is no Docker engine where the tests run); the README
//! says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `cargo metadata` of the workspace at `dir`: package name → its binary targets' source files.
fn binaries(dir: &Path) -> Result<BTreeMap<String, BTreeMap<String, PathBuf>>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args([
            "metadata",
            "--locked",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let metadata: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let mut packages = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let bins = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| {
                Some((
                    t["name"].as_str()?.to_string(),
                    PathBuf::from(t["src_path"].as_str()?),
                ))
            })
            .collect();
        packages.insert(
            package["name"].as_str().unwrap_or_default().to_string(),
            bins,
        );
    }
    Ok(packages)
}

/// A Dockerfile's instructions with line continuations joined.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// `(package, binary)` pairs each `cargo build` in a RUN instruction builds.
fn cargo_builds(instructions: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for run in instructions.iter().filter(|i| i.starts_with("RUN ")) {
        for command in run.split("&&") {
            let words: Vec<&str> = command.split_whitespace().collect();
            let Some(at) = words.windows(2).position(|w| w == ["cargo", "build"]) else {
                continue;
            };
            let words = &words[at..];
            assert!(
                words.contains(&"--locked"),
                "`{command}` must use Cargo.lock (--locked)"
            );
            assert!(
                words.contains(&"--release"),
                "`{command}` must build --release"
            );
            let package = words
                .windows(2)
                .find(|w| w[0] == "-p")
                .map(|w| w[1].to_string())
                .unwrap_or_else(|| panic!("`{command}` names its package with -p"));
            for bin in words.windows(2).filter(|w| w[0] == "--bin") {
                out.push((package.clone(), bin[1].to_string()));
            }
        }
    }
    out
}

struct Image {
    dockerfile: &'static str,
    entrypoint: &'static str,
    user: &'static str,
}

const IMAGES: [Image; 2] = [
    Image {
        dockerfile: "deploy/docker/operator.Dockerfile",
        entrypoint: "signpost-operator",
        user: "65532:65532",
    },
    Image {
        dockerfile: "deploy/docker/router.Dockerfile",
        entrypoint: "signpost-router",
        // Root with capabilities dropped by the pod; see the chart README.
        user: "0:0",
    },
];

#[test]
fn dockerfiles_build_binaries_the_workspace_has() {
    let workspace = binaries(&root()).unwrap_or_else(|e| panic!("{e}"));
    for image in IMAGES {
        let text = std::fs::read_to_string(root().join(image.dockerfile)).expect("Dockerfile");
        let steps = instructions(&text);
        let froms: Vec<&String> = steps.iter().filter(|i| i.starts_with("FROM ")).collect();
        assert_eq!(
            froms.len(),
            2,
            "{}: a build stage and a runtime stage",
            image.dockerfile
        );
        assert!(
            froms[0].starts_with("FROM rust:1.9") && froms[0].contains("-bookworm AS build"),
            "{}: builder is rust:1.9x-bookworm",
            image.dockerfile
        );
        let built = cargo_builds(&steps);
        assert!(!built.is_empty(), "{}: runs cargo build", image.dockerfile);
        for (package, bin) in &built {
            let bins = workspace
                .get(package)
                .unwrap_or_else(|| panic!("{}: no package `{package}`", image.dockerfile));
            assert!(
                bins.contains_key(bin),
                "{}: package `{package}` has no binary `{bin}` (it has {:?})",
                image.dockerfile,
                bins.keys().collect::<Vec<_>>()
            );
        }
        // Every binary taken out of target/release is one that was built.
        let built_names: BTreeSet<&str> = built.iter().map(|(_, b)| b.as_str()).collect();
        let mut copied = BTreeSet::new();
        for step in &steps {
            for word in step.split_whitespace() {
                if let Some(bin) = word.strip_prefix("target/release/") {
                    assert!(
                        built_names.contains(bin),
                        "{}: copies unbuilt `{bin}`",
                        image.dockerfile
                    );
                    copied.insert(bin.to_string());
                }
            }
        }
        assert_eq!(
            copied.len(),
            built_names.len(),
            "{}: every built binary is shipped",
            image.dockerfile
        );
        let entrypoint = steps
            .iter()
            .rfind(|i| i.starts_with("ENTRYPOINT "))
            .expect("ENTRYPOINT");
        assert_eq!(
            entrypoint,
            &format!("ENTRYPOINT [\"/usr/local/bin/{}\"]", image.entrypoint)
        );
        assert!(copied.contains(image.entrypoint));
        let user = steps
            .iter()
            .rfind(|i| i.starts_with("USER "))
            .expect("USER");
        assert_eq!(
            user,
            &format!("USER {}", image.user),
            "{}",
            image.dockerfile
        );
    }
}

/// The few `.dockerignore` pattern forms used: `dir/`, `**/dir/`, `*.ext`.
fn ignored(patterns: &[String], relative: &Path) -> bool {
    let path = relative.to_string_lossy();
    patterns.iter().any(|p| {
        if let Some(dir) = p.strip_prefix("**/").and_then(|d| d.strip_suffix('/')) {
            relative.components().any(|c| c.as_os_str() == dir)
        } else if let Some(dir) = p.strip_suffix('/') {
            relative.starts_with(dir)
        } else if let Some(ext) = p.strip_prefix("*.") {
            !relative.starts_with("target") && path.ends_with(&format!(".{ext}"))
        } else {
            panic!(".dockerignore pattern `{p}` is not one of the forms this test knows")
        }
    })
}

fn copy_context(from: &Path, to: &Path, patterns: &[String], relative: &Path) {
    for entry in std::fs::read_dir(from.join(relative)).expect("readable") {
        let entry = entry.expect("entry");
        let rel = relative.join(entry.file_name());
        if ignored(patterns, &rel) {
            continue;
        }
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            std::fs::create_dir_all(to.join(&rel)).expect("mkdir");
            copy_context(from, to, patterns, &rel);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&rel)).expect("copy");
        }
    }
}

/// The build context without what `.dockerignore` leaves out is a complete workspace: cargo
/// resolves it with the lock file, and every binary the images build has its source there.
#[test]
fn docker_build_context_holds_the_workspace() {
    let root = root();
    let patterns: Vec<String> = std::fs::read_to_string(root.join(".dockerignore"))
        .expect(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    assert!(
        ignored(&patterns, Path::new("target/debug/x")),
        "target/ stays out"
    );
    let context = tempfile::tempdir().expect("tempdir");
    copy_context(&root, context.path(), &patterns, Path::new(""));
    let packages = binaries(context.path()).unwrap_or_else(|e| panic!("{e}"));
    for image in IMAGES {
        let text = std::fs::read_to_string(root.join(image.dockerfile)).expect("Dockerfile");
        for (package, bin) in cargo_builds(&instructions(&text)) {
            let src = &packages[&package][&bin];
            assert!(
                src.starts_with(context.path()) && src.is_file(),
                "{bin}: {}",
                src.display()
            );
        }
    }
}

/// The shared libraries `binary` needs (`ldd`), by file name.
fn needed_libraries(binary: &Path) -> Result<BTreeSet<String>, String> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ldd {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
        .collect())
}

/// What each image's runtime stage provides is enough for its binaries: the operator's
/// distroless `cc` base has glibc and libgcc_s only (no libelf), the router's Debian slim stage
/// installs libelf1 and zlib1g. Checked on this machine's build of the same binaries.
#[test]
fn each_image_base_has_the_libraries_its_binaries_link() {
    let glibc = ["linux-vdso.so.1", "libc.so.6", "libm.so.6", "libgcc_s.so.1"];
    let loader = |l: &str| l.starts_with("ld-linux");
    let router_extra = ["libelf.so.1", "libz.so.1"];
    for (binary, extra) in [
        ("signpost-operator", &[][..]),
        ("signpostctl", &[][..]),
        ("signpost-router", &router_extra[..]),
    ] {
        let path = signpost_e2e::binary(binary).unwrap_or_else(|e| panic!("{e}"));
        let needed = needed_libraries(&path).unwrap_or_else(|e| panic!("{e}"));
        let missing: Vec<&String> = needed
            .iter()
            .filter(|l| !loader(l) && !glibc.contains(&l.as_str()) && !extra.contains(&l.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{binary} links {missing:?}, which its image's runtime stage does not install"
        );
    }
}
