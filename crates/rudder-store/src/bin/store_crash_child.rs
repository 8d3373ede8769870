//! Child process of the kill -9 crash test (`tests/crash.rs`). It opens the SQLite store at
//! the given path and writes from many concurrent tasks, printing one line per
//! acknowledged write: `ack <revision> <put|del> <key> <value-length>`. The parent kills it
//! at a random point and checks that every acknowledged write survived.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rudder_store::{SqliteConfig, SqliteStorage, Storage};

/// The value written as version `n` of `key`: a header and a deterministic body, so that a
/// torn or mixed-up value is detectable.
pub fn value_for(key: &str, n: u64) -> Vec<u8> {
    let len = 64 + (n as usize * 7919) % 4000;
    let mut value = format!("{key}#{n}#").into_bytes();
    value.extend((0..len).map(|i| b'a' + ((i as u64 + n) % 26) as u8));
    value
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: store-crash-child <db> <cycle>");
    let cycle: u64 = args.next().expect("cycle").parse().expect("cycle is a number");
    let mut config = SqliteConfig::new(path);
    config.retain_revisions = i64::MAX / 2;
    config.retain_duration = std::time::Duration::from_secs(3600 * 24 * 365);
    let store = SqliteStorage::open(config).expect("open store");
    let out = Arc::new(Mutex::new(std::io::stdout()));
    println!("ready");
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let store = store.clone();
        let out = out.clone();
        tasks.push(tokio::spawn(async move {
            let ack = |revision: i64, op: &str, key: &str, len: usize| {
                let mut out = out.lock().unwrap();
                writeln!(out, "ack {revision} {op} {key} {len}").unwrap();
                out.flush().unwrap();
            };
            for n in 0u64.. {
                let key = format!("/crash/{cycle}/{task}/{}", n / 8);
                let value = value_for(&key, n);
                let len = value.len();
                match n % 8 {
                    0 => {
                        let kv = store.create(&key, Bytes::from(value)).await.unwrap();
                        ack(kv.mod_revision, "put", &key, len);
                    }
                    7 => {
                        let d = store.delete(&key, None).await.unwrap();
                        ack(d.revision, "del", &key, 0);
                    }
                    _ => {
                        let cur = store.get(&key).await.unwrap().unwrap();
                        let kv =
                            store.update(&key, Bytes::from(value), cur.mod_revision).await.unwrap();
                        ack(kv.mod_revision, "put", &key, len);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
