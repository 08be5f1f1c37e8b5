//! The GitOps objects in `deploy/gitops/`: the Argo CD Applications, the Flux GitRepository and
//! Kustomization, and the Argo CD health check in Lua.
//!
//! - Each object is validated against its CRD's schema (`@kubernetes-models`, generated from
//!   the Argo CD and Flux CRDs) and the ConfigMap against Kubernetes' own.
//! - What they apply, `kustomize build examples/retail` (`kubectl kustomize`, offline), is
//!   admitted by the chart's CRDs, CEL rules included.
//! - `health.lua` runs in real Lua interpreters against `health_test.yaml`'s objects, for
//!   each of the four kinds, and `argocd-cm-signpost-health.yaml` carries exactly that script.
//!
//! Tools are found by `tools/` (installed by `.ci/run`); missing ones fail in CI and print
//! `SKIPPED: ...` elsewhere. `SIGNPOST_REGENERATE=1` rewrites the ConfigMap from `health.lua`.

mod tools;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use signpost_operator::admission::Admission;
use signpost_operator::crd;

const KINDS: [&str; 4] = ["Tenant", "Service", "Policy", "Router"];

fn gitops() -> PathBuf {
    tools::root().join("deploy/gitops")
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn objects(relative: &str) -> Vec<Value> {
    tools::documents(&read(&gitops().join(relative)))
}

#[test]
fn gitops_objects_match_their_schemas() {
    let Some(validators) = tools::validators() else {
        return;
    };
    let mut all = Vec::new();
    for file in [
        "argocd/signpost-retail.yaml",
        "argocd/signpost-operator.yaml",
        "argocd/argocd-cm-signpost-health.yaml",
        "flux/signpost-retail.yaml",
    ] {
        all.extend(objects(file));
    }
    let (core, third): (Vec<&Value>, Vec<&Value>) = all
        .iter()
        .partition(|o| tools::schemas_for(o) == tools::Schemas::Kubernetes);
    assert_eq!(
        third.len(),
        4,
        "two Applications, a GitRepository, a Kustomization"
    );
    assert_eq!(
        core.len(),
        2,
        "the argocd-cm patch and Flux's target Namespace"
    );
    validators
        .third_party(&third)
        .unwrap_or_else(|e| panic!("{e}"));
    validators
        .kubernetes(&core)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// What the objects point at exists: a kustomization at the synced path, the chart and its
/// values file, and the same repository everywhere.
#[test]
fn gitops_objects_point_at_the_repository() {
    let repo = "https://github.com/signpost-dev/signpost.git";
    let retail = objects("argocd/signpost-retail.yaml");
    let source = &retail[0]["spec"]["source"];
    assert_eq!(source["repoURL"], repo);
    assert_eq!(source["path"], "examples/retail");

    let operator = objects("argocd/signpost-operator.yaml");
    let source = &operator[0]["spec"]["source"];
    assert_eq!(source["repoURL"], repo);
    let chart = tools::root().join(source["path"].as_str().expect("path"));
    assert!(chart.join("Chart.yaml").is_file());
    for values in source["helm"]["valueFiles"].as_array().expect("valueFiles") {
        assert!(
            chart.join(values.as_str().expect("name")).is_file(),
            "{values}"
        );
    }

    let flux = objects("flux/signpost-retail.yaml");
    let by_kind = |k: &str| {
        flux.iter()
            .find(|o| o["kind"] == k)
            .unwrap_or_else(|| panic!("{k}"))
    };
    let git = by_kind("GitRepository");
    let kustomization = by_kind("Kustomization");
    assert_eq!(git["spec"]["url"], repo);
    assert_eq!(
        kustomization["spec"]["sourceRef"]["name"],
        git["metadata"]["name"]
    );
    assert_eq!(
        kustomization["spec"]["targetNamespace"],
        by_kind("Namespace")["metadata"]["name"]
    );
    let path = kustomization["spec"]["path"].as_str().expect("path");
    assert_eq!(path, "./examples/retail");
    for dir in [path, "examples/retail"] {
        assert!(tools::root().join(dir).join("kustomization.yaml").is_file());
    }
}

/// Argo CD and Flux apply `kustomize build examples/retail`; every object in it must pass
/// admission with the CRDs the chart installs.
#[test]
fn what_gitops_applies_is_admitted_by_the_chart_crds() {
    let Some(kubectl) = tools::require(tools::kubectl(), "kubectl") else {
        return;
    };
    let built = tools::run(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(tools::root().join("examples/retail")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let admission = Admission::from_crds(&chart_crds());
    let objects = tools::documents(&built);
    assert!(
        objects.len() >= 10,
        "examples/retail builds to {} objects",
        objects.len()
    );
    for object in &objects {
        assert_eq!(
            tools::schemas_for(object),
            tools::Schemas::Signpost,
            "{object}"
        );
        if let Err(rejections) = admission.check(object) {
            panic!("{} refused: {rejections:?}", tools::name_of(object));
        }
    }
}

fn chart_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    let dir = tools::root().join("charts/signpost/crds");
    let mut crds = Vec::new();
    for c in crd::all() {
        let text = read(&dir.join(crd::file_name(&c)));
        crds.push(serde_yaml_ng::from_str(&text).expect("chart CRD parses"));
    }
    crds
}

// --- the health check ---

fn lua_literal(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // %q-style: every byte outside printable ASCII as a decimal escape (valid in 5.1 and 5.4).
        Value::String(s) => {
            let mut out = String::from("\"");
            for b in s.bytes() {
                match b {
                    b'"' | b'\\' => {
                        out.push('\\');
                        out.push(b as char);
                    }
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\{b}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!(
                    "[{}] = {}",
                    lua_literal(&Value::String(k.clone())),
                    lua_literal(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the script the way Argo CD does (the object as global `obj`, the chunk's return value
/// is the health) and returns (status, message).
fn health(lua: &PathBuf, script: &str, object: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua_literal(object)
    );
    let out =
        tools::run(Command::new(lua).arg("-e").arg(&program)).unwrap_or_else(|e| panic!("{e}"));
    let (status, message) = out.split_once('\n').unwrap_or((&out, ""));
    (status.to_string(), message.to_string())
}

#[test]
fn argocd_health_check_reports_each_outcome() {
    let Some(luas) = tools::require(tools::luas(), "lua5.1") else {
        return;
    };
    let script = read(&gitops().join("argocd/health.lua"));
    let cases: Value =
        serde_yaml_ng::from_str(&read(&gitops().join("argocd/health_test.yaml"))).expect("parses");
    let cases = cases["tests"].as_array().expect("tests");
    let mut seen = std::collections::BTreeSet::new();
    for lua in &luas {
        for case in cases {
            for kind in KINDS {
                let mut object = case["object"].clone();
                object["apiVersion"] = "signpost.dev/v1alpha1".into();
                object["kind"] = kind.into();
                let got = health(lua, &script, &object);
                let want = &case["healthStatus"];
                assert_eq!(
                    (got.0.as_str(), got.1.as_str()),
                    (
                        want["status"].as_str().expect("status"),
                        want["message"].as_str().expect("message")
                    ),
                    "{} / {kind} / {}",
                    lua.display(),
                    case["name"]
                );
                seen.insert(got.0);
            }
        }
    }
    let all: std::collections::BTreeSet<String> = ["Degraded", "Healthy", "Progressing"]
        .map(String::from)
        .into();
    assert_eq!(seen, all, "the cases cover every outcome");
}

/// The ConfigMap users apply, generated from `health.lua`: one key per kind (ConfigMap keys
/// cannot hold the `*` of a wildcard).
fn argocd_cm(script: &str) -> String {
    let mut out = String::from(
        "# Generated from health.lua: SIGNPOST_REGENERATE=1 cargo test -p signpost-operator --test gitops\n\
         # Argo CD health checks for the signpost.dev kinds; merge into argocd-cm:\n\
         #   kubectl -n argocd patch configmap argocd-cm --patch-file argocd-cm-signpost-health.yaml\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n  labels:\n    \
         app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\ndata:\n",
    );
    for kind in KINDS {
        out.push_str(&format!(
            "  resource.customizations.health.signpost.dev_{kind}: |\n"
        ));
        for line in script.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out
}

#[test]
fn argocd_cm_carries_the_tested_script() {
    let script = read(&gitops().join("argocd/health.lua"));
    let path = gitops().join("argocd/argocd-cm-signpost-health.yaml");
    let want = argocd_cm(&script);
    if std::env::var_os("SIGNPOST_REGENERATE").is_some() {
        std::fs::write(&path, &want).expect("writes");
    }
    assert!(
        read(&path) == want,
        "{} is not generated from health.lua: SIGNPOST_REGENERATE=1 cargo test -p signpost-operator --test gitops",
        path.display()
    );
    let cm = &tools::documents(&want)[0];
    let data = cm["data"].as_object().expect("data");
    let key = regex::Regex::new("^[-._a-zA-Z0-9]+$").expect("regex");
    assert_eq!(data.len(), KINDS.len());
    for (k, v) in data {
        assert!(key.is_match(k), "`{k}` is not a valid ConfigMap key");
        assert_eq!(v.as_str(), Some(script.as_str()), "{k}");
    }
}
