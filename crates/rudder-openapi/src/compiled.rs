//! The schemas compiled once into a graph the strict checks walk: every `$ref` resolved to
//! a node index, every `properties` map a hash map, every answer the checks need (`type`,
//! Go type name, preserve-unknown, int-or-string) a field. Interpreting the schema JSON on
//! each write cost several ordered-map lookups per field of every object written, each
//! comparing long definition names.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::definitions;

pub(crate) type NodeId = usize;

/// The JSON type a schema allows (`type`), or any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    Any,
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
    /// A `type` rudder does not know: no value matches it (as before compiling).
    Other,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub ty: Type,
    /// Upstream decoder's name for the type, for error messages: `int32`, `map`, `struct`...
    pub go_type: &'static str,
    /// `x-kubernetes-preserve-unknown-fields: true`: nothing below is checked.
    pub preserve_unknown: bool,
    /// `x-kubernetes-int-or-string`, or a `Quantity`: a string or a number.
    pub int_or_string: bool,
    /// `properties`, when the schema declares them.
    pub properties: Option<HashMap<&'static str, NodeId>>,
    /// `additionalProperties`, when it is a schema.
    pub additional: Option<NodeId>,
    /// `items`.
    pub items: Option<NodeId>,
}

pub(crate) struct Compiled {
    pub nodes: Vec<Node>,
    by_definition: HashMap<&'static str, NodeId>,
}

impl Compiled {
    pub fn definition(&self, name: &str) -> Option<NodeId> {
        self.by_definition.get(name).copied()
    }
}

const QUANTITY_SUFFIX: &str = ".api.resource.Quantity";

pub(crate) fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| compile(definitions()))
}

/// The definition a schema refers to (`$ref`, or the first `allOf` entry's `$ref`).
fn reference(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")
        .or_else(|| schema.get("allOf")?.as_array()?.first()?.get("$ref"))?
        .as_str()?
        .strip_prefix("#/components/schemas/")
}

fn compile(defs: &'static Map<String, Value>) -> Compiled {
    let mut c = Compiled { nodes: Vec::new(), by_definition: HashMap::new() };
    // Every definition gets its node first, so that references (also cyclic ones, like
    // JSONSchemaProps) resolve to an index whatever the order.
    for name in defs.keys() {
        let id = c.nodes.len();
        c.nodes.push(placeholder());
        c.by_definition.insert(name.as_str(), id);
    }
    for (name, schema) in defs {
        let node = node(&mut c, defs, schema, name.ends_with(QUANTITY_SUFFIX));
        let id = c.by_definition[name.as_str()];
        c.nodes[id] = node;
    }
    c
}

fn placeholder() -> Node {
    Node {
        ty: Type::Any,
        go_type: "value",
        preserve_unknown: false,
        int_or_string: false,
        properties: None,
        additional: None,
        items: None,
    }
}

/// The node a schema found inside another one stands for: its definition's node when it
/// refers to one, else a new node.
fn child(c: &mut Compiled, defs: &'static Map<String, Value>, schema: &'static Value) -> NodeId {
    if let Some(name) = reference(schema)
        && let Some(id) = c.by_definition.get(name)
    {
        return *id;
    }
    let node = node(c, defs, schema, false);
    c.nodes.push(node);
    c.nodes.len() - 1
}

fn node(
    c: &mut Compiled,
    defs: &'static Map<String, Value>,
    schema: &'static Value,
    quantity: bool,
) -> Node {
    let type_name = schema.get("type").and_then(Value::as_str);
    let ty = match type_name {
        None => Type::Any,
        Some("string") => Type::String,
        Some("integer") => Type::Integer,
        Some("number") => Type::Number,
        Some("boolean") => Type::Boolean,
        Some("array") => Type::Array,
        Some("object") => Type::Object,
        Some(_) => Type::Other,
    };
    let go_type = match type_name {
        Some("integer") => schema.get("format").and_then(Value::as_str).unwrap_or("int64"),
        Some("number") => "float64",
        Some("boolean") => "bool",
        Some("array") => "array",
        Some("object") if schema.get("additionalProperties").is_some() => "map",
        Some("object") => "struct",
        Some(other) => other,
        None => "value",
    };
    let properties = schema.get("properties").and_then(Value::as_object).map(|props| {
        props.iter().map(|(k, s)| (k.as_str(), child(c, defs, s))).collect::<HashMap<_, _>>()
    });
    let additional =
        schema.get("additionalProperties").filter(|a| a.is_object()).map(|a| child(c, defs, a));
    let items = schema.get("items").map(|i| child(c, defs, i));
    Node {
        ty,
        go_type,
        preserve_unknown: schema.get("x-kubernetes-preserve-unknown-fields")
            == Some(&Value::Bool(true)),
        int_or_string: quantity
            || schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)),
        properties,
        additional,
        items,
    }
}
