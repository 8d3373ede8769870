//! The few kernel calls nix offers only as `unsafe` functions. This is the one module of
//! the workspace allowed unsafe code; every block says why it is sound.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::{SigHandler, Signal, signal};

/// Puts every signal's disposition back to the default, for a process about to create a
/// container: an ignored signal stays ignored across exec, and Rust programs ignore SIGPIPE
/// (so would every container, and whatever the agent was started ignoring, like SIGHUP under
/// nohup). [`ignore_sigpipe`] restores this process's own setting afterwards.
pub(crate) fn default_signals() {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: no handler function is installed, only a disposition, so no code can run
        // in signal context.
        let _ = unsafe { signal(sig, SigHandler::SigDfl) };
    }
}

/// Ignores SIGPIPE again (writes to a closed pipe or socket return EPIPE instead).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: as above, a disposition only.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

/// Sets a terminal's window size (the kernel then signals SIGWINCH to its foreground
/// process group).
pub(crate) fn set_window_size(fd: &impl AsRawFd, width: u16, height: u16) -> io::Result<()> {
    let ws = nix::pty::Winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which outlives the call;
    // a bad descriptor is an error return, not undefined behaviour.
    let rc = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Takes ownership of a descriptor the kernel just installed (received with SCM_RIGHTS).
pub(crate) fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: SCM_RIGHTS installed `fd` in this process's table for this caller alone;
    // nothing else owns or closes it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
