//! Running an extra process inside a running container (`kubectl exec`, exec probes).
//!
//! The agent never forks into a container itself: it starts `rudder shim exec --state-root R
//! --id ID [--tty] -- CMD...`, a single-threaded helper that joins the container's
//! namespaces and cgroup through libcontainer's tenant builder, waits for the process and
//! exits with its exit code (128+signal when killed). Without a TTY the process inherits the
//! helper's stdio (pipes to the agent). With a TTY the helper opens a pseudo-terminal, gives
//! its slave side to the process as stdin/stdout/stderr and copies between its own stdio and
//! the master side.
//!
//! A command that cannot be started exits 126 (not executable) or 127 (not found) with the
//! reason on stderr, as shells and container runtimes do.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Exit code when the helper itself fails (cannot join the container).
pub const EXEC_FAILED: i32 = 126;

pub(crate) fn helper_main(args: &[String]) -> i32 {
    let mut root = None;
    let mut id = None;
    let mut tty = false;
    let mut it = args.iter();
    let mut command = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--state-root" => root = it.next().map(PathBuf::from),
            "--id" => id = it.next().cloned(),
            "--tty" => tty = true,
            "--" => {
                command = it.by_ref().cloned().collect();
                break;
            }
            other => {
                eprintln!("rudder shim exec: unknown flag {other}");
                return 2;
            }
        }
    }
    let (Some(root), Some(id)) = (root, id) else {
        eprintln!("rudder shim exec: --state-root and --id are required");
        return 2;
    };
    if command.is_empty() {
        eprintln!("rudder shim exec: no command");
        return 2;
    }
    match exec(&root, &id, command, tty) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("exec failed: {e}");
            EXEC_FAILED
        }
    }
}

fn exec(root: &PathBuf, id: &str, command: Vec<String>, tty: bool) -> Result<i32, String> {
    let builder = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_root_path(root)
        .map_err(|e| e.to_string())?;
    let (builder, master) = if tty {
        let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
        let slave: OwnedFd = pty.slave;
        let s1 = slave.try_clone().map_err(|e| e.to_string())?;
        let s2 = slave.try_clone().map_err(|e| e.to_string())?;
        (builder.with_stdin(slave).with_stdout(s1).with_stderr(s2), Some(File::from(pty.master)))
    } else {
        (builder, None)
    };
    let pid = builder
        .as_tenant()
        .with_container_args(command)
        .with_detach(false)
        .build()
        .map_err(|e| e.to_string())?;
    // libcontainer speaks an older nix; its Pid converts through the raw value.
    let pid = Pid::from_raw(pid.as_raw());
    match master {
        None => Ok(wait(pid)),
        Some(master) => Ok(pump_tty(pid, master)),
    }
}

fn wait(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// Copies stdin -> pty master and pty master -> stdout until the process exited and the
/// terminal drained.
fn pump_tty(pid: Pid, mut master: File) -> i32 {
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 16 * 1024];
    let mut status = None;
    loop {
        if status.is_none()
            && let Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) =
                waitpid(pid, Some(WaitPidFlag::WNOHANG))
        {
            status = Some(s);
        }
        let master_fd = master.try_clone().ok();
        let Some(master_fd) = master_fd else { break };
        let stdin_fd = io::stdin();
        let mut fds = vec![PollFd::new(master_fd.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN));
        }
        // Poll with a short timeout while the process runs so its exit is noticed even if
        // it leaves the terminal open in a background child.
        let timeout = PollTimeout::from(if status.is_some() { 50u16 } else { 100u16 });
        let n = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let master_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
        let stdin_ready =
            stdin_open && fds.get(1).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        drop(fds);
        if n == 0 && status.is_some() {
            break;
        }
        if master_ready {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => {
                    if status.is_some() {
                        break;
                    }
                }
                Ok(k) => {
                    let _ = stdout.write_all(&buf[..k]);
                    let _ = stdout.flush();
                }
            }
        }
        if stdin_ready {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(k) => {
                    let _ = master.write_all(&buf[..k]);
                }
            }
        }
    }
    match status {
        Some(WaitStatus::Exited(_, code)) => code,
        Some(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        _ => wait(pid),
    }
}
