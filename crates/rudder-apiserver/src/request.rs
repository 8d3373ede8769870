//! What a resource request addresses (resource, namespace, name, subresource) and its
//! query parameters.

use rudder_api::ResourceInfo;
use rudder_api::resources::find;

use crate::status::ApiError;

#[derive(Clone, Debug)]
pub struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses the path after `/api/v1/` or `/apis/<group>/<version>/`.
pub fn parse_target(group: &str, version: &str, segments: &[&str]) -> Result<Target, ApiError> {
    let (namespace, rest) = match segments {
        // /namespaces/<ns>/status and /finalize address the namespace itself.
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            let info = find("", version, "namespaces").ok_or_else(ApiError::route_not_found)?;
            return Ok(Target {
                info,
                namespace: None,
                name: Some((*ns).to_owned()),
                subresource: Some((*sub).to_owned()),
            });
        }
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::route_not_found()),
    };
    let info = find(group, version, plural).ok_or_else(ApiError::route_not_found)?;
    if namespace.is_some() && !info.namespaced {
        return Err(ApiError::route_not_found());
    }
    if let Some(sub) = subresource
        && !info.has_subresource(sub)
    {
        return Err(ApiError::route_not_found());
    }
    if name.is_some_and(str::is_empty) {
        return Err(ApiError::route_not_found());
    }
    Ok(Target {
        info,
        namespace,
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

/// The query parameters rudder reads (others are accepted and ignored, like upstream).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub watch: bool,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub dry_run: bool,
    pub include_object: Option<String>,
    pub send_initial_events: bool,
    pub field_validation: FieldValidation,
}

/// What to do with fields the schema does not declare (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// Upstream's default: accept, and say so in a `Warning` header.
    #[default]
    Warn,
    Strict,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "")
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
        let mut q = Query::default();
        for (k, v) in pairs {
            match k.as_str() {
                "watch" => q.watch = truthy(&v),
                "labelSelector" => q.label_selector = Some(v).filter(|s| !s.is_empty()),
                "fieldSelector" => q.field_selector = Some(v).filter(|s| !s.is_empty()),
                "limit" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit {v:?}")))?;
                    q.limit = (n > 0).then_some(n as usize);
                }
                "continue" => q.continue_token = Some(v).filter(|s| !s.is_empty()),
                "resourceVersion" => q.resource_version = Some(v).filter(|s| !s.is_empty()),
                "resourceVersionMatch" => {
                    q.resource_version_match = Some(v).filter(|s| !s.is_empty())
                }
                "timeoutSeconds" => {
                    q.timeout_seconds = Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid timeoutSeconds {v:?}"))
                    })?)
                }
                "allowWatchBookmarks" => q.allow_watch_bookmarks = truthy(&v),
                "dryRun" => {
                    if v != "All" {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {v}: supported values: \"All\""
                        )));
                    }
                    q.dry_run = true;
                }
                "includeObject" => q.include_object = Some(v),
                "sendInitialEvents" => q.send_initial_events = truthy(&v),
                "fieldValidation" => {
                    q.field_validation = match v.as_str() {
                        "Ignore" => FieldValidation::Ignore,
                        "Warn" | "" => FieldValidation::Warn,
                        "Strict" => FieldValidation::Strict,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(q)
    }
}
