//! Running the external tools this crate drives (`ip`, `nft`, `nsenter`) with a timeout,
//! optionally inside a given network namespace.
//!
//! A command runs to completion on a helper thread (which feeds its stdin and collects its
//! output); the caller waits on a channel with a deadline and kills the child when the
//! deadline passes. The locale is forced to `C` so error messages can be matched.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a killed child may take to be reaped before we give up waiting for it.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` did not finish within {timeout_ms} ms and was killed")]
    Timeout { command: String, timeout_ms: u128 },
    #[error("waiting for `{command}`: {source}")]
    Wait {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: ExitStatus, stderr: String },
}

/// What a finished command printed, and how it exited.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// One external command: a program, its arguments, optional stdin, and optionally the
/// network namespace (a netns file) to run it in (through `nsenter --net=FILE`).
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        Cmd { program: program.into(), args: Vec::new(), stdin: None }
    }

    /// `program args...` run inside the netns held by `netns` (none: the current one).
    pub fn in_netns(netns: Option<&Path>, program: &str) -> Self {
        match netns {
            None => Cmd::new(program),
            Some(path) => {
                let mut net = OsString::from("--net=");
                net.push(path);
                let mut cmd = Cmd::new("nsenter");
                cmd.args.push(net);
                cmd.args.push("--".into());
                cmd.args.push(program.into());
                cmd
            }
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The command line, for messages.
    pub fn display(&self) -> String {
        let mut text = self.program.to_string_lossy().into_owned();
        for arg in &self.args {
            text.push(' ');
            text.push_str(&arg.to_string_lossy());
        }
        text
    }

    /// Runs the command to completion (any exit status) within `timeout`.
    pub fn output(&self, timeout: Duration) -> Result<Output, CommandError> {
        let command = self.display();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env("LC_ALL", "C")
            .stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CommandError::Spawn { command: command.clone(), source })?;
        let pid = child.id();
        let stdin_pipe = child.stdin.take();
        let input = self.stdin.clone();
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        std::thread::spawn(move || {
            if let (Some(mut pipe), Some(input)) = (stdin_pipe, input) {
                // A child that exits without reading its input gives EPIPE here; its exit
                // status tells the story.
                let _ = pipe.write_all(&input);
            }
            let _ = done_tx.send(child.wait_with_output());
        });
        let result = match done_rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(_) => {
                // The child is reaped only by the helper thread, right before it sends; a
                // timeout therefore almost surely finds it unreaped, so its pid is still
                // ours to signal.
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
                let _ = done_rx.recv_timeout(REAP_TIMEOUT);
                return Err(CommandError::Timeout { command, timeout_ms: timeout.as_millis() });
            }
        };
        let output = result.map_err(|source| CommandError::Wait { command, source })?;
        Ok(Output {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Runs the command and fails unless it exits with status 0.
    pub fn run(&self, timeout: Duration) -> Result<Output, CommandError> {
        let output = self.output(timeout)?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(CommandError::Failed {
                command: self.display(),
                status: output.status,
                stderr: output.stderr.trim().to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_collects_stdout_and_stdin_round_trips() {
        let out = Cmd::new("cat").stdin("hello\n").run(Duration::from_secs(10)).unwrap();
        assert_eq!(out.stdout, "hello\n");
    }

    #[test]
    fn failing_command_reports_status_and_stderr() {
        let err = Cmd::new("sh")
            .args(["-c", "echo broken >&2; exit 3"])
            .run(Duration::from_secs(10))
            .unwrap_err();
        match err {
            CommandError::Failed { status, stderr, .. } => {
                assert_eq!(status.code(), Some(3));
                assert_eq!(stderr, "broken");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn hung_command_is_killed_at_the_deadline() {
        // `sleep` never finishes within the deadline, whatever the machine's speed.
        let err = Cmd::new("sleep").arg("1000").run(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err:?}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = Cmd::new("/nonexistent/rudder-net-test").run(Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }), "{err:?}");
    }

    #[test]
    fn in_netns_wraps_with_nsenter() {
        let cmd = Cmd::in_netns(Some(Path::new("/run/netns/x")), "ip").arg("link");
        assert_eq!(cmd.display(), "nsenter --net=/run/netns/x -- ip link");
        assert_eq!(Cmd::in_netns(None, "ip").arg("link").display(), "ip link");
    }
}
