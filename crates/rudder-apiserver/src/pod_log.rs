//! `pods/log` (upstream's `LogREST`): validates the options and the container, then streams
//! `GET https://<node's kubelet>/containerLogs/<ns>/<pod>/<container>?<options>` through.
//! The node's kubelet is found in the Node object (see `kubelet_client::kubelet_address`).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rudder_api::FieldError;
use serde_json::Value;

use crate::kubelet_client::{KubeletClient, kubelet_address};
use crate::object;
use crate::registry::Registry;
use crate::request::Target;
use crate::status::ApiError;

/// `PodLogOptions` from the query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<i64>,
    pub insecure_skip_tls_verify_backend: bool,
}

/// A boolean query parameter as upstream parses it (`strconv.ParseBool`, empty is true).
pub(crate) fn boolean(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "True" | "1" | "" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid value for {name}: strconv.ParseBool: parsing {v:?}: invalid syntax"
        ))),
    }
}

fn integer(name: &str, v: &str) -> Result<i64, ApiError> {
    v.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid value for {name}: strconv.ParseInt: parsing {v:?}: invalid syntax"
        ))
    })
}

impl LogOptions {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
        let mut o = LogOptions::default();
        for (k, v) in pairs {
            match k.as_str() {
                "container" => o.container = Some(v).filter(|c| !c.is_empty()),
                "follow" => o.follow = boolean(&k, &v)?,
                "previous" => o.previous = boolean(&k, &v)?,
                "timestamps" => o.timestamps = boolean(&k, &v)?,
                "tailLines" => o.tail_lines = Some(integer(&k, &v)?),
                "sinceSeconds" => o.since_seconds = Some(integer(&k, &v)?),
                "limitBytes" => o.limit_bytes = Some(integer(&k, &v)?),
                "sinceTime" => {
                    if crate::clock::parse_rfc3339(&v).is_none() {
                        return Err(ApiError::bad_request(format!(
                            "invalid value for sinceTime: parsing time {v:?} as RFC3339"
                        )));
                    }
                    o.since_time = Some(v);
                }
                "insecureSkipTLSVerifyBackend" => {
                    o.insecure_skip_tls_verify_backend = boolean(&k, &v)?
                }
                _ => {}
            }
        }
        Ok(o)
    }

    /// Upstream's `ValidatePodLogOptions`.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(n) = self.tail_lines
            && n < 0
        {
            errors.push(FieldError::invalid("tailLines", n, "must be greater than or equal to 0"));
        }
        if let Some(n) = self.limit_bytes
            && n < 1
        {
            errors.push(FieldError::invalid("limitBytes", n, "must be greater than 0"));
        }
        match (self.since_seconds, &self.since_time) {
            (Some(_), Some(_)) => errors.push(FieldError::forbidden(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(n), None) if n < 1 => {
                errors.push(FieldError::invalid("sinceSeconds", n, "must be greater than 0"))
            }
            _ => {}
        }
        errors
    }

    /// The kubelet's query string (the same names, only what is set).
    pub fn kubelet_query(&self) -> String {
        let mut q = Vec::new();
        if self.follow {
            q.push(("follow", "true".to_owned()));
        }
        if self.previous {
            q.push(("previous", "true".to_owned()));
        }
        if self.timestamps {
            q.push(("timestamps", "true".to_owned()));
        }
        if let Some(n) = self.tail_lines {
            q.push(("tailLines", n.to_string()));
        }
        if let Some(n) = self.since_seconds {
            q.push(("sinceSeconds", n.to_string()));
        }
        if let Some(t) = &self.since_time {
            q.push(("sinceTime", t.clone()));
        }
        if let Some(n) = self.limit_bytes {
            q.push(("limitBytes", n.to_string()));
        }
        serde_urlencoded::to_string(&q).unwrap_or_default()
    }
}

/// Every container name of the pod: init, then regular, then ephemeral (upstream's
/// `VisitContainers` order).
fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|field| {
            pod.pointer(&format!("/spec/{field}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
        })
        .collect()
}

/// Upstream's `ValidateContainer`: the named container must exist; without a name, the only
/// (regular) container is meant.
pub fn choose_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = object::name(pod).unwrap_or_default();
    match requested {
        Some(c) => {
            if container_names(pod).iter().any(|n| n == c) {
                Ok(c.to_owned())
            } else {
                Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}")))
            }
        }
        None => {
            let regular = pod.pointer("/spec/containers").and_then(Value::as_array);
            match regular.map_or(0, Vec::len) {
                1 => Ok(regular.and_then(|c| c[0]["name"].as_str()).unwrap_or_default().to_owned()),
                0 => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    container_names(pod).join(" ")
                ))),
            }
        }
    }
}

/// What the kubelet would answer for a container that has no logs yet (its
/// `validateContainerLogStatus`), decided from the pod's status so that pods not yet
/// running (or not yet scheduled) get the same answer without a kubelet.
pub fn not_started(pod: &Value, container: &str, previous: bool) -> Option<ApiError> {
    let name = object::name(pod).unwrap_or_default();
    let status = ["initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/status/{f}")).and_then(Value::as_array))
        .flatten()
        .find(|s| s["name"].as_str() == Some(container));
    let waiting = |reason: &str| {
        ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        ))
    };
    let Some(status) = status else {
        return Some(waiting("ContainerCreating"));
    };
    let last_terminated = status.pointer("/lastState/terminated").is_some();
    if previous {
        return (!last_terminated).then(|| {
            ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            ))
        });
    }
    let state = &status["state"];
    if state.get("running").is_some() || state.get("terminated").is_some() || last_terminated {
        return None;
    }
    let reason = state.pointer("/waiting/reason").and_then(Value::as_str).unwrap_or("");
    Some(match reason {
        "ErrImagePull" => waiting("image can't be pulled"),
        "ImagePullBackOff" => waiting("trying and failing to pull image"),
        "" if state.get("waiting").is_none() => ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start - no logs yet"
        )),
        r => waiting(r),
    })
}

/// GET pods/<name>/log.
pub async fn get(
    reg: &Registry,
    kubelet: &KubeletClient,
    t: &Target,
    raw_query: Option<&str>,
) -> Result<Response, ApiError> {
    let options = LogOptions::parse(raw_query)?;
    let name = t.name.clone().unwrap_or_default();
    let errors = options.validate();
    if !errors.is_empty() {
        let info = rudder_api::ResourceInfo { kind: "PodLogOptions", ..t.info.clone() };
        return Err(ApiError::invalid(&info, &name, &errors));
    }
    let pod = reg.get(&Target { subresource: None, ..t.clone() }).await?;
    let container = choose_container(&pod, options.container.as_deref())?;
    if let Some(e) = not_started(&pod, &container, options.previous) {
        return Err(e);
    }
    let (host, port) = pod_kubelet(reg, &pod).await?;
    let namespace = t.namespace.clone().unwrap_or_default();
    let mut path =
        format!("/containerLogs/{}/{}/{}", escape(&namespace), escape(&name), escape(&container));
    let query = options.kubelet_query();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    tracing::debug!(%host, port, %path, "pods/log: proxying to the kubelet");
    let upstream = kubelet.get(&host, port, &path).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain"), (header::CACHE_CONTROL, "no-cache, private")],
        axum::body::Body::new(upstream.into_body()),
    )
        .into_response())
}

/// The address of the kubelet of the node `pod` is bound to (upstream's errors when it is
/// not bound, or its node is gone).
pub async fn pod_kubelet(reg: &Registry, pod: &Value) -> Result<(String, u16), ApiError> {
    let name = object::name(pod).unwrap_or_default();
    let node_name = object::path(pod, "spec.nodeName").and_then(Value::as_str).unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    let nodes = rudder_api::resources::find("", "v1", "nodes").expect("nodes served");
    let node = reg
        .get(&Target {
            info: nodes,
            namespace: None,
            name: Some(node_name.to_owned()),
            subresource: None,
        })
        .await
        .map_err(|e| {
            if e.code == 404 {
                ApiError::bad_request(format!("node {node_name} for pod {name} does not exist"))
            } else {
                e
            }
        })?;
    kubelet_address(&node).ok_or_else(|| {
        ApiError::new(
            503,
            "ServiceUnavailable",
            format!("node {node_name} has no address for its kubelet"),
        )
    })
}

/// Percent-encodes a path segment (names are DNS labels, so this rarely does anything).
pub fn escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": { "name": "p" },
            "spec": {
                "initContainers": [{ "name": "init" }],
                "containers": [{ "name": "a" }, { "name": "b" }],
            },
            "status": { "containerStatuses": [
                { "name": "a", "state": { "running": {} } },
                { "name": "b", "state": { "waiting": { "reason": "ImagePullBackOff" } } },
            ] },
        })
    }

    #[test]
    fn containers_are_chosen_like_upstream() {
        let e = choose_container(&pod(), None).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [init a b]"
        );
        assert_eq!(choose_container(&pod(), Some("init")).unwrap(), "init");
        assert_eq!(
            choose_container(&pod(), Some("c")).unwrap_err().message,
            "container c is not valid for pod p"
        );
        let one =
            json!({ "metadata": { "name": "q" }, "spec": { "containers": [{ "name": "x" }] } });
        assert_eq!(choose_container(&one, None).unwrap(), "x");
    }

    #[test]
    fn containers_without_logs_are_reported_from_the_status() {
        assert!(not_started(&pod(), "a", false).is_none());
        assert_eq!(
            not_started(&pod(), "b", false).unwrap().message,
            "container \"b\" in pod \"p\" is waiting to start: trying and failing to pull image"
        );
        assert_eq!(
            not_started(&pod(), "init", false).unwrap().message,
            "container \"init\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        assert_eq!(
            not_started(&pod(), "a", true).unwrap().message,
            "previous terminated container \"a\" in pod \"p\" not found"
        );
        let mut restarted = pod();
        restarted["status"]["containerStatuses"][1]["lastState"] =
            json!({ "terminated": { "exitCode": 1 } });
        assert!(not_started(&restarted, "b", true).is_none());
        assert!(not_started(&restarted, "b", false).is_none());
    }

    #[test]
    fn options_are_parsed_validated_and_passed_on() {
        let o = LogOptions::parse(Some(
            "container=a&follow=true&tailLines=10&limitBytes=5&timestamps=1&sinceSeconds=3",
        ))
        .unwrap();
        assert_eq!(o.container.as_deref(), Some("a"));
        assert!(o.validate().is_empty());
        assert_eq!(
            o.kubelet_query(),
            "follow=true&timestamps=true&tailLines=10&sinceSeconds=3&limitBytes=5"
        );
        let bad = LogOptions::parse(Some(
            "tailLines=-1&limitBytes=0&sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z",
        ))
        .unwrap();
        let errors: Vec<String> = bad.validate().iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(LogOptions::parse(Some("follow=maybe")).is_err());
        assert!(LogOptions::parse(Some("sinceTime=yesterday")).is_err());
    }
}
