//! Writing straight into a buffer's free space (`evbuffer_reserve_space` /
//! `evbuffer_commit_space`).

use std::fmt;
use std::ops::{Deref, DerefMut};

use bytes::BytesMut;

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
    /// The reserved bytes, split off the end of the buffer's tail (sharing its
    /// allocation) and joined back on commit or drop: a reservation leaked with
    /// `mem::forget` leaves the buffer as it was, short of that space.
    space: BytesMut,
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
        let space = self.tail.split_off(start);
        Ok(Reservation { buf: self, space })
    }
}

impl Reservation<'_> {
    /// The number of bytes reserved.
    pub fn reserved(&self) -> usize {
        self.space.len()
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
    pub fn commit(mut self, n: usize) -> Result<(), EvBufferError> {
        if n > self.space.len() {
            return Err(EvBufferError::CommitTooLarge {
                requested: n,
                reserved: self.space.len(),
            });
        }
        // Taken, so that `drop` has nothing left to give back.
        let mut space = std::mem::take(&mut self.space);
        space.truncate(n);
        // O(1): the space was split off right here and nothing moved the tail since.
        self.buf.tail.unsplit(space);
        self.buf.len += n;
        if n > 0 {
            self.buf.changed(n, 0);
        }
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut space = std::mem::take(&mut self.space);
        if space.capacity() > 0 {
            // Its room goes back to the tail; its bytes were never added.
            space.clear();
            self.buf.tail.unsplit(space);
        }
    }
}

impl Deref for Reservation<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.space
    }
}

impl DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.space
    }
}

impl fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("reserved", &self.space.len())
            .finish()
    }
}
