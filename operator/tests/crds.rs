//! `crds/` is generated from the Rust types; these tests keep the two in step and check that the
//! generated schemas are ones the API server accepts.

use std::path::PathBuf;

use signpost_operator::crd;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Both copies `crdgen` writes: the repository's `crds/` and the Helm chart's (Helm installs
/// the files in a chart's `crds/` before its templates).
#[test]
fn crds_are_current() {
    for dir in ["crds", "charts/signpost/crds"] {
        assert_generated(dir);
    }
}

fn assert_generated(dir: &str) {
    let path = root().join(dir);
    let mut expected = Vec::new();
    for c in crd::all() {
        let name = crd::file_name(&c);
        let want = crd::to_yaml(&c).expect("CRD serializes");
        let have = std::fs::read_to_string(path.join(&name)).unwrap_or_default();
        assert!(
            want == have,
            "{dir}/{name} differs from the Rust types: run `cargo run -p signpost-operator --bin crdgen`"
        );
        expected.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{dir}/: {e}"))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected.sort();
    assert_eq!(
        present, expected,
        "{dir}/ holds exactly the generated files"
    );
}

#[test]
fn every_kind_has_status_printer_columns_and_short_names() {
    for c in crd::all() {
        let kind = &c.spec.names.kind;
        assert_eq!(c.spec.group, "signpost.dev");
        assert_eq!(c.spec.scope, "Namespaced");
        assert!(
            !c.spec
                .names
                .short_names
                .clone()
                .unwrap_or_default()
                .is_empty(),
            "{kind}: short name"
        );
        let v = &c.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind}: status subresource"
        );
        let columns = v.additional_printer_columns.clone().unwrap_or_default();
        assert!(
            columns.iter().any(|c| c.name == "Ready"),
            "{kind}: Ready column"
        );
        let status = serde_json::to_value(
            v.schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref()),
        )
        .expect("schema serializes");
        for field in ["observedGeneration", "conditions"] {
            assert!(
                status
                    .pointer(&format!("/properties/status/properties/{field}"))
                    .is_some(),
                "{kind}: status.{field}"
            );
        }
    }
}

#[test]
fn service_kind_does_not_hide_core_services() {
    let service = crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == "Service")
        .expect("Service CRD");
    let short = service.spec.names.short_names.unwrap_or_default();
    assert!(
        !short.iter().any(|s| s == "svc"),
        "must not take core Service's short name"
    );
    assert_eq!(short, vec!["ssvc".to_string()]);
    assert_eq!(
        service.metadata.name.as_deref(),
        Some("services.signpost.dev")
    );
}

#[test]
fn cel_rules_compile_and_have_bounded_cost() {
    for c in crd::all() {
        let kind = &c.spec.names.kind;
        let schema = serde_json::to_value(
            c.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref()),
        )
        .expect("schema serializes");
        let compiled = kube_cel::compile_schema(&schema);
        assert!(
            !compiled.has_errors(),
            "{kind}: CEL rules that do not compile: {:?}",
            compiled.compilation_errors()
        );
        let mut rules = Vec::new();
        collect_rules(&schema, &mut rules);
        assert!(!rules.is_empty(), "{kind} has CEL rules");
        for (rule, node) in rules {
            // Cost is estimated against the schema node the rule is attached to.
            let warnings = kube_cel::estimate_rule_cost(&rule, &kube_cel::compile_schema(node));
            assert!(warnings.is_empty(), "{kind}: rule `{rule}`: {warnings:?}");
        }
    }
}

fn collect_rules<'a>(v: &'a serde_json::Value, out: &mut Vec<(String, &'a serde_json::Value)>) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(rules) = map
                .get("x-kubernetes-validations")
                .and_then(|r| r.as_array())
            {
                out.extend(
                    rules
                        .iter()
                        .filter_map(|r| Some((r.get("rule")?.as_str()?.to_string(), v))),
                );
            }
            map.values().for_each(|x| collect_rules(x, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|x| collect_rules(x, out)),
        _ => {}
    }
}
