//! Unix sockets in container directories. Their paths can be longer than the 108 bytes a
//! socket address holds, so they are reached through `/proc/self/fd/<dir fd>/<name>`.

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// The attach socket of a running container's shim, in its container directory.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// Where libcontainer hands the shim the terminal it made inside the container.
pub const CONSOLE_SOCKET: &str = "console.sock";

/// A directory held open so that names in it can be reached by a short path.
pub struct ShortDir {
    dir: File,
}

impl ShortDir {
    pub fn open(dir: &Path) -> io::Result<Self> {
        Ok(ShortDir { dir: File::open(dir)? })
    }

    /// A path to `name` in the directory, short whatever the directory's own path.
    pub fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.dir.as_raw_fd()))
    }

    /// Binds a listening socket at `name`, replacing a stale one.
    pub fn listen(&self, name: &str) -> io::Result<UnixListener> {
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        UnixListener::bind(path)
    }

    pub fn connect(&self, name: &str) -> io::Result<UnixStream> {
        UnixStream::connect(self.path(name))
    }
}

/// Accepts one connection within `timeout` and receives the file descriptor it carries
/// (SCM_RIGHTS): how libcontainer passes the pty master of a container's terminal.
pub fn receive_fd(listener: &UnixListener, timeout: Duration) -> io::Result<OwnedFd> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::from(ms)).map_err(io::Error::from)? == 0 {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "no terminal from the container"));
    }
    let (stream, _) = listener.accept()?;
    stream.set_read_timeout(Some(timeout))?;
    let mut name = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty())
        .map_err(io::Error::from)?;
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg
            && let Some(&fd) = fds.first()
        {
            return Ok(crate::sys::own_received_fd(fd));
        }
    }
    Err(io::Error::other("the console socket message carried no descriptor"))
}
