//! A test "node": its own network namespace (so the host network is never touched), a
//! random private /24, a unique bridge name, its own state and run directories, and a
//! guard that removes all of it (sandboxes, namespace files, bind mounts; nft tables and
//! links go with the node namespace) even when the test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use nix::mount::{MntFlags, umount2};
use rand::Rng;
use rudder_net::cmd::{Cmd, Output};
use rudder_net::{Network, NetworkConfig, names, ns, run_in_netns};

pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestNode {
    pub cfg: NetworkConfig,
    pub net: Network,
    /// The node's netns file (`/run/netns/<name>`).
    pub netns: PathBuf,
    pub netns_name: String,
    sandbox_ids: Mutex<Vec<String>>,
    extra_netns: Mutex<Vec<PathBuf>>,
    dir: tempfile::TempDir,
}

fn random_hex(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len).map(|_| format!("{:x}", rng.gen_range(0..16u8))).collect()
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create network namespaces and must run as root (as CI does)"
    );
}

/// Creates a netns with `ip netns add` and brings its loopback up.
fn add_netns(name: &str) -> PathBuf {
    Cmd::new("ip").args(["netns", "add", name]).run(TIMEOUT).expect("ip netns add");
    Cmd::new("ip").args(["-n", name, "link", "set", "lo", "up"]).run(TIMEOUT).expect("lo up");
    PathBuf::from(names::NETNS_DIR).join(name)
}

impl TestNode {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// A node with its config adjusted by `tweak` (before the bridge is built).
    pub fn with(tweak: impl FnOnce(&mut NetworkConfig)) -> Self {
        require_root();
        let suffix = random_hex(8);
        let netns_name = format!("rt-node-{suffix}");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut rng = rand::thread_rng();
        let cidr = format!("10.{}.{}.0/24", rng.gen_range(200..=254u8), rng.gen_range(0..=255u8));
        let netns = add_netns(&netns_name);
        let mut cfg = NetworkConfig {
            bridge: format!("rt{suffix}"),
            pod_cidr: cidr,
            mtu: 1500,
            node_netns: Some(netns.clone()),
            state_dir: dir.path().join("ipam"),
            run_dir: dir.path().join("ns"),
            masquerade: true,
            command_timeout_ms: 20_000,
        };
        tweak(&mut cfg);
        // From here on the guard owns the cleanup.
        let node = TestNode {
            net: Network::new(cfg.clone()).expect("Network::new"),
            cfg,
            netns,
            netns_name,
            sandbox_ids: Mutex::new(Vec::new()),
            extra_netns: Mutex::new(Vec::new()),
            dir,
        };
        node.net.ensure_node().expect("ensure_node");
        node
    }

    /// A fresh `Network` on the same configuration, like a restarted agent.
    pub fn reopen(&self) -> Network {
        Network::new(self.cfg.clone()).expect("Network::new")
    }

    /// A unique sandbox id, remembered for cleanup.
    pub fn sandbox_id(&self, label: &str) -> String {
        let id = format!("t{}-{label}", random_hex(12));
        self.sandbox_ids.lock().unwrap().push(id.clone());
        id
    }

    /// Another netns owned by this test (removed by the guard).
    pub fn extra_netns(&self, label: &str) -> PathBuf {
        let path = add_netns(&format!("rt-{label}-{}", random_hex(8)));
        self.extra_netns.lock().unwrap().push(path.clone());
        path
    }

    /// `ip <args>` in the node netns; panics unless it succeeds.
    pub fn ip(&self, args: &[&str]) -> String {
        exec(Some(&self.netns), "ip", args).stdout
    }

    pub fn ipam_dir(&self) -> &Path {
        &self.cfg.state_dir
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let mut ids = self.sandbox_ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ids.extend(self.net.list_pods().unwrap_or_default());
        for id in &ids {
            let _ = self.net.teardown_pod(id);
            let _ = ns::remove_file(&names::netns_path(id));
        }
        for path in self.extra_netns.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = ns::remove_file(path);
        }
        // `run_dir` was bind-mounted onto itself (shared); undo that before the temporary
        // directory is deleted.
        for _ in 0..16 {
            if umount2(&self.cfg.run_dir, MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
        // The bridge, the host veths and the nft table live in the node netns and go
        // with it.
        let _ = ns::remove_file(&self.netns);
    }
}

/// Runs `program args` in `netns` (None: here); panics unless it succeeds.
pub fn exec(netns: Option<&Path>, program: &str, args: &[&str]) -> Output {
    Cmd::in_netns(netns, program).args(args).run(TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// One ICMP echo answered from `from` to `to` (busybox ping keeps trying for up to 10 s).
pub fn ping(from: &Path, to: Ipv4Addr) {
    exec(Some(from), "/usr/bin/busybox", &["ping", "-c", "1", "-w", "10", &to.to_string()]);
}

/// Listens on `server_ip` inside `server`, connects from inside `client`, exchanges a
/// message both ways, and returns the client address the server saw.
pub fn tcp_exchange(server: &Path, server_ip: Ipv4Addr, client: &Path) -> SocketAddr {
    let listener = run_in_netns(Some(server), || TcpListener::bind((server_ip, 0)))
        .expect("enter server netns")
        .expect("bind");
    let target = listener.local_addr().unwrap();
    // The listener already listens, so the handshake completes from the backlog; accept
    // then returns at once.
    let mut client_stream =
        run_in_netns(Some(client), || TcpStream::connect_timeout(&target, Duration::from_secs(10)))
            .expect("enter client netns")
            .unwrap_or_else(|e| panic!("connect to {target}: {e}"));
    let (mut server_stream, seen) = listener.accept().expect("accept");
    for stream in [&client_stream, &server_stream] {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    client_stream.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server_stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    server_stream.write_all(b"pong").unwrap();
    client_stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    seen
}

/// Lines of /proc/self/mountinfo that mention `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Asserts that nothing of the sandbox is left: netns file, namespace directory, mounts,
/// address, host veth.
pub fn assert_sandbox_gone(node: &TestNode, id: &str) {
    let netns = names::netns_path(id);
    assert!(!netns.exists(), "{netns:?} still exists");
    let dir = node.cfg.run_dir.join(id);
    assert!(!dir.exists(), "{dir:?} still exists");
    assert_eq!(mounts_mentioning(&names::netns_name(id)), Vec::<String>::new());
    assert_eq!(mounts_mentioning(&dir.to_string_lossy()), Vec::<String>::new());
    assert_eq!(node.net.ipam().lookup(id).unwrap(), None, "{id} still has an address");
    let veth = names::host_veth_name(id);
    let out = Cmd::in_netns(Some(&node.netns), "ip")
        .args(["link", "show", "dev", &veth])
        .output(TIMEOUT)
        .unwrap();
    assert!(!out.status.success(), "{veth} still exists: {}", out.stdout);
}
