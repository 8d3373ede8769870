use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rudder_runtime::logs::{LineSplitter, Stream};

use super::*;
use crate::locator::LocateError;

/// A container that runs until told otherwise.
struct Container(AtomicBool);

#[async_trait]
impl LogLocator for Container {
    async fn locate(&self, _: &str, pod: &str, _: &str, _: bool) -> Result<LogFile, LocateError> {
        Err(LocateError::PodNotFound { pod: pod.to_owned() })
    }
    async fn is_running(&self, id: &str) -> bool {
        id == "c1" && self.0.load(Ordering::SeqCst)
    }
}

const FAST: FollowTiming = FollowTiming {
    poll_interval: Duration::from_millis(10),
    state_check_interval: Duration::from_millis(20),
};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

/// CRI records as the shim writes them.
fn records(stream: Stream, text: &str, time: SystemTime) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = LineSplitter::new(stream);
    s.feed(text.as_bytes(), time, &mut out).unwrap();
    s.finish(time, &mut out).unwrap();
    out
}

fn append(path: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(data).unwrap();
}

/// Reads to the end (no follow) and returns the output.
async fn read_all(path: &Path, opts: LogOptions) -> String {
    let (tx, mut rx) = mpsc::channel(4);
    let file = LogFile { path: path.to_owned(), container_id: "c1".into() };
    let container = Container(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let reader = async {
        read_logs(&file, &opts, &container, &tx, &cancel, FAST).await.unwrap();
        drop(tx);
    };
    let collect = async {
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            out.extend_from_slice(&chunk);
        }
        out
    };
    let ((), out) = tokio::join!(reader, collect);
    String::from_utf8(out).unwrap()
}

fn numbered_log(dir: &Path, lines: usize) -> PathBuf {
    let path = dir.join("0.log");
    let mut data = Vec::new();
    for i in 0..lines {
        let stream = if i % 2 == 0 { Stream::Stdout } else { Stream::Stderr };
        data.extend(records(stream, &format!("line {i}\n"), at(i as u64)));
    }
    std::fs::write(&path, data).unwrap();
    path
}

#[tokio::test]
async fn reads_the_whole_file_in_order_without_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 4);
    let out = read_all(&path, LogOptions::default()).await;
    assert_eq!(out, "line 0\nline 1\nline 2\nline 3\n");
}

#[tokio::test]
async fn tail_counts_lines_from_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 5);
    let tail = |n| LogOptions { tail_lines: Some(n), ..LogOptions::default() };
    assert_eq!(read_all(&path, tail(2)).await, "line 3\nline 4\n");
    assert_eq!(read_all(&path, tail(0)).await, "");
    assert_eq!(read_all(&path, tail(5)).await, read_all(&path, LogOptions::default()).await);
    assert_eq!(read_all(&path, tail(50)).await.lines().count(), 5);
    // An unterminated last line (a record being written) is neither counted nor shown.
    append(&path, b"2023-11-14T22:13:30.000000000Z stdout F half");
    assert_eq!(read_all(&path, tail(1)).await, "line 4\n");
}

#[tokio::test]
async fn tail_across_read_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 5_000); // ~250 KB: several 64 KiB blocks
    let opts = LogOptions { tail_lines: Some(3_000), ..LogOptions::default() };
    let out = read_all(&path, opts).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3_000);
    assert_eq!(lines[0], "line 2000");
    assert_eq!(lines[2_999], "line 4999");
}

#[tokio::test]
async fn since_timestamps_and_limit_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 4);
    let since = crate::timestamp::Timestamp::from_system_time(at(2)).unix_nanos;
    let opts = LogOptions { since_unix_nanos: Some(since), ..LogOptions::default() };
    assert_eq!(read_all(&path, opts).await, "line 2\nline 3\n");
    let opts = LogOptions { timestamps: true, tail_lines: Some(1), ..LogOptions::default() };
    assert_eq!(read_all(&path, opts).await, "2023-11-14T22:13:23.000000000Z line 3\n");
    let opts = LogOptions { limit_bytes: Some(10), ..LogOptions::default() };
    assert_eq!(read_all(&path, opts).await, "line 0\nlin");
}

#[tokio::test]
async fn partial_records_are_joined_even_across_read_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0.log");
    // 40 KiB + 40 KiB: split into 16 KiB `P` records by the shim's splitter, and the file
    // is read in 64 KiB chunks, so records straddle chunk boundaries.
    let long: String = (0..40 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let mut data = records(Stream::Stdout, &format!("{long}\n"), at(0));
    data.extend(records(Stream::Stderr, &format!("{long}\nshort\n"), at(1)));
    assert!(data.windows(9).any(|w| w == b"stdout P "), "the fixture has partial records");
    std::fs::write(&path, data).unwrap();
    let out = read_all(&path, LogOptions::default()).await;
    assert_eq!(out, format!("{long}\n{long}\nshort\n"));
    let opts = LogOptions { timestamps: true, ..LogOptions::default() };
    let out = read_all(&path, opts).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], format!("2023-11-14T22:13:20.000000000Z {long}"));
}

#[tokio::test]
async fn missing_file_fails_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let err = LogReader::open(&dir.path().join("nope.log"), &LogOptions::default()).await;
    assert_eq!(err.unwrap_err().kind(), io::ErrorKind::NotFound);
}

/// A follower running in the background and what it has sent so far.
struct Follower {
    rx: mpsc::Receiver<Bytes>,
    seen: String,
    task: tokio::task::JoinHandle<io::Result<()>>,
    container: Arc<Container>,
    cancel: CancellationToken,
}

impl Follower {
    fn start(path: &Path, opts: LogOptions) -> Follower {
        let (tx, rx) = mpsc::channel(4);
        let container = Arc::new(Container(AtomicBool::new(true)));
        let cancel = CancellationToken::new();
        let file = LogFile { path: path.to_owned(), container_id: "c1".into() };
        let (c, k) = (container.clone(), cancel.clone());
        let task = tokio::spawn(async move {
            let opts = LogOptions { follow: true, ..opts };
            read_logs(&file, &opts, &*c, &tx, &k, FAST).await
        });
        Follower { rx, seen: String::new(), task, container, cancel }
    }

    /// Waits (up to 10 s) until the output ends with `suffix`.
    async fn wait_for(&mut self, suffix: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.seen.ends_with(suffix) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(chunk)) => self.seen.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(None) => panic!("the follower ended; output so far: {:?}", self.seen),
                Err(_) => panic!("no {suffix:?} within 10 s; output so far: {:?}", self.seen),
            }
        }
    }

    /// Waits (up to 10 s) for the follower to end and returns everything it sent.
    async fn finish(mut self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(chunk)) => self.seen.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(None) => break,
                Err(_) => panic!("the follower did not end; output so far: {:?}", self.seen),
            }
        }
        self.task.await.unwrap().unwrap();
        self.seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_appended_lines_and_ends_when_the_container_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 2);
    let mut f = Follower::start(&path, LogOptions { tail_lines: Some(1), ..LogOptions::default() });
    f.wait_for("line 1\n").await;
    assert_eq!(f.seen, "line 1\n", "tailLines picks the start when following");
    append(&path, &records(Stream::Stdout, "two\n", at(10)));
    f.wait_for("two\n").await;
    // A line written in pieces: the follower waits for the whole record.
    let rec = records(Stream::Stderr, "three\n", at(11));
    append(&path, &rec[..10]);
    append(&path, &rec[10..]);
    f.wait_for("three\n").await;
    // Written just before the exit: still delivered, then the stream ends.
    append(&path, &records(Stream::Stdout, "last words\n", at(12)));
    f.container.0.store(false, Ordering::SeqCst);
    assert_eq!(f.finish().await, "line 1\ntwo\nthree\nlast words\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_of_an_exited_container_drains_the_file_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 3);
    let f = Follower::start(&path, LogOptions::default());
    f.container.0.store(false, Ordering::SeqCst);
    assert_eq!(f.finish().await, "line 0\nline 1\nline 2\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ends_when_the_client_goes_away_or_the_server_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 1);
    let mut f = Follower::start(&path, LogOptions::default());
    f.wait_for("line 0\n").await;
    drop(f.rx);
    tokio::time::timeout(Duration::from_secs(10), f.task).await.unwrap().unwrap().unwrap();
    assert!(f.container.0.load(Ordering::SeqCst), "the container still runs");

    let mut f = Follower::start(&path, LogOptions::default());
    f.wait_for("line 0\n").await;
    f.cancel.cancel();
    assert_eq!(f.finish().await, "line 0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_continues_in_a_rotated_log_and_after_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 1);
    let mut f = Follower::start(&path, LogOptions::default());
    f.wait_for("line 0\n").await;
    std::fs::rename(&path, dir.path().join("0.log.20240101-000000")).unwrap();
    append(&path, &records(Stream::Stdout, "in the new file, a longer line\n", at(5)));
    f.wait_for("in the new file, a longer line\n").await;
    // copytruncate-style rotation: the file shrinks; reading starts over.
    std::fs::write(&path, records(Stream::Stdout, "cut\n", at(6))).unwrap();
    f.wait_for("cut\n").await;
    f.container.0.store(false, Ordering::SeqCst);
    assert_eq!(f.finish().await, "line 0\nin the new file, a longer line\ncut\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_stops_at_limit_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = numbered_log(dir.path(), 1);
    let mut f =
        Follower::start(&path, LogOptions { limit_bytes: Some(12), ..LogOptions::default() });
    f.wait_for("line 0\n").await;
    append(&path, &records(Stream::Stdout, "0123456789\n", at(3)));
    assert_eq!(f.finish().await, "line 0\n01234");
}
