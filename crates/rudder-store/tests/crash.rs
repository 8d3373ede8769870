//! kill -9 crash test: a child process writes concurrently and reports every acknowledged
//! write; the parent kills it at random points, many times, and after each reopen checks
//! that every acknowledged write is there with its revision, that revisions are gap-free
//! and monotonic, and that no value is partial.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;
use rudder_store::{EventType, ListOptions, SqliteConfig, SqliteStorage, Storage};

#[path = "../src/bin/store_crash_child.rs"]
#[allow(dead_code)]
mod child;

const CYCLES: u64 = 12;

struct Ack {
    revision: i64,
    op: String,
    key: String,
    len: usize,
}

/// Kills the child on drop, so a failing assertion never leaves it running.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_cycle(db: &std::path::Path, cycle: u64, kill_after_acks: usize) -> Vec<Ack> {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_store-crash-child"))
            .arg(db)
            .arg(cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash child"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut acks = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child output");
        if line == "ready" {
            if kill_after_acks == 0 {
                break;
            }
            continue;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 5, "malformed line {line:?}");
        acks.push(Ack {
            revision: parts[1].parse().unwrap(),
            op: parts[2].to_owned(),
            key: parts[3].to_owned(),
            len: parts[4].parse().unwrap(),
        });
        if acks.len() >= kill_after_acks {
            break;
        }
    }
    // SIGKILL: no destructor, no flush, no clean shutdown in the child.
    child.0.kill().expect("kill child");
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "child was killed, not finished");
    acks
}

fn check_value(key: &str, value: &[u8]) {
    let text = std::str::from_utf8(value).expect("value is text");
    let mut parts = text.splitn(3, '#');
    assert_eq!(parts.next(), Some(key), "value belongs to its key");
    let n: u64 = parts.next().unwrap().parse().expect("version number");
    assert_eq!(value, child::value_for(key, n).as_slice(), "value of {key} is whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.sqlite");
    let mut rng = rand::thread_rng();
    let mut all_acks: Vec<Ack> = Vec::new();
    for cycle in 0..CYCLES {
        let kill_after = if cycle % 5 == 4 { 0 } else { rng.gen_range(1..600) };
        let acks = tokio::task::spawn_blocking({
            let db = db.clone();
            move || run_cycle(&db, cycle, kill_after)
        })
        .await
        .unwrap();
        all_acks.extend(acks);

        let store = SqliteStorage::open(SqliteConfig::new(&db)).expect("reopen after kill -9");
        let current = store.current_revision().await.unwrap();
        // Replay the whole history: revisions 1..=current, each exactly once.
        let mut watch = store.watch("/", 1).await.unwrap();
        let mut events = HashMap::new();
        let mut last_value: HashMap<String, Option<bytes::Bytes>> = HashMap::new();
        for expected in 1..=current {
            let event = tokio::time::timeout(Duration::from_secs(30), watch.next())
                .await
                .expect("replay does not hang")
                .expect("replay has every revision")
                .expect("replay without error");
            assert_eq!(event.revision(), expected, "revisions are gap-free and in order");
            if event.event_type != EventType::Deleted {
                check_value(&event.kv.key, &event.kv.value);
                last_value.insert(event.kv.key.clone(), Some(event.kv.value.clone()));
            } else {
                last_value.insert(event.kv.key.clone(), None);
            }
            events.insert(expected, event);
        }
        for ack in &all_acks {
            let event = events.get(&ack.revision).unwrap_or_else(|| {
                panic!("acknowledged revision {} of {} is missing", ack.revision, ack.key)
            });
            assert_eq!(event.kv.key, ack.key);
            match ack.op.as_str() {
                "put" => assert_eq!(event.kv.value.len(), ack.len),
                "del" => assert_eq!(event.event_type, EventType::Deleted),
                op => panic!("unknown op {op}"),
            }
        }
        // The live state is exactly the last event of every key.
        let live = store.list("/", ListOptions::default()).await.unwrap();
        assert_eq!(live.revision, current);
        let expected_live = last_value.values().filter(|v| v.is_some()).count();
        assert_eq!(live.items.len(), expected_live);
        for kv in live.items {
            assert_eq!(last_value.get(&kv.key), Some(&Some(kv.value.clone())));
        }
        drop(watch);
        drop(store);
    }
    assert!(all_acks.len() > 100, "the child made progress ({} acks)", all_acks.len());
}
