//! Watch: a chunked stream of `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}`
//! lines, from a resourceVersion (or from the current objects when none is given), filtered
//! by the selectors with upstream's transition rules (an object that stops matching is
//! DELETED for this watcher, one that starts matching is ADDED).
//!
//! Changes come from the watch cache when it holds them, else from a store watch (a
//! resourceVersion older than the cache's window but still in the store's history).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use rudder_store::EventType;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::cached_object::CachedObject;
use crate::form::Form;
use crate::object;
use crate::registry::Registry;
use crate::request::{Query, Target};
use crate::selectors::Filter;
use crate::status::ApiError;
use crate::table;
use crate::watch_cache::Change;

/// Upstream's default: a watch ends after a random 30-60 minutes; we use the lower bound.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Events a watch response may have produced but not yet sent before it is ended.
const OUT_BUFFER: usize = 256;

/// Where a watcher's changes come from: the store's history first when the requested
/// revision is older than the watch cache's (up to the cache's revision at subscription),
/// then the cache's replay and live changes.
struct Source {
    history: Option<rudder_store::WatchStream>,
    replay: VecDeque<Arc<Change>>,
    live: broadcast::Receiver<Arc<Change>>,
    skip_through: i64,
}

/// A store event as the cache would have made it.
fn store_change(event: rudder_store::Event) -> Change {
    let new = match event.event_type {
        EventType::Deleted => None,
        _ => CachedObject::from_kv(&event.kv).ok().map(Arc::new),
    };
    let old = event.prev.as_ref().and_then(|p| CachedObject::from_kv(p).ok()).map(Arc::new);
    Change::new(event.revision(), event.kv.key, new, old)
}

impl Source {
    /// The next change, or the `Status` that ends the watch.
    async fn next(&mut self) -> Option<Result<Arc<Change>, Value>> {
        if let Some(events) = &mut self.history {
            let event = match events.next().await? {
                Ok(e) => e,
                Err(e) => return Some(Err(store_error_status(e))),
            };
            if event.revision() <= self.skip_through {
                if event.revision() == self.skip_through {
                    self.history = None;
                }
                return Some(Ok(Arc::new(store_change(event))));
            }
            // Past the cache's revision at subscription: the live changes have this one.
            self.history = None;
        }
        if let Some(c) = self.replay.pop_front() {
            return Some(Ok(c));
        }
        loop {
            match self.live.recv().await {
                Ok(c) if c.revision <= self.skip_through => continue,
                Ok(c) => return Some(Ok(c)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "a watcher fell behind the watch cache and is ended");
                    return Some(Err(expired("the watch fell behind and was ended; watch again")));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// One line of a watch response: `{"type":<event_type>,"object":<object>}` and a newline.
fn event_line(event_type: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + event_type.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(event_type.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn expired(message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Expired", "code": 410,
    })
}

fn store_error_status(e: rudder_store::StoreError) -> Value {
    match e {
        rudder_store::StoreError::Compacted { requested, compacted } => {
            expired(&format!("too old resource version: {} ({compacted})", requested - 1))
        }
        e => json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": e.to_string(), "reason": "InternalError", "code": 500,
        }),
    }
}

/// Which keys a watcher wants: a prefix, or exactly one key.
struct Keys {
    key: String,
    exact: bool,
}

impl Keys {
    fn matches(&self, key: &str) -> bool {
        if self.exact { key == self.key } else { key.starts_with(&self.key) }
    }
}

pub async fn watch(
    reg: &Registry,
    t: &Target,
    q: &Query,
    form: Form,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(q.label_selector.as_deref(), q.field_selector.as_deref())?;
    let info = t.info;
    let keys = match &t.name {
        Some(name) => Keys { key: object::key(info, t.namespace.as_deref(), name), exact: true },
        None => Keys { key: object::prefix(info, t.namespace.as_deref()), exact: false },
    };
    let requested = match q.resource_version.as_deref() {
        None | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
    };
    let sub = reg
        .cache
        .subscribe(info, requested)
        .await
        .map_err(|e| ApiError::from_store(e, info, ""))?;
    let history = match sub.history_from {
        Some(from) => {
            tracing::debug!(
                resource = info.plural,
                from,
                through = sub.skip_through,
                "watch starts from the store: older than the watch cache's window"
            );
            let events = reg.store.watch(&keys.key, from).await.map_err(|e| match e {
                rudder_store::StoreError::Compacted { .. } => {
                    ApiError::gone(format!("too old resource version: {}", from - 1))
                }
                e => ApiError::from_store(e, info, ""),
            })?;
            Some(events)
        }
        None => None,
    };
    let initial: Vec<Arc<CachedObject>> = sub
        .initial
        .into_iter()
        .filter(|(k, o)| keys.matches(k) && o.matches(&filter))
        .map(|(_, o)| o)
        .collect();
    let start = sub.revision;
    let source = Source {
        history,
        replay: sub.replay.into(),
        live: sub.live,
        skip_through: sub.skip_through,
    };
    let clock = reg.clock.clone();
    let timeout = q.timeout_seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let bookmarks = q.allow_watch_bookmarks;
    let include_object = q.include_object.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(OUT_BUFFER);
    let mut source = source;
    tokio::spawn(async move {
        let mut first_table = true;
        let encode = |event_type: &str, obj: &Value, first: &mut bool| -> Bytes {
            let object = if form == Form::Metadata && event_type != "ERROR" {
                serde_json::to_vec(&crate::form::metadata(obj)).expect("JSON")
            } else if form == Form::Table && event_type != "ERROR" && event_type != "BOOKMARK" {
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
                serde_json::to_vec(&t).expect("JSON")
            } else {
                serde_json::to_vec(obj).expect("JSON")
            };
            event_line(event_type, &object)
        };
        // A cached object: its own JSON, or its metadata's, shared by every watcher; a table
        // row from the decoded object.
        let encode_cached = |event_type: &str, obj: &CachedObject, first: &mut bool| match form {
            Form::Object => Some(event_line(event_type, obj.json())),
            Form::Metadata => Some(event_line(event_type, &obj.metadata_json())),
            Form::Table => obj.value().ok().map(|v| encode(event_type, &v, first)),
        };
        for obj in &initial {
            let Some(line) = encode_cached("ADDED", obj, &mut first_table) else { continue };
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut last_rv = start;
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            let change = tokio::select! {
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
                c = source.next() => c,
            };
            let change = match change {
                Some(Ok(c)) => c,
                Some(Err(status)) => {
                    let _ = tx.send(encode("ERROR", &status, &mut first_table)).await;
                    return;
                }
                None => return,
            };
            last_rv = change.revision;
            if !keys.matches(&change.key) {
                continue;
            }
            let new_matches = change.new.as_deref().is_some_and(|o| o.matches(&filter));
            let old_matches = change.old.as_deref().is_some_and(|o| o.matches(&filter));
            let line = match (&change.new, old_matches, new_matches) {
                (None, true, _) => {
                    // The last state, at the deletion's revision.
                    let old = change.old.as_ref().expect("matched");
                    let revision = change.revision.to_string();
                    match crate::raw_json::with_resource_version(old.json(), &revision) {
                        Some(gone) if form == Form::Object => Some(event_line("DELETED", &gone)),
                        _ => old.value().ok().map(|mut gone| {
                            object::meta_mut(&mut gone)
                                .insert("resourceVersion".into(), json!(revision));
                            encode("DELETED", &gone, &mut first_table)
                        }),
                    }
                }
                (None, false, _) | (Some(_), false, false) => None,
                (Some(new), old_matches, new_matches) => {
                    let event_type = match (old_matches, new_matches) {
                        (false, _) => "ADDED",
                        (true, true) => "MODIFIED",
                        (true, false) => "DELETED",
                    };
                    // The same bytes for every watcher of this change (tables are per
                    // watcher: the first one carries the column definitions).
                    match form {
                        Form::Object => change.new_json().map(|j| event_line(event_type, j)),
                        Form::Metadata => {
                            change.new_metadata_json().map(|j| event_line(event_type, j))
                        }
                        Form::Table => encode_cached(event_type, new, &mut first_table),
                    }
                }
            };
            if let Some(line) = line
                && tx.send(line).await.is_err()
            {
                return;
            }
        }
    });
    let mut rx = rx;
    let body = Body::from_stream(
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok::<Bytes, Infallible>),
    );
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(body)
        .expect("valid response"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use rudder_store::{MemoryStorage, Storage};

    use super::*;
    use crate::clock::SystemClock;
    use crate::request::parse_target;
    use crate::watch_cache::WatchCache;

    #[tokio::test]
    async fn a_resource_version_compacted_away_is_410_gone() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        for i in 0..5 {
            let key = format!("/registry/core/configmaps/default/c{i}");
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}"), "namespace": "default"}});
            store.create(&key, Bytes::from(serde_json::to_vec(&body).unwrap())).await.unwrap();
        }
        store.compact(4).await.unwrap();
        let reg = Registry {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            cache: WatchCache::new(store),
        };
        let target = parse_target("", "v1", &["namespaces", "default", "configmaps"]).unwrap();
        let old = Query { watch: true, resource_version: Some("2".into()), ..Default::default() };
        match watch(&reg, &target, &old, Form::Object).await {
            Err(e) => {
                assert_eq!((e.code, e.reason), (410, "Expired"));
                assert!(e.message.contains("too old resource version: 2"), "{}", e.message);
            }
            Ok(_) => panic!("a compacted resourceVersion must be 410 Gone"),
        }
        let recent =
            Query { watch: true, resource_version: Some("5".into()), ..Default::default() };
        assert!(watch(&reg, &target, &recent, Form::Object).await.is_ok());
    }

    /// Reads `n` event lines from a watch response: (type, object).
    async fn lines(response: Response, n: usize) -> Vec<(String, Value)> {
        use futures::StreamExt;
        let mut body = response.into_body().into_data_stream();
        let (mut out, mut text) = (Vec::new(), String::new());
        while out.len() < n {
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .expect("the watch sends the event")
                .unwrap()
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = text.find('\n') {
                let line: Value = serde_json::from_str(&text[..end]).unwrap();
                text.drain(..=end);
                out.push((line["type"].as_str().unwrap().to_owned(), line["object"].clone()));
            }
        }
        out
    }

    /// Events carry the cached bytes as the object; a deletion the last state at the
    /// deletion's revision; a change that leaves a watcher's selector is DELETED for it; a
    /// metadata-only watcher gets `PartialObjectMetadata`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_from_cached_objects_in_each_form() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let reg = Registry {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            cache: WatchCache::new(store.clone()),
        };
        let target = parse_target("", "v1", &["namespaces", "default", "configmaps"]).unwrap();
        let key = "/registry/core/configmaps/default/c";
        let cm = |app: &str, v: &str| {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c", "namespace": "default", "labels": {"app": app}},
                "data": {"v": v}});
            object::encode(&body)
        };
        let r1 = store.create(key, cm("web", "1")).await.unwrap().mod_revision;
        let from = |selector: Option<&str>| Query {
            watch: true,
            resource_version: Some(r1.to_string()),
            label_selector: selector.map(str::to_owned),
            ..Default::default()
        };
        let all = watch(&reg, &target, &from(None), Form::Object).await.unwrap();
        let web = watch(&reg, &target, &from(Some("app=web")), Form::Object).await.unwrap();
        let meta = watch(&reg, &target, &from(None), Form::Metadata).await.unwrap();
        let r2 = store.update(key, cm("db", "2"), r1).await.unwrap().mod_revision;
        let r3 = store.delete(key, None).await.unwrap().revision;
        let rv = |o: &Value| o["metadata"]["resourceVersion"].as_str().unwrap().to_owned();

        let events = lines(all, 2).await;
        assert_eq!(events[0].0, "MODIFIED");
        assert_eq!((rv(&events[0].1), &events[0].1["data"]["v"]), (r2.to_string(), &json!("2")));
        assert_eq!(events[1].0, "DELETED");
        assert_eq!(rv(&events[1].1), r3.to_string(), "a deletion is at its own revision");
        assert_eq!(events[1].1["data"]["v"], "2", "with the last state");
        assert_eq!(events[1].1["metadata"]["labels"]["app"], "db");

        // The label change takes the object out of app=web: DELETED there, at r2.
        let events = lines(web, 1).await;
        assert_eq!((events[0].0.as_str(), rv(&events[0].1)), ("DELETED", r2.to_string()));

        let events = lines(meta, 2).await;
        for (_, o) in &events {
            assert_eq!(o["kind"], "PartialObjectMetadata");
            assert!(o.get("data").is_none(), "{o}");
        }
        assert_eq!((events[1].0.as_str(), rv(&events[1].1)), ("DELETED", r3.to_string()));
    }

    /// A watch from a revision older than the watch cache's start (an informer that listed
    /// from the store before the cache ran) gets the store's history up to the cache's
    /// revision, then the cache's changes: each change once, in order, and no store watch
    /// of its own left once it has caught up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_revision_is_bridged_from_the_store_to_the_cache() {
        use rudder_store::{SqliteConfig, SqliteStorage};

        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStorage::open(SqliteConfig::new(dir.path().join("db"))).unwrap();
        let store: Arc<dyn Storage> = Arc::new(sqlite.clone());
        let put = |name: &str, v: &str| {
            let store = store.clone();
            let key = format!("/registry/core/configmaps/default/{name}");
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"}, "data": {"v": v}});
            async move {
                let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
                match store.get(&key).await.unwrap() {
                    Some(kv) => store.update(&key, bytes, kv.mod_revision).await.unwrap(),
                    None => store.create(&key, bytes).await.unwrap(),
                }
                .mod_revision
            }
        };
        let r0 = put("a", "0").await;
        let r1 = put("b", "1").await;
        let r2 = put("a", "2").await;
        let reg = Registry {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            cache: WatchCache::new(store.clone()),
        };
        let target = parse_target("", "v1", &["namespaces", "default", "configmaps"]).unwrap();
        // The cache starts now, at r2: r0 is older than anything it has.
        reg.cache.subscribe(target.info, None).await.unwrap();
        let from =
            Query { watch: true, resource_version: Some(r0.to_string()), ..Default::default() };
        let response = watch(&reg, &target, &from, Form::Object).await.unwrap();
        let r3 = put("c", "3").await;
        let r4 = put("b", "4").await;
        let seen: Vec<(String, i64)> = lines(response, 4)
            .await
            .into_iter()
            .map(|(t, o)| {
                (t, o["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap())
            })
            .collect();
        let expected = [("ADDED", r1), ("MODIFIED", r2), ("ADDED", r3), ("MODIFIED", r4)];
        assert_eq!(seen, expected.map(|(t, r)| (t.to_owned(), r)));
        assert_eq!(sqlite.watcher_count(), 1, "only the cache's own store watch is left");
    }
}
