//! What a handle can know of a transport without asking the task.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// What a handle can tell about the transport without asking the task.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TransportInfo {
    #[cfg(unix)]
    pub(crate) fd: Option<std::os::fd::RawFd>,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) peer: Option<SocketAddr>,
}

impl TransportInfo {
    pub(crate) fn of_tcp(stream: &TcpStream) -> Self {
        Self {
            #[cfg(unix)]
            fd: Some(std::os::fd::AsRawFd::as_raw_fd(stream)),
            local: stream.local_addr().ok(),
            peer: stream.peer_addr().ok(),
        }
    }
}
