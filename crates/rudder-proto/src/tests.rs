//! Bodies encoded by prost from k8s-pb's types — byte for byte what Go clients send — decode
//! to the JSON upstream would accept.

use std::collections::BTreeMap;

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use super::*;

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn meta(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: Some(name.into()),
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        ..Default::default()
    }
}

#[test]
fn namespace_and_configmap() {
    let ns = core::Namespace { metadata: Some(meta("foo")), ..Default::default() };
    let obj = decode_object(&envelope("v1", "Namespace", ns.encode_to_vec())).unwrap();
    assert_eq!(
        obj,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo", "labels": {"app": "web"}}})
    );

    let cm = core::ConfigMap {
        metadata: Some(meta("c")),
        data: BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), String::new()),
        ]),
        binary_data: BTreeMap::from([("bin".to_string(), vec![0u8, 255])]),
        ..Default::default()
    };
    let obj = decode_object(&envelope("v1", "ConfigMap", cm.encode_to_vec())).unwrap();
    assert_eq!(obj["data"], json!({"a": "1", "b": ""}));
    assert_eq!(obj["binaryData"], json!({"bin": "AP8="}));
}

#[test]
fn deployment_with_special_types_and_acronyms() {
    let container = core::Container {
        name: Some("c".into()),
        image: Some("nginx".into()),
        ports: vec![core::ContainerPort {
            container_port: Some(80),
            host_ip: Some("1.2.3.4".into()),
            ..Default::default()
        }],
        resources: Some(core::ResourceRequirements {
            limits: BTreeMap::from([(
                "memory".to_string(),
                Quantity { string: Some("64Mi".into()) },
            )]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deploy = apps::Deployment {
        metadata: Some(meta("d")),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            paused: Some(false),
            selector: Some(meta::LabelSelector {
                match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                ..Default::default()
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    creation_timestamp: Some(meta::Time {
                        seconds: Some(1_700_000_000),
                        nanos: Some(0),
                    }),
                    ..meta("")
                }),
                spec: Some(core::PodSpec { containers: vec![container], ..Default::default() }),
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("25%".into()),
                    }),
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(2),
                        str_val: Some(String::new()),
                    }),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let obj = decode_object(&envelope("apps/v1", "Deployment", deploy.encode_to_vec())).unwrap();
    assert_eq!(obj["apiVersion"], "apps/v1");
    assert_eq!(obj["spec"]["replicas"], 0);
    assert_eq!(obj["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
    assert_eq!(
        obj["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": "25%", "maxUnavailable": 2})
    );
    let c = &obj["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["ports"][0], json!({"containerPort": 80, "hostIP": "1.2.3.4"}));
    assert_eq!(c["resources"]["limits"]["memory"], "64Mi");
    assert_eq!(obj["spec"]["template"]["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert!(obj["spec"].get("paused").is_none(), "zero non-pointer fields are dropped: {obj}");
    // Every field name is one the schema declares.
    assert!(
        rudder_openapi::validate_fields("io.k8s.api.apps.v1.Deployment", &obj).is_empty(),
        "{obj}"
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert_eq!(decode_object(b"{}"), Err(ProtoError::NoMagic));
    assert!(decode_object(b"k8s\0\x0a\xff").is_err());
    let mut deep = envelope("v1", "Namespace", vec![0x0a, 0x80]);
    deep.truncate(deep.len() - 1);
    assert!(decode_object(&deep).is_err());
    assert!(matches!(
        decode_object(&envelope("nope/v9", "Thing", vec![])),
        Err(ProtoError::UnknownType { .. })
    ));
    // Random bytes after the magic never panic.
    let mut seed = 12345u64;
    for _ in 0..2000 {
        let len = (seed % 64) as usize;
        let mut body = MAGIC.to_vec();
        for _ in 0..len {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            body.push((seed >> 33) as u8);
        }
        let _ = decode_object(&body);
    }
}
