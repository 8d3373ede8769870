//! The shim's I/O loop: the container's output goes into the CRI log and to every attached
//! client that asked for it; attached clients' stdin goes into the container (a pipe, or the
//! terminal); terminal resizes reach the pty. It runs until the process has exited and its
//! output has drained, then tells attached clients the exit code.
//!
//! One thread, one `poll`: every socket and the stdin sink are non-blocking, each client has
//! a bounded backlog (a client that cannot keep up is disconnected rather than slowing the
//! container down), and stdin backlog stops reading from clients until it drains.

use std::fs::File;
use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant, SystemTime};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::WaitStatus;

use rudder_runtime::logs::{LineSplitter, Stream};

use crate::frames::{self, Decoder, Frame};

/// Attached clients at once; more are refused (closed at once).
const MAX_CLIENTS: usize = 16;
/// Output queued for one client before it is disconnected as too slow.
const MAX_CLIENT_BACKLOG_BYTES: usize = 4 << 20;
/// Stdin queued for the container before clients stop being read.
const MAX_STDIN_BACKLOG_BYTES: usize = 1 << 20;
/// How long attached clients get to take the last output and the exit code.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// The container's side of its stdio, as the shim holds it.
pub(crate) struct ContainerIo {
    /// The stdout pipe, or the terminal's master side with a TTY.
    pub stdout: File,
    /// The stderr pipe; None with a TTY (the terminal merges it into stdout).
    pub stderr: Option<File>,
    /// Where stdin goes: a pipe, or the terminal's master side; None without stdin.
    pub stdin: Option<File>,
    /// The terminal's master side, for resizes.
    pub tty: Option<File>,
    pub stdin_once: bool,
}

struct Client {
    sock: UnixStream,
    decoder: Decoder,
    out: Vec<u8>,
    /// (stdin, stdout, stderr) once the client said hello.
    wants: Option<(bool, bool, bool)>,
    stdin_done: bool,
    closed: bool,
}

enum Token {
    Signal,
    Output(usize),
    Listener,
    Client(usize),
    Stdin,
}

fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK))
        .map_err(io::Error::from)?;
    Ok(())
}

pub(crate) struct Pump<'a> {
    outputs: [Option<(File, LineSplitter, u8)>; 2],
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    /// Close the container's stdin once `stdin_buf` drained (stdinOnce).
    close_stdin: bool,
    stdin_once: bool,
    tty: Option<File>,
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    log: &'a mut BufWriter<File>,
}

impl<'a> Pump<'a> {
    pub(crate) fn new(
        io: ContainerIo,
        listener: Option<UnixListener>,
        log: &'a mut BufWriter<File>,
    ) -> Self {
        if let Some(s) = &io.stdin
            && let Err(e) = set_nonblocking(s)
        {
            eprintln!("shim: stdin non-blocking: {e}");
        }
        if let Some(l) = &listener
            && let Err(e) = l.set_nonblocking(true)
        {
            eprintln!("shim: attach socket non-blocking: {e}");
        }
        Pump {
            outputs: [
                Some((io.stdout, LineSplitter::new(Stream::Stdout), frames::STDOUT)),
                io.stderr.map(|f| (f, LineSplitter::new(Stream::Stderr), frames::STDERR)),
            ],
            stdin: io.stdin,
            stdin_buf: Vec::new(),
            close_stdin: false,
            stdin_once: io.stdin_once,
            tty: io.tty,
            listener,
            clients: Vec::new(),
            log,
        }
    }

    /// Runs until `reap` reported the exit and all output drained; returns the status.
    pub(crate) fn run(
        mut self,
        sfd: &SignalFd,
        mut reap: impl FnMut() -> Option<WaitStatus>,
    ) -> Option<WaitStatus> {
        let mut status = reap();
        let mut buf = vec![0u8; 32 * 1024];
        while status.is_none() || self.outputs.iter().any(Option::is_some) {
            let ready = match self.wait(sfd) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("shim: poll: {e}");
                    break;
                }
            };
            for (token, flags) in ready {
                match token {
                    Token::Signal => {
                        while let Ok(Some(_)) = sfd.read_signal() {}
                        let s = reap();
                        if status.is_none() {
                            status = s;
                        }
                    }
                    Token::Output(i) => self.read_output(i, &mut buf),
                    Token::Listener => self.accept(),
                    Token::Client(i) => self.service_client(i, flags, &mut buf),
                    Token::Stdin => self.write_stdin(),
                }
            }
            self.tidy();
            let _ = self.log.flush();
        }
        let _ = self.log.flush();
        self.finish(status);
        status
    }

    fn wait(&self, sfd: &SignalFd) -> io::Result<Vec<(Token, PollFlags)>> {
        let mut tokens = vec![Token::Signal];
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        for (i, o) in self.outputs.iter().enumerate() {
            if let Some((f, _, _)) = o {
                tokens.push(Token::Output(i));
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
        }
        if let Some(l) = &self.listener {
            tokens.push(Token::Listener);
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        let read_clients = self.stdin_buf.len() < MAX_STDIN_BACKLOG_BYTES;
        for (i, c) in self.clients.iter().enumerate() {
            let mut flags = PollFlags::empty();
            if read_clients {
                flags |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            tokens.push(Token::Client(i));
            fds.push(PollFd::new(c.sock.as_fd(), flags));
        }
        if let Some(s) = &self.stdin
            && !self.stdin_buf.is_empty()
        {
            tokens.push(Token::Stdin);
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
        }
        loop {
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(tokens
            .into_iter()
            .zip(fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())))
            .filter(|(_, r)| !r.is_empty())
            .collect())
    }

    fn read_output(&mut self, i: usize, buf: &mut [u8]) {
        let now = SystemTime::now();
        let Some((file, splitter, kind)) = self.outputs[i].as_mut() else { return };
        match file.read(buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            // EIO: the terminal's last slave side closed.
            Ok(0) | Err(_) => {
                let _ = splitter.finish(now, self.log);
                self.outputs[i] = None;
            }
            Ok(n) => {
                let _ = splitter.feed(&buf[..n], now, self.log);
                let kind = *kind;
                let wanted = |w: (bool, bool, bool)| {
                    if kind == frames::STDOUT { w.1 } else { w.2 }
                };
                for c in &mut self.clients {
                    if c.closed || !c.wants.is_some_and(wanted) {
                        continue;
                    }
                    frames::encode_raw(kind, &buf[..n], &mut c.out);
                    if c.out.len() > MAX_CLIENT_BACKLOG_BYTES {
                        eprintln!("shim: an attached client fell behind; disconnecting it");
                        c.closed = true;
                    }
                }
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else { return };
        loop {
            match listener.accept() {
                Ok((sock, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || sock.set_nonblocking(true).is_err() {
                        continue; // dropped: closed
                    }
                    self.clients.push(Client {
                        sock,
                        decoder: Decoder::default(),
                        out: Vec::new(),
                        wants: None,
                        stdin_done: false,
                        closed: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn service_client(&mut self, i: usize, flags: PollFlags, buf: &mut [u8]) {
        if flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            let c = &mut self.clients[i];
            match c.sock.read(buf) {
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => c.closed = true,
                Ok(n) => {
                    c.decoder.feed(&buf[..n]);
                    loop {
                        match self.clients[i].decoder.next_frame() {
                            Ok(Some(frame)) => self.on_frame(i, frame),
                            Ok(None) => break,
                            Err(e) => {
                                eprintln!("shim: attach client: {e}");
                                self.clients[i].closed = true;
                                break;
                            }
                        }
                    }
                }
            }
        }
        let c = &mut self.clients[i];
        if !c.closed && flags.contains(PollFlags::POLLOUT) && !c.out.is_empty() {
            match c.sock.write(&c.out) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => c.closed = true,
            }
        }
    }

    fn on_frame(&mut self, i: usize, frame: Frame) {
        let c = &mut self.clients[i];
        match frame {
            Frame::Hello { stdin, stdout, stderr } if c.wants.is_none() => {
                c.wants = Some((stdin && self.stdin.is_some(), stdout, stderr));
            }
            Frame::Stdin(data) => {
                if c.wants.is_some_and(|w| w.0) && !c.stdin_done && !self.close_stdin {
                    self.stdin_buf.extend_from_slice(&data);
                }
            }
            Frame::CloseStdin => {
                if c.wants.is_some_and(|w| w.0) && !c.stdin_done {
                    c.stdin_done = true;
                    if self.stdin_once {
                        self.close_stdin = true;
                    }
                }
            }
            Frame::Resize { width, height } => {
                if let Some(tty) = &self.tty
                    && let Err(e) = crate::sys::set_window_size(tty, width, height)
                {
                    eprintln!("shim: resizing the terminal: {e}");
                }
            }
            other => {
                eprintln!("shim: unexpected frame from an attach client: {other:?}");
                c.closed = true;
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(stdin) = &mut self.stdin else { return };
        match stdin.write(&self.stdin_buf) {
            Ok(n) => {
                self.stdin_buf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                // The process closed its stdin (EPIPE): nothing more can go there.
                self.stdin = None;
                self.stdin_buf.clear();
            }
        }
    }

    /// Drops closed clients (a client holding stdin detaching counts as closing it under
    /// stdinOnce) and closes the container's stdin once asked to and drained.
    fn tidy(&mut self) {
        let stdin_once = self.stdin_once;
        let mut close = false;
        self.clients.retain(|c| {
            if c.closed && stdin_once && c.wants.is_some_and(|w| w.0) {
                close = true;
            }
            !c.closed
        });
        if close {
            self.close_stdin = true;
        }
        if self.close_stdin && self.stdin_buf.is_empty() && self.tty.is_none() {
            // A pipe closes (EOF for the process); a terminal stays, it only stops taking
            // input (closing the master side would hang the process up).
            self.stdin = None;
        }
    }

    /// Sends the exit code to attached clients and gives them a moment to read the rest.
    fn finish(&mut self, status: Option<WaitStatus>) {
        // New attaches are refused from now on, not left waiting.
        self.listener = None;
        let code = exit_code(status);
        let deadline = Instant::now() + FINAL_FLUSH;
        for c in &mut self.clients {
            if c.closed {
                continue;
            }
            frames::encode(&Frame::Exit(code), &mut c.out);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero()
                || c.sock.set_nonblocking(false).is_err()
                || c.sock.set_write_timeout(Some(left)).is_err()
            {
                continue;
            }
            let _ = c.sock.write_all(&c.out);
        }
        self.clients.clear();
    }
}

/// The exit code of a process status: its code, or 128 + the signal that killed it.
pub(crate) fn exit_code(status: Option<WaitStatus>) -> i32 {
    match status {
        Some(WaitStatus::Exited(_, code)) => code,
        Some(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        _ => 255,
    }
}
