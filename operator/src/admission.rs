//! Admission without a cluster: checks an object against the generated CRDs the way the API
//! server does — the structural schema (types, required fields, enums, bounds, patterns, unknown
//! fields as `kubectl --validate=strict` reports them) and then the CEL rules
//! (`x-kubernetes-validations`, evaluated by `kube-cel` with Kubernetes' CEL libraries).
//!
//! Local mode and `signpostctl render` run it on every manifest, so a GitOps check catches what
//! `kubectl apply` would refuse. Messages follow the API server's wording so that people see the
//! same text in CI and in the cluster.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// One reason an object is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Field path, `spec.interfaces[1].name`; empty for the object itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// The schemas of the Signpost kinds, ready to check objects.
pub struct Admission {
    /// `(apiVersion, kind)` → openAPIV3Schema.
    schemas: BTreeMap<(String, String), Value>,
    cel: kube_cel::Validator,
}

impl Admission {
    /// From the CRDs the Rust types generate (what `crds/` holds).
    pub fn new() -> Self {
        Self::from_crds(&crate::crd::all())
    }

    pub fn from_crds(crds: &[CustomResourceDefinition]) -> Self {
        let mut schemas = BTreeMap::new();
        for crd in crds {
            for version in &crd.spec.versions {
                let Some(schema) = version
                    .schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                else {
                    continue;
                };
                let Ok(schema) = serde_json::to_value(schema) else {
                    continue;
                };
                let api_version = format!("{}/{}", crd.spec.group, version.name);
                schemas.insert((api_version, crd.spec.names.kind.clone()), schema);
            }
        }
        Self {
            schemas,
            cel: kube_cel::Validator::new(),
        }
    }

    /// Checks one object (as parsed from YAML or JSON). `Ok` means the API server would accept it.
    pub fn check(&self, object: &Value) -> Result<(), Vec<Rejection>> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(schema) = self
            .schemas
            .get(&(api_version.to_string(), kind.to_string()))
        else {
            return Err(vec![Rejection {
                path: String::new(),
                message: format!(
                    "no matches for kind \"{kind}\" in version \"{api_version}\" \
                     (Signpost kinds are Tenant, Service, Policy and Router in signpost.dev/v1alpha1)"
                ),
            }]);
        };
        let mut out = Vec::new();
        check_metadata(object.get("metadata"), &mut out);
        structural(schema, object, "", &mut out);
        if out.is_empty()
            && let Err(errors) = self.cel.validate(schema, object, None)
        {
            out.extend(errors.iter().map(|e| Rejection {
                path: e.field_path.clone(),
                message: e.message.clone(),
            }));
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self::new()
    }
}

fn check_metadata(metadata: Option<&Value>, out: &mut Vec<Rejection>) {
    let name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str);
    match name {
        None => out.push(Rejection {
            path: "metadata.name".into(),
            message: "Required value: name is required".into(),
        }),
        Some(name) if !is_dns_subdomain(name) => out.push(Rejection {
            path: "metadata.name".into(),
            message: format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower \
                 case alphanumeric characters, '-' or '.', and must start and end with an \
                 alphanumeric character"
            ),
        }),
        Some(_) => {}
    }
}

/// RFC 1123 subdomain, as Kubernetes requires of object names.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn reject(out: &mut Vec<Rejection>, path: &str, message: String) {
    out.push(Rejection {
        path: path.to_string(),
        message,
    });
}

fn number(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

/// The structural part of OpenAPI v3 validation, for the subset CRDs use.
fn structural(schema: &Value, value: &Value, path: &str, out: &mut Vec<Rejection>) {
    if value.is_null() {
        if !schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            reject(
                out,
                path,
                "Invalid value: \"null\": must not be null".into(),
            );
        }
        return;
    }
    if schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true)
    {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            reject(out, path, "must be an integer or a string".into());
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let type_ok = match ty {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        reject(
            out,
            path,
            format!(
                "Invalid value: {}: must be of type {}",
                render(value),
                ty.unwrap_or("?")
            ),
        );
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(render).collect();
        reject(
            out,
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                render(value),
                supported.join(", ")
            ),
        );
    }
    match value {
        Value::Object(map) => object(schema, map, path, out),
        Value::Array(items) => {
            if let Some(min) = number(schema, "minItems")
                && (items.len() as f64) < min
            {
                reject(
                    out,
                    path,
                    format!(
                        "Invalid value: {}: should have at least {min} items",
                        items.len()
                    ),
                );
            }
            if let Some(max) = number(schema, "maxItems")
                && (items.len() as f64) > max
            {
                reject(
                    out,
                    path,
                    format!("Too many: {}: must have at most {max} items", items.len()),
                );
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    structural(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as f64;
            if let Some(min) = number(schema, "minLength")
                && len < min
            {
                reject(
                    out,
                    path,
                    format!("Invalid value: \"{s}\": should be at least {min} chars long"),
                );
            }
            if let Some(max) = number(schema, "maxLength")
                && len > max
            {
                reject(
                    out,
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                );
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match regex::Regex::new(pattern) {
                    Ok(re) if re.is_match(s) => {}
                    Ok(_) => reject(
                        out,
                        path,
                        format!("Invalid value: \"{s}\": should match '{pattern}'"),
                    ),
                    Err(e) => reject(
                        out,
                        path,
                        format!("the schema's pattern '{pattern}' is invalid: {e}"),
                    ),
                }
            }
        }
        Value::Number(n) => {
            let Some(x) = n.as_f64() else { return };
            if let Some(min) = number(schema, "minimum")
                && x < min
            {
                reject(
                    out,
                    path,
                    format!("Invalid value: {n}: should be greater than or equal to {min}"),
                );
            }
            if let Some(max) = number(schema, "maximum")
                && x > max
            {
                reject(
                    out,
                    path,
                    format!("Invalid value: {n}: should be less than or equal to {max}"),
                );
            }
        }
        _ => {}
    }
}

fn object(
    schema: &Value,
    map: &serde_json::Map<String, Value>,
    path: &str,
    out: &mut Vec<Rejection>,
) {
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for field in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(field) {
                reject(out, &join(path, field), "Required value".into());
            }
        }
    }
    if let Some(max) = number(schema, "maxProperties")
        && (map.len() as f64) > max
    {
        reject(
            out,
            path,
            format!("Too many: {}: must have at most {max} items", map.len()),
        );
    }
    for (key, value) in map {
        let field_path = join(path, key);
        // At the root, apiVersion and kind chose the schema, and metadata is checked by
        // `check_metadata`, as the API server does.
        if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(sub), _) => structural(sub, value, &field_path, out),
            (None, Some(Value::Object(_))) => {
                if let Some(sub) = additional {
                    structural(sub, value, &field_path, out);
                }
            }
            (None, Some(Value::Bool(true))) => {}
            (None, _) if preserve => {}
            (None, _)
                if properties.is_none() && additional.is_none() && schema.get("type").is_none() => {
            }
            (None, _) => reject(out, "", format!("unknown field \"{field_path}\"")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tenant(spec: Value) -> Value {
        json!({"apiVersion": "signpost.dev/v1alpha1", "kind": "Tenant",
               "metadata": {"name": "pos"}, "spec": spec})
    }

    fn messages(result: Result<(), Vec<Rejection>>) -> Vec<String> {
        result
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_valid_tenant_is_admitted() {
        let admission = Admission::new();
        assert_eq!(
            admission.check(&tenant(
                json!({"networks": ["pos"], "prefixes": ["10.1.10.0/24", "2001:db8:10::/48"]})
            )),
            Ok(())
        );
    }

    #[test]
    fn unknown_kinds_and_versions_are_named() {
        let admission = Admission::new();
        let mut obj = tenant(json!({}));
        obj["apiVersion"] = json!("signpost.dev/v2");
        let m = messages(admission.check(&obj));
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains("no matches for kind \"Tenant\" in version \"signpost.dev/v2\""),
            "{m:?}"
        );
    }

    #[test]
    fn object_names_follow_kubernetes_rules() {
        let admission = Admission::new();
        let mut obj = tenant(json!({}));
        obj["metadata"]["name"] = json!("POS_Terminals");
        let m = messages(admission.check(&obj));
        assert!(
            m[0].starts_with("metadata.name: Invalid value: \"POS_Terminals\""),
            "{m:?}"
        );
        obj["metadata"] = json!({});
        assert_eq!(
            messages(admission.check(&obj)),
            ["metadata.name: Required value: name is required"]
        );
    }

    #[test]
    fn wrong_types_and_nulls_are_refused() {
        let admission = Admission::new();
        let m = messages(admission.check(&tenant(json!({"networks": "pos"}))));
        assert_eq!(
            m,
            ["spec.networks: Invalid value: \"pos\": must be of type array"]
        );
        let m = messages(admission.check(&tenant(json!({"networks": [null]}))));
        assert_eq!(
            m,
            ["spec.networks[0]: Invalid value: \"null\": must not be null"]
        );
    }

    #[test]
    fn cel_runs_only_on_structurally_valid_objects() {
        let admission = Admission::new();
        // A bad CIDR is a CEL finding; an unknown field is structural and reported alone.
        let m = messages(admission.check(&tenant(json!({"prefixes": ["10.1.2.0/33"]}))));
        assert_eq!(
            m,
            ["spec.prefixes[0]: must be a CIDR prefix such as 10.20.0.0/16 or 2001:db8::/48"]
        );
        let m =
            messages(admission.check(&tenant(json!({"prefixes": ["10.1.2.0/33"], "extra": 1}))));
        assert_eq!(m, ["unknown field \"spec.extra\""]);
    }

    #[test]
    fn dns_subdomains() {
        assert!(is_dns_subdomain("store-0142"));
        assert!(is_dns_subdomain("pos.corp"));
        for bad in ["", "-a", "a-", "a..b", "A", "a_b", &"a".repeat(254)] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }
}
