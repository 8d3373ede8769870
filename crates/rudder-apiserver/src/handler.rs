//! The HTTP surface: health and version, discovery, and every resource verb.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::discovery;
use crate::form::Form;
use crate::registry::{Registry, Written};
use crate::request::{Query, Target, parse_target};
use crate::status::ApiError;
use crate::table;
use crate::tls::Identity;
use crate::watch;

/// Largest request body accepted (upstream's limit).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub struct AppState {
    pub registry: Registry,
    /// `host:port` clients use, for `/api`'s serverAddressByClientCIDRs.
    pub server_address: String,
    /// How `pods/log` reaches kubelets.
    pub kubelet: crate::kubelet_client::KubeletClient,
    /// Signs `serviceaccounts/<name>/token` tokens.
    pub tokens: crate::token_request::TokenSigner,
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(value).expect("JSON"))
        .into_response()
}

pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0",
        "gitCommit": "rudder",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": concat!("rudder ", env!("CARGO_PKG_VERSION")),
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

pub async fn handle(State(app): State<Arc<AppState>>, req: Request) -> Response {
    match dispatch(&app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(app: &AppState, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().to_owned();
    let accept =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method() == Method::GET;
    match segments.as_slice() {
        ["version"] if get => return Ok(json_response(StatusCode::OK, &version_info())),
        [check @ ("healthz" | "livez" | "readyz")] if get => {
            return Ok(health(
                app,
                check,
                req.uri().query().is_some_and(|q| q.contains("verbose")),
            )
            .await);
        }
        ["api"] if get => {
            return Ok(if discovery::wants_aggregated(&accept) {
                aggregated(discovery::aggregated(true))
            } else {
                json_response(StatusCode::OK, &discovery::api_versions(&app.server_address))
            });
        }
        ["apis"] if get => {
            return Ok(if discovery::wants_aggregated(&accept) {
                aggregated(discovery::aggregated(false))
            } else {
                json_response(StatusCode::OK, &discovery::api_group_list())
            });
        }
        ["apis", group] if get => {
            let doc = discovery::api_group_doc(group).ok_or_else(ApiError::route_not_found)?;
            return Ok(json_response(StatusCode::OK, &doc));
        }
        ["openapi", "v2"] if get => return Ok(openapi_v2(&accept)),
        ["openapi", "v3"] if get => {
            return Ok(json_response(StatusCode::OK, rudder_openapi::root()));
        }
        ["openapi", "v3", rest @ ..] if get => {
            let doc = rudder_openapi::document_at(&rest.join("/"))
                .ok_or_else(ApiError::route_not_found)?;
            return Ok(json_response(StatusCode::OK, doc));
        }
        ["api", "v1"] if get => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::api_resource_list("", "v1").expect("core/v1"),
            ));
        }
        ["apis", group, version] if get => {
            let doc = discovery::api_resource_list(group, version)
                .ok_or_else(ApiError::route_not_found)?;
            return Ok(json_response(StatusCode::OK, &doc));
        }
        _ => {}
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", "v1", rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return Err(ApiError::route_not_found()),
    };
    if req.extensions().get::<Identity>().is_none() {
        return Err(ApiError::unauthorized());
    }
    let target = parse_target(group, version, rest)?;
    if target.info.kind == "Pod" && target.subresource.as_deref() == Some("log") {
        if req.method() != Method::GET {
            return Err(ApiError::method_not_allowed("create", target.info));
        }
        let span = tracing::debug_span!("request", verb = "get", resource = "pods/log", namespace = ?target.namespace, name = ?target.name);
        return crate::pod_log::get(&app.registry, &app.kubelet, &target, req.uri().query())
            .instrument(span)
            .await;
    }
    if let ("Pod", Some(verb @ ("exec" | "attach" | "portforward"))) =
        (target.info.kind, target.subresource.as_deref())
    {
        let verb = verb.to_owned();
        let span = tracing::debug_span!("request", verb = "create", resource = %format!("pods/{verb}"), namespace = ?target.namespace, name = ?target.name);
        return crate::pod_stream::connect(&app.registry, &app.kubelet, &target, &verb, req)
            .instrument(span)
            .await;
    }
    let query = Query::parse(req.uri().query())?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let method = req.method().clone();
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {MAX_BODY_BYTES}"),
        )
    })?;
    let body = if matches!(method, Method::POST | Method::PUT | Method::DELETE) && !body.is_empty()
    {
        json_body(&content_type, body)?
    } else {
        body
    };
    resource(app, &target, &query, &method, &accept, &content_type, &body).await
}

/// Request bodies as JSON: JSON passes through; Kubernetes protobuf (what kubectl 1.33's
/// typed clients send) is decoded; anything else is 415.
fn json_body(content_type: &str, body: bytes::Bytes) -> Result<bytes::Bytes, ApiError> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "" | "application/json" | "*/*" => Ok(body),
        rudder_proto::MEDIA_TYPE => {
            let obj = rudder_proto::decode_object(&body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the body of the request could not be decoded as protobuf: {e}"
                ))
            })?;
            Ok(bytes::Bytes::from(serde_json::to_vec(&obj).expect("JSON")))
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf (got {other})"
            ),
        )),
    }
}

/// `/openapi/v2`: rudder describes its schemas in OpenAPI v3; the v2 document is an empty
/// Swagger 2.0 shell. kubectl reads it only to decide that a kind it cannot find in v3 (a
/// removed API version such as apps/v1beta1) has no schema, and then reports the kind as
/// unknown, as it does against upstream.
fn openapi_v2(accept: &str) -> Response {
    const TITLE: &[u8] = b"Kubernetes";
    const VERSION: &[u8] = b"v1.33.0";
    if accept.contains("application/com.github.proto-openapi.spec.v2") {
        // gnostic's OpenAPIv2 Document: swagger = 1, info = 2 (title = 1, version = 2).
        let mut info = vec![0x0a, TITLE.len() as u8];
        info.extend_from_slice(TITLE);
        info.extend_from_slice(&[0x12, VERSION.len() as u8]);
        info.extend_from_slice(VERSION);
        let mut doc = vec![0x0a, 3];
        doc.extend_from_slice(b"2.0");
        doc.extend_from_slice(&[0x12, info.len() as u8]);
        doc.extend(info);
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")],
            doc,
        )
            .into_response();
    }
    let doc = json!({ "swagger": "2.0", "info": { "title": "Kubernetes", "version": "v1.33.0" }, "paths": {}, "definitions": {} });
    json_response(StatusCode::OK, &doc)
}

/// `/healthz`, `/livez`, `/readyz`: the process answers (ping) and, for readiness and
/// health, the store answers a read within a bound.
async fn health(app: &AppState, check: &str, verbose: bool) -> Response {
    let storage = if check == "livez" {
        Ok(())
    } else {
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            app.registry.store.current_revision(),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        }
    };
    let ok = storage.is_ok();
    let body = if verbose {
        let storage_line = match &storage {
            Ok(()) => "[+]storage ok".to_owned(),
            Err(e) => format!("[-]storage failed: {e}"),
        };
        let verdict =
            if ok { format!("{check} check passed") } else { format!("{check} check failed") };
        format!("[+]ping ok\n[+]log ok\n{storage_line}\n{verdict}\n")
    } else if ok {
        "ok".to_owned()
    } else {
        format!("[-]storage failed: {}\n{check} check failed\n", storage.err().unwrap_or_default())
    };
    let code = if ok { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR };
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn aggregated(doc: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, discovery::AGGREGATED_V2)],
        serde_json::to_vec(&doc).expect("JSON"),
    )
        .into_response()
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET", _) if q.watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

fn written(w: Written) -> Response {
    let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
    let mut response = json_response(code, &w.object);
    for warning in &w.warnings {
        let text = format!("299 - \"{}\"", warning.replace('"', "\\\""));
        if let Ok(value) = header::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

async fn resource(
    app: &AppState,
    t: &Target,
    q: &Query,
    method: &Method,
    accept: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let verb = verb_of(method, t, q);
    let span = tracing::debug_span!("request", verb, resource = t.info.plural, namespace = ?t.namespace, name = ?t.name);
    resource_verb(app, t, q, verb, accept, content_type, body).instrument(span).await
}

async fn resource_verb(
    app: &AppState,
    t: &Target,
    q: &Query,
    verb: &'static str,
    accept: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let reg = &app.registry;
    let subresource = t.subresource.as_deref();
    if t.info.kind == "CustomResourceDefinition" && matches!(verb, "create" | "update" | "patch") {
        return Err(ApiError::new(
            501,
            "NotImplemented",
            "CustomResourceDefinitions are not supported by rudder yet: custom resources cannot be served",
        ));
    }
    if t.info.kind == "ComponentStatus" {
        return component_statuses(reg, t, verb, accept, q).await;
    }
    if t.info.kind == "Pod" && matches!(subresource, Some("binding" | "eviction")) {
        if verb != "create" {
            return Err(ApiError::method_not_allowed(verb, t.info));
        }
        let status = match subresource {
            Some("binding") => crate::pod_subresources::bind(reg, t, body, q).await?,
            _ => crate::pod_subresources::evict(reg, t, body, q).await?,
        };
        return Ok(json_response(StatusCode::CREATED, &status));
    }
    if t.info.kind == "ServiceAccount" && subresource == Some("token") {
        if verb != "create" {
            return Err(ApiError::method_not_allowed(verb, t.info));
        }
        let request = crate::token_request::create(reg, &app.tokens, t, body).await?;
        return Ok(json_response(StatusCode::CREATED, &request));
    }
    if subresource == Some("scale") {
        return match verb {
            "get" => Ok(json_response(StatusCode::OK, &reg.get_scale(t).await?)),
            "update" => {
                Ok(json_response(StatusCode::OK, &reg.write_scale(t, body, None, q).await?))
            }
            "patch" => Ok(json_response(
                StatusCode::OK,
                &reg.write_scale(t, body, Some(content_type), q).await?,
            )),
            _ => Err(ApiError::method_not_allowed(verb, t.info)),
        };
    }
    match subresource {
        None | Some("status") => {}
        Some("finalize") if t.info.kind == "Namespace" => {}
        Some(sub) => {
            return Err(ApiError::new(
                501,
                "NotImplemented",
                format!(
                    "the {sub} subresource of {} is not implemented by rudder yet",
                    t.info.plural
                ),
            ));
        }
    }
    let allowed = match (verb, subresource) {
        (_, Some("status")) => matches!(verb, "get" | "update" | "patch"),
        (_, Some("finalize")) => verb == "update",
        ("unknown", _) => false,
        (v, None) => t.info.has_verb(v),
        _ => false,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(verb, t.info));
    }
    let form = Form::from_accept(accept);
    match verb {
        "get" => {
            let obj = reg.get(t).await?;
            if form == Form::Metadata {
                return Ok(json_response(StatusCode::OK, &crate::form::metadata(&obj)));
            }
            if form == Form::Table {
                let meta = json!({ "resourceVersion": crate::object::meta_str(&obj, "resourceVersion").unwrap_or_default() });
                let tbl = table::table(
                    t.info,
                    &[obj],
                    meta,
                    reg.clock.now(),
                    q.include_object.as_deref(),
                    true,
                );
                return Ok(json_response(StatusCode::OK, &tbl));
            }
            Ok(json_response(StatusCode::OK, &obj))
        }
        "list" => {
            let list = reg.list(t, q).await?;
            if form == Form::Metadata {
                return Ok(json_response(StatusCode::OK, &crate::form::metadata_list(&list)));
            }
            if form == Form::Table {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let tbl = table::table(
                    t.info,
                    &items,
                    list["metadata"].clone(),
                    reg.clock.now(),
                    q.include_object.as_deref(),
                    true,
                );
                return Ok(json_response(StatusCode::OK, &tbl));
            }
            Ok(json_response(StatusCode::OK, &list))
        }
        "watch" => watch::watch(reg, t, q, form).await,
        "create" => Ok(written(reg.create(t, body, q).await?)),
        "update" => Ok(written(reg.update(t, body, q).await?)),
        "patch" => Ok(written(reg.patch(t, body, content_type, q).await?)),
        "delete" => Ok(json_response(StatusCode::OK, &reg.delete(t, body, q).await?)),
        "deletecollection" => {
            Ok(json_response(StatusCode::OK, &reg.delete_collection(t, body, q).await?))
        }
        _ => Err(ApiError::method_not_allowed(verb, t.info)),
    }
}

async fn component_statuses(
    reg: &Registry,
    t: &Target,
    verb: &str,
    accept: &str,
    q: &Query,
) -> Result<Response, ApiError> {
    let all = crate::component_status::current(reg).await;
    let items: Vec<Value> = match (verb, &t.name) {
        ("list", _) => all,
        ("get", Some(name)) => {
            let found = all.into_iter().find(|c| c["metadata"]["name"] == json!(name));
            vec![found.ok_or_else(|| ApiError::not_found(t.info, name))?]
        }
        _ => return Err(ApiError::method_not_allowed(verb, t.info)),
    };
    let body = if Form::from_accept(accept) == Form::Table {
        table::table(t.info, &items, json!({}), reg.clock.now(), q.include_object.as_deref(), true)
    } else if verb == "get" {
        items.into_iter().next().expect("one item")
    } else {
        json!({ "kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items })
    };
    let mut response = json_response(StatusCode::OK, &body);
    let warning = format!("299 - \"{}\"", crate::component_status::DEPRECATION);
    response
        .headers_mut()
        .append(header::WARNING, header::HeaderValue::from_str(&warning).expect("ASCII"));
    Ok(response)
}

/// The router: everything goes through [`handle`].
pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::disable())
}
