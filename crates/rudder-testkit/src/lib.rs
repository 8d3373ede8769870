//! An in-process rudder API server for tests of API clients (scheduler, controllers,
//! simulated nodes): a temporary data dir with a SQLite store, a free loopback port, and
//! clients with the admin's or a component's own certificate. The server stops when the
//! test's runtime ends; the data dir is removed when the `TestCluster` is dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use rudder_apiserver::{Datastore, ServerConfig};

pub struct TestCluster {
    pub address: SocketAddr,
    pub admin_kubeconfig: PathBuf,
    /// In-process connections to the server (TLS over an in-memory pipe).
    pub local: rudder_apiserver::local::LocalConnector,
    dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster").field("address", &self.address).finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Starts a server; panics (failing the test) if it cannot.
    pub async fn start() -> TestCluster {
        let dir = tempfile::Builder::new().prefix("rudder-testkit-").tempdir().expect("temp dir");
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            datastore: Datastore::Sqlite,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            if let Err(e) = rudder_apiserver::run(config, tx).await {
                panic!("test API server failed: {e}");
            }
        });
        let started = tokio::time::timeout(std::time::Duration::from_secs(30), rx)
            .await
            .expect("API server start timed out")
            .expect("API server failed to start");
        TestCluster {
            address: started.address,
            admin_kubeconfig: started.kubeconfig,
            local: started.local,
            dir,
            server,
        }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A client with the admin's certificate (system:masters).
    pub fn client(&self) -> kube::Client {
        rudder_client::client_from_kubeconfig_file(&self.admin_kubeconfig).expect("admin client")
    }

    /// The admin kubeconfig's text.
    pub fn kubeconfig_text(&self) -> String {
        std::fs::read_to_string(&self.admin_kubeconfig).expect("admin kubeconfig")
    }

    /// A kubeconfig for a component with its own client certificate (CN `user`).
    pub fn component_kubeconfig(&self, user: &str, groups: &[&str]) -> String {
        rudder_apiserver::pki::component_kubeconfig(
            &self.dir.path().join("tls"),
            &format!("https://{}", self.address),
            user,
            groups,
        )
        .expect("component kubeconfig")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.server.abort();
    }
}
