//! Output helpers for `rudder image ...`: the `ls` table (like `crictl images`) and a pull
//! progress printer that keeps one updating line on a terminal.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Mutex;

use crate::progress::{Progress, ProgressEvent};
use crate::store::ImageRecord;

/// `REPOSITORY  TAG  DIGEST  SIZE`, one row per tag (an untagged image shows `<none>`);
/// DIGEST is the first 12 hex digits of the image digest.
pub fn format_image_table(records: &[ImageRecord]) -> String {
    let mut rows = vec![["REPOSITORY".to_owned(), "TAG".into(), "DIGEST".into(), "SIZE".into()]];
    for r in records {
        let digest = r.digest.hex()[..12].to_owned();
        for (repo, tag) in r.repo_tags() {
            rows.push([repo, tag, digest.clone(), human_size(r.size_bytes)]);
        }
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 3 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Decimal units with three significant digits, like `crictl` and `docker` (`1.47MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.5 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if unit == 0 || value >= 99.95 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    let mut s = format!("{value:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{s}{}", UNITS[unit])
}

/// Prints pull progress as one line rewritten in place (`\r` and erase-line), ended with a
/// newline when the pull is done:
/// `docker.io/library/busybox:1.0: 1/2 layers, 1.2MB/3.4MB`.
pub struct ProgressLine<W: Write + Send> {
    state: Mutex<LineState<W>>,
}

struct LineState<W> {
    out: W,
    reference: String,
    layers: usize,
    total_bytes: u64,
    done_layers: usize,
    /// Bytes downloaded and size, per layer digest.
    bytes: BTreeMap<String, (u64, u64)>,
    /// Last printed percentage, so byte events print only when it moves.
    last_percent: Option<u64>,
}

impl ProgressLine<io::Stderr> {
    pub fn stderr() -> Self {
        ProgressLine::new(io::stderr())
    }
}

impl<W: Write + Send> ProgressLine<W> {
    pub fn new(out: W) -> Self {
        ProgressLine {
            state: Mutex::new(LineState {
                out,
                reference: String::new(),
                layers: 0,
                total_bytes: 0,
                done_layers: 0,
                bytes: BTreeMap::new(),
                last_percent: None,
            }),
        }
    }

    pub fn into_inner(self) -> W {
        self.state.into_inner().unwrap_or_else(|p| p.into_inner()).out
    }
}

impl<W> LineState<W> {
    fn line(&self) -> String {
        let done: u64 = self.bytes.values().map(|b| b.0).sum();
        format!(
            "{}: {}/{} layers, {}/{}",
            self.reference,
            self.done_layers,
            self.layers,
            human_size(done.min(self.total_bytes)),
            human_size(self.total_bytes)
        )
    }
}

impl<W: Write + Send> Progress for ProgressLine<W> {
    fn on_event(&self, event: &ProgressEvent<'_>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut newline = false;
        match event {
            ProgressEvent::Resolved { reference, layers, total_bytes, .. } => {
                s.reference = (*reference).to_owned();
                s.layers = *layers;
                s.total_bytes = *total_bytes;
            }
            ProgressEvent::LayerPresent { digest, size_bytes } => {
                s.bytes.insert((*digest).to_owned(), (*size_bytes, *size_bytes));
                s.done_layers += 1;
            }
            ProgressEvent::LayerStarted { digest, size_bytes } => {
                s.bytes.insert((*digest).to_owned(), (0, *size_bytes));
            }
            ProgressEvent::LayerBytes { digest, done_bytes, size_bytes } => {
                s.bytes.insert((*digest).to_owned(), (*done_bytes, *size_bytes));
                let done: u64 = s.bytes.values().map(|b| b.0).sum();
                let percent = (done * 100).checked_div(s.total_bytes).unwrap_or(100);
                if s.last_percent == Some(percent) {
                    return;
                }
                s.last_percent = Some(percent);
            }
            ProgressEvent::LayerRetry { digest, attempt, error } => {
                let line = format!("\r\x1b[2Klayer {digest}: attempt {attempt} failed: {error}\n");
                let _ = s.out.write_all(line.as_bytes());
            }
            ProgressEvent::LayerUnpacking { .. } => return,
            ProgressEvent::LayerDone { digest } => {
                if let Some(b) = s.bytes.get_mut(*digest) {
                    b.0 = b.1;
                }
                s.done_layers += 1;
            }
            ProgressEvent::Done { .. } => newline = true,
        }
        let mut line = format!("\r\x1b[2K{}", s.line());
        if newline {
            line.push('\n');
        }
        let _ = s.out.write_all(line.as_bytes());
        let _ = s.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn sizes_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(4_100), "4.1kB");
        assert_eq!(human_size(315_123), "315kB");
        assert_eq!(human_size(1_474_560), "1.47MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(999_999), "1MB");
    }

    fn record(names: &[&str], size_bytes: u64) -> ImageRecord {
        let d = Digest::of(names.join(",").as_bytes());
        ImageRecord {
            digest: d.clone(),
            manifest_digest: d.clone(),
            config_digest: d,
            names: names.iter().map(|s| s.to_string()).collect(),
            repo_digests: Vec::new(),
            layers: Vec::new(),
            size_bytes,
            os: "linux".into(),
            architecture: "amd64".into(),
            config: Default::default(),
        }
    }

    #[test]
    fn table() {
        let a = record(&["docker.io/library/busybox:1.0", "127.0.0.1:5000/x/y:latest"], 1_474_560);
        let b = record(&[], 42);
        let table = format_image_table(&[a.clone(), b.clone()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("REPOSITORY"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cols, vec!["docker.io/library/busybox", "1.0", &a.digest.hex()[..12], "1.47MB"]);
        let cols: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cols[..2], ["127.0.0.1:5000/x/y", "latest"]);
        let cols: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(cols, vec!["<none>", "<none>", &b.digest.hex()[..12], "42B"]);
    }

    #[test]
    fn progress_line_updates_in_place_and_ends_with_newline() {
        let p = ProgressLine::new(Vec::new());
        let ev = |e: ProgressEvent<'_>| p.on_event(&e);
        ev(ProgressEvent::Resolved { reference: "r:1", digest: "d", layers: 2, total_bytes: 200 });
        ev(ProgressEvent::LayerPresent { digest: "a", size_bytes: 100 });
        ev(ProgressEvent::LayerStarted { digest: "b", size_bytes: 100 });
        ev(ProgressEvent::LayerBytes { digest: "b", done_bytes: 50, size_bytes: 100 });
        ev(ProgressEvent::LayerBytes { digest: "b", done_bytes: 50, size_bytes: 100 });
        ev(ProgressEvent::LayerDone { digest: "b" });
        ev(ProgressEvent::Done { reference: "r:1", digest: "d" });
        let out = String::from_utf8(p.into_inner()).unwrap();
        let updates: Vec<&str> = out.split("\r\x1b[2K").filter(|s| !s.is_empty()).collect();
        assert_eq!(
            updates,
            vec![
                "r:1: 0/2 layers, 0B/200B",
                "r:1: 1/2 layers, 100B/200B",
                "r:1: 1/2 layers, 100B/200B",
                "r:1: 1/2 layers, 150B/200B",
                "r:1: 2/2 layers, 200B/200B",
                "r:1: 2/2 layers, 200B/200B\n",
            ]
        );
    }
}
