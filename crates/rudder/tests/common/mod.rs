//! The test harness: a real `rudder server` process and the real kubectl 1.33.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod node;

pub const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
/// Bounds a wait so that a hang fails the test instead of blocking it.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Server {
    pub child: Child,
    pub data_dir: PathBuf,
    pub _dir: Option<tempfile::TempDir>,
    /// The network namespace the server (and kubectl) run in, for servers with a node agent
    /// (see `node::NodeServer`); None: the test's own.
    pub netns: Option<String>,
}

/// `program` run inside `netns` (only the network namespace changes) when given.
pub fn command_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::Builder::new().prefix("rudder-e2e-").tempdir().unwrap();
        let data_dir = dir.path().to_owned();
        let mut server = Server::start_in(&data_dir);
        server._dir = Some(dir);
        server
    }

    /// Starts a server on a fresh data dir with extra arguments.
    pub fn start_args(extra: &[&str]) -> Server {
        let dir = tempfile::Builder::new().prefix("rudder-e2e-").tempdir().unwrap();
        let data_dir = dir.path().to_owned();
        let mut server = Server::start_with(&data_dir, extra);
        server._dir = Some(dir);
        server
    }

    /// Starts a server on an existing data dir (a restart).
    pub fn start_in(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// Starts a server with extra arguments (e.g. `--datastore etcd://...`).
    /// A control-plane-only server (`--disable-agent`: these tests never run containers
    /// or touch the host network).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra);
        Server::spawn(None, data_dir, &args)
    }

    /// Starts `rudder server` (in `netns` if given) and waits until it listens.
    pub fn spawn(netns: Option<&str>, data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = command_in(netns, env!("CARGO_BIN_EXE_rudder"))
            .args(["server", "--bind-address", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUDDER_LOG", std::env::var("RUDDER_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rudder server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            data_dir: data_dir.to_owned(),
            _dir: None,
            netns: netns.map(str::to_owned),
        };
        loop {
            match rx.recv_timeout(DEADLINE) {
                Ok(line) if line.contains("listening on https://") => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = server.child.kill();
                    panic!("rudder server did not start");
                }
            }
        }
        server
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }

    pub fn kubectl_raw(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = command_in(self.netns.as_deref(), KUBECTL);
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl 1.33");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    pub fn kubectl_raw_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        command_in(self.netns.as_deref(), KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl 1.33")
    }

    /// Runs kubectl and returns stdout, failing the test if kubectl fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_raw(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_raw(args, stdin);
        assert!(!out.status.success(), "kubectl {args:?} should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process that is killed when the test ends, pass or fail.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rudder sim nodes` against a server, killed when dropped.
pub struct Sim(pub KillOnDrop);

impl Sim {
    /// Starts simulated nodes (`args` as for `rudder sim nodes`) and waits until they are
    /// registered.
    pub fn start(server: &Server, args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args(["sim", "nodes", "--kubeconfig"])
            .arg(server.kubeconfig())
            .args(args)
            .env("RUDDER_LOG", std::env::var("RUDDER_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rudder sim nodes");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let sim = Sim(KillOnDrop(child));
        match rx.recv_timeout(DEADLINE) {
            Ok(line) if line.contains("simulated nodes registered") => sim,
            other => panic!("rudder sim nodes did not start: {other:?}"),
        }
    }
}

/// Polls `f` until it returns `Some`, failing the test after `DEADLINE`.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
