//! A real OCI distribution registry for tests: Debian's `docker-registry` (distribution
//! v2.8) on a free 127.0.0.1 port with its own temporary storage, optionally behind htpasswd
//! basic auth. The registry binds port 0 and we read the port it got from its log (which
//! goes to a file in the temporary directory, so tests stay quiet and never race for a
//! port). Killed, and its directory removed, on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestingError;
use crate::credentials::{Auth, Credentials};
use crate::digest::Digest;
use crate::registry::{RegistryOptions, RetryPolicy};
use crate::store::StoreOptions;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const START_DEADLINE: Duration = Duration::from_secs(30);

pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    host: String,
    auth: Option<(String, String)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("host", &self.host).finish_non_exhaustive()
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestingError {
    let what = what.into();
    move |source| TestingError::Io { what, source }
}

impl Registry {
    /// Starts a registry; with `auth`, every request needs that user and password.
    pub fn start(auth: Option<(&str, &str)>) -> Result<Registry, TestingError> {
        let dir =
            tempfile::Builder::new().prefix("rudder-registry-").tempdir().map_err(io("tempdir"))?;
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:0\n  secret: rudder-test-secret\n",
            data = dir.path().join("data").display()
        );
        if let Some((user, password)) = auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .map_err(io("running htpasswd (apache2-utils)"))?;
            if !out.status.success() {
                return Err(TestingError::Registry(format!(
                    "htpasswd failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, &out.stdout).map_err(io("writing htpasswd"))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: rudder-test\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).map_err(io("writing the registry config"))?;
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).map_err(io("creating the registry log"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("registry log"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting {REGISTRY_BIN}")))?;
        let mut registry = Registry {
            child,
            dir,
            host: String::new(),
            auth: auth.map(|(u, p)| (u.to_owned(), p.to_owned())),
        };
        registry.host = registry.wait_for_port(&log_path)?;
        registry.wait_until_serving()?;
        Ok(registry)
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "docker-registry exited ({status}): {}",
                std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            )),
            _ => None,
        }
    }

    /// Reads `listening on 127.0.0.1:PORT` from the log.
    fn wait_for_port(&mut self, log: &Path) -> Result<String, TestingError> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                if addr.starts_with("127.0.0.1:") && addr.len() > "127.0.0.1:".len() {
                    return Ok(addr);
                }
            }
            if let Some(e) = self.exited() {
                return Err(TestingError::Registry(e));
            }
            if Instant::now() > deadline {
                return Err(TestingError::Registry(format!(
                    "no listening address in the log: {text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `GET /v2/` until it answers 200 (401 with auth).
    fn wait_until_serving(&mut self) -> Result<(), TestingError> {
        let want = if self.auth.is_some() { " 401 " } else { " 200 " };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let last = match http_get_status(&self.host, "/v2/") {
                Ok(status) if status.contains(want) => return Ok(()),
                Ok(status) => status,
                Err(e) => e.to_string(),
            };
            if let Some(e) = self.exited() {
                return Err(TestingError::Registry(e));
            }
            if Instant::now() > deadline {
                return Err(TestingError::Registry(format!("/v2/ never answered: {last}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `127.0.0.1:PORT/<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("{}/{name}", self.host)
    }

    /// The configured user and password (None when anonymous).
    pub fn auth(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Credentials for this registry (empty when anonymous).
    pub fn credentials(&self) -> Credentials {
        let mut c = Credentials::default();
        if let Some((username, password)) = &self.auth {
            c.insert(
                &self.host,
                Auth::Basic { username: username.clone(), password: password.clone() },
            );
        }
        c
    }

    /// Store options that reach this registry over plain HTTP, with quick retries.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            registry: RegistryOptions {
                insecure_registries: vec![self.host.clone()],
                connect_timeout_ms: 5_000,
                request_timeout_ms: 30_000,
                retry: RetryPolicy { attempts: 3, initial_backoff_ms: 50, max_backoff_ms: 500 },
            },
            ..StoreOptions::default()
        }
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Flips one byte of a stored blob (same length), so the registry serves content that
    /// does not match its digest.
    pub fn corrupt_blob(&self, digest: &Digest) -> Result<(), TestingError> {
        let path = self.blob_data_path(digest);
        let mut bytes = std::fs::read(&path).map_err(io(path.display().to_string()))?;
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).map_err(io(path.display().to_string()))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status line of `GET path` (one short request, bounded by timeouts).
fn http_get_status(host: &str, path: &str) -> std::io::Result<String> {
    let addr = host
        .parse()
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, host.to_owned()))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]);
    Ok(text.lines().next().unwrap_or_default().to_owned() + " ")
}
