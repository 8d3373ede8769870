//! The per-container shim: a small, single-threaded process (the rudder binary re-executed
//! as `rudder shim run ...`) that creates and starts one container with libcontainer, is its
//! parent and subreaper, turns its stdout/stderr into a CRI-format log file, and records its
//! exit code and finish time. It runs in its own session, so the agent that started it can
//! restart (or die) without the container noticing. With a TTY it holds the master side of
//! the terminal libcontainer made inside the container; with stdin, the pipe's write end.
//! Clients attach through `attach.sock` in the container directory ([`crate::shim_io`]).
//!
//! Protocol with the agent: the shim prints exactly one JSON line on stdout — `{"pid":N}`
//! once the container's process runs, or `{"error":"..."}` — and never writes there again.
//! Everything else goes through files in the container directory (see [`crate::layout`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::layout::{ExitRecord, StartedRecord, now_ns, write_json};
use crate::shim_io::{ContainerIo, Pump, exit_code};
use crate::sockets::{self, ATTACH_SOCKET, CONSOLE_SOCKET, ShortDir};

/// How long libcontainer gets to hand over the terminal it made in the container.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `rudder shim run` needs; all paths absolute.
#[derive(Clone, Debug)]
pub struct ShimArgs {
    pub id: String,
    pub container_dir: PathBuf,
    pub libcontainer_root: PathBuf,
    pub log_path: PathBuf,
    /// Memory cgroup directory to read the OOM-kill counter from after the exit.
    pub memory_cgroup: Option<PathBuf>,
    /// The process gets a terminal (the spec says `terminal: true`).
    pub tty: bool,
    /// The process's stdin is kept open for attach clients (else it is /dev/null).
    pub stdin: bool,
    /// The first attach client holding stdin closes it when it detaches.
    pub stdin_once: bool,
}

impl ShimArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "run".to_owned(),
            "--id".to_owned(),
            self.id.clone(),
            "--dir".to_owned(),
            self.container_dir.display().to_string(),
            "--state-root".to_owned(),
            self.libcontainer_root.display().to_string(),
            "--log".to_owned(),
            self.log_path.display().to_string(),
        ];
        if let Some(m) = &self.memory_cgroup {
            v.push("--memory-cgroup".to_owned());
            v.push(m.display().to_string());
        }
        for (set, flag) in
            [(self.tty, "--tty"), (self.stdin, "--stdin"), (self.stdin_once, "--stdin-once")]
        {
            if set {
                v.push(flag.to_owned());
            }
        }
        v
    }

    fn parse(args: &[String]) -> Result<Self, String> {
        let mut id = None;
        let mut dir = None;
        let mut root = None;
        let mut log = None;
        let mut memory_cgroup = None;
        let (mut tty, mut stdin, mut stdin_once) = (false, false, false);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            match flag.as_str() {
                "--tty" => tty = true,
                "--stdin" => stdin = true,
                "--stdin-once" => stdin_once = true,
                _ => {}
            }
            if matches!(flag.as_str(), "--tty" | "--stdin" | "--stdin-once") {
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--id" => id = Some(value.clone()),
                "--dir" => dir = Some(PathBuf::from(value)),
                "--state-root" => root = Some(PathBuf::from(value)),
                "--log" => log = Some(PathBuf::from(value)),
                "--memory-cgroup" => memory_cgroup = Some(PathBuf::from(value)),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(ShimArgs {
            id: id.ok_or("--id is required")?,
            container_dir: dir.ok_or("--dir is required")?,
            libcontainer_root: root.ok_or("--state-root is required")?,
            log_path: log.ok_or("--log is required")?,
            memory_cgroup,
            tty,
            stdin,
            stdin_once,
        })
    }
}

/// Entry point of `rudder shim <run|exec> ...`; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("run") => match ShimArgs::parse(&args[1..]) {
            Ok(a) => run(&a),
            Err(e) => {
                eprintln!("rudder shim: {e}");
                2
            }
        },
        Some("exec") => crate::exec::helper_main(&args[1..]),
        Some("bare") => bare(&args[1..]),
        _ => {
            eprintln!("usage: rudder shim run|exec ...");
            2
        }
    }
}

/// `bare --bundle B --id ID --state-root R`: libcontainer's create + start of a bundle and
/// nothing else (no logs, no supervision); prints the pid and exits. The runtime benchmark's
/// baseline.
fn bare(args: &[String]) -> i32 {
    let get =
        |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let (Some(bundle), Some(id), Some(root)) = (get("--bundle"), get("--id"), get("--state-root"))
    else {
        eprintln!("usage: rudder shim bare --bundle B --id ID --state-root R");
        return 2;
    };
    let devnull = |_| File::options().read(true).write(true).open("/dev/null").map(OwnedFd::from);
    let (Ok(i), Ok(o), Ok(e)) = (devnull(0), devnull(1), devnull(2)) else {
        eprintln!("bare start: cannot open /dev/null");
        return 1;
    };
    let result = ContainerBuilder::new(id, SyscallType::default())
        .with_root_path(root)
        .map(|b| b.with_stdin(i).with_stdout(o).with_stderr(e))
        .and_then(|b| b.as_init(bundle).with_systemd(false).with_detach(true).build())
        .and_then(|mut c| c.start().map(|_| c.pid()));
    match result {
        Ok(pid) => {
            println!("{}", pid.map(|p| p.as_raw()).unwrap_or(0));
            0
        }
        Err(e) => {
            eprintln!("bare start: {e}");
            1
        }
    }
}

fn say(line: &serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn run(args: &ShimArgs) -> i32 {
    // Our own session: no terminal signals from the agent's, and we outlive it.
    let _ = nix::unistd::setsid();
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("shim: set_child_subreaper: {e}");
    }
    match start(args) {
        Ok(running) => {
            say(&serde_json::json!({ "pid": running.pid.as_raw() }));
            supervise(args, running)
        }
        Err(message) => {
            eprintln!("shim: {message}");
            let _ = write_json(
                &args.container_dir.join("exit.json"),
                &ExitRecord {
                    exit_code: 128,
                    finished_at_ns: now_ns(),
                    reason: "StartError".into(),
                    message: message.clone(),
                },
            );
            cleanup_libcontainer(&args.libcontainer_root, &args.id);
            say(&serde_json::json!({ "error": message }));
            1
        }
    }
}

struct Running {
    pid: Pid,
    io: ContainerIo,
    attach: Option<UnixListener>,
}

fn start(args: &ShimArgs) -> Result<Running, String> {
    let dir = ShortDir::open(&args.container_dir)
        .map_err(|e| format!("opening {}: {e}", args.container_dir.display()))?;
    // Listening before the process starts: an attach can follow the start at once. Without
    // it the container still runs (no attach, logs only).
    let attach = dir.listen(ATTACH_SOCKET).map_err(|e| eprintln!("shim: attach socket: {e}")).ok();
    let builder = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.libcontainer_root)
        .map_err(|e| format!("libcontainer root: {e}"))?;
    let mut console = None;
    let mut kept = None;
    let builder = if args.tty {
        let listener = dir.listen(CONSOLE_SOCKET).map_err(|e| format!("console socket: {e}"))?;
        console = Some(listener);
        builder.with_console_socket(Some(args.container_dir.join(CONSOLE_SOCKET)))
    } else {
        let (out_r, out_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        let stdin: OwnedFd = if args.stdin {
            let (in_r, in_w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
            kept = Some((out_r, err_r, Some(File::from(in_w))));
            in_r
        } else {
            kept = Some((out_r, err_r, None));
            File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?.into()
        };
        builder.with_stdin(stdin).with_stdout(out_w).with_stderr(err_w)
    };
    crate::sys::default_signals();
    let built = builder
        .as_init(args.container_dir.join("bundle"))
        .with_systemd(false)
        .with_detach(true)
        .build();
    crate::sys::ignore_sigpipe();
    let mut container = built.map_err(|e| format!("creating the container: {e}"))?;
    let io = match (console, kept) {
        (Some(listener), _) => {
            let master = sockets::receive_fd(&listener, CONSOLE_TIMEOUT)
                .map_err(|e| format!("receiving the container's terminal: {e}"))?;
            drop(listener);
            let _ = fs::remove_file(dir.path(CONSOLE_SOCKET));
            let master = File::from(master);
            let clone = |f: &File| f.try_clone().map_err(|e| format!("terminal: {e}"));
            ContainerIo {
                stdout: clone(&master)?,
                stderr: None,
                stdin: if args.stdin { Some(clone(&master)?) } else { None },
                tty: Some(master),
                stdin_once: args.stdin_once,
            }
        }
        (None, Some((out_r, err_r, stdin))) => ContainerIo {
            stdout: File::from(out_r),
            stderr: Some(File::from(err_r)),
            stdin,
            tty: None,
            stdin_once: args.stdin_once,
        },
        (None, None) => return Err("no stdio for the container".to_owned()),
    };
    container.start().map_err(|e| format!("starting the container: {e}"))?;
    let pid = container
        .pid()
        .map(|p| Pid::from_raw(p.as_raw()))
        .ok_or_else(|| "the container has no pid after start".to_owned())?;
    write_json(
        &args.container_dir.join("started.json"),
        &StartedRecord {
            shim_pid: std::process::id() as i32,
            pid: pid.as_raw(),
            started_at_ns: now_ns(),
        },
    )
    .map_err(|e| format!("writing started.json: {e}"))?;
    Ok(Running { pid, io, attach })
}

/// Copies output into the log (and to attached clients) until the process exited and its
/// output drained, then records the exit.
fn supervise(args: &ShimArgs, running: Running) -> i32 {
    // Signals are blocked only now, after the container started: a blocked mask would be
    // inherited by the container's process. SIGTERM/SIGINT/SIGHUP are swallowed: the shim
    // ends when its container does, not when someone tidies up processes.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    if let Err(e) = mask.thread_block() {
        eprintln!("shim: blocking signals: {e}");
    }
    let sfd = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shim: signalfd: {e}");
            return 1;
        }
    };
    let log = match OpenOptions::new().create(true).append(true).open(&args.log_path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("shim: opening log {}: {e}", args.log_path.display());
            return 1;
        }
    };
    let mut log = BufWriter::new(log);
    let pid = running.pid;
    let status = Pump::new(running.io, running.attach, &mut log).run(&sfd, || reap(pid));
    let _ = fs::remove_file(args.container_dir.join(ATTACH_SOCKET));
    let exit_code = exit_code(status);
    let oom = args.memory_cgroup.as_deref().is_some_and(oom_killed);
    let reason = if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    cleanup_libcontainer(&args.libcontainer_root, &args.id);
    if let Err(e) = write_json(
        &args.container_dir.join("exit.json"),
        &ExitRecord {
            exit_code,
            finished_at_ns: now_ns(),
            reason: reason.to_owned(),
            message: String::new(),
        },
    ) {
        eprintln!("shim: writing exit.json: {e}");
        return 1;
    }
    0
}

/// Reaps every exited child (we are a subreaper: orphans of the container land here);
/// returns the container process's status once it is among them.
fn reap(pid: Pid) -> Option<WaitStatus> {
    let mut found = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(s) => {
                if s.pid() == Some(pid)
                    && matches!(s, WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                {
                    found = Some(s);
                }
            }
        }
    }
}

/// Whether the kernel's OOM killer fired in this memory cgroup (v1 `memory.oom_control`,
/// v2 `memory.events`, both carry an `oom_kill` counter).
fn oom_killed(dir: &Path) -> bool {
    ["memory.oom_control", "memory.events"].iter().any(|f| {
        fs::read_to_string(dir.join(f)).is_ok_and(|s| {
            s.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

/// Deletes libcontainer's state and cgroups for a container that no longer runs.
pub fn cleanup_libcontainer(root: &Path, id: &str) {
    let dir = root.join(id);
    if !dir.exists() {
        return;
    }
    match libcontainer::container::Container::load(dir.clone()) {
        Ok(mut c) => {
            if let Err(e) = c.delete(true) {
                eprintln!("shim: deleting container state: {e}");
                let _ = fs::remove_dir_all(&dir);
            }
        }
        Err(_) => {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}
