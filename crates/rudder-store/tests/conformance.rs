//! The conformance suite against the SQLite and in-memory backends.

use std::sync::Arc;

use rudder_store::{MemoryStorage, SqliteConfig, SqliteStorage, Storage};

mod sqlite {
    use super::*;

    async fn factory() -> (Arc<dyn Storage>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStorage::open(SqliteConfig::new(dir.path().join("db.sqlite"))).unwrap();
        (Arc::new(store), dir)
    }

    rudder_store::storage_conformance_tests!(factory);
}

mod memory {
    use super::*;

    async fn factory() -> (Arc<dyn Storage>, ()) {
        (Arc::new(MemoryStorage::new()), ())
    }

    rudder_store::storage_conformance_tests!(factory);
}
