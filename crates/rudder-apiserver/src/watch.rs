//! Watch: a chunked stream of `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`
//! lines, from a resourceVersion (or from a fresh list when none is given), filtered by the
//! selectors with upstream's transition rules (an object that stops matching is DELETED for
//! this watcher, one that starts matching is ADDED).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use rudder_store::{EventType, Storage};
use serde_json::{Value, json};

use crate::object::{self, decode};
use crate::registry::Registry;
use crate::request::{Query, Target};
use crate::selectors::Filter;
use crate::status::ApiError;
use crate::table;

/// Upstream's default: a watch ends after a random 30-60 minutes; we use the lower bound.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Events a watch response may have produced but not yet sent before it is ended.
const OUT_BUFFER: usize = 256;

pub async fn watch(
    reg: &Registry,
    t: &Target,
    q: &Query,
    as_table: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(q.label_selector.as_deref(), q.field_selector.as_deref())?;
    let info = t.info;
    let mut prefix = object::prefix(info, t.namespace.as_deref());
    let single_name = t.name.clone();
    if let Some(name) = &single_name {
        prefix = object::key(info, t.namespace.as_deref(), name);
    }
    let mut initial = Vec::new();
    let from = match q.resource_version.as_deref() {
        None | Some("0") => {
            let list_query =
                Query { limit: None, continue_token: None, resource_version: None, ..q.clone() };
            let list = reg.list(t, &list_query).await?;
            initial = list["items"].as_array().cloned().unwrap_or_default();
            let rv: i64 = list["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            rv + 1
        }
        Some(rv) => {
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?
                + 1
        }
    };
    if let Some(name) = &single_name {
        initial.retain(|o| object::name(o) == Some(name.as_str()));
    }
    let store: std::sync::Arc<dyn Storage> = reg.store.clone();
    let clock = reg.clock.clone();
    let timeout = q.timeout_seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let bookmarks = q.allow_watch_bookmarks;
    let include_object = q.include_object.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(OUT_BUFFER);
    tokio::spawn(async move {
        let mut first_table = true;
        let encode = |event_type: &str, obj: &Value, first: &mut bool| -> Bytes {
            let object = if as_table && event_type != "ERROR" && event_type != "BOOKMARK" {
                let meta = json!({ "resourceVersion": object::meta_str(obj, "resourceVersion").unwrap_or_default() });
                let t = table::table(
                    info,
                    std::slice::from_ref(obj),
                    meta,
                    clock.now(),
                    include_object.as_deref(),
                    *first,
                );
                *first = false;
                t
            } else {
                obj.clone()
            };
            let mut line =
                serde_json::to_vec(&json!({ "type": event_type, "object": object })).expect("JSON");
            line.push(b'\n');
            Bytes::from(line)
        };
        for obj in &initial {
            if tx.send(encode("ADDED", obj, &mut first_table)).await.is_err() {
                return;
            }
        }
        let mut events = match store.watch(&prefix, from).await {
            Ok(w) => w,
            Err(e) => {
                let status = watch_error(e, from);
                let _ = tx.send(encode("ERROR", &status, &mut first_table)).await;
                return;
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last_rv = from - 1;
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            let event = tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let bookmark = json!({
                        "kind": info.kind,
                        "apiVersion": info.api_version(),
                        "metadata": { "resourceVersion": last_rv.to_string() },
                    });
                    if tx.send(encode("BOOKMARK", &bookmark, &mut first_table)).await.is_err() {
                        return;
                    }
                    continue;
                }
                e = events.next() => e,
            };
            let event = match event {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    let status = watch_error(e, from);
                    let _ = tx.send(encode("ERROR", &status, &mut first_table)).await;
                    return;
                }
                None => return,
            };
            last_rv = event.revision();
            let new = match event.event_type {
                EventType::Deleted => None,
                _ => decode(&event.kv).ok(),
            };
            let old = event.prev.as_ref().and_then(|p| decode(p).ok());
            let new_matches = new.as_ref().is_some_and(|o| filter.matches(o));
            let old_matches = old.as_ref().is_some_and(|o| filter.matches(o));
            let out = match (event.event_type, old_matches, new_matches) {
                (EventType::Deleted, true, _) => {
                    let mut gone = old.expect("matched");
                    object::meta_mut(&mut gone)
                        .insert("resourceVersion".into(), json!(event.revision().to_string()));
                    Some(("DELETED", gone))
                }
                (EventType::Deleted, false, _) => None,
                (_, false, true) => Some(("ADDED", new.expect("matched"))),
                (_, true, true) => Some(("MODIFIED", new.expect("matched"))),
                (_, true, false) => Some(("DELETED", new.unwrap_or_default())),
                (_, false, false) => None,
            };
            if let Some((event_type, obj)) = out
                && tx.send(encode(event_type, &obj, &mut first_table)).await.is_err()
            {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream_from(rx).map(Ok::<Bytes, Infallible>));
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(body)
        .expect("valid response"))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn watch_error(e: rudder_store::StoreError, from: i64) -> Value {
    match e {
        rudder_store::StoreError::Compacted { compacted, .. } => json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("too old resource version: {} ({compacted})", from - 1),
            "reason": "Expired",
            "code": 410,
        }),
        e => json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": e.to_string(),
            "reason": "InternalError",
            "code": 500,
        }),
    }
}
