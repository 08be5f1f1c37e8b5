//! The example manifests against the generated CRDs: `examples/retail` must be admitted whole;
//! each file in `examples/invalid/schema` must be refused with the message its header documents;
//! each file in `examples/invalid/references` must pass admission (its mistake is for the
//! compiler to report).

use std::path::{Path, PathBuf};

use signpost_operator::admission::Admission;
use signpost_operator::manifests::{self, ManifestError};

/// Admission built from the checked-in `crds/` files (what `kubectl apply -f crds/` installs),
/// not from the Rust types; `crds_are_current` keeps the two equal.
fn admission() -> Admission {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let docs = manifests::read_documents(&dir).expect("crds/ is readable");
    let crds: Vec<_> = docs
        .into_iter()
        .map(|d| serde_json::from_value(d.value).expect("crds/ holds CustomResourceDefinitions"))
        .collect();
    assert_eq!(crds.len(), 4, "crds/ holds the four kinds");
    Admission::from_crds(&crds)
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The `# level:` and `# expect:` lines of an invalid example.
fn header(path: &Path) -> (String, String) {
    let text = std::fs::read_to_string(path).expect("readable example");
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("{} has no `{key}` line", path.display()))
    };
    (field("# level:"), field("# expect:"))
}

#[test]
fn retail_is_admitted_whole() {
    let docs = manifests::read_documents(&examples().join("retail")).expect("readable");
    let admission = admission();
    let intent = manifests::decode(&docs, &admission).unwrap_or_else(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("examples/retail is refused:\n{}", text.join("\n"))
    });
    assert_eq!(intent.tenants.len(), 4);
    assert_eq!(intent.services.len(), 5);
    assert_eq!(intent.policies.len(), 4);
    assert_eq!(intent.routers.len(), 5);
    // The kustomization.yaml is not ours and is skipped, not refused.
    assert!(
        docs.iter()
            .any(|d| d.value.get("kind").and_then(|k| k.as_str()) == Some("Kustomization"))
    );
}

fn invalid_files(level_dir: &str) -> Vec<PathBuf> {
    let files =
        manifests::manifest_files(&examples().join("invalid").join(level_dir)).expect("dir");
    assert!(
        files.len() >= 6,
        "examples/invalid/{level_dir} has its cases"
    );
    files
}

#[test]
fn schema_errors_are_refused_with_their_documented_message() {
    let admission = admission();
    let mut failures = Vec::new();
    for file in invalid_files("schema") {
        let (level, expect) = header(&file);
        assert_eq!(level, "schema", "{}", file.display());
        let docs = manifests::read_documents(&file).expect("valid YAML");
        match manifests::decode(&docs, &admission) {
            Ok(_) => failures.push(format!("{}: admitted, expected `{expect}`", file.display())),
            Err(errors) => {
                let text: Vec<String> = errors
                    .iter()
                    .flat_map(|e| match e {
                        ManifestError::Rejected { rejections, .. } => rejections
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>(),
                        other => vec![other.to_string()],
                    })
                    .collect();
                if !text.iter().any(|t| t.contains(&expect)) {
                    failures.push(format!(
                        "{}: expected `{expect}`, got:\n    {}",
                        file.display(),
                        text.join("\n    ")
                    ));
                }
                // One mistake per file: exactly one message.
                if text.len() != 1 {
                    failures.push(format!(
                        "{}: {} messages: {text:?}",
                        file.display(),
                        text.len()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn reference_errors_pass_admission() {
    let admission = admission();
    for file in invalid_files("references") {
        let (level, _expect) = header(&file);
        assert_eq!(level, "reference", "{}", file.display());
        let docs = manifests::read_documents(&file).expect("valid YAML");
        if let Err(errors) = manifests::decode(&docs, &admission) {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!(
                "{} must pass admission:\n{}",
                file.display(),
                text.join("\n")
            );
        }
    }
}
