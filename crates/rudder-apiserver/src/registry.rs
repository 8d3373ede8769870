//! The generic registry: every verb implemented once for every resource, on JSON objects.
//! Kind-specific behaviour (defaulting, status handling) comes from `strategy`.

use std::sync::Arc;

use rudder_api::ResourceInfo;
use rudder_store::{ListOptions, Storage, StoreError};
use serde_json::{Value, json};

use crate::clock::{Clock, rfc3339};
use crate::object::{self, decode, encode, key, meta_mut, prefix};
use crate::request::{FieldValidation, Query, Target};
use crate::selectors::Filter;
use crate::status::{ApiError, success};
use crate::{service_alloc, strategy, validation};

/// Attempts at a read-modify-write before a conflict is reported.
const UPDATE_RETRIES: usize = 5;
/// Items read from the store per round trip while a list collects its (selected) items.
const STORE_PAGE: usize = 500;

#[derive(Clone)]
pub struct Registry {
    pub store: Arc<dyn Storage>,
    pub clock: Arc<dyn Clock>,
    /// Serves watches (and `resourceVersion=0` lists) from memory.
    pub cache: crate::watch_cache::WatchCache,
}

/// The result of a write: the object, whether it was created (201) or not (200), and
/// warnings for the client (`Warning` headers).
pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// How one attempt of a read-modify-write ended.
enum Attempt {
    /// Written (or deleted) with a successful compare-and-swap.
    Stored(Written),
    /// Nothing written: a no-op or a dry run.
    NotStored(Written),
    /// The object changed since it was read.
    Raced,
}

impl Written {
    fn new(object: Value, created: bool, warnings: &[String]) -> Self {
        Written { object, created, warnings: warnings.to_vec() }
    }
}

/// Strict field validation against the kind's schema: an error under `Strict`, warnings
/// under `Warn`, nothing under `Ignore`.
fn check_fields(
    info: &ResourceInfo,
    obj: &Value,
    mode: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let Some(definition) = rudder_openapi::definition_for(info.group, info.version, info.kind)
    else {
        return Ok(Vec::new());
    };
    // A value of the wrong type is a decoding error whatever the validation mode; unknown
    // fields are looked for in the same walk unless they are ignored.
    let mut unknown = Vec::new();
    let collect = (mode != FieldValidation::Ignore).then_some(&mut unknown);
    if let Err(e) = rudder_openapi::check(definition, obj, collect) {
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: json: cannot unmarshal {found} into Go struct field {kind}.{path} of type {expected}",
            kind = info.kind,
            version = info.version,
            found = e.found,
            path = e.path,
            expected = e.expected,
        )));
    }
    let unknown: Vec<String> =
        unknown.into_iter().map(|path| format!("unknown field \"{path}\"")).collect();
    if unknown.is_empty() {
        return Ok(unknown);
    }
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            unknown.join(", "),
            kind = info.kind,
            version = info.version,
        ))),
        _ => Ok(unknown),
    }
}

fn expect_object(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request was in an unknown format: {e}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    Ok(value)
}

/// Checks (and fills in) apiVersion and kind against the URL's resource.
fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let expected = info.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => obj["apiVersion"] = json!(expected),
        Some(v) if v == expected => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )));
        }
    }
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("") => obj["kind"] = json!(info.kind),
        Some(k) if k == info.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
    }
    Ok(())
}

fn parse_revision(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {rv:?}")))
}

impl Registry {
    async fn check_namespace(&self, namespace: &str, creating: bool) -> Result<(), ApiError> {
        let ns_info =
            rudder_api::resources::find("", "v1", "namespaces").expect("namespaces exist");
        let ns_key = key(ns_info, None, namespace);
        // An active namespace in the watch cache needs no store read (upstream's admission
        // reads its informer); anything else is decided by the store.
        if let Some(ns) = self.cache.cached(ns_info, &ns_key)
            && ns.field("metadata.deletionTimestamp").is_empty()
            && ns.field("status.phase") == "Active"
        {
            return Ok(());
        }
        let kv = self
            .store
            .get(&ns_key)
            .await
            .map_err(|e| ApiError::from_store(e, ns_info, namespace))?;
        let Some(kv) = kv else { return Err(ApiError::namespace_not_found(namespace)) };
        if creating {
            let ns = decode(&kv)?;
            if object::meta_str(&ns, "deletionTimestamp").is_some()
                || object::path(&ns, "status.phase").and_then(Value::as_str) == Some("Terminating")
            {
                let message = format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                );
                return Err(ApiError {
                    details: Some(json!({
                        "name": namespace,
                        "kind": "namespaces",
                        "causes": [{
                            "reason": "NamespaceTerminating",
                            "message": message,
                            "field": "metadata.namespace",
                        }],
                    })),
                    ..ApiError::forbidden(message)
                });
            }
        }
        Ok(())
    }

    /// The stored version of `key`, or 404.
    async fn existing(
        &self,
        info: &ResourceInfo,
        key: &str,
        name: &str,
    ) -> Result<rudder_store::KeyValue, ApiError> {
        self.store
            .get(key)
            .await
            .map_err(|e| ApiError::from_store(e, info, name))?
            .ok_or_else(|| ApiError::not_found(info, name))
    }

    pub async fn get(&self, t: &Target) -> Result<Value, ApiError> {
        let name = t.name.as_deref().ok_or_else(ApiError::route_not_found)?;
        decode(&self.existing(t.info, &key(t.info, t.namespace.as_deref(), name), name).await?)
    }

    pub async fn create(&self, t: &Target, body: &[u8], q: &Query) -> Result<Written, ApiError> {
        let info = t.info;
        let mut obj = expect_object(body)?;
        check_type(info, &mut obj)?;
        let warnings = check_fields(info, &obj, q.field_validation)?;
        if info.namespaced {
            let url_ns = t.namespace.clone().ok_or_else(ApiError::route_not_found)?;
            match object::meta_str(&obj, "namespace").filter(|n| !n.is_empty()) {
                Some(ns) if ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
            meta_mut(&mut obj).insert("namespace".into(), json!(url_ns));
            self.check_namespace(&url_ns, true).await?;
        } else {
            meta_mut(&mut obj).remove("namespace");
        }
        // generateName makes the name only when none is given (as upstream): an object with
        // both that meets a taken name is AlreadyExists, never stored under another name.
        let generate_name = object::meta_str(&obj, "generateName")
            .filter(|g| !g.is_empty() && object::name(&obj).is_none())
            .map(str::to_owned);
        if let Some(base) = &generate_name {
            meta_mut(&mut obj)
                .insert("name".into(), json!(format!("{base}{}", object::name_suffix())));
        }
        let now = rfc3339(self.clock.now());
        {
            let m = meta_mut(&mut obj);
            m.insert("uid".into(), json!(object::new_uid()));
            m.insert("creationTimestamp".into(), json!(now));
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
        }
        strategy::prepare_for_create(info, &mut obj);
        if info.kind == "Pod" {
            crate::admission::pod_priority(&self.cache, &*self.store, &mut obj).await?;
        }
        if info.kind == "PersistentVolumeClaim" {
            crate::storage::admit_claim(&*self.store, &mut obj).await?;
        }
        if info.kind == "Service" {
            service_alloc::default_service(&mut obj);
        }
        let mut errors = validation::validate_metadata(info, &obj);
        errors.extend(strategy::validate(info, &obj));
        let name = object::name(&obj).unwrap_or_default().to_owned();
        if !errors.is_empty() {
            return Err(ApiError::invalid(info, &name, &errors));
        }
        if q.dry_run {
            return Ok(Written::new(obj, true, &warnings));
        }
        let held = if info.kind == "Service" {
            // An existing Service keeps its addresses: report AlreadyExists before claiming
            // (or failing to claim) anything.
            let k = key(info, t.namespace.as_deref(), &name);
            if self.store.get(&k).await.map_err(|e| ApiError::from_store(e, info, &name))?.is_some()
            {
                return Err(ApiError::already_exists(info, &name));
            }
            service_alloc::allocate(&*self.store, info, &mut obj, &service_alloc::Held::default())
                .await?
        } else {
            service_alloc::Held::default()
        };
        let result = self.create_with_retries(t, obj, generate_name.as_deref()).await;
        if result.is_err() {
            service_alloc::release(&*self.store, &held).await;
        }
        Ok(Written::new(result?, true, &warnings))
    }

    /// Stores a new object, picking another generated name when a generated one is taken
    /// (`generate_name` is set only when the server made the name).
    async fn create_with_retries(
        &self,
        t: &Target,
        mut obj: Value,
        generate_name: Option<&str>,
    ) -> Result<Value, ApiError> {
        let info = t.info;
        let mut attempt = 0;
        loop {
            let name = object::name(&obj).unwrap_or_default().to_owned();
            let k = key(info, t.namespace.as_deref(), &name);
            match self.store.create(&k, encode(&obj)).await {
                Ok(kv) => return Ok(object::stamped(obj, kv.mod_revision)),
                Err(StoreError::KeyExists { .. }) if generate_name.is_some() && attempt < 5 => {
                    let base = generate_name.unwrap_or_default();
                    meta_mut(&mut obj)
                        .insert("name".into(), json!(format!("{base}{}", object::name_suffix())));
                    attempt += 1;
                }
                Err(e) => return Err(ApiError::from_store(e, info, &name)),
            }
        }
    }

    pub async fn list(&self, t: &Target, q: &Query) -> Result<Value, ApiError> {
        let info = t.info;
        let filter = Filter::parse(q.label_selector.as_deref(), q.field_selector.as_deref())?;
        if q.continue_token.is_some() && q.resource_version.as_deref().is_some_and(|rv| rv != "0") {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        if q.resource_version.as_deref() == Some("0") && q.continue_token.is_none() {
            // "Any" freshness: served from the watch cache, whole (like upstream, no paging).
            let (objects, revision) = self
                .cache
                .snapshot(info, &prefix(info, t.namespace.as_deref()))
                .await
                .map_err(|e| ApiError::from_store(e, info, ""))?;
            let items = objects
                .iter()
                .filter(|(_, o)| o.matches(&filter))
                .map(|(_, o)| o.value())
                .collect::<Result<Vec<Value>, ApiError>>()?;
            return Ok(json!({
                "kind": format!("{}List", info.kind),
                "apiVersion": info.api_version(),
                "metadata": { "resourceVersion": revision.to_string() },
                "items": items,
            }));
        }
        let revision = match (q.resource_version.as_deref(), q.resource_version_match.as_deref()) {
            (Some(rv), Some("Exact")) => Some(parse_revision(rv)?),
            (Some(rv), _) => {
                parse_revision(rv)?;
                None
            }
            _ => None,
        };
        let prefix = prefix(info, t.namespace.as_deref());
        let want = q.limit.unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut token = q.continue_token.clone();
        let (read_at, remaining) = loop {
            let options = ListOptions {
                revision,
                limit: Some(STORE_PAGE.min(want.saturating_sub(items.len())).max(1)),
                continue_token: token.clone(),
            };
            let page = self
                .store
                .list(&prefix, options)
                .await
                .map_err(|e| ApiError::from_store(e, info, ""))?;
            for kv in &page.items {
                let obj = decode(kv)?;
                if filter.matches(&obj) {
                    items.push(obj);
                }
            }
            token = page.continue_token;
            if token.is_none() || items.len() >= want {
                break (page.revision, page.remaining_item_count);
            }
        };
        let mut metadata = json!({ "resourceVersion": read_at.to_string() });
        if let Some(token) = &token {
            metadata["continue"] = json!(token);
            if filter.labels.is_empty()
                && let Some(r) = remaining
            {
                metadata["remainingItemCount"] = json!(r);
            }
        }
        Ok(json!({
            "kind": format!("{}List", info.kind),
            "apiVersion": info.api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// PUT: replaces the object (or its status) under optimistic concurrency.
    pub async fn update(&self, t: &Target, body: &[u8], q: &Query) -> Result<Written, ApiError> {
        let mut new = expect_object(body)?;
        check_type(t.info, &mut new)?;
        let name = t.name.as_deref().ok_or_else(ApiError::route_not_found)?;
        if let Some(body_name) = object::name(&new)
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let precondition = match object::meta_str(&new, "resourceVersion").filter(|r| !r.is_empty())
        {
            Some(rv) => Some(parse_revision(rv)?),
            None => None,
        };
        self.write(t, q, precondition, move |_| Ok(new.clone())).await
    }

    /// GET of the scale subresource.
    pub async fn get_scale(&self, t: &Target) -> Result<Value, ApiError> {
        Ok(crate::scale::scale_of(&self.get(t).await?))
    }

    /// PUT or PATCH of the scale subresource: `body` is a Scale, or a patch of one.
    pub async fn write_scale(
        &self,
        t: &Target,
        body: &[u8],
        patch_type: Option<&str>,
        q: &Query,
    ) -> Result<Value, ApiError> {
        let input: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request is not valid JSON: {e}"))
        })?;
        let kind = patch_type.map(crate::patch::PatchKind::from_content_type).transpose()?;
        let precondition = match kind {
            None => object::path(&input, "metadata.resourceVersion")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(parse_revision)
                .transpose()?,
            Some(_) => None,
        };
        let main = Target { subresource: None, ..t.clone() };
        let info = t.info;
        let name = t.name.clone().unwrap_or_default();
        let written = self
            .write(&main, q, precondition, move |current| {
                let scale = match kind {
                    None => input.clone(),
                    Some(kind) => {
                        crate::patch::apply(kind, &crate::scale::scale_of(current), &input)?
                    }
                };
                crate::scale::apply_scale(current, &scale).map_err(|m| {
                    ApiError::invalid(
                        info,
                        &name,
                        &[rudder_api::FieldError::invalid(
                            "spec.replicas",
                            scale["spec"]["replicas"].clone(),
                            m,
                        )],
                    )
                })
            })
            .await?;
        Ok(crate::scale::scale_of(&written.object))
    }

    /// PATCH: applies `patch` of `content_type` to the current object, then writes it.
    pub async fn patch(
        &self,
        t: &Target,
        body: &[u8],
        content_type: &str,
        q: &Query,
    ) -> Result<Written, ApiError> {
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
        let kind = crate::patch::PatchKind::from_content_type(content_type)?;
        let precondition = object::path(&patch, "metadata.resourceVersion")
            .and_then(Value::as_str)
            .map(parse_revision)
            .transpose()?;
        self.write(t, q, precondition, move |current| crate::patch::apply(kind, current, &patch))
            .await
    }

    /// A read-modify-write on behalf of a subresource that may change spec and status alike
    /// (`binding`): `t.subresource` names it, so the spec/status split does not apply.
    pub async fn write_raw(
        &self,
        t: &Target,
        q: &Query,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        debug_assert!(t.subresource.as_deref().is_some_and(|s| s != "status"));
        self.write(t, q, None, change).await
    }

    /// Read-modify-write of one object: `change` computes the new object from the current
    /// one; the write is a compare-and-swap on the current revision, retried on races unless
    /// the client gave a resourceVersion precondition.
    ///
    /// The first attempt starts from the watch cache's copy when there is one (no store read,
    /// no parse). That copy is only a hint, as upstream's: a compare-and-swap that succeeds
    /// on it is a correct write; any other outcome (conflict, no-op, dry run, error) is
    /// decided again from the store.
    async fn write(
        &self,
        t: &Target,
        q: &Query,
        precondition: Option<i64>,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        let info = t.info;
        let name = t.name.as_deref().ok_or_else(ApiError::route_not_found)?;
        let k = key(info, t.namespace.as_deref(), name);
        let mut hint = self
            .cache
            .cached(info, &k)
            .filter(|o| precondition.is_none_or(|p| p == o.revision()))
            .and_then(|o| Some((Arc::new(o.value().ok()?), o.revision())));
        for _ in 0..UPDATE_RETRIES {
            let (current, revision, from_cache) = match hint.take() {
                Some((object, revision)) => (object, revision, true),
                None => {
                    let kv = self.existing(info, &k, name).await?;
                    if precondition.is_some_and(|p| p != kv.mod_revision) {
                        return Err(ApiError::conflict(info, name));
                    }
                    (Arc::new(decode(&kv)?), kv.mod_revision, false)
                }
            };
            match self.write_once(t, q, name, &k, &change, &current, revision).await {
                Ok(Attempt::Stored(written)) => return Ok(written),
                Ok(Attempt::Raced) if precondition.is_none() || from_cache => continue,
                Ok(Attempt::Raced) => return Err(ApiError::conflict(info, name)),
                _ if from_cache => continue,
                Ok(Attempt::NotStored(written)) => return Ok(written),
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict(info, name))
    }

    /// One attempt of [`Registry::write`] from `current` at `revision`.
    #[allow(clippy::too_many_arguments)]
    async fn write_once(
        &self,
        t: &Target,
        q: &Query,
        name: &str,
        k: &str,
        change: &impl Fn(&Value) -> Result<Value, ApiError>,
        current: &Arc<Value>,
        revision: i64,
    ) -> Result<Attempt, ApiError> {
        let info = t.info;
        let current: &Value = current;
        let mut new = change(current)?;
        // A uid in the request is a precondition upstream's controllers rely on.
        if let Some(uid) = object::meta_str(&new, "uid").filter(|u| !u.is_empty())
            && Some(uid) != object::meta_str(current, "uid")
        {
            let error = rudder_api::FieldError::invalid("metadata.uid", uid, "field is immutable");
            return Err(ApiError::invalid(info, name, &[error]));
        }
        check_type(info, &mut new)?;
        let warnings = check_fields(info, &new, q.field_validation)?;
        strategy::prepare_for_update(info, t.subresource.as_deref(), current, &mut new);
        let service = info.kind == "Service" && t.subresource.is_none();
        if service {
            keep_cluster_ip(info, current, &mut new)?;
            service_alloc::default_service(&mut new);
        }
        let mut errors = validation::validate_metadata(info, &new);
        errors.extend(strategy::validate(info, &new));
        errors.extend(strategy::validate_update(info, current, &new));
        if !errors.is_empty() {
            return Err(ApiError::invalid(info, name, &errors));
        }
        // An object whose deletion only waited for finalizers goes once they are gone.
        if object::meta_str(&new, "deletionTimestamp").is_some()
            && strategy::deletion_can_finish(&new)
            && crate::graceful::grace_over(&new)
        {
            if q.dry_run {
                return Ok(Attempt::NotStored(Written::new(new, false, &warnings)));
            }
            return match self.store.delete(k, Some(revision)).await {
                Ok(_) => Ok(Attempt::Stored(Written::new(new, false, &warnings))),
                Err(StoreError::Conflict { .. }) => Ok(Attempt::Raced),
                Err(e) => Err(ApiError::from_store(e, info, name)),
            };
        }
        if new == *current {
            return Ok(Attempt::NotStored(Written::new(current.clone(), false, &warnings)));
        }
        if q.dry_run {
            return Ok(Attempt::NotStored(Written::new(new, false, &warnings)));
        }
        let before = service_alloc::held_by(current);
        let claimed = if service {
            service_alloc::allocate(&*self.store, info, &mut new, &before).await?
        } else {
            service_alloc::Held::default()
        };
        match self.store.update(k, encode(&new), revision).await {
            Ok(kv) => {
                if service {
                    let after = service_alloc::held_by(&new);
                    let dropped = service_alloc::Held {
                        cluster_ip: before.cluster_ip.filter(|ip| after.cluster_ip != Some(*ip)),
                        node_ports: before
                            .node_ports
                            .iter()
                            .copied()
                            .filter(|p| !after.node_ports.contains(p))
                            .collect(),
                    };
                    service_alloc::release(&*self.store, &dropped).await;
                }
                let object = object::stamped(new, kv.mod_revision);
                Ok(Attempt::Stored(Written::new(object, false, &warnings)))
            }
            Err(StoreError::Conflict { .. }) => {
                service_alloc::release(&*self.store, &claimed).await;
                Ok(Attempt::Raced)
            }
            Err(e) => {
                service_alloc::release(&*self.store, &claimed).await;
                Err(ApiError::from_store(e, info, name))
            }
        }
    }

    /// DELETE of one object. Objects with finalizers (and namespaces, which empty
    /// themselves first) are marked with a deletionTimestamp and returned; others are
    /// removed and a `Status` is returned.
    pub async fn delete(&self, t: &Target, body: &[u8], q: &Query) -> Result<Value, ApiError> {
        let info = t.info;
        let name = t.name.as_deref().ok_or_else(ApiError::route_not_found)?;
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let k = key(info, t.namespace.as_deref(), name);
        for _ in 0..UPDATE_RETRIES {
            let kv = self.existing(info, &k, name).await?;
            let current = decode(&kv)?;
            if let Some(uid) = object::path(&options, "preconditions.uid").and_then(Value::as_str)
                && object::meta_str(&current, "uid") != Some(uid)
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::meta_str(&current, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) =
                object::path(&options, "preconditions.resourceVersion").and_then(Value::as_str)
                && parse_revision(rv)? != kv.mod_revision
            {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let now = self.clock.now();
            let requested = options.get("gracePeriodSeconds").and_then(Value::as_i64);
            let plan = crate::graceful::plan(info.kind, &current, requested, now);
            if plan == crate::graceful::Plan::Pending {
                return Ok(current);
            }
            let mut marked = current.clone();
            let policy = options.get("propagationPolicy").and_then(Value::as_str);
            let waits = strategy::prepare_for_delete(info, &mut marked, policy);
            let graceful = matches!(plan, crate::graceful::Plan::Graceful { .. });
            if graceful || waits || !object::finalizers(&marked).is_empty() {
                match plan {
                    crate::graceful::Plan::Graceful { deletion_timestamp, grace_seconds } => {
                        let m = meta_mut(&mut marked);
                        m.insert("deletionTimestamp".into(), json!(rfc3339(deletion_timestamp)));
                        m.insert("deletionGracePeriodSeconds".into(), json!(grace_seconds));
                    }
                    _ if object::meta_str(&current, "deletionTimestamp").is_none() => {
                        let m = meta_mut(&mut marked);
                        m.insert("deletionTimestamp".into(), json!(rfc3339(now)));
                        m.insert("deletionGracePeriodSeconds".into(), json!(0));
                    }
                    _ => {
                        // Forced (grace 0) while finalizers still hold it.
                        meta_mut(&mut marked).insert("deletionGracePeriodSeconds".into(), json!(0));
                    }
                }
                if marked == current || q.dry_run {
                    return Ok(marked);
                }
                return match self.store.update(&k, encode(&marked), kv.mod_revision).await {
                    Ok(kv) => decode(&kv),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => Err(ApiError::from_store(e, info, name)),
                };
            }
            if q.dry_run {
                return Ok(success(info, name, object::meta_str(&current, "uid")));
            }
            return match self.store.delete(&k, Some(kv.mod_revision)).await {
                Ok(_) => {
                    if info.kind == "Service" {
                        service_alloc::release(&*self.store, &service_alloc::held_by(&current))
                            .await;
                    }
                    Ok(success(info, name, object::meta_str(&current, "uid")))
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => Err(ApiError::from_store(e, info, name)),
            };
        }
        Err(ApiError::conflict(info, name))
    }

    /// DELETE of a collection: every object the selectors match.
    pub async fn delete_collection(
        &self,
        t: &Target,
        body: &[u8],
        q: &Query,
    ) -> Result<Value, ApiError> {
        let list = self.list(t, q).await?;
        let mut deleted = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let target = Target {
                info: t.info,
                namespace: object::meta_str(&item, "namespace").map(str::to_owned),
                name: object::name(&item).map(str::to_owned),
                subresource: None,
            };
            match self.delete(&target, body, q).await {
                Ok(_) => deleted.push(item),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json!({
            "kind": format!("{}List", t.info.kind),
            "apiVersion": t.info.api_version(),
            "metadata": { "resourceVersion": list["metadata"]["resourceVersion"] },
            "items": deleted,
        }))
    }
}

/// A Service keeps its ClusterIP: an update that leaves it out keeps the current one, and one
/// that changes it is invalid (as upstream: the field is immutable).
fn keep_cluster_ip(info: &ResourceInfo, current: &Value, new: &mut Value) -> Result<(), ApiError> {
    let Some(cur) =
        current.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty())
    else {
        return Ok(());
    };
    match new.pointer("/spec/clusterIP").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        None => {
            new["spec"]["clusterIP"] = json!(cur);
            if let Some(ips) = current.pointer("/spec/clusterIPs") {
                new["spec"]["clusterIPs"] = ips.clone();
            }
            Ok(())
        }
        Some(ip) if ip == cur => {
            if new.pointer("/spec/clusterIPs").is_none()
                && let Some(ips) = current.pointer("/spec/clusterIPs")
            {
                new["spec"]["clusterIPs"] = ips.clone();
            }
            Ok(())
        }
        Some(ip) => Err(ApiError::invalid(
            info,
            object::name(current).unwrap_or_default(),
            &[rudder_api::FieldError::invalid("spec.clusterIPs[0]", ip, "may not change once set")],
        )),
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
