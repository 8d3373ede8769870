//! Reads a container's CRI log file for `containerLogs` (upstream's `kuberuntime/logs.ReadLogs`):
//! `tailLines` picks the start (counting file lines from the end, as upstream does), then
//! every complete line goes through the [`LogWriter`](crate::format::LogWriter); without
//! `follow` the read ends at the end of the file (or after `tailLines` lines, or at
//! `limitBytes`), with it the reader keeps polling the file for new lines until the
//! container has exited and the file is drained, the client went away, or the server stops.
//! A log file replaced under the same path (rotation) is followed to the new file; a
//! truncated one is read again from its start. Only complete lines are records: without
//! `follow` an unterminated last line (a record still being written) is left out (upstream
//! prints it as it is).
//!
//! File reads are positional (`pread`) on the blocking pool, so a follower holds no thread
//! while it waits.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::format::{Flow, LogWriter};
use crate::locator::{LogFile, LogLocator};
use crate::options::LogOptions;

/// Bytes read from the file per call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Output is sent once this much has collected (and whenever the reader reaches the end of
/// the file).
const SEND_THRESHOLD_BYTES: usize = 32 * 1024;
/// A "line" longer than this without a newline is not a CRI record; it is dropped.
const MAX_PENDING_BYTES: usize = 1024 * 1024;

/// How often a follower looks for new data and asks whether the container still runs.
#[derive(Clone, Copy, Debug)]
pub struct FollowTiming {
    /// How long to wait at the end of the file before looking again.
    pub poll_interval: Duration,
    /// How often (at most) to ask [`LogLocator::is_running`] while the file has no new data.
    pub state_check_interval: Duration,
}

impl Default for FollowTiming {
    fn default() -> Self {
        FollowTiming {
            poll_interval: Duration::from_millis(200),
            state_check_interval: Duration::from_secs(1),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

/// Where the last `n` lines of the file start: just after the (n+1)-th newline from the end
/// (an unterminated last line is not counted), or the start of the file.
fn tail_start(file: &File, size: u64, n: u64) -> io::Result<u64> {
    let mut newlines = 0u64;
    let mut end = size;
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    while end > 0 {
        let start = end.saturating_sub(READ_CHUNK_BYTES as u64);
        let block = &mut buf[..(end - start) as usize];
        file.read_exact_at(block, start)?;
        for (i, b) in block.iter().enumerate().rev() {
            if *b == b'\n' {
                newlines += 1;
                if newlines == n + 1 {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

/// An open log file positioned where the output starts.
#[derive(Debug)]
pub struct LogReader {
    path: PathBuf,
    file: Arc<File>,
    inode: u64,
    position: u64,
    opts: LogOptions,
}

impl LogReader {
    /// Opens `path` and finds where `opts.tail_lines` starts. Errors here (no such file)
    /// come before any output, so the server can still answer with an error status.
    pub async fn open(path: &Path, opts: &LogOptions) -> io::Result<LogReader> {
        let owned = path.to_owned();
        let tail = opts.tail_lines;
        let (file, inode, position) = blocking(move || {
            let file = File::open(&owned)?;
            let meta = file.metadata()?;
            let position = match tail {
                Some(n) => tail_start(&file, meta.len(), n)?,
                None => 0,
            };
            Ok((file, meta.ino(), position))
        })
        .await?;
        Ok(LogReader {
            path: path.to_owned(),
            file: Arc::new(file),
            inode,
            position,
            opts: opts.clone(),
        })
    }

    async fn read_chunk(&self) -> io::Result<Vec<u8>> {
        let (file, position) = (self.file.clone(), self.position);
        blocking(move || {
            let mut buf = vec![0u8; READ_CHUNK_BYTES];
            let n = file.read_at(&mut buf, position)?;
            buf.truncate(n);
            Ok(buf)
        })
        .await
    }

    /// What happened to the file at our path since we opened it.
    async fn file_changed(&self) -> io::Result<Change> {
        let (path, inode, position) = (self.path.clone(), self.inode, self.position);
        blocking(move || match std::fs::metadata(&path) {
            Ok(meta) if meta.ino() != inode => Ok(Change::Replaced),
            Ok(meta) if meta.len() < position => Ok(Change::Truncated),
            Ok(_) => Ok(Change::None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Change::None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn reopen(&mut self) -> io::Result<()> {
        let path = self.path.clone();
        let (file, inode) = blocking(move || {
            let file = File::open(&path)?;
            let inode = file.metadata()?.ino();
            Ok((file, inode))
        })
        .await?;
        self.file = Arc::new(file);
        self.inode = inode;
        self.position = 0;
        Ok(())
    }

    /// Streams the output into `out` until one of the ends described in the module docs.
    /// A closed `out` (the client went away) or a cancelled `cancel` ends it quietly.
    pub async fn run(
        mut self,
        container_id: &str,
        locator: &dyn LogLocator,
        out: &mpsc::Sender<Bytes>,
        cancel: &CancellationToken,
        timing: FollowTiming,
    ) -> io::Result<()> {
        let follow = self.opts.follow;
        let mut writer = LogWriter::new(&self.opts);
        // Without follow, tailLines also bounds how many lines are read.
        let mut lines_left = self.opts.tail_lines.filter(|_| !follow);
        let mut pending: Vec<u8> = Vec::new();
        let mut output: Vec<u8> = Vec::new();
        let mut exited = false;
        let mut replaced = false;
        let mut last_state_check: Option<Instant> = None;
        if lines_left == Some(0) {
            return Ok(());
        }
        loop {
            let chunk = self.read_chunk().await?;
            if !chunk.is_empty() {
                self.position += chunk.len() as u64;
                pending.extend_from_slice(&chunk);
                let mut consumed = 0;
                while let Some(i) = pending[consumed..].iter().position(|&b| b == b'\n') {
                    let flow = writer.write(&pending[consumed..consumed + i], &mut output);
                    consumed += i + 1;
                    let done = match flow {
                        Flow::LimitReached => true,
                        Flow::Counted => lines_left.as_mut().is_some_and(|n| {
                            *n -= 1;
                            *n == 0
                        }),
                        Flow::Ignored => false,
                    };
                    if done {
                        emit(out, &mut output, cancel).await;
                        return Ok(());
                    }
                    if output.len() >= SEND_THRESHOLD_BYTES && !emit(out, &mut output, cancel).await
                    {
                        return Ok(());
                    }
                }
                pending.drain(..consumed);
                if pending.len() > MAX_PENDING_BYTES {
                    tracing::debug!(path = %self.path.display(), "dropping an overlong log line");
                    pending.clear();
                }
                continue;
            }

            // End of the file.
            if !emit(out, &mut output, cancel).await || !follow || exited {
                return Ok(());
            }
            if replaced {
                // The old file was drained once more after it was replaced: go on with the
                // new one (its start may hold lines written since).
                replaced = false;
                match self.reopen().await {
                    Ok(()) => pending.clear(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            match self.file_changed().await? {
                Change::Replaced => {
                    replaced = true;
                    continue;
                }
                Change::Truncated => {
                    self.position = 0;
                    pending.clear();
                    continue;
                }
                Change::None => {}
            }
            if last_state_check.is_none_or(|t| t.elapsed() >= timing.state_check_interval) {
                last_state_check = Some(Instant::now());
                if !locator.is_running(container_id).await {
                    // Read what it wrote before it exited, then stop at the next end.
                    exited = true;
                    continue;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(timing.poll_interval) => {}
                _ = cancel.cancelled() => return Ok(()),
                _ = out.closed() => return Ok(()),
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Change {
    None,
    Replaced,
    Truncated,
}

/// Sends what collected in `output`; false when the receiver is gone or the server stops.
async fn emit(out: &mpsc::Sender<Bytes>, output: &mut Vec<u8>, cancel: &CancellationToken) -> bool {
    if output.is_empty() {
        return !out.is_closed();
    }
    let chunk = Bytes::from(std::mem::take(output));
    tokio::select! {
        sent = out.send(chunk) => sent.is_ok(),
        _ = cancel.cancelled() => false,
    }
}

/// Opens `file` and streams its logs into `out` ([`LogReader::open`] then
/// [`LogReader::run`]).
pub async fn read_logs(
    file: &LogFile,
    opts: &LogOptions,
    locator: &dyn LogLocator,
    out: &mpsc::Sender<Bytes>,
    cancel: &CancellationToken,
    timing: FollowTiming,
) -> io::Result<()> {
    LogReader::open(&file.path, opts)
        .await?
        .run(&file.container_id, locator, out, cancel, timing)
        .await
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
