//! Positions inside a buffer (`struct evbuffer_ptr`).

use super::{EvBuffer, EvBufferError};

/// A byte offset into one [`EvBuffer`] that also remembers which chunk it falls in, so
/// searches and copies can resume from it without walking the chain again
/// (`struct evbuffer_ptr`).
///
/// Positions come from [`EvBuffer::position`], [`EvBuffer::search`] and friends. Any
/// modification of the buffer makes its positions stale: using one afterwards fails
/// with [`EvBufferError::StalePosition`] instead of pointing at the wrong byte.
///
/// # Examples
///
/// ```
/// use tokio_bufferevent::buffer::{EvBuffer, EvBufferError};
///
/// let mut buf = EvBuffer::new();
/// buf.add(b"key=value")?;
/// let eq = buf.search(b"=", None)?.expect("found");
/// assert_eq!(eq.pos(), 3);
/// buf.drain(1)?;
/// assert!(matches!(buf.copyout_from(&eq, &mut [0; 4]), Err(EvBufferError::StalePosition)));
/// # Ok::<(), EvBufferError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub(super) pos: usize,
    /// Segment (chunk, or the tail at the chain's length) holding the byte at `pos`.
    pub(super) seg: usize,
    /// Offset of `pos` inside `seg`; equals the segment's length only at the end.
    pub(super) off: usize,
    pub(super) generation: u64,
}

impl Position {
    /// The byte offset from the front of the buffer.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }
}

impl EvBuffer {
    /// A position `n` bytes from the front (`evbuffer_ptr_set` with `EVBUFFER_PTR_SET`).
    /// `n == len()` is the valid "one past the end" position. O(chunks).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::OutOfRange`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if `n > len()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"abc")?;
    /// assert_eq!(buf.position(3)?.pos(), 3);
    /// assert!(buf.position(4).is_err());
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_ptr_set")]
    pub fn position(&self, n: usize) -> Result<Position, EvBufferError> {
        if n > self.len {
            return Err(EvBufferError::OutOfRange {
                requested: n,
                available: self.len,
            });
        }
        let (seg, off) = self.locate(0, 0, n);
        Ok(Position {
            pos: n,
            seg,
            off,
            generation: self.generation,
        })
    }

    /// Moves `pos` forward by `n` bytes (`evbuffer_ptr_set` with `EVBUFFER_PTR_ADD`).
    /// Reaching exactly the end is allowed. O(chunks crossed).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::StalePosition`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if the buffer changed since
    /// `pos` was made; [`EvBufferError::OutOfRange`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if the result would lie past
    /// the end. `pos` is unchanged on error.
    #[doc(alias = "evbuffer_ptr_set")]
    pub fn advance_position(&self, pos: &mut Position, n: usize) -> Result<(), EvBufferError> {
        self.check_position(pos)?;
        let left = self.len - pos.pos;
        if n > left {
            return Err(EvBufferError::OutOfRange {
                requested: n,
                available: left,
            });
        }
        let (seg, off) = self.locate(pos.seg, pos.off, n);
        pos.pos += n;
        pos.seg = seg;
        pos.off = off;
        Ok(())
    }

    /// Fails for a position made before the last modification.
    pub(super) fn check_position(&self, pos: &Position) -> Result<(), EvBufferError> {
        // The bounds check keeps a position taken from another buffer from indexing
        // out of range; such a position is a caller bug, reported as stale.
        let in_bounds =
            pos.pos <= self.len && pos.seg < self.seg_count() && pos.off <= self.seg_len(pos.seg);
        if pos.generation == self.generation && in_bounds {
            Ok(())
        } else {
            Err(EvBufferError::StalePosition)
        }
    }

    /// A position whose segment and offset the caller already knows.
    pub(super) fn make_position(&self, pos: usize, seg: usize, off: usize) -> Position {
        Position {
            pos,
            seg,
            off,
            generation: self.generation,
        }
    }

    /// The segment and offset `n` bytes after (`seg`, `off`), which must exist. An
    /// offset at the end of a segment moves on to the next one unless it is the last.
    pub(super) fn locate(&self, mut seg: usize, mut off: usize, mut n: usize) -> (usize, usize) {
        let last = self.seg_count() - 1;
        loop {
            let rest = self.seg_len(seg) - off;
            if n < rest || seg == last {
                return (seg, off + n);
            }
            n -= rest;
            seg += 1;
            off = 0;
        }
    }
}
