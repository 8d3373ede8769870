//! Errors as Kubernetes `Status` responses: the one place where errors become HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rudder_api::{FieldError, ResourceInfo};
use rudder_store::StoreError;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

fn details(info: &ResourceInfo, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": info.plural });
    if !info.group.is_empty() {
        d["group"] = json!(info.group);
    }
    d
}

/// `configmaps "x"` or `deployments.apps "x"`, as upstream names a resource in messages.
pub fn qualified(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_owned()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None }
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(info, name)),
            ..Self::new(404, "NotFound", format!("{} \"{name}\" not found", qualified(info)))
        }
    }

    pub fn namespace_not_found(namespace: &str) -> Self {
        ApiError {
            details: Some(json!({ "name": namespace, "kind": "namespaces" })),
            ..Self::new(404, "NotFound", format!("namespaces \"{namespace}\" not found"))
        }
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(info, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(info)),
            )
        }
    }

    pub fn conflict(info: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(info, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    qualified(info)
                ),
            )
        }
    }

    /// 422 with every field error as a cause.
    pub fn invalid(info: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| {
                json!({
                    "reason": e.error_type.reason(),
                    "message": e.to_string().split_once(": ").map_or(String::new(), |(_, m)| m.to_owned()),
                    "field": e.field,
                })
            })
            .collect();
        let mut d = details(info, name);
        d["kind"] = json!(info.kind);
        d["causes"] = json!(causes);
        ApiError {
            details: Some(d),
            ..Self::new(
                422,
                "Invalid",
                format!(
                    "{} \"{name}\" is invalid: {}",
                    info.kind,
                    rudder_api::field_error::join(errors)
                ),
            )
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn method_not_allowed(verb: &str, info: &ResourceInfo) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {})",
                info.plural
            ),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn route_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    /// Maps a store error for an object of `info` named `name`.
    pub fn from_store(e: StoreError, info: &ResourceInfo, name: &str) -> Self {
        match e {
            StoreError::KeyExists { .. } => Self::already_exists(info, name),
            StoreError::NotFound { .. } => Self::not_found(info, name),
            StoreError::Conflict { .. } => Self::conflict(info, name),
            StoreError::Compacted { requested, compacted } => Self::gone(format!(
                "The resourceVersion for the provided list is too old (requested {requested}, oldest available {compacted})."
            )),
            StoreError::FutureRevision { requested, current } => Self::new(
                504,
                "Timeout",
                format!("Too large resource version: {requested}, current: {current}"),
            ),
            StoreError::ValueTooLarge { .. } => Self::new(
                413,
                "RequestEntityTooLarge",
                "Request entity too large: limit is 3145728",
            ),
            StoreError::InvalidContinue { reason } => {
                Self::bad_request(format!("continue key is not valid: {reason}"))
            }
            StoreError::InvalidKey { key, reason } => {
                Self::bad_request(format!("invalid object name {key:?}: {reason}"))
            }
            e @ (StoreError::WatchLagged { .. } | StoreError::Unavailable { .. }) => {
                tracing::error!(error = %e, "store unavailable");
                Self::new(503, "ServiceUnavailable", format!("storage is unavailable: {e}"))
            }
        }
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.to_status())).into_response()
    }
}

/// The `Status` a successful delete answers with.
pub fn success(info: &ResourceInfo, name: &str, uid: Option<&str>) -> Value {
    let mut d = details(info, name);
    if let Some(uid) = uid {
        d["uid"] = json!(uid);
    }
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d })
}
