//! The representation a client asks for in `Accept`: the objects themselves, a `Table`
//! (kubectl), or `PartialObjectMetadata` (metadata-only clients such as the garbage
//! collector: upstream's `as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`).

use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Object,
    Table,
    Metadata,
}

impl Form {
    /// The first of the media types in `accept` that asks for another form wins, as in
    /// upstream's negotiation; none means the objects.
    pub fn from_accept(accept: &str) -> Form {
        for part in accept.split(',') {
            let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
            if !p.contains("g=meta.k8s.io") {
                continue;
            }
            let asked = p.split(';').find_map(|param| param.strip_prefix("as="));
            match asked {
                Some("Table") => return Form::Table,
                Some("PartialObjectMetadata" | "PartialObjectMetadataList") => {
                    return Form::Metadata;
                }
                _ => {}
            }
        }
        Form::Object
    }
}

/// An object's `PartialObjectMetadata`.
pub fn metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new())),
    })
}

/// A list's `PartialObjectMetadataList` (the list's own metadata kept: resourceVersion and
/// continue token).
pub fn metadata_list(list: &Value) -> Value {
    let items: Vec<Value> = list["items"]
        .as_array()
        .map(|items| items.iter().map(metadata).collect())
        .unwrap_or_default();
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list.get("metadata").cloned().unwrap_or_else(|| Value::Object(Map::new())),
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(Form::from_accept(kubectl), Form::Table);
        let kube_rs = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(Form::from_accept(kube_rs), Form::Metadata);
        let list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(Form::from_accept(list), Form::Metadata);
        let fallback =
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(Form::from_accept(fallback), Form::Metadata);
        assert_eq!(Form::from_accept("application/json"), Form::Object);
        assert_eq!(Form::from_accept(""), Form::Object);
        // Another group's "as" is not ours to honour.
        assert_eq!(Form::from_accept("application/json;as=Foo;g=example.com"), Form::Object);
    }

    #[test]
    fn metadata_only() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u", "ownerReferences": [{"uid": "o"}]},
            "spec": {"containers": []}});
        assert_eq!(
            metadata(&pod),
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "p", "uid": "u", "ownerReferences": [{"uid": "o"}]}})
        );
        let list = json!({"kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "9", "continue": "c"}, "items": [pod]});
        let partial = metadata_list(&list);
        assert_eq!(partial["kind"], "PartialObjectMetadataList");
        assert_eq!(partial["metadata"], json!({"resourceVersion": "9", "continue": "c"}));
        assert_eq!(partial["items"][0]["metadata"]["name"], "p");
        assert!(partial["items"][0].get("spec").is_none());
    }
}
