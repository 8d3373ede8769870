//! `Storage` on etcd: compare-and-swap writes are etcd transactions, lists are ranges at a
//! revision, watches are etcd watches with previous values.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};
use rudder_store::{
    Deleted, Event, EventType, KeyValue, ListOptions, ListPage, Result, Revision, Storage,
    StoreError, WatchStream, continue_token, prefix_end, validate_key, validate_prefix,
    validate_value,
};

/// Where etcd is and how long to wait for it.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `host:port` or `http://host:port` of each member.
    pub endpoints: Vec<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Parses `etcd://h1:2379,h2:2379` (the `--datastore` syntax).
    pub fn from_url(url: &str) -> Option<Self> {
        let hosts = url.strip_prefix("etcd://")?;
        let endpoints: Vec<String> =
            hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("http://{h}")).collect();
        (!endpoints.is_empty()).then(|| EtcdConfig::new(endpoints))
    }
}

#[derive(Clone)]
pub struct EtcdStorage {
    client: Client,
}

/// The smallest and one-past-largest key we accept (printable ASCII, see `validate_key`).
const FIRST_KEY: &str = "!";
const END_OF_KEYS: &str = "\u{7f}";

/// Key range `[start, end)` of a prefix; the empty prefix is every valid key.
fn range_of(prefix: &str) -> (String, String) {
    match prefix_end(prefix) {
        Some(end) => (prefix.to_owned(), end),
        None => (FIRST_KEY.to_owned(), END_OF_KEYS.to_owned()),
    }
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::unavailable("etcd", e)
}

fn grpc_message(e: &etcd_client::Error) -> Option<&str> {
    match e {
        etcd_client::Error::GRpcStatus(status) => Some(status.message()),
        _ => None,
    }
}

fn is_compacted(e: &etcd_client::Error) -> bool {
    grpc_message(e).is_some_and(|m| m.contains("required revision has been compacted"))
}

fn is_future_revision(e: &etcd_client::Error) -> bool {
    grpc_message(e).is_some_and(|m| m.contains("required revision is a future revision"))
}

fn is_too_large(e: &etcd_client::Error) -> bool {
    grpc_message(e)
        .is_some_and(|m| m.contains("request is too large") || m.contains("larger than max"))
}

fn kv_of(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv.key_str().map_err(unavailable)?.to_owned();
    Ok(KeyValue {
        key,
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(resp: &TxnResponse) -> Result<Revision> {
    resp.header().map(|h| h.revision()).ok_or_else(|| StoreError::Unavailable {
        message: "etcd reply without header".into(),
        source: None,
    })
}

/// The current value from the `or_else` get of a failed transaction.
fn current_of(resp: &TxnResponse) -> Result<Option<KeyValue>> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(get) = op {
            return get.kvs().first().map(kv_of).transpose();
        }
    }
    Ok(None)
}

/// The error for a compare-and-swap transaction whose comparison failed: the key is gone,
/// or it has another mod revision (the `or_else` get returned it).
fn precondition_failed(resp: &TxnResponse, key: &str, expected: Revision) -> Result<StoreError> {
    Ok(match current_of(resp)? {
        None => StoreError::NotFound { key: key.to_owned() },
        Some(current) => {
            StoreError::Conflict { key: key.to_owned(), expected, current: Some(Box::new(current)) }
        }
    })
}

impl EtcdStorage {
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(&config.endpoints, Some(options)).await.map_err(|e| {
            StoreError::unavailable(format!("connecting to etcd {:?}", config.endpoints), e)
        })?;
        let store = EtcdStorage { client };
        // Fail now, not on the first request, if nothing answers.
        store.current_revision().await?;
        Ok(store)
    }

    async fn txn(&self, key: &str, txn: Txn) -> Result<TxnResponse> {
        self.client.kv_client().txn(txn).await.map_err(|e| {
            if is_too_large(&e) {
                StoreError::ValueTooLarge {
                    key: key.to_owned(),
                    size_bytes: 0,
                    limit_bytes: rudder_store::MAX_VALUE_BYTES,
                }
            } else {
                unavailable(e)
            }
        })
    }

    async fn map_read_error(&self, e: etcd_client::Error, requested: Revision) -> StoreError {
        if is_compacted(&e) {
            let compacted = self.compacted_revision().await.unwrap_or(0);
            StoreError::Compacted { requested, compacted }
        } else if is_future_revision(&e) {
            let current = self.current_revision().await.unwrap_or(0);
            StoreError::FutureRevision { requested, current }
        } else {
            unavailable(e)
        }
    }
}

#[async_trait]
impl Storage for EtcdStorage {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let resp = self.client.kv_client().get(key, None).await.map_err(unavailable)?;
        resp.kvs().first().map(kv_of).transpose()
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let (mut start, end) = range_of(prefix);
        let mut revision = options.revision.filter(|r| *r > 0).unwrap_or(0);
        if let Some(token) = &options.continue_token {
            let c = continue_token::decode(prefix, token)?;
            revision = c.revision;
            start = c.start;
        }
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(0);
        let mut get = GetOptions::new().with_range(end).with_revision(revision);
        if limit > 0 {
            get = get.with_limit(limit as i64);
        }
        let resp = match self.client.kv_client().get(start, Some(get)).await {
            Ok(resp) => resp,
            Err(e) => return Err(self.map_read_error(e, revision).await),
        };
        let read_at =
            resp.header().map_or(revision, |h| if revision > 0 { revision } else { h.revision() });
        let items = resp.kvs().iter().map(kv_of).collect::<Result<Vec<_>>>()?;
        let remaining = resp.count() - items.len() as i64;
        let mut page = ListPage { items, revision: read_at, ..Default::default() };
        if resp.more() && remaining > 0 {
            let last = &page.items.last().expect("more implies a non-empty page").key;
            page.continue_token = Some(continue_token::encode(prefix, last, read_at));
            page.remaining_item_count = Some(remaining);
        }
        Ok(page)
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        validate_prefix(prefix)?;
        let (start, end) = range_of(prefix);
        let resp = self
            .client
            .kv_client()
            .get(start, Some(GetOptions::new().with_range(end).with_count_only()))
            .await
            .map_err(unavailable)?;
        Ok(resp.count())
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        validate_key(key)?;
        validate_value(key, &value)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(key, txn).await?;
        if !resp.succeeded() {
            return Err(StoreError::KeyExists { key: key.to_owned() });
        }
        let revision = header_revision(&resp)?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        validate_key(key)?;
        validate_value(key, &value)?;
        let txn = Txn::new()
            .when([
                Compare::version(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected_mod_revision),
            ])
            .and_then([TxnOp::put(key, value.to_vec(), Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(key, txn).await?;
        if !resp.succeeded() {
            return Err(precondition_failed(&resp, key, expected_mod_revision)?);
        }
        let revision = header_revision(&resp)?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|p| p.create_revision()),
                _ => None,
            })
            .unwrap_or(revision);
        Ok(KeyValue { key: key.to_owned(), value, create_revision, mod_revision: revision })
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        validate_key(key)?;
        let mut when = vec![Compare::version(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected_mod_revision {
            when.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(key, txn).await?;
        if !resp.succeeded() {
            return Err(precondition_failed(&resp, key, expected_mod_revision.unwrap_or(0))?);
        }
        let revision = header_revision(&resp)?;
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().map(kv_of),
                _ => None,
            })
            .transpose()?
            .ok_or_else(|| StoreError::NotFound { key: key.to_owned() })?;
        Ok(Deleted { revision, prev })
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let (start, end) = range_of(prefix);
        let mut options = WatchOptions::new().with_range(end).with_prev_key();
        if from_revision > 0 {
            options = options.with_start_revision(from_revision);
        }
        let (watcher, stream) =
            self.client.watch_client().watch(start, Some(options)).await.map_err(unavailable)?;
        let state = EtcdWatch {
            _watcher: watcher,
            stream,
            pending: Default::default(),
            from_revision,
            done: false,
        };
        Ok(WatchStream::new(futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self
            .client
            .kv_client()
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.map_read_error(e, revision).await),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .client
            .kv_client()
            .get(FIRST_KEY, Some(GetOptions::new().with_count_only()))
            .await
            .map_err(unavailable)?;
        resp.header().map(|h| h.revision()).ok_or_else(|| StoreError::Unavailable {
            message: "etcd reply without header".into(),
            source: None,
        })
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // etcd reports its compaction point to a watcher that asks for revision 1.
        let options = WatchOptions::new().with_start_revision(1);
        let (mut watcher, mut stream) = self
            .client
            .watch_client()
            .watch("\u{7f}compaction-probe", Some(options))
            .await
            .map_err(unavailable)?;
        let probe = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
        let _ = watcher.cancel().await;
        match probe {
            Ok(Ok(Some(resp))) => Ok(resp.compact_revision()),
            Ok(Ok(None)) | Err(_) => Ok(0),
            Ok(Err(e)) => Err(unavailable(e)),
        }
    }
}

struct EtcdWatch {
    _watcher: etcd_client::Watcher,
    stream: etcd_client::WatchStream,
    pending: std::collections::VecDeque<Event>,
    from_revision: Revision,
    done: bool,
}

impl EtcdWatch {
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return self.fail(StoreError::closed_by_peer("etcd ended the watch")),
                Err(e) => return self.fail(unavailable(e)),
            };
            if resp.compact_revision() > 0 {
                return self.fail(StoreError::Compacted {
                    requested: self.from_revision,
                    compacted: resp.compact_revision(),
                });
            }
            if resp.canceled() {
                let reason = format!("etcd canceled the watch: {}", resp.cancel_reason());
                return self.fail(StoreError::closed_by_peer(reason));
            }
            for e in resp.events() {
                match convert(e) {
                    Ok(event) => self.pending.push_back(event),
                    Err(err) => return self.fail(err),
                }
            }
        }
    }

    fn fail(&mut self, e: StoreError) -> Option<Result<Event>> {
        self.done = true;
        self.pending.clear();
        Some(Err(e))
    }
}

fn convert(e: &etcd_client::Event) -> Result<Event> {
    let kv = e.kv().ok_or_else(|| StoreError::closed_by_peer("etcd event without a key"))?;
    let prev = e.prev_kv().map(kv_of).transpose()?;
    Ok(match e.event_type() {
        etcd_client::EventType::Put => {
            let kv = kv_of(kv)?;
            let event_type = if kv.create_revision == kv.mod_revision {
                EventType::Created
            } else {
                EventType::Updated
            };
            Event {
                event_type,
                kv,
                prev: if event_type == EventType::Created { None } else { prev },
            }
        }
        etcd_client::EventType::Delete => Event {
            event_type: EventType::Deleted,
            kv: KeyValue {
                key: kv.key_str().map_err(unavailable)?.to_owned(),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: kv.mod_revision(),
            },
            prev,
        },
    })
}
