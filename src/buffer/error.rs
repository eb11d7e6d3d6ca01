//! The error type of every fallible [`EvBuffer`](super::EvBuffer) operation.

use std::error::Error;
use std::fmt;
use std::io;

/// Why an [`EvBuffer`](super::EvBuffer) operation failed.
///
/// libevent reports these conditions as `-1` (or `NULL`); here each has its own
/// variant. Every operation that returns this error leaves the buffer exactly as it
/// was before the call.
///
/// The type converts into [`io::Error`] with a deliberate [`io::ErrorKind`], so it can
/// travel through `std::io` and `tokio::io` interfaces; each variant below names its
/// kind, as do the methods' `# Errors` sections.
#[derive(Debug)]
#[non_exhaustive]
pub enum EvBufferError {
    /// The front of the buffer is frozen: nothing may be removed or prepended
    /// (see [`EvBuffer::freeze`](super::EvBuffer::freeze)). Kind
    /// [`io::ErrorKind::WouldBlock`].
    FrontFrozen,
    /// The end of the buffer is frozen: nothing may be appended
    /// (see [`EvBuffer::freeze`](super::EvBuffer::freeze)). Kind
    /// [`io::ErrorKind::WouldBlock`].
    EndFrozen,
    /// A position or length points past the data the buffer holds (for
    /// [`add_file`](super::EvBuffer::add_file), the file). Kind
    /// [`io::ErrorKind::InvalidInput`].
    OutOfRange {
        /// The offset or length that was asked for.
        requested: usize,
        /// How many bytes the buffer held (from the position used, where one was used).
        available: usize,
    },
    /// A [`Position`](super::Position) was made before the buffer was last modified.
    /// Kind [`io::ErrorKind::InvalidInput`]. (A position is not tied to its buffer:
    /// one made on another buffer is caught only if that buffer's modification count
    /// or length tells it apart.)
    StalePosition,
    /// A line is longer than the limit given to
    /// [`readln_max`](super::EvBuffer::readln_max) or a [`LineReader`](super::LineReader).
    /// Kind [`io::ErrorKind::InvalidData`].
    LineTooLong {
        /// The limit, in bytes, not counting the terminator.
        max: usize,
        /// The length of the line found so far (at least this long).
        len: usize,
    },
    /// A size so large that the memory for it cannot be had. Kind
    /// [`io::ErrorKind::OutOfMemory`].
    TooLarge {
        /// The number of bytes that was asked for.
        requested: usize,
    },
    /// [`Reservation::commit`](super::Reservation::commit) was asked to commit more
    /// bytes than were reserved. Kind [`io::ErrorKind::InvalidInput`].
    CommitTooLarge {
        /// The number of bytes passed to `commit`.
        requested: usize,
        /// The number of bytes that had been reserved.
        reserved: usize,
    },
    /// No callback with this id is registered. Kind [`io::ErrorKind::InvalidInput`].
    CallbackNotFound,
    /// Reading a file segment added with [`add_file`](super::EvBuffer::add_file) failed
    /// (or, in `add_file` itself, reading the file's size or first byte). Kind: the
    /// read error's.
    Io(io::Error),
}

impl fmt::Display for EvBufferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrontFrozen => f.write_str("the front of the buffer is frozen"),
            Self::EndFrozen => f.write_str("the end of the buffer is frozen"),
            Self::OutOfRange {
                requested,
                available,
            } => write!(
                f,
                "{requested} is out of range: the buffer holds {available} bytes there"
            ),
            Self::StalePosition => {
                f.write_str("position is stale: the buffer was modified after it was made")
            }
            Self::LineTooLong { max, len } => {
                write!(f, "line of at least {len} bytes exceeds the limit of {max}")
            }
            Self::TooLarge { requested } => {
                write!(f, "cannot allocate {requested} bytes of buffer space")
            }
            Self::CommitTooLarge {
                requested,
                reserved,
            } => write!(
                f,
                "cannot commit {requested} bytes: only {reserved} were reserved"
            ),
            Self::CallbackNotFound => f.write_str("no such buffer callback"),
            Self::Io(e) => write!(f, "reading a file segment failed: {e}"),
        }
    }
}

impl Error for EvBufferError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for EvBufferError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<EvBufferError> for io::Error {
    fn from(e: EvBufferError) -> Self {
        let kind = match &e {
            EvBufferError::Io(inner) => return io::Error::new(inner.kind(), e),
            EvBufferError::FrontFrozen | EvBufferError::EndFrozen => io::ErrorKind::WouldBlock,
            EvBufferError::TooLarge { .. } => io::ErrorKind::OutOfMemory,
            EvBufferError::LineTooLong { .. } => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}
