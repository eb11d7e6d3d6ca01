//! [`Error`]: why an operation on a [`BufferEvent`](super::BufferEvent) handle failed.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

use crate::buffer::EvBufferError;

/// Why an operation on a bufferevent handle failed: a small enum to match on, which
/// converts into [`io::Error`] (so `?` works in functions returning `io::Result`)
/// with the kind [`Error::kind`] names.
///
/// # Examples
///
/// ```
/// use tokio_bufferevent::bufferevent::{BufferEvent, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (a, _b) = BufferEvent::pair();
/// a.free();
/// a.closed().await;
/// match a.write_now(&b"late"[..]) {
///     Err(Error::Ended) => {} // nothing more can be sent
///     other => panic!("{other:?}"),
/// }
/// let as_io: std::io::Error = Error::Ended.into();
/// assert_eq!(as_io.kind(), std::io::ErrorKind::NotConnected);
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The bufferevent has ended: freed, closed, or stopped by a failure
    /// ([`io::ErrorKind::NotConnected`]).
    Ended,
    /// The write side was shut down or failed: nothing more can be sent
    /// ([`io::ErrorKind::BrokenPipe`]).
    WriteClosed,
    /// The last connect failed, and no other is under way; the error says why (its
    /// kind is this error's kind). From `connected()`; and from the futures that wait
    /// for input or for the output to move when that connect left no transport.
    ConnectFailed(Arc<io::Error>),
    /// A buffer operation failed and left the buffer as it was: a buffer handed to
    /// the bufferevent could not be taken (its front is frozen;
    /// [`io::ErrorKind::InvalidInput`]), or a read helper found a file segment in the
    /// input that cannot be read ([`EvBufferError::Io`]; the read error's kind).
    Buffer(EvBufferError),
    /// The peer finished before what a read asked for arrived; what did arrive is
    /// still in the input ([`io::ErrorKind::UnexpectedEof`]).
    Eof,
    /// Reading failed: the transport's error (its kind).
    ReadFailed(Arc<io::Error>),
    /// The read timeout expired, which disabled READ (a read's error; enable READ to
    /// read on), or the write timeout, which disabled WRITE with the output above the
    /// high watermark (`writable`'s; enable WRITE to go on)
    /// ([`io::ErrorKind::TimedOut`]).
    TimedOut,
    /// What a read asked for cannot fit: longer than its limit, or than the read high
    /// watermark lets the input hold. Nothing was removed
    /// ([`io::ErrorKind::InvalidData`]).
    TooLong {
        /// The most bytes that could be had.
        max: usize,
    },
}

impl Error {
    /// The [`io::ErrorKind`] this error converts to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Self::Ended => io::ErrorKind::NotConnected,
            Self::WriteClosed => io::ErrorKind::BrokenPipe,
            Self::ConnectFailed(e) | Self::ReadFailed(e) => e.kind(),
            Self::Buffer(EvBufferError::Io(e)) => e.kind(),
            Self::Buffer(_) => io::ErrorKind::InvalidInput,
            Self::Eof => io::ErrorKind::UnexpectedEof,
            Self::TimedOut => io::ErrorKind::TimedOut,
            Self::TooLong { .. } => io::ErrorKind::InvalidData,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ended => f.write_str("the bufferevent has ended"),
            Self::WriteClosed => f.write_str("the bufferevent's write side is closed"),
            Self::ConnectFailed(e) => write!(f, "the connect failed: {e}"),
            Self::Buffer(EvBufferError::Io(e)) => write!(f, "the input cannot be read: {e}"),
            Self::Buffer(e) => write!(f, "the buffer cannot be taken: {e}"),
            Self::Eof => f.write_str("the peer finished before the data asked for arrived"),
            Self::ReadFailed(e) => write!(f, "reading failed: {e}"),
            Self::TimedOut => f.write_str("the timeout expired"),
            Self::TooLong { max } => write!(f, "more than {max} bytes would be needed"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::ConnectFailed(e) | Self::ReadFailed(e) => Some(&**e),
            Self::Buffer(e) => Some(e),
            Self::Ended | Self::WriteClosed | Self::Eof | Self::TimedOut | Self::TooLong { .. } => {
                None
            }
        }
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        io::Error::new(error.kind(), error)
    }
}

/// The error of a connect that ran out of the builder's connect timeout: the event
/// callback hears `ERROR | TIMEOUT` for it (D-C1), and `ERROR` alone for any other
/// failed connect, whatever its kind (B-33), such as an OS `ETIMEDOUT`.
#[derive(Debug)]
pub(crate) struct ConnectTimedOut(pub(crate) std::time::Duration);

impl ConnectTimedOut {
    /// Whether `error` is one.
    pub(crate) fn is(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|inner| inner.is::<Self>())
    }
}

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect timed out after {:?}", self.0)
    }
}

impl StdError for ConnectTimedOut {}
