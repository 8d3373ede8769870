//! `rudder up`, `rudder down`, `rudder status`: a single-node cluster in the background
//! (`rudder server` with its in-process agent, embedded store, native runtime), with its
//! pid and log in the data dir and a `rudder` context merged into the user's kubeconfig.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::config::Kubeconfig;

/// Where `rudder up` writes its context: `$KUBECONFIG` (first entry) or `~/.kube/config`.
pub fn user_kubeconfig_path() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home =
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".kube/config")
}

fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("rudder.pid")
}

/// The server's pid if it is alive (and is a rudder process).
pub fn running_pid(data_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(data_dir)).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&cmdline);
    (text.contains("rudder") && text.contains("server")).then_some(pid)
}

/// Renames the admin kubeconfig's cluster, user and context to `name` and merges them into
/// `target` (replacing earlier entries of that name), making it the current context.
pub fn merge_context(admin_kubeconfig: &str, target: &Path, name: &str) -> anyhow::Result<()> {
    let mut ours =
        Kubeconfig::from_yaml(admin_kubeconfig).context("reading the admin kubeconfig")?;
    for c in &mut ours.clusters {
        c.name = name.to_owned();
    }
    for u in &mut ours.auth_infos {
        u.name = name.to_owned();
    }
    for c in &mut ours.contexts {
        c.name = name.to_owned();
        if let Some(ctx) = c.context.as_mut() {
            ctx.cluster = name.to_owned();
            ctx.user = Some(name.to_owned());
        }
    }
    ours.current_context = Some(name.to_owned());
    let merged = match std::fs::read_to_string(target) {
        Ok(text) if !text.trim().is_empty() => {
            let mut theirs = Kubeconfig::from_yaml(&text)
                .with_context(|| format!("reading {}", target.display()))?;
            theirs.clusters.retain(|c| c.name != name);
            theirs.auth_infos.retain(|c| c.name != name);
            theirs.contexts.retain(|c| c.name != name);
            theirs.current_context = None;
            ours.merge(theirs)?
        }
        _ => ours,
    };
    let text = serde_saphyr::to_string(&merged).context("writing kubeconfig YAML")?;
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = target.with_extension("rudder-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, target)?;
    Ok(())
}

/// Removes the `name` entries from `target` (if present).
pub fn remove_context(target: &Path, name: &str) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(target) else { return Ok(()) };
    let mut k = Kubeconfig::from_yaml(&text)?;
    k.clusters.retain(|c| c.name != name);
    k.auth_infos.retain(|c| c.name != name);
    k.contexts.retain(|c| c.name != name);
    if k.current_context.as_deref() == Some(name) {
        k.current_context = None;
    }
    std::fs::write(target, serde_saphyr::to_string(&k)?)?;
    Ok(())
}

/// Starts the server in the background and waits for the node to be Ready.
pub async fn up(data_dir: &Path, server_args: &[String], timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(data_dir)?;
    if let Some(pid) = running_pid(data_dir) {
        println!("rudder is already running (pid {pid}, data dir {})", data_dir.display());
        return report_kubeconfig(data_dir);
    }
    let log = std::fs::File::create(data_dir.join("rudder.log"))?;
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("server").arg("--data-dir").arg(data_dir).args(server_args);
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    // Its own session: the server outlives this command and the terminal.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("starting rudder server")?;
    let pid = child.id() as i32;
    std::fs::write(pid_file(data_dir), pid.to_string())?;
    println!("• rudder server started (pid {pid}, log {})", data_dir.join("rudder.log").display());

    let kubeconfig = rudder_apiserver::server::kubeconfig_path(data_dir);
    let deadline = started + timeout;
    let client = loop {
        if has_exited(&mut child) {
            return Err(server_exited(data_dir));
        }
        if let Ok(text) = std::fs::read_to_string(&kubeconfig)
            && let Ok(client) = rudder_client::client_from_kubeconfig_text(&text)
            && client.apiserver_version().await.is_ok()
        {
            break client;
        }
        if Instant::now() > deadline {
            bail!(
                "the API server did not answer within {timeout:?}; see {}",
                data_dir.join("rudder.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    println!("✓ API server ready ({:.1}s)", started.elapsed().as_secs_f64());
    let nodes: kube::Api<Node> = kube::Api::all(client);
    loop {
        if let Ok(list) = nodes.list(&ListParams::default()).await {
            let ready = list.items.iter().find(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            if let Some(n) = ready {
                println!(
                    "✓ node {} Ready ({:.1}s)",
                    n.metadata.name.as_deref().unwrap_or(""),
                    started.elapsed().as_secs_f64()
                );
                break;
            }
        }
        if has_exited(&mut child) {
            return Err(server_exited(data_dir));
        }
        if Instant::now() > deadline {
            bail!(
                "the node did not become Ready within {timeout:?}; see {}",
                data_dir.join("rudder.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    report_kubeconfig(data_dir)
}

/// Whether the server `up` started has exited. Asked of the child itself, not of
/// `/proc/<pid>/cmdline` as [`running_pid`] does for a server started earlier: right after
/// the spawn, while the kernel is still setting up the new program, its cmdline reads empty.
fn has_exited(child: &mut std::process::Child) -> bool {
    !matches!(child.try_wait(), Ok(None))
}

/// The error for a server that died while `up` waited for it: the end of its log, so that
/// the reason is on the terminal (or in a CI log) rather than only in the data dir.
fn server_exited(data_dir: &Path) -> anyhow::Error {
    const LINES: usize = 20;
    let log = data_dir.join("rudder.log");
    let text = std::fs::read(&log).map(|b| String::from_utf8_lossy(&b).into_owned());
    let tail = match &text {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LINES)..].join("\n")
        }
        Err(e) => format!("(could not read it: {e})"),
    };
    anyhow::anyhow!("rudder server exited; the end of {}:\n{tail}", log.display())
}

fn report_kubeconfig(data_dir: &Path) -> anyhow::Result<()> {
    let admin = std::fs::read_to_string(rudder_apiserver::server::kubeconfig_path(data_dir))?;
    let target = user_kubeconfig_path();
    merge_context(&admin, &target, "rudder")?;
    println!("✓ context \"rudder\" written to {}", target.display());
    println!("next: kubectl get nodes");
    Ok(())
}

/// Stops the background server (SIGTERM: pods are stopped cleanly first); with `purge`,
/// removes its state and its kubeconfig context.
pub async fn down(data_dir: &Path, purge: bool, timeout: Duration) -> anyhow::Result<()> {
    match running_pid(data_dir) {
        Some(pid) => {
            let pid = nix::unistd::Pid::from_raw(pid);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
            let deadline = Instant::now() + timeout;
            while running_pid(data_dir).is_some() {
                if Instant::now() > deadline {
                    eprintln!("rudder server did not stop within {timeout:?}; killing it");
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            println!("✓ rudder stopped");
        }
        None => println!("rudder is not running"),
    }
    let _ = std::fs::remove_file(pid_file(data_dir));
    if purge {
        remove_context(&user_kubeconfig_path(), "rudder")?;
        for dir in crate::agent::run_dirs(data_dir) {
            // Only when nothing is left inside, which would belong to a running container.
            rudder_runtime_native::layout::remove_run_dir_if_empty(&dir);
        }
        if data_dir.exists() {
            std::fs::remove_dir_all(data_dir)
                .with_context(|| format!("removing {}", data_dir.display()))?;
        }
        println!("✓ state removed ({})", data_dir.display());
    }
    Ok(())
}

/// Prints whether the server runs, and its nodes.
pub async fn status(data_dir: &Path) -> anyhow::Result<bool> {
    let Some(pid) = running_pid(data_dir) else {
        println!("rudder is not running (data dir {})", data_dir.display());
        return Ok(false);
    };
    println!("rudder server: running (pid {pid}, data dir {})", data_dir.display());
    let text = std::fs::read_to_string(rudder_apiserver::server::kubeconfig_path(data_dir))?;
    let client = rudder_client::client_from_kubeconfig_text(&text)?;
    match kube::Api::<Node>::all(client).list(&ListParams::default()).await {
        Ok(list) => {
            for n in list.items {
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                    .map(|c| if c.status == "True" { "Ready" } else { "NotReady" })
                    .unwrap_or("Unknown");
                println!("node {}: {ready}", n.metadata.name.unwrap_or_default());
            }
        }
        Err(e) => println!("API server: not answering ({e})"),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: x\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: x\n  context:\n    cluster: x\n    user: admin\nusers:\n- name: admin\n  user:\n    token: t\ncurrent-context: x\n";

    #[test]
    fn merges_and_removes_the_rudder_context() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("config");
        std::fs::write(&target, "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://10.0.0.1\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: o\nusers:\n- name: o\n  user:\n    token: z\ncurrent-context: other\n").unwrap();
        merge_context(ADMIN, &target, "rudder").unwrap();
        merge_context(ADMIN, &target, "rudder").unwrap();
        let k = Kubeconfig::read_from(&target).unwrap();
        assert_eq!(k.current_context.as_deref(), Some("rudder"));
        let names: Vec<&str> = k.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.iter().filter(|n| **n == "rudder").count(), 1);
        assert!(names.contains(&"other"));
        remove_context(&target, "rudder").unwrap();
        let k = Kubeconfig::read_from(&target).unwrap();
        assert!(k.contexts.iter().all(|c| c.name != "rudder"));
        assert_eq!(k.clusters.len(), 1);
    }
}
