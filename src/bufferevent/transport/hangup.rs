//! Noticing that a TCP peer hung up while the bufferevent is not reading from it.
//!
//! A bufferevent paused at its read high watermark (or by a filter over it), or with
//! READ disabled while it holds input, issues no read, so on its own it would never
//! learn that its peer reset the connection or closed it: a dead peer would keep its
//! descriptor for as long as the application holds its input. While paused, a TCP
//! stream is therefore watched through a second
//! registration of the same socket (a duplicated descriptor), which can wait for the
//! socket's state to change without taking the stream's own readiness away and
//! without reading a byte:
//!
//! - a reset (or any pending socket error) is reported at once as `READING | ERROR`
//!   with the error;
//! - a FIN is reported as `READING | EOF` only when the kernel holds no unread data
//!   from the peer: otherwise that data, and then the EOF, come when reading resumes,
//!   as they would have anyway;
//! - data already in the input buffer is never touched.
//!
//! Other transports cannot be watched this way; they are not. Neither is a
//! bufferevent that has READ disabled and holds no input (one that never reads, as
//! by default), so it costs no second descriptor.

use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// What the watch saw.
#[derive(Debug)]
pub(crate) enum Hangup {
    /// The connection was reset, or failed otherwise.
    Error(io::Error),
    /// The peer closed its side, and nothing of what it sent is left unread.
    Eof,
}

/// A watch in progress; it owns its registration, which ends when it is dropped.
pub(crate) type Watch = Pin<Box<dyn Future<Output = Hangup> + Send>>;

/// Starts watching `tcp`; `None` if the socket cannot be duplicated (out of
/// descriptors, say), in which case nothing is watched.
pub(crate) fn watch(tcp: &TcpStream) -> Option<Watch> {
    let fd = match tcp.as_fd().try_clone_to_owned() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::debug!(error = %e, "cannot watch a paused socket");
            return None;
        }
    };
    let watcher = match TcpStream::from_std(std::net::TcpStream::from(fd)) {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::debug!(error = %e, "cannot watch a paused socket");
            return None;
        }
    };
    Some(Box::pin(wait_for_hangup(watcher)))
}

async fn wait_for_hangup(watcher: TcpStream) -> Hangup {
    loop {
        let ready = match watcher.ready(Interest::READABLE).await {
            Ok(ready) => ready,
            Err(e) => return Hangup::Error(e),
        };
        match watcher.take_error() {
            Ok(Some(e)) | Err(e) => return Hangup::Error(e),
            Ok(None) => {}
        }
        if ready.is_read_closed() {
            let mut byte = [0u8; 1];
            return match watcher.peek(&mut byte).await {
                Ok(0) => Hangup::Eof,
                // Data before the FIN: it and the EOF come when reading resumes.
                // Nothing else can change now but a reset, which that read reports.
                Ok(_) => std::future::pending().await,
                Err(e) => Hangup::Error(e),
            };
        }
        // New data only: wait for the next change. (Clearing the readiness of this
        // registration leaves the stream's own untouched.)
        let cleared = watcher.try_io(Interest::READABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
        debug_assert!(cleared.is_err());
    }
}
