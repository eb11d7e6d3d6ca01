//! [`Accept`]: what a [`Listener`](super::Listener) accepts from, and how each accepted
//! stream becomes a bufferevent; binding TCP and Unix listeners.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::bufferevent::{BufferEvent, Builder, Transport};

/// A source of connections for a [`Listener`](super::Listener): a bound, listening
/// socket (`evconnlistener`'s file descriptor).
///
/// Implemented for Tokio's `TcpListener` and, on Unix, `UnixListener`; implement it
/// for any other kind of listening socket to serve it with a `Listener`.
///
/// A panic in an implementation is contained: in `poll_accept` it is an accept error
/// (logged, reported to the error callback, and backed off from), in `build` or
/// `start_detached` it fails that one connection (counted as failed). The listener
/// goes on either way.
pub trait Accept: Send + Sync + 'static {
    /// The connected stream an accept yields.
    type Stream: Transport;
    /// The address of a peer, and of the listener itself.
    type Addr: Clone + fmt::Debug + Send + Sync + 'static;

    /// Accepts one connection, as `TcpListener::poll_accept`.
    ///
    /// # Errors
    ///
    /// The errors of `accept(2)`; the listener sorts them (see
    /// [`Listener`](super::Listener#accept-errors)).
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Addr)>>;

    /// The address the listener is bound to.
    ///
    /// # Errors
    ///
    /// The error of `getsockname(2)`.
    fn local_addr(&self) -> io::Result<Self::Addr>;

    /// Starts the bufferevent of one accepted stream. The default is
    /// [`Builder::stream`].
    ///
    /// # Errors
    ///
    /// Whatever setting up the stream returns; the connection is then counted as
    /// failed and dropped.
    fn build<S: Send + 'static>(
        builder: Builder<S>,
        stream: Self::Stream,
    ) -> io::Result<BufferEvent<Self::Stream, S>> {
        Ok(builder.stream(stream))
    }

    /// Starts the bufferevent of one accepted stream whose handle nobody wants (the
    /// listener has no `started` callback). The default is [`build`](Self::build),
    /// dropping the handle; Tokio's listeners start it detached
    /// ([`Builder::tcp_detached`]), which saves the handles' shared state.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    fn start_detached<S: Send + 'static>(
        builder: Builder<S>,
        stream: Self::Stream,
    ) -> io::Result<()> {
        Self::build(builder, stream).map(drop)
    }
}

impl Accept for TcpListener {
    type Stream = TcpStream;
    type Addr = SocketAddr;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        TcpListener::poll_accept(self, cx)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }

    /// [`Builder::tcp`]: `TCP_NODELAY`, and the addresses kept for the handle.
    fn build<S: Send + 'static>(
        builder: Builder<S>,
        stream: TcpStream,
    ) -> io::Result<BufferEvent<TcpStream, S>> {
        builder.tcp(stream)
    }

    /// [`Builder::tcp_detached`].
    fn start_detached<S: Send + 'static>(builder: Builder<S>, stream: TcpStream) -> io::Result<()> {
        builder.tcp_detached(stream)
    }
}

#[cfg(unix)]
impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Addr)>> {
        tokio::net::UnixListener::poll_accept(self, cx)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::UnixListener::local_addr(self)
    }

    /// [`Builder::stream_detached`].
    fn start_detached<S: Send + 'static>(
        builder: Builder<S>,
        stream: Self::Stream,
    ) -> io::Result<()> {
        builder.stream_detached(stream);
        Ok(())
    }
}

/// Binds and listens on `addr` with `SO_REUSEADDR`, optionally `SO_REUSEPORT`, and
/// `backlog`.
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        socket.set_reuseport(true)?;
        #[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_REUSEPORT is not available on this platform",
        ));
    }
    socket.bind(addr)?;
    socket.listen(backlog)
}
