//! A whole single-node cluster for kubelet tests: `rudder server` with its node agent and
//! native runtime, run inside a network namespace the test creates (its bridge, pod
//! addresses and nft tables never touch the host's network), with the busybox test image
//! imported. Dropping it deletes the pods, stops the server (node shutdown) and removes
//! whatever is left: processes, mounts, the namespace.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Server, command_in};

/// The image every test pod uses (busybox-static: sh, sleep, httpd, wget, cat, date).
pub const IMAGE: &str = "rudder.test/busybox:1.0";

pub struct NodeServer {
    pub server: Option<Server>,
    /// A separate `rudder agent` (when the server runs with `--disable-agent`).
    pub agent: Option<std::process::Child>,
    pub netns: String,
    pub node_name: String,
    dir: Option<tempfile::TempDir>,
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run command")
}

impl NodeServer {
    pub fn start() -> NodeServer {
        NodeServer::start_with(|_| Vec::new())
    }

    /// Like [`NodeServer::start`]; `setup` runs once the namespace exists (e.g. to start a
    /// registry in it with [`in_netns`]) and returns extra `rudder server` flags.
    pub fn start_with(setup: impl FnOnce(&str) -> Vec<String>) -> NodeServer {
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let netns = format!("rdr-e2e-{tag}");
        assert!(run(Command::new("ip").args(["netns", "add", &netns])).status.success());
        assert!(
            run(Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]))
                .status
                .success()
        );
        let dir = tempfile::Builder::new().prefix("rudder-node-").tempdir().unwrap();
        let data_dir = dir.path().to_owned();
        let mut node = NodeServer {
            server: None,
            agent: None,
            netns: netns.clone(),
            node_name: format!("node-{tag}"),
            dir: Some(dir),
        };
        // The test image, imported into the node's store before the server starts.
        let image = rudder_images::testing::busybox().expect("busybox test image");
        let tar = data_dir.join("busybox.tar");
        std::fs::write(&tar, rudder_images::testing::oci_layout_tar(&image, &[IMAGE]).unwrap())
            .unwrap();
        let out = run(Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args(["image", "import", "--data-dir"])
            .arg(&data_dir)
            .arg(&tar));
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        let extra = setup(&netns);
        let mut args = vec!["--node-name", &node.node_name, "--node-ip", "127.0.0.1"];
        args.extend(extra.iter().map(String::as_str));
        let server = Server::spawn(Some(&netns), &data_dir, &args);
        node.server = Some(server);
        if extra.iter().any(|a| a == "--disable-agent") {
            let child = command_in(Some(&netns), env!("CARGO_BIN_EXE_rudder"))
                .args(["agent", "--kubeconfig"])
                .arg(data_dir.join("admin.kubeconfig"))
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--node-name", &node.node_name, "--node-ip", "127.0.0.1"])
                .env(
                    "RUDDER_LOG",
                    std::env::var("RUDDER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdin(Stdio::null())
                .spawn()
                .expect("start rudder agent");
            node.agent = Some(child);
        }
        let s = node.server();
        super::eventually("the node to be Ready", || {
            let out = s.kubectl_raw(
                &[
                    "get",
                    "node",
                    &node.node_name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ],
                None,
            );
            (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
        node
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn data_dir(&self) -> &Path {
        &self.server().data_dir
    }

    /// An HTTP GET from the node's network namespace (e.g. of a pod IP), with curl.
    pub fn http_get(&self, url: &str) -> Output {
        run(command_in(Some(&self.netns), "curl").args(["-sS", "-m", "2", url]))
    }

    /// kubectl apply of a manifest text.
    pub fn apply(&self, manifest: &str) -> String {
        self.server().kubectl_stdin(&["apply", "-f", "-"], Some(manifest))
    }

    /// One jsonpath field of an object.
    pub fn field(&self, args: &[&str], path: &str) -> String {
        let mut a: Vec<&str> = vec!["get"];
        a.extend_from_slice(args);
        let jp = format!("jsonpath={path}");
        a.extend_from_slice(&["-o", &jp]);
        String::from_utf8_lossy(&self.server().kubectl_raw(&a, None).stdout).into_owned()
    }
}

/// Runs `f` on a thread that joined `netns`'s network namespace (processes it starts are
/// in it too): e.g. a registry the node pulls from.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("open the netns");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let data_dir = self.server.as_ref().map(|s| s.data_dir.clone());
        if let Some(mut server) = self.server.take() {
            if std::thread::panicking() {
                for args in [
                    &["get", "pods", "-A", "-o", "wide"][..],
                    &["get", "events", "-A"][..],
                    &["get", "pods", "-A", "-o", "yaml"][..],
                ] {
                    let out = server.kubectl_raw(args, None);
                    eprintln!(
                        "kubectl {args:?}:\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            // Pods deleted through the kubelet: their sandboxes and mounts go with them.
            let _ = server.kubectl_raw(
                &["delete", "pods", "--all", "-A", "--grace-period=1", "--timeout=40s"],
                None,
            );
            if let Some(mut agent) = self.agent.take() {
                let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline && !matches!(agent.try_wait(), Ok(Some(_))) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = agent.kill();
                let _ = agent.wait();
            }
            let _ = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
        if let Some(dir) = &self.dir {
            // Containers whose pods the kubelet did not get to stop (a failed test): their
            // processes outlive their shims, so kill what is in each sandbox's netns.
            let rt = &rudder_runtime_native::layout::node_run_dirs(dir.path())[1];
            for e in std::fs::read_dir(rt.join("sandboxes")).into_iter().flatten().flatten() {
                let netns = rudder_net::names::netns_name(&e.file_name().to_string_lossy());
                let pids = run(Command::new("ip").args(["netns", "pids", &netns]));
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
                let _ = Command::new("ip").args(["netns", "del", &netns]).status();
            }
        }
        if let Some(dir) = data_dir {
            let needle = dir.to_string_lossy().into_owned();
            for pid in processes_mentioning(&needle) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            std::thread::sleep(Duration::from_millis(200));
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let mut under: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(needle.as_str()))
                .collect();
            under.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in under {
                let _ = Command::new("umount").args(["-l", m]).status();
            }
        }
        if let Some(dir) = &self.dir {
            // The agent's directories under /run (named after its data dir).
            for d in rudder_runtime_native::layout::node_run_dirs(dir.path()) {
                rudder_runtime_native::layout::remove_run_dir_if_empty(&d);
                let _ = Command::new("umount").arg("-l").arg(&d).status();
                let _ = std::fs::remove_dir(&d);
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        drop(self.dir.take());
    }
}
