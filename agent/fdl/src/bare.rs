//! Two shapes of input that are not an FDL file proper: a bare OSCAR service definition (one
//! service in the API body's form, no `functions:` wrapper, as tools generate them from
//! templates), and a template whose `${VAR}` placeholders were never filled in. Both are told
//! apart on the document read as plain data, before it is read as an FDL file.

use serde_json::Value;

use super::model::{CurrentFunctions, Document, Functions, OscarService};

/// A service's own keys (OSCAR's `Service`): a map with `name` and one of these, and no
/// `functions`, is one service.
const SERVICE_KEYS: [&str; 5] = ["image", "script", "input", "output", "memory"];

pub(crate) fn is_bare_service(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        !m.contains_key("functions")
            && m.get("name").is_some_and(Value::is_string)
            && SERVICE_KEYS.iter().any(|k| m.contains_key(*k))
    })
}

/// The `${NAME}` placeholders in the document's values, with the path of each: `(path, "${NAME}")`.
/// A `script` value is left alone: a script's text uses the shell's own `${VAR}`.
pub(crate) fn placeholders(v: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    walk(v, String::new(), &mut found);
    found
}

fn walk(v: &Value, path: String, found: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => {
            for p in placeholders_in(s) {
                found.push((path.clone(), p));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{i}]"), found);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                if k != "script" {
                    let sub = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(item, sub, found);
                }
            }
        }
        _ => {}
    }
}

/// `${NAME}` with NAME a shell variable's name.
fn placeholders_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(end)
                if end > 0
                    && after[..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !after.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                out.push(format!("${{{}}}", &after[..end]));
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// One OSCAR service as a workflow of one (its cluster: `cluster_id`, else `fogd`).
pub(crate) fn document_of(svc: OscarService) -> Document {
    let cluster = svc
        .cluster_id
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "fogd".into());
    Document {
        functions: Functions::Current(CurrentFunctions {
            oscar: Some(vec![std::collections::BTreeMap::from([(cluster, svc)])]),
            aws: None,
        }),
        storage_providers: None,
        clusters: None,
        storages: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_outside_scripts_only() {
        let v = serde_json::json!({
            "name": "x", "image": "${REGISTRY}/img:${TAG}", "memory": "1Gi",
            "script": "echo ${INPUT_FILE_PATH}",
            "input": [{"storage_provider": "minio", "path": "${BUCKET}/in"}],
            "environment": {"variables": {"A": "$HOME", "B": "${1}", "C": "${}"}},
        });
        assert_eq!(
            placeholders(&v),
            vec![
                ("image".to_string(), "${REGISTRY}".to_string()),
                ("image".to_string(), "${TAG}".to_string()),
                ("input[0].path".to_string(), "${BUCKET}".to_string()),
            ]
        );
        assert!(is_bare_service(&v));
        assert!(!is_bare_service(
            &serde_json::json!({"functions": {}, "name": "x", "image": "i"})
        ));
        assert!(!is_bare_service(&serde_json::json!({"name": "x"})));
    }

    #[test]
    fn a_bare_service_loads_as_a_workflow_of_one_in_yaml_or_json() {
        use crate::{load_str, LoadOptions, Severity};
        use std::path::Path;
        let yaml = "name: grayify\nimage: ghcr.io/grycap/imagemagick\nmemory: 1Gi\ncpu: '0.5'\n\
                    script: |\n  convert \"$INPUT_FILE_PATH\" -type Grayscale \"$TMP_OUTPUT_DIR/out.png\"\n\
                    input: [{storage_provider: minio.default, path: grayify/in}]\n\
                    output: [{storage_provider: minio.default, path: grayify/out}]\n";
        let json = r#"{"name": "grayify", "image": "ghcr.io/grycap/imagemagick", "script": "echo ${INPUT_FILE_PATH}",
                      "input": [{"storage_provider": "minio.default", "path": "grayify/in"}]}"#;
        for (text, file) in [(yaml, "svc.yaml"), (json, "svc.json")] {
            let r = load_str(text, Path::new(file), LoadOptions::default());
            let errors: Vec<_> = r
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .collect();
            assert!(errors.is_empty(), "{file}: {errors:?}");
            let wf = r.workflow.expect("workflow");
            assert_eq!(wf.services.len(), 1, "{file}");
            assert_eq!(wf.services[0].name, "grayify");
        }
        let r = load_str(
            "name: x\nimage: ${REGISTRY}/x\nmemory: ${MEMORY}\nscript: s\n",
            Path::new("t.yaml"),
            LoadOptions::default(),
        );
        let msgs: Vec<_> = r
            .diagnostics
            .iter()
            .map(|d| (d.line, d.message.clone()))
            .collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0].0, Some(2));
        assert!(
            msgs[0].1.contains("`${REGISTRY}` is a template placeholder"),
            "{msgs:?}"
        );
        assert!(msgs[1].1.contains("${MEMORY}"), "{msgs:?}");
        assert!(r.workflow.is_none());
    }
}
