//! The store conformance suite against a real etcd (started per test, on free loopback
//! ports, and killed when the test ends).

use std::sync::Arc;

use rudder_store::Storage;
use rudder_store_etcd::process::EtcdProcess;

async fn factory() -> (Arc<dyn Storage>, EtcdProcess) {
    let etcd = EtcdProcess::start().await.expect("start etcd");
    let store = etcd.storage().await.expect("connect to etcd");
    (Arc::new(store), etcd)
}

rudder_store::storage_conformance_tests!(factory);
