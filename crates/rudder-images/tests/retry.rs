//! Transient failures during a layer download, against a scripted registry (a plain
//! HTTP/1.1 server on a thread): a 503 is retried, and a connection cut mid-blob is resumed
//! with a range request from the bytes already on disk.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::{Recorder, store};
use rudder_images::layer::Compression;
use rudder_images::testing::{ImageBuilder, TestImage};
use rudder_images::{Credentials, RegistryOptions, RetryPolicy, StoreOptions};

/// What the scripted registry saw: (path, Range header) per request.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `image` as `x/app:1`; the layer blob fails with 503 first, then is cut after half
/// its bytes, then served from the requested offset.
fn scripted_registry(image: TestImage) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        let layer = &image.layers[0];
        let mut layer_requests = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
                    range = Some(v.trim().to_owned());
                }
            }
            seen.lock().unwrap().push((path.clone(), range.clone()));
            let blob = |d: &rudder_images::Digest| format!("/v2/x/app/blobs/{d}");
            let (status, content_type, body, full_len): (&str, &str, Vec<u8>, Option<usize>) =
                if path == "/v2/" {
                    ("200 OK", "application/json", b"{}".to_vec(), None)
                } else if path == "/v2/x/app/manifests/1" {
                    ("200 OK", image.manifest_media_type, image.manifest.clone(), None)
                } else if path == blob(&image.config_digest) {
                    ("200 OK", "application/octet-stream", image.config.clone(), None)
                } else if path == blob(&layer.digest) {
                    layer_requests += 1;
                    match (layer_requests, &range) {
                        (1, _) => ("503 Service Unavailable", "text/plain", b"busy".to_vec(), None),
                        // Announce the whole blob, send half, hang up.
                        (2, _) => (
                            "200 OK",
                            "application/octet-stream",
                            layer.blob[..layer.blob.len() / 2].to_vec(),
                            Some(layer.blob.len()),
                        ),
                        (_, Some(r)) => {
                            let from: usize = r
                                .trim_start_matches("bytes=")
                                .trim_end_matches('-')
                                .parse()
                                .unwrap();
                            (
                                "206 Partial Content",
                                "application/octet-stream",
                                layer.blob[from..].to_vec(),
                                None,
                            )
                        }
                        (_, None) => {
                            ("200 OK", "application/octet-stream", layer.blob.clone(), None)
                        }
                    }
                } else {
                    (
                        "404 Not Found",
                        "application/json",
                        br#"{"errors":[{"code":"NOT_FOUND"}]}"#.to_vec(),
                        None,
                    )
                };
            let mut head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
                full_len.unwrap_or(body.len())
            );
            if status.starts_with("206") {
                let total = layer.blob.len();
                head.push_str(&format!(
                    "Content-Range: bytes {}-{}/{total}\r\n",
                    total - body.len(),
                    total - 1
                ));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (host, log)
}

#[tokio::test]
async fn transient_failures_are_retried_and_downloads_resumed() {
    let image =
        ImageBuilder::new().files(&[("data", &vec![42u8; 200_000][..])], Compression::None).build();
    let layer = image.layers[0].clone();
    let (host, log) = scripted_registry(image.clone());
    let s = store(StoreOptions {
        registry: RegistryOptions {
            insecure_registries: vec![host.clone()],
            retry: RetryPolicy { attempts: 4, initial_backoff_ms: 1, max_backoff_ms: 10 },
            ..RegistryOptions::default()
        },
        ..StoreOptions::default()
    });
    let progress = Recorder::default();
    let record =
        s.store.pull(&format!("{host}/x/app:1"), &Credentials::default(), &progress).await.unwrap();
    assert_eq!(record.digest, image.manifest_digest);
    assert_eq!(progress.count("retry"), 2, "{:?}", progress.events.lock().unwrap());
    let data = std::fs::read(s.store.layer_dirs(&record)[0].join("data")).unwrap();
    assert_eq!(data, vec![42u8; 200_000]);
    let layer_path = format!("/v2/x/app/blobs/{}", layer.digest);
    let ranges: Vec<Option<String>> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| *p == layer_path)
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(
        ranges,
        vec![None, None, Some(format!("bytes={}-", layer.blob.len() / 2))],
        "503, cut, then resumed from the bytes on disk"
    );
}

#[tokio::test]
async fn retries_are_bounded() {
    // Nothing listens on this port (bound, then closed).
    let host = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let s = store(StoreOptions {
        registry: RegistryOptions {
            insecure_registries: vec![host.clone()],
            retry: RetryPolicy { attempts: 3, initial_backoff_ms: 1, max_backoff_ms: 2 },
            ..RegistryOptions::default()
        },
        ..StoreOptions::default()
    });
    let err = s
        .store
        .pull(&format!("{host}/x/app:1"), &Credentials::default(), &rudder_images::NoProgress)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("after 3 attempts"), "{text}");
}
