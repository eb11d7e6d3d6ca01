//! Writing straight into a buffer's free space (`evbuffer_reserve_space` /
//! `evbuffer_commit_space`).

use std::fmt;
use std::ops::{Deref, DerefMut};

use super::{EvBuffer, EvBufferError};

/// Space reserved at the end of an [`EvBuffer`] by [`EvBuffer::reserve`]: fill it, then
/// [`commit`](Self::commit) the bytes written.
///
/// It dereferences to a zeroed `&mut [u8]` of the reserved length. Until it is
/// committed or dropped it borrows the buffer mutably, so nothing can change the
/// buffer in between; libevent's failure for a reservation made stale by such a change
/// cannot happen. Dropping it without committing adds nothing.
pub struct Reservation<'a> {
    buf: &'a mut EvBuffer,
    /// Where the reserved bytes start in the tail.
    start: usize,
    reserved: usize,
}

impl EvBuffer {
    /// Reserves `n` contiguous bytes of free space at the end
    /// (`evbuffer_reserve_space` with one extent).
    ///
    /// The space comes from the writable tail when it has room, else from a new
    /// allocation; the buffer's length does not change until
    /// [`Reservation::commit`].
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the end is frozen;
    /// [`EvBufferError::TooLarge`] (kind
    /// [`OutOfMemory`](std::io::ErrorKind::OutOfMemory)) if `n` bytes cannot be
    /// allocated.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// let mut space = buf.reserve(16)?;
    /// space[..5].copy_from_slice(b"hello");
    /// space.commit(5)?;
    /// assert_eq!(buf.to_vec()?, b"hello");
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_reserve_space")]
    pub fn reserve(&mut self, n: usize) -> Result<Reservation<'_>, EvBufferError> {
        self.check_end()?;
        self.expand(n)?;
        let start = self.tail.len();
        self.tail.resize(start + n, 0);
        Ok(Reservation {
            buf: self,
            start,
            reserved: n,
        })
    }
}

impl Reservation<'_> {
    /// The number of bytes reserved.
    pub fn reserved(&self) -> usize {
        self.reserved
    }

    /// Appends the first `n` reserved bytes to the buffer and runs its callbacks once
    /// (`evbuffer_commit_space`). Committing fewer bytes than reserved is fine; 0 adds
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::CommitTooLarge`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if `n` exceeds the
    /// reservation; nothing is added.
    pub fn commit(self, n: usize) -> Result<(), EvBufferError> {
        if n > self.reserved {
            return Err(EvBufferError::CommitTooLarge {
                requested: n,
                reserved: self.reserved,
            });
        }
        let mut this = self;
        this.buf.tail.truncate(this.start + n);
        this.reserved = 0; // nothing left for `drop` to take back
        this.buf.len += n;
        if n > 0 {
            this.buf.changed(n, 0);
        }
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let committed_end = self.buf.tail.len() - self.reserved;
        self.buf.tail.truncate(committed_end);
    }
}

impl Deref for Reservation<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf.tail[self.start..self.start + self.reserved]
    }
}

impl DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf.tail[self.start..self.start + self.reserved]
    }
}

impl fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("reserved", &self.reserved)
            .finish()
    }
}
