//! Events (core/v1, what `kubectl describe` shows): recorded without blocking the caller,
//! written by a background task, and repeats of the same event for the same object within
//! ten minutes folded into one Event with a growing `count` (as upstream's recorder does).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;

use crate::clock::{self, Clock};

/// How many events may wait for the writer before new ones are dropped (as upstream does).
const QUEUE_LIMIT: usize = 1000;
/// How many distinct recent events are remembered for folding repeats.
const REMEMBERED_LIMIT: usize = 4096;
/// Repeats within this window are folded into the earlier Event.
const FOLD_WINDOW: Duration = Duration::from_secs(600);
/// Bound on one Event write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug)]
struct Record {
    object: ObjectReference,
    kind: EventType,
    reason: String,
    message: String,
}

/// Records events for one component (`source.component`, e.g. `replicaset-controller`).
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
}

/// The reference an Event points at.
pub fn object_reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// Starts the writer task; it ends when every clone of the recorder is dropped.
    pub fn new(client: Client, component: &str, clock: Arc<dyn Clock>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_LIMIT);
        tokio::spawn(write_events(client, component.to_owned(), clock, rx));
        Recorder { tx }
    }

    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        kind: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.event_for(object_reference(obj), kind, reason, message);
    }

    pub fn event_for(
        &self,
        object: ObjectReference,
        kind: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let record = Record { object, kind, reason: reason.to_owned(), message: message.into() };
        if self.tx.try_send(record).is_err() {
            tracing::debug!("event queue full; event dropped");
        }
    }
}

type FoldKey = (String, EventType, String, String);

struct Folded {
    namespace: String,
    name: String,
    count: i32,
    last: k8s_openapi::jiff::Timestamp,
}

async fn write_events(
    client: Client,
    component: String,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Record>,
) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut recent: HashMap<FoldKey, Folded> = HashMap::new();
    // Event names carry a time in ns; two events at the same clock reading (a ManualClock,
    // a coarse clock) still get distinct names.
    let mut last_name_ns: i128 = 0;
    while let Some(record) = rx.recv().await {
        let now = clock.now();
        let namespace =
            record.object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or("default".into());
        let fold_key: FoldKey = (
            record.object.uid.clone().unwrap_or_else(|| {
                format!("{namespace}/{}", record.object.name.clone().unwrap_or_default())
            }),
            record.kind,
            record.reason.clone(),
            record.message.clone(),
        );
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Some(folded) = recent.get_mut(&fold_key)
            && clock::elapsed(folded.last, now) < FOLD_WINDOW
        {
            folded.count += 1;
            folded.last = now;
            let patch = serde_json::json!({
                "count": folded.count,
                "lastTimestamp": Time(now),
            });
            let name = folded.name.clone();
            let ns_api: Api<Event> = Api::namespaced(client.clone(), &folded.namespace);
            let result = tokio::time::timeout(
                WRITE_TIMEOUT,
                ns_api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
            if matches!(result, Ok(Ok(_))) {
                continue;
            }
        }
        let name_ns = now.as_nanosecond().max(last_name_ns + 1);
        last_name_ns = name_ns;
        let name = format!("{}.{:x}", record.object.name.clone().unwrap_or_default(), name_ns);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: record.object,
            reason: Some(record.reason),
            message: Some(record.message),
            type_: Some(record.kind.as_str().to_owned()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some(component.clone()),
                host: Some(host.clone()),
            }),
            reporting_component: Some(component.clone()),
            reporting_instance: Some(host.clone()),
            ..Event::default()
        };
        match tokio::time::timeout(WRITE_TIMEOUT, api.create(&PostParams::default(), &event)).await
        {
            Ok(Ok(_)) => {
                if recent.len() >= REMEMBERED_LIMIT {
                    recent.clear();
                }
                recent.insert(fold_key, Folded { namespace, name, count: 1, last: now });
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "writing an event failed"),
            Err(_) => tracing::debug!("writing an event timed out"),
        }
    }
}
