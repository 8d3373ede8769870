//! Upstream's defaulting (`SetDefaults_*`), on JSON objects: what a field means when the
//! client leaves it out. Applied on create and on every update, like upstream's decoding.

use serde_json::{Map, Value, json};

fn obj(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

fn set(m: &mut Map<String, Value>, key: &str, value: Value) {
    m.entry(key).or_insert(value);
}

/// Defaults of one kind's object.
pub fn apply(kind: &str, o: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = o.get_mut("spec") {
                pod_spec(spec);
            }
        }
        "PodTemplate" => template(o.pointer_mut("/template")),
        "ReplicationController" => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else { return };
            set(spec, "replicas", json!(1));
            let labels = spec.get("template").and_then(|t| t.pointer("/metadata/labels")).cloned();
            if let Some(labels) = labels {
                set(spec, "selector", labels.clone());
                let meta = o["metadata"].as_object_mut();
                if let Some(meta) = meta {
                    set(meta, "labels", labels);
                }
            }
            template(o.pointer_mut("/spec/template"));
        }
        "Deployment" => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else { return };
            set(spec, "replicas", json!(1));
            set(spec, "revisionHistoryLimit", json!(10));
            set(spec, "progressDeadlineSeconds", json!(600));
            rolling_strategy(
                spec,
                "strategy",
                json!({ "maxUnavailable": "25%", "maxSurge": "25%" }),
            );
            template(o.pointer_mut("/spec/template"));
        }
        "ReplicaSet" => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                set(spec, "replicas", json!(1));
            }
            template(o.pointer_mut("/spec/template"));
        }
        "StatefulSet" => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else { return };
            set(spec, "replicas", json!(1));
            set(spec, "podManagementPolicy", json!("OrderedReady"));
            set(spec, "revisionHistoryLimit", json!(10));
            set(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({ "whenDeleted": "Retain", "whenScaled": "Retain" }),
            );
            rolling_strategy(spec, "updateStrategy", json!({ "partition": 0 }));
            template(o.pointer_mut("/spec/template"));
        }
        "DaemonSet" => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else { return };
            set(spec, "revisionHistoryLimit", json!(10));
            rolling_strategy(spec, "updateStrategy", json!({ "maxUnavailable": 1, "maxSurge": 0 }));
            template(o.pointer_mut("/spec/template"));
        }
        "Job" => {
            if let Some(spec) = o.get_mut("spec") {
                job_spec(spec);
            }
        }
        "CronJob" => {
            let Some(spec) = o.get_mut("spec").and_then(obj) else { return };
            set(spec, "concurrencyPolicy", json!("Allow"));
            set(spec, "suspend", json!(false));
            set(spec, "successfulJobsHistoryLimit", json!(3));
            set(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = o.pointer_mut("/spec/jobTemplate/spec") {
                job_spec(job);
            }
        }
        "Secret" => {
            if let Some(m) = obj(o) {
                set(m, "type", json!("Opaque"));
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                set(spec, "volumeMode", json!("Filesystem"));
            }
        }
        "PersistentVolume" => {
            if let Some(spec) = o.get_mut("spec").and_then(obj) {
                set(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                set(spec, "volumeMode", json!("Filesystem"));
            }
        }
        _ => {}
    }
}

/// `<field>: {type: RollingUpdate, rollingUpdate: <rolling>}` unless another type is set.
fn rolling_strategy(spec: &mut Map<String, Value>, field: &str, rolling: Value) {
    let strategy = spec.entry(field).or_insert_with(|| json!({}));
    if let Some(s) = obj(strategy) {
        set(s, "type", json!("RollingUpdate"));
        if s.get("type") == Some(&json!("RollingUpdate")) {
            let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let (Some(ru), Value::Object(defaults)) = (obj(ru), rolling) {
                for (k, v) in defaults {
                    set(ru, &k, v);
                }
            }
        }
    }
}

fn job_spec(spec: &mut Value) {
    let Some(s) = obj(spec) else { return };
    if !s.contains_key("completions") && !s.contains_key("parallelism") {
        s.insert("completions".into(), json!(1));
    }
    set(s, "parallelism", json!(1));
    set(s, "backoffLimit", json!(6));
    set(s, "completionMode", json!("NonIndexed"));
    set(s, "suspend", json!(false));
    set(s, "podReplacementPolicy", json!("TerminatingOrFailed"));
    template(spec.pointer_mut("/template"));
}

fn template(t: Option<&mut Value>) {
    if let Some(spec) = t.and_then(|t| t.get_mut("spec")) {
        pod_spec(spec);
    }
}

fn pod_spec(spec: &mut Value) {
    let Some(s) = obj(spec) else { return };
    set(s, "restartPolicy", json!("Always"));
    set(s, "dnsPolicy", json!("ClusterFirst"));
    set(s, "terminationGracePeriodSeconds", json!(30));
    set(s, "schedulerName", json!("default-scheduler"));
    set(s, "securityContext", json!({}));
    set(s, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(container);
        }
    }
    if let Some(volumes) = s.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in volumes {
            for source in ["configMap", "secret", "projected", "downwardAPI"] {
                if let Some(src) = v.get_mut(source).and_then(obj) {
                    set(src, "defaultMode", json!(420));
                }
            }
        }
    }
}

fn container(c: &mut Value) {
    let Some(m) = obj(c) else { return };
    set(m, "terminationMessagePath", json!("/dev/termination-log"));
    set(m, "terminationMessagePolicy", json!("File"));
    set(m, "resources", json!({}));
    if !m.contains_key("imagePullPolicy") {
        let image = m.get("image").and_then(Value::as_str).unwrap_or("");
        let last = image.rsplit('/').next().unwrap_or(image);
        let tag =
            if last.contains('@') { Some("digest") } else { last.split_once(':').map(|(_, t)| t) };
        let policy = match tag {
            None | Some("latest") => "Always",
            Some(_) => "IfNotPresent",
        };
        m.insert("imagePullPolicy".into(), json!(policy));
    }
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(obj) {
            set(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe).and_then(obj) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(obj) {
                set(h, "scheme", json!("HTTP"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_like_upstream() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx"}, {"name": "b", "image": "reg:5000/x:1.2", "ports": [{"containerPort": 80}]}
        ]}}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["containers"][1]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["containers"][0]["terminationMessagePath"], "/dev/termination-log");
    }

    #[test]
    fn explicit_values_win_and_recreate_has_no_rolling_update() {
        let mut d = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let mut j = json!({"spec": {"parallelism": 2, "template": {"spec": {"restartPolicy": "Never", "containers": []}}}});
        apply("Job", &mut j);
        assert!(j["spec"].get("completions").is_none(), "a work queue job keeps completions unset");
        assert_eq!(j["spec"]["backoffLimit"], 6);
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    }
}
