//! Strict field validation (`fieldValidation=Strict`, kubectl's default): every field of an
//! object must be declared by its schema.

use serde_json::Value;

use crate::compiled::{Compiled, NodeId, Type, compiled};

/// Where a value sits in the object, rendered only when an error needs it (building a
/// string per field of every object written was most of this module's cost).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// Upstream's form: `spec.template.spec.containers[0].foo`.
    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Field(Path::Root, k) => (*k).to_owned(),
            Path::Field(parent, k) => format!("{}.{k}", parent.render()),
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// A value of the wrong JSON type (what Go's decoder refuses before anything else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// Dotted path, e.g. `spec.replicas`.
    pub path: String,
    /// The JSON type found: `string`, `number`, `bool`, `object`, `array`.
    pub found: &'static str,
    /// The Go type expected, in Go's words: `string`, `int32`, `bool`, `map[string]string`, ...
    pub expected: String,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Null => "null",
    }
}

/// One walk over a value and its schema.
struct Walk<'c, 'u> {
    c: &'c Compiled,
    /// Check JSON types (stopping at the first error); else only collect unknown fields.
    types: bool,
    unknown: Option<&'u mut Vec<String>>,
}

impl Walk<'_, '_> {
    fn visit(&mut self, id: NodeId, value: &Value, path: Path<'_>) -> Result<(), TypeError> {
        let node = &self.c.nodes[id];
        if value.is_null() || node.preserve_unknown {
            return Ok(());
        }
        if node.int_or_string {
            return match value {
                Value::String(_) | Value::Number(_) => Ok(()),
                _ if !self.types => Ok(()),
                other => Err(TypeError {
                    path: path.render(),
                    found: json_type(other),
                    expected: "string".into(),
                }),
            };
        }
        let ok = match (node.ty, value) {
            (Type::Any, _) => true,
            (Type::String, Value::String(_)) => true,
            (Type::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Type::Number, Value::Number(_)) => true,
            (Type::Boolean, Value::Bool(_)) => true,
            (Type::Array, Value::Array(_)) => true,
            (Type::Object, Value::Object(_)) => true,
            _ => false,
        };
        if !ok && self.types {
            return Err(TypeError {
                path: path.render(),
                found: json_type(value),
                expected: node.go_type.to_owned(),
            });
        }
        match value {
            Value::Object(map) => {
                if let Some(props) = &node.properties {
                    for (k, v) in map {
                        let child = Path::Field(&path, k);
                        match props.get(k.as_str()) {
                            Some(&id) => self.visit(id, v, child)?,
                            None => {
                                if let Some(unknown) = self.unknown.as_deref_mut() {
                                    unknown.push(child.render());
                                }
                            }
                        }
                    }
                } else if let Some(additional) = node.additional {
                    for (k, v) in map {
                        self.visit(additional, v, Path::Field(&path, k))?;
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = node.items {
                    for (i, v) in items.iter().enumerate() {
                        self.visit(item, v, Path::Index(&path, i))?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Checks `value` against the schema `definition` in one walk: the first value of a JSON
/// type the schema does not allow is the error (Go's decoder refuses it whatever the
/// validation mode); when `unknown` is given, the fields the schema does not declare are
/// added to it in upstream's form (`spec.template.spec.containers[0].foo`). An unknown
/// definition checks nothing.
pub fn check(
    definition: &str,
    value: &Value,
    unknown: Option<&mut Vec<String>>,
) -> Result<(), TypeError> {
    let c = compiled();
    let Some(root) = c.definition(definition) else { return Ok(()) };
    Walk { c, types: true, unknown }.visit(root, value, Path::Root)
}

/// The first value in `value` whose JSON type the schema `definition` does not allow.
pub fn first_type_error(definition: &str, value: &Value) -> Option<TypeError> {
    check(definition, value, None).err()
}

/// The paths of fields `value` has that the schema `definition` does not declare, in
/// upstream's form (`spec.template.spec.containers[0].foo`), whatever the types of values.
pub fn validate_fields(definition: &str, value: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    let c = compiled();
    if let Some(root) = c.definition(definition) {
        let walked =
            Walk { c, types: false, unknown: Some(&mut unknown) }.visit(root, value, Path::Root);
        debug_assert!(walked.is_ok(), "a walk without type checks has no errors");
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_values_of_the_wrong_type() {
        let cm = json!({"metadata": {"name": "x"}, "data": {"a": 1}});
        let e = first_type_error("io.k8s.api.core.v1.ConfigMap", &cm).unwrap();
        assert_eq!((e.path.as_str(), e.found, e.expected.as_str()), ("data.a", "number", "string"));
        let d = json!({"spec": {"replicas": "3", "template": {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}}}});
        let e = first_type_error("io.k8s.api.apps.v1.Deployment", &d).unwrap();
        assert_eq!((e.path.as_str(), e.expected.as_str()), ("spec.replicas", "int32"));
        let ok = json!({"spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}}});
        assert_eq!(first_type_error("io.k8s.api.apps.v1.Deployment", &ok), None);
    }

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"any": "thing"}, "bogus": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always", "foo": true}]}}}
        });
        let unknown = validate_fields("io.k8s.api.apps.v1.Deployment", &d);
        assert_eq!(unknown, vec!["metadata.bogus", "spec.template.spec.containers[0].foo"]);
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}});
        assert!(validate_fields("io.k8s.api.core.v1.ConfigMap", &ok).is_empty());
    }

    /// The interpreter the compiled walk replaced (schema JSON read on every visit), kept
    /// as the oracle the compiled walk must agree with.
    mod oracle {
        use serde_json::Value;

        use crate::definitions;

        fn resolve(schema: &Value) -> Option<&'static Value> {
            let reference = schema
                .get("$ref")
                .or_else(|| schema.get("allOf")?.as_array()?.first()?.get("$ref"))?
                .as_str()?;
            definitions().get(reference.strip_prefix("#/components/schemas/")?)
        }

        fn walk(schema: &Value, value: &Value, path: String, unknown: &mut Vec<String>) {
            let schema = resolve(schema).unwrap_or(schema);
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            let field =
                |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
            match value {
                Value::Object(map) => {
                    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                        for (k, v) in map {
                            match props.get(k) {
                                Some(s) => walk(s, v, field(k), unknown),
                                None => unknown.push(field(k)),
                            }
                        }
                    } else if let Some(a) =
                        schema.get("additionalProperties").filter(|a| a.is_object())
                    {
                        for (k, v) in map {
                            walk(a, v, field(k), unknown);
                        }
                    }
                }
                Value::Array(items) => {
                    if let Some(item) = schema.get("items") {
                        for (i, v) in items.iter().enumerate() {
                            walk(item, v, format!("{path}[{i}]"), unknown);
                        }
                    }
                }
                _ => {}
            }
        }

        pub fn unknown_fields(definition: &str, value: &Value) -> Vec<String> {
            let mut unknown = Vec::new();
            walk(&definitions()[definition], value, String::new(), &mut unknown);
            unknown
        }

        fn go_type(schema: &Value) -> String {
            match schema.get("type").and_then(Value::as_str) {
                Some("integer") => {
                    schema.get("format").and_then(Value::as_str).unwrap_or("int64").to_owned()
                }
                Some("number") => "float64".into(),
                Some("boolean") => "bool".into(),
                Some("array") => "array".into(),
                Some("object") if schema.get("additionalProperties").is_some() => "map".into(),
                Some("object") => "struct".into(),
                Some(other) => other.to_owned(),
                None => "value".into(),
            }
        }

        fn check(schema: &Value, value: &Value, path: String) -> Option<(String, String)> {
            let name = schema
                .get("$ref")
                .or_else(|| schema.get("allOf")?.as_array()?.first()?.get("$ref"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let schema = resolve(schema).unwrap_or(schema);
            if value.is_null()
                || schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            {
                return None;
            }
            if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                || name.ends_with(".api.resource.Quantity")
            {
                return match value {
                    Value::String(_) | Value::Number(_) => None,
                    _ => Some((path, "string".into())),
                };
            }
            let ok = match (schema.get("type").and_then(Value::as_str), value) {
                (None, _) => true,
                (Some("string"), Value::String(_)) => true,
                (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
                (Some("number"), Value::Number(_)) => true,
                (Some("boolean"), Value::Bool(_)) => true,
                (Some("array"), Value::Array(_)) => true,
                (Some("object"), Value::Object(_)) => true,
                _ => false,
            };
            if !ok {
                return Some((path, go_type(schema)));
            }
            let field =
                |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
            match value {
                Value::Object(map) => {
                    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                        map.iter().find_map(|(k, v)| check(props.get(k)?, v, field(k)))
                    } else if let Some(a) =
                        schema.get("additionalProperties").filter(|a| a.is_object())
                    {
                        map.iter().find_map(|(k, v)| check(a, v, field(k)))
                    } else {
                        None
                    }
                }
                Value::Array(items) => {
                    let item = schema.get("items")?;
                    items
                        .iter()
                        .enumerate()
                        .find_map(|(i, v)| check(item, v, format!("{path}[{i}]")))
                }
                _ => None,
            }
        }

        pub fn type_error(definition: &str, value: &Value) -> Option<(String, String)> {
            check(&definitions()[definition], value, String::new())
        }
    }

    /// Every place in `value` (the root excluded): its JSON pointer.
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let p = format!("{at}/{k}");
                    out.push(p.clone());
                    pointers(v, p, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    pointers(v, p, out);
                }
            }
            _ => {}
        }
    }

    fn agree(definition: &str, value: &Value) {
        let ours = first_type_error(definition, value).map(|e| (e.path, e.expected));
        assert_eq!(ours, oracle::type_error(definition, value), "type error in {value}");
        assert_eq!(
            validate_fields(definition, value),
            oracle::unknown_fields(definition, value),
            "unknown fields in {value}"
        );
        let mut unknown = Vec::new();
        match check(definition, value, Some(&mut unknown)) {
            Ok(()) => assert_eq!(unknown, oracle::unknown_fields(definition, value)),
            Err(e) => assert_eq!(Some((e.path, e.expected)), oracle::type_error(definition, value)),
        }
    }

    /// The compiled walk answers as the interpreter did, for objects of several kinds with
    /// every value replaced in turn by one of each JSON type, and an unknown field added to
    /// every object.
    #[test]
    fn the_compiled_walk_agrees_with_the_schema_interpreter() {
        let samples = [
            (
                "io.k8s.api.core.v1.Pod",
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "labels": {"a": "b"}, "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u", "controller": true}]},
                    "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "10m", "memory": 1024}},
                        "env": [{"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                        "readinessProbe": {"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 1}}],
                        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}],
                        "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}],
                        "nodeSelector": {"n": "m"}, "priority": 0},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
                }),
            ),
            (
                "io.k8s.api.apps.v1.Deployment",
                json!({
                    "metadata": {"name": "d", "annotations": {"x": "y"}},
                    "spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                        "selector": {"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]},
                        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}
                }),
            ),
            (
                "io.k8s.api.core.v1.Service",
                json!({
                    "metadata": {"name": "s"},
                    "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"a": "b"}, "type": "ClusterIP"}
                }),
            ),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
                json!({
                    "metadata": {"name": "crontabs.example.com"},
                    "spec": {"group": "example.com", "names": {"plural": "crontabs", "kind": "CronTab"}, "scope": "Namespaced",
                        "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                            "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                "properties": {"n": {"type": "integer", "default": 1}}}}}}}]}
                }),
            ),
            (
                "io.k8s.api.core.v1.Node",
                json!({
                    "metadata": {"name": "n"},
                    "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}], "podCIDR": "10.0.0.0/24"},
                    "status": {"capacity": {"cpu": "4", "pods": 110}, "allocatable": {"memory": "16Gi"},
                        "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]}
                }),
            ),
        ];
        let replacements = [
            json!("s"),
            json!(7),
            json!(-1.5),
            json!(true),
            json!({}),
            json!([]),
            json!({"zz": 1}),
            json!([1, "a"]),
            Value::Null,
        ];
        let mut cases = 0;
        for (definition, sample) in &samples {
            agree(definition, sample);
            let mut places = Vec::new();
            pointers(sample, String::new(), &mut places);
            for place in &places {
                for r in &replacements {
                    let mut v = sample.clone();
                    *v.pointer_mut(place).unwrap() = r.clone();
                    agree(definition, &v);
                    cases += 1;
                }
                let mut v = sample.clone();
                if let Some(map) = v.pointer_mut(place).unwrap().as_object_mut() {
                    map.insert("bogus".into(), json!(1));
                    agree(definition, &v);
                }
            }
        }
        assert!(cases > 500, "only {cases} cases");
    }
}
