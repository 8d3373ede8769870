//! Builders shared by the unit tests.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::json;

/// A StatefulSet `ns/web` (3 replicas, claim template `www`, partition 0) with `extra` merged in.
pub fn set(extra: serde_json::Value) -> StatefulSet {
    let mut base = json!({
        "metadata": { "name": "web", "namespace": "ns", "uid": "set-uid" },
        "spec": {
            "replicas": 3,
            "serviceName": "svc",
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "containers": [{ "name": "c", "image": "i" }],
                    "volumes": [{ "name": "www", "emptyDir": {} }, { "name": "tmp", "emptyDir": {} }]
                }
            },
            "volumeClaimTemplates": [{ "metadata": { "name": "www" }, "spec": {} }],
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } }
        }
    });
    merge(&mut base, extra);
    serde_json::from_value(base).unwrap()
}

pub fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}
