//! Running an extra process inside a running container (`kubectl exec`, exec probes).
//!
//! The agent never forks into a container itself: it starts `rudder shim exec --state-root R
//! --id ID --dir D [--tty [--control NAME]] -- CMD...`, a single-threaded helper that joins
//! the container's namespaces and cgroup through libcontainer's tenant builder, waits for the
//! process and exits with its exit code (128+signal when killed). The process is the
//! container's own (user, environment, working directory, capabilities from its OCI spec in
//! `D/bundle`) with the command replaced. Without a TTY it inherits the helper's stdio
//! (pipes to the agent). With a TTY, libcontainer makes a terminal inside the container (the
//! process's controlling terminal, so ^C interrupts) and hands its master side to the helper,
//! which copies between its own stdio and the terminal, and applies resizes the agent sends
//! as frames on the control socket `D/NAME` (the agent listens there before starting us).
//!
//! A command that cannot be started exits 126 (not executable) or 127 (not found) with the
//! reason on stderr, as shells and container runtimes do.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::frames::{Decoder, Frame};
use crate::sockets::ShortDir;

/// Exit code when the helper itself fails (cannot join the container).
pub const EXEC_FAILED: i32 = 126;
/// How long libcontainer gets to hand over the terminal it made in the container.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `rudder shim exec` was asked to do.
struct ExecArgs {
    root: PathBuf,
    id: String,
    dir: PathBuf,
    tty: bool,
    control: Option<String>,
    command: Vec<String>,
}

fn parse(args: &[String]) -> Result<ExecArgs, String> {
    let (mut root, mut id, mut dir, mut tty, mut control) = (None, None, None, false, None);
    let mut command = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--state-root" => root = it.next().map(PathBuf::from),
            "--id" => id = it.next().cloned(),
            "--dir" => dir = it.next().map(PathBuf::from),
            "--tty" => tty = true,
            "--control" => control = it.next().cloned(),
            "--" => {
                command = it.by_ref().cloned().collect();
                break;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let (Some(root), Some(id), Some(dir)) = (root, id, dir) else {
        return Err("--state-root, --id and --dir are required".to_owned());
    };
    if command.is_empty() {
        return Err("no command".to_owned());
    }
    Ok(ExecArgs { root, id, dir, tty, control, command })
}

pub(crate) fn helper_main(args: &[String]) -> i32 {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rudder shim exec: {e}");
            return 2;
        }
    };
    match exec(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("exec failed: {e}");
            EXEC_FAILED
        }
    }
}

/// Files the helper makes in the container directory, removed when it is done with them.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The container's process from its OCI spec with `command` (and the terminal setting)
/// replacing its own, written where libcontainer's tenant builder reads it.
fn write_process(args: &ExecArgs, path: &Path) -> Result<(), String> {
    let spec_path = args.dir.join("bundle").join("config.json");
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&spec_path).map_err(|e| format!("reading {}: {e}", spec_path.display()))?,
    )
    .map_err(|e| format!("parsing {}: {e}", spec_path.display()))?;
    let mut process = spec.get("process").cloned().ok_or("the container's spec has no process")?;
    process["args"] = serde_json::json!(args.command);
    process["terminal"] = serde_json::json!(args.tty);
    std::fs::write(path, serde_json::to_vec(&process).map_err(|e| e.to_string())?)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn exec(args: &ExecArgs) -> Result<i32, String> {
    let dir = ShortDir::open(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let tag = std::process::id();
    let process_path = args.dir.join(format!("exec-{tag}.json"));
    let console_name = format!("exec-{tag}.console");
    let mut scratch = Scratch(vec![process_path.clone()]);
    write_process(args, &process_path)?;
    let builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .map_err(|e| e.to_string())?;
    let console = if args.tty {
        let listener = dir.listen(&console_name).map_err(|e| format!("console socket: {e}"))?;
        scratch.0.push(args.dir.join(&console_name));
        Some(listener)
    } else {
        None
    };
    let builder = match console {
        Some(_) => builder.with_console_socket(Some(args.dir.join(&console_name))),
        None => builder,
    };
    crate::sys::default_signals();
    let built = builder
        .as_tenant()
        .with_process(Some(&process_path))
        // A terminal requires "detached" with a console socket; the tenant waits for nothing
        // either way: we wait for the process ourselves.
        .with_detach(args.tty)
        .build();
    crate::sys::ignore_sigpipe();
    let pid = built.map_err(|e| e.to_string())?;
    // libcontainer speaks an older nix; its Pid converts through the raw value.
    let pid = Pid::from_raw(pid.as_raw());
    let Some(console) = console else { return Ok(wait(pid)) };
    let master = crate::sockets::receive_fd(&console, CONSOLE_TIMEOUT)
        .map_err(|e| format!("receiving the terminal: {e}"))?;
    drop(console);
    drop(scratch);
    let control = match &args.control {
        Some(name) => Some(dir.connect(name).map_err(|e| format!("control socket: {e}"))?),
        None => None,
    };
    Ok(pump_tty(pid, File::from(master), control))
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

/// Copies stdin -> terminal and terminal -> stdout, and applies resizes from the control
/// socket, until the process exited and the terminal drained.
fn pump_tty(pid: Pid, mut master: File, mut control: Option<UnixStream>) -> i32 {
    let mut stdin = io::stdin().lock();
    let mut stdout = io::stdout().lock();
    let mut stdin_open = true;
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut status = None;
    loop {
        if status.is_none()
            && let Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) =
                waitpid(pid, Some(WaitPidFlag::WNOHANG))
        {
            status = Some(s);
        }
        let Ok(master_fd) = master.try_clone() else { break };
        let stdin_fd = io::stdin();
        let mut fds = vec![PollFd::new(master_fd.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN));
        }
        let control_at = fds.len();
        if let Some(c) = &control {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        // Poll with a short timeout while the process runs so its exit is noticed even if
        // it leaves the terminal open in a background child.
        let timeout = PollTimeout::from(if status.is_some() { 50u16 } else { 100u16 });
        let n = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let ready = |i: usize| fds.get(i).and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        let master_ready = ready(0);
        let stdin_ready = stdin_open && ready(1);
        let control_ready = control.is_some() && ready(control_at);
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
        if control_ready && let Some(c) = &mut control {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => control = None,
                Ok(k) => {
                    decoder.feed(&buf[..k]);
                    while let Ok(Some(frame)) = decoder.next_frame() {
                        if let Frame::Resize { width, height } = frame {
                            let _ = crate::sys::set_window_size(&master, width, height);
                        }
                    }
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
