//! A real etcd (Debian's `etcd-server`) on free loopback ports with a temporary data
//! directory, for tests and benchmarks. Dropping it kills the process and removes the data.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{EtcdConfig, EtcdStorage};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start `etcd` (install Debian's etcd-server): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("no free loopback port: {0}")]
    Port(#[source] std::io::Error),
    #[error("temporary data directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("etcd did not become ready within {0:?} (exit status: {1:?})")]
    NotReady(Duration, Option<std::process::ExitStatus>),
}

pub struct EtcdProcess {
    child: Child,
    client_url: String,
    _data_dir: tempfile::TempDir,
}

impl std::fmt::Debug for EtcdProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdProcess").field("client_url", &self.client_url).finish()
    }
}

fn free_port() -> Result<u16, ProcessError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(ProcessError::Port)?;
    Ok(listener.local_addr().map_err(ProcessError::Port)?.port())
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl EtcdProcess {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> Result<Self, ProcessError> {
        let data_dir = tempfile::Builder::new()
            .prefix("rudder-etcd-")
            .tempdir()
            .map_err(ProcessError::TempDir)?;
        let (client, peer) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--name=rudder-test")
            .arg(format!("--data-dir={}", data_dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=rudder-test={peer_url}"))
            // Room for a 1.5 MiB value plus its key and framing in one request.
            .arg("--max-request-bytes=2097152")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(ProcessError::Spawn)?;
        let mut process = EtcdProcess { child, client_url, _data_dir: data_dir };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut config = process.config();
            config.connect_timeout = Duration::from_millis(500);
            config.request_timeout = Duration::from_secs(2);
            if EtcdStorage::connect(config).await.is_ok() {
                return Ok(process);
            }
            let exited = process.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                return Err(ProcessError::NotReady(READY_TIMEOUT, exited));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    pub fn config(&self) -> EtcdConfig {
        EtcdConfig::new(vec![self.client_url.clone()])
    }

    /// A connected store on this etcd.
    pub async fn storage(&self) -> rudder_store::Result<EtcdStorage> {
        EtcdStorage::connect(self.config()).await
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
