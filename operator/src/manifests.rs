//! Reading intent from files: multi-document YAML (or JSON) manifests, as kept in a GitOps
//! repository. Local mode, `signpostctl render` and the tests read objects through here.
//!
//! Documents of other API groups (a Namespace, a ConfigMap) are skipped: a GitOps directory holds
//! more than Signpost objects. Documents of our group are checked by [`Admission`] first, then
//! decoded into the typed resources.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::admission::{Admission, Rejection};
use crate::crd::{GROUP, Policy, Router, Service, Tenant};

/// One YAML document and where it came from.
#[derive(Clone, Debug)]
pub struct Document {
    pub file: PathBuf,
    /// 1-based position of the document in its file.
    pub index: usize,
    pub value: Value,
}

impl Document {
    /// `Kind/name (file#index)`, for messages.
    pub fn describe(&self) -> String {
        let kind = self
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let name = self
            .value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        format!("{kind}/{name} ({}#{})", self.file.display(), self.index)
    }

    fn is_ours(&self) -> bool {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.split('/').next() == Some(GROUP))
    }
}

/// Why a file or document could not be used.
#[derive(Debug)]
pub enum ManifestError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    Yaml {
        file: PathBuf,
        index: usize,
        error: String,
    },
    Rejected {
        document: String,
        rejections: Vec<Rejection>,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, error } => write!(f, "reading {}: {error}", path.display()),
            Self::Yaml { file, index, error } => {
                write!(f, "{}#{index}: not valid YAML: {error}", file.display())
            }
            Self::Rejected {
                document,
                rejections,
            } => {
                write!(f, "{document} is invalid:")?;
                for r in rejections {
                    write!(f, "\n  {r}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// Splits one file's text into documents. Empty documents are skipped.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut out = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = Value::deserialize(de).map_err(|e| ManifestError::Yaml {
            file: file.to_path_buf(),
            index,
            error: e.to_string(),
        })?;
        if !value.is_null() {
            out.push(Document {
                file: file.to_path_buf(),
                index,
                value,
            });
        }
    }
    Ok(out)
}

/// The `.yaml`, `.yml` and `.json` files of a directory (recursively) or a single file, sorted so
/// that results never depend on directory order.
pub fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let io = |error| ManifestError::Io {
        path: path.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|error| ManifestError::Io {
            path: dir.clone(),
            error,
        })?;
        for entry in entries {
            let entry = entry.map_err(|error| ManifestError::Io {
                path: dir.clone(),
                error,
            })?;
            let p = entry.path();
            let file_type = entry.file_type().map_err(|error| ManifestError::Io {
                path: p.clone(),
                error,
            })?;
            if file_type.is_dir() {
                dirs.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Every document under `path` (a file or a directory).
pub fn read_documents(path: &Path) -> Result<Vec<Document>, ManifestError> {
    let mut out = Vec::new();
    for file in manifest_files(path)? {
        let text = std::fs::read_to_string(&file).map_err(|error| ManifestError::Io {
            path: file.clone(),
            error,
        })?;
        out.extend(parse_documents(&file, &text)?);
    }
    Ok(out)
}

/// The Signpost objects of a set of manifests.
#[derive(Clone, Debug, Default)]
pub struct Intent {
    pub tenants: Vec<Tenant>,
    pub services: Vec<Service>,
    pub policies: Vec<Policy>,
    pub routers: Vec<Router>,
}

/// Admits and decodes every Signpost document; other groups are skipped. Returns the objects
/// that were admitted and one error per refused document, so one mistake hides neither the
/// others nor the valid objects (`signpostctl render` compiles what it can).
pub fn decode_admitted(
    documents: &[Document],
    admission: &Admission,
) -> (Intent, Vec<ManifestError>) {
    let mut intent = Intent::default();
    let mut errors = Vec::new();
    for doc in documents.iter().filter(|d| d.is_ours()) {
        if let Err(rejections) = admission.check(&doc.value) {
            errors.push(ManifestError::Rejected {
                document: doc.describe(),
                rejections,
            });
            continue;
        }
        let kind = doc
            .value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let decoded = match kind {
            "Tenant" => typed(doc).map(|o| intent.tenants.push(o)),
            "Service" => typed(doc).map(|o| intent.services.push(o)),
            "Policy" => typed(doc).map(|o| intent.policies.push(o)),
            "Router" => typed(doc).map(|o| intent.routers.push(o)),
            _ => Ok(()), // admission refuses unknown kinds of our group
        };
        if let Err(e) = decoded {
            errors.push(e);
        }
    }
    (intent, errors)
}

/// Like [`decode_admitted`], but all or nothing: any refused document is an error.
pub fn decode(documents: &[Document], admission: &Admission) -> Result<Intent, Vec<ManifestError>> {
    let (intent, errors) = decode_admitted(documents, admission);
    if errors.is_empty() {
        Ok(intent)
    } else {
        Err(errors)
    }
}

fn typed<K: serde::de::DeserializeOwned>(doc: &Document) -> Result<K, ManifestError> {
    serde_json::from_value(doc.value.clone()).map_err(|e| ManifestError::Rejected {
        document: doc.describe(),
        rejections: vec![Rejection {
            path: String::new(),
            message: e.to_string(),
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_TENANTS: &str = "\
apiVersion: signpost.dev/v1alpha1
kind: Tenant
metadata: {name: pos}
spec: {networks: [pos]}
---
apiVersion: signpost.dev/v1alpha1
kind: Tenant
metadata: {name: kiosks}
spec: {prefixes: [10.300.0.0/16]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
";

    #[test]
    fn a_refused_document_hides_neither_the_valid_ones_nor_itself() {
        let docs = parse_documents(Path::new("t.yaml"), TWO_TENANTS).expect("YAML");
        assert_eq!(docs.len(), 3);
        let (intent, errors) = decode_admitted(&docs, &Admission::new());
        let names: Vec<_> = intent
            .tenants
            .iter()
            .filter_map(|t| t.metadata.name.as_deref())
            .collect();
        assert_eq!(names, ["pos"]);
        assert_eq!(errors.len(), 1, "the ConfigMap is skipped, not refused");
        let text = errors[0].to_string();
        assert!(
            text.starts_with("Tenant/kiosks (t.yaml#2) is invalid:"),
            "{text}"
        );
        assert!(decode(&docs, &Admission::new()).is_err());
    }

    #[test]
    fn broken_yaml_names_the_file_and_document() {
        let err = parse_documents(Path::new("bad.yaml"), "a: 1\n---\n: : :\n")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("bad.yaml#2: not valid YAML")));
    }
}
