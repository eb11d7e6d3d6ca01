//! [`EvBuffer`]: libevent's evbuffer, a byte queue held as a chain of chunks.
//!
//! An `EvBuffer` is what every bufferevent owns two of, and it is useful on its own:
//! a FIFO of bytes that appends cheaply at the end, removes cheaply at the front, moves
//! whole chunks between buffers without copying, and finds lines and patterns across
//! chunk boundaries.
//!
//! # Layout
//!
//! The data is a queue of immutable chunks ([`Bytes`], or lazily read file ranges)
//! followed by one writable tail ([`BytesMut`]). Small appends land in the tail; when it
//! is full it is sealed into a chunk and a larger one is started, doubling up to 64 KiB,
//! so many small appends coalesce into few chunks. Removing from the front drops or
//! splits chunks; [`EvBuffer::add_buffer`], [`EvBuffer::remove_buffer`],
//! [`EvBuffer::add_bytes`] and [`EvBuffer::remove_bytes`] move chunks and never copy
//! bytes. An empty buffer allocates nothing.
//!
//! # Examples
//!
//! ```
//! use tokio_bufferevent::buffer::{EolStyle, EvBuffer};
//!
//! let mut buf = EvBuffer::new();
//! buf.add(b"GET / HTTP/1.0\r\nHost: example.org\r\n\r\n")?;
//! assert_eq!(buf.readln(EolStyle::Crlf)?.as_deref(), Some(&b"GET / HTTP/1.0"[..]));
//! assert_eq!(buf.readln(EolStyle::Crlf)?.as_deref(), Some(&b"Host: example.org"[..]));
//! assert_eq!(buf.readln(EolStyle::Crlf)?.as_deref(), Some(&b""[..]));
//! assert!(buf.is_empty());
//! # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
//! ```
//!
//! The mapping of every libevent `evbuffer_*` function to its counterpart here is in
//! [`docs/evbuffer.md`](https://github.com/tokio-bufferevent/tokio-bufferevent/blob/main/docs/evbuffer.md).

mod callbacks;
mod chunk;
mod error;
mod line;
mod position;
mod reserve;
mod search;

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice};
use std::mem;

use bytes::{Buf, Bytes, BytesMut};

use self::callbacks::Callbacks;
use self::chunk::Chunk;

pub use self::callbacks::{CallbackId, CallbackInfo};
pub use self::error::EvBufferError;
pub use self::line::{EolStyle, LineReader};
pub use self::position::Position;
pub use self::reserve::Reservation;

/// The first writable tail a buffer allocates, in bytes.
const MIN_TAIL: usize = 512;
/// Tails double in size up to this many bytes; a larger single append gets a chunk of
/// its own size.
const MAX_TAIL: usize = 64 * 1024;

/// A queue of bytes held as a chain of chunks: libevent's `struct evbuffer`.
///
/// See the [module documentation](self) for the layout and an example, and
/// [`docs/evbuffer.md`](https://github.com/tokio-bufferevent/tokio-bufferevent/blob/main/docs/evbuffer.md) for the mapping from libevent's functions.
///
/// Operations that libevent reports with `-1` return [`EvBufferError`] here and leave
/// the buffer unchanged. Methods that modify the buffer run its
/// [callbacks](EvBuffer::add_cb) when the length changed and make every earlier
/// [`Position`] stale.
#[doc(alias = "evbuffer")]
pub struct EvBuffer {
    /// Data before the tail, front first. Never holds an empty chunk.
    chunks: VecDeque<Chunk>,
    /// Where appends go; its bytes are the last bytes of the buffer.
    tail: BytesMut,
    len: usize,
    /// Capacity of the next tail to allocate, at most `MAX_TAIL` (so `u32`: every
    /// bufferevent carries two buffers).
    next_tail: u32,
    /// Bumped by every modification; positions remember it.
    generation: u64,
    front_frozen: bool,
    end_frozen: bool,
    callbacks: Option<Box<Callbacks>>,
}

impl EvBuffer {
    /// Creates an empty buffer. It allocates nothing until data is added.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let buf = EvBuffer::new();
    /// assert_eq!(buf.len(), 0);
    /// ```
    #[doc(alias = "evbuffer_new")]
    pub fn new() -> Self {
        Self {
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            len: 0,
            next_tail: MIN_TAIL as u32,
            generation: 0,
            front_frozen: false,
            end_frozen: false,
            callbacks: None,
        }
    }

    /// The number of bytes in the buffer (`evbuffer_get_length`). O(1).
    #[inline]
    #[doc(alias = "evbuffer_get_length")]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of bytes stored contiguously at the front: the length of the first
    /// chunk (`evbuffer_get_contiguous_space`), 0 when empty. This counts data, not free
    /// space.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add_bytes(Bytes::from_static(b"abc"))?;
    /// buf.add_bytes(Bytes::from_static(b"de"))?;
    /// assert_eq!(buf.contiguous_space(), 3);
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_get_contiguous_space")]
    pub fn contiguous_space(&self) -> usize {
        self.seg_len(0)
    }

    /// Freezes the front (`at_front == true`) or the end of the buffer
    /// (`evbuffer_freeze`).
    ///
    /// While the front is frozen, everything that removes or prepends data fails with
    /// [`EvBufferError::FrontFrozen`]; while the end is frozen, everything that appends
    /// fails with [`EvBufferError::EndFrozen`]. Inspection ([`len`](Self::len),
    /// [`peek`](Self::peek), [`pullup`](Self::pullup), [`search`](Self::search),
    /// positions) is unaffected. The exact matrix is libevent's.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::{EvBuffer, EvBufferError};
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.freeze(false);
    /// assert!(matches!(buf.add(b"x"), Err(EvBufferError::EndFrozen)));
    /// buf.unfreeze(false);
    /// buf.add(b"x")?;
    /// # Ok::<(), EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_freeze")]
    #[doc(alias = "evbuffer_unfreeze")]
    pub fn freeze(&mut self, at_front: bool) {
        *self.frozen_flag(at_front) = true;
    }

    /// Undoes [`freeze`](Self::freeze) for the front or the end (`evbuffer_unfreeze`).
    pub fn unfreeze(&mut self, at_front: bool) {
        *self.frozen_flag(at_front) = false;
    }

    /// Whether the front (`at_front == true`) or the end is frozen.
    pub fn is_frozen(&self, at_front: bool) -> bool {
        if at_front {
            self.front_frozen
        } else {
            self.end_frozen
        }
    }

    fn frozen_flag(&mut self, at_front: bool) -> &mut bool {
        if at_front {
            &mut self.front_frozen
        } else {
            &mut self.end_frozen
        }
    }

    #[inline]
    fn check_front(&self) -> Result<(), EvBufferError> {
        if self.front_frozen {
            Err(EvBufferError::FrontFrozen)
        } else {
            Ok(())
        }
    }

    #[inline]
    fn check_end(&self) -> Result<(), EvBufferError> {
        if self.end_frozen {
            Err(EvBufferError::EndFrozen)
        } else {
            Ok(())
        }
    }

    // ---- appending -------------------------------------------------------------

    /// Appends a copy of `data` (`evbuffer_add`).
    ///
    /// The bytes go into the writable tail; many small appends share one allocation.
    /// Amortized O(`data.len()`).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the end is frozen, even for
    /// empty `data`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"hello, ")?;
    /// buf.add(b"world")?;
    /// assert_eq!(buf.to_vec()?, b"hello, world");
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[inline]
    #[doc(alias = "evbuffer_add")]
    pub fn add(&mut self, data: &[u8]) -> Result<(), EvBufferError> {
        self.check_end()?;
        self.append_copy(data);
        Ok(())
    }

    /// Appends `data` without copying it (`evbuffer_add_reference`).
    ///
    /// The buffer keeps a reference to `data`'s memory until the last of these bytes
    /// is removed, drained, moved out and released, or the buffer is dropped. A
    /// [`Bytes::from_owner`] value therefore runs its owner's `Drop` exactly once, when
    /// the last byte is released: that is libevent's cleanup callback. An empty `data`
    /// is dropped at once. O(1).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the end is frozen; `data` is
    /// dropped (so its owner's `Drop` runs when no other handle to it remains).
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// static GREETING: &[u8] = b"hello";
    /// let mut buf = EvBuffer::new();
    /// buf.add_bytes(Bytes::from_static(GREETING))?;
    /// assert_eq!(buf.remove_bytes(5)?, GREETING); // the same memory, never copied
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_add_reference")]
    #[doc(alias = "evbuffer_add_reference_with_offset")]
    pub fn add_bytes(&mut self, data: Bytes) -> Result<(), EvBufferError> {
        self.check_end()?;
        self.append_bytes(data);
        Ok(())
    }

    /// Appends formatted text and returns the number of bytes appended
    /// (`evbuffer_add_printf`).
    ///
    /// Use it with [`format_args!`]. The buffer also implements [`fmt::Write`], so
    /// `write!(buf, ...)` works too (without the byte count).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the end is frozen.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// let n = buf.add_fmt(format_args!("{}: {}\r\n", "Content-Length", 42))?;
    /// assert_eq!(n, 20);
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_add_printf")]
    #[doc(alias = "evbuffer_add_vprintf")]
    pub fn add_fmt(&mut self, args: fmt::Arguments<'_>) -> Result<usize, EvBufferError> {
        self.check_end()?;
        let before = self.len;
        // Appending into the buffer cannot fail, so neither can formatting into it;
        // a `Display` impl that reports an error anyway just stops the output early.
        let _ = fmt::Write::write_fmt(&mut Appender(self), args);
        let n = self.len - before;
        if n > 0 {
            self.changed(n, 0);
        }
        Ok(n)
    }

    /// Appends the bytes of every slice in order and returns the total
    /// (`evbuffer_add_iovec`). One change: callbacks run once, for the total
    /// (libevent runs them once per slice; D-E16).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the end is frozen.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::IoSlice;
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// let n = buf.add_iovec(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")])?;
    /// assert_eq!((n, buf.to_vec()?), (4, b"abcd".to_vec()));
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_add_iovec")]
    pub fn add_iovec(&mut self, bufs: &[IoSlice<'_>]) -> Result<usize, EvBufferError> {
        self.check_end()?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        for b in bufs {
            self.append(b);
        }
        if total > 0 {
            self.changed(total, 0);
        }
        Ok(total)
    }

    /// Inserts a copy of `data` before the buffer's contents (`evbuffer_prepend`).
    ///
    /// Memory added with [`add_bytes`](Self::add_bytes) is never written to: the bytes go
    /// into a chunk of their own. O(`data.len()`).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the front is frozen and
    /// `data` is not empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"world")?;
    /// buf.prepend(b"hello ")?;
    /// assert_eq!(buf.to_vec()?, b"hello world");
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_prepend")]
    pub fn prepend(&mut self, data: &[u8]) -> Result<(), EvBufferError> {
        if data.is_empty() {
            return Ok(());
        }
        self.check_front()?;
        self.chunks
            .push_front(Chunk::Mem(Bytes::copy_from_slice(data)));
        self.len += data.len();
        self.changed(data.len(), 0);
        Ok(())
    }

    /// Moves all of `src` to the end of this buffer without copying a byte
    /// (`evbuffer_add_buffer`).
    ///
    /// O(1) when this buffer is empty, else O(chunks of `src`). `src`'s callbacks run
    /// first, then this buffer's.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if this buffer's end is frozen,
    /// or [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if `src`'s front is; nothing
    /// moves. An empty `src` is always a successful no-op.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let (mut a, mut b) = (EvBuffer::new(), EvBuffer::new());
    /// a.add(b"head ")?;
    /// b.add(b"tail")?;
    /// a.add_buffer(&mut b)?;
    /// assert_eq!((a.to_vec()?, b.len()), (b"head tail".to_vec(), 0));
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_add_buffer")]
    pub fn add_buffer(&mut self, src: &mut EvBuffer) -> Result<(), EvBufferError> {
        if src.len == 0 {
            return Ok(());
        }
        self.check_end()?;
        src.check_front()?;
        self.append_buffer(src);
        Ok(())
    }

    /// Moves all of `src` before this buffer's contents without copying
    /// (`evbuffer_prepend_buffer`). O(chunks of both).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if either buffer's front is
    /// frozen; nothing moves. An empty `src` is always a successful no-op.
    #[doc(alias = "evbuffer_prepend_buffer")]
    pub fn prepend_buffer(&mut self, src: &mut EvBuffer) -> Result<(), EvBufferError> {
        if src.len == 0 {
            return Ok(());
        }
        self.check_front()?;
        src.check_front()?;
        let n = src.len;
        src.seal_tail();
        src.chunks.append(&mut self.chunks);
        mem::swap(&mut self.chunks, &mut src.chunks);
        self.len += n;
        src.len = 0;
        src.changed(0, n);
        self.changed(n, 0);
        Ok(())
    }

    /// Appends a shared, copy-free view of `src`'s current contents
    /// (`evbuffer_add_buffer_reference`).
    ///
    /// `src` keeps its data; later changes to either buffer do not affect the other,
    /// and this buffer stays readable after `src` is dropped. It takes `&mut src` only
    /// to seal `src`'s writable tail into a shareable chunk, which changes nothing `src`
    /// shows. O(chunks of `src`).
    ///
    /// Unlike libevent, a view of a buffer that holds file segments or other views
    /// works (they are shared as well).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if this buffer's end is frozen
    /// and `src` is not empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let (mut src, mut view) = (EvBuffer::new(), EvBuffer::new());
    /// src.add(b"shared")?;
    /// view.add_buffer_reference(&mut src)?;
    /// src.drain(3)?;
    /// assert_eq!((src.to_vec()?, view.to_vec()?), (b"red".to_vec(), b"shared".to_vec()));
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_add_buffer_reference")]
    pub fn add_buffer_reference(&mut self, src: &mut EvBuffer) -> Result<(), EvBufferError> {
        if src.len == 0 {
            return Ok(());
        }
        self.check_end()?;
        src.seal_tail();
        self.seal_tail();
        self.chunks.extend(src.chunks.iter().cloned());
        self.len += src.len;
        self.changed(src.len, 0);
        Ok(())
    }

    /// Appends `len` bytes of `file` starting at `offset`, or everything from `offset`
    /// to the end of the file when `len` is `None` (`evbuffer_add_file`).
    ///
    /// The file is not read up front: it is cut into segments of 64 KiB, each read
    /// (without moving the file's cursor) when its bytes are first needed, and released
    /// once consumed. The buffer owns `file` and closes it when the last segment is
    /// released.
    ///
    /// If the file changes size or becomes unreadable after it was added, the
    /// operation that first needs the affected bytes fails with [`EvBufferError::Io`]
    /// and leaves the buffer unchanged.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the end is frozen;
    /// [`EvBufferError::Io`] (the read error's kind) if the file's size cannot be read
    /// (`fstat`) or the file cannot be read at `offset` (opened write-only, say);
    /// [`EvBufferError::OutOfRange`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if the range lies past the
    /// end of the file; [`EvBufferError::TooLarge`] (kind
    /// [`OutOfMemory`](std::io::ErrorKind::OutOfMemory)) if `len` does not fit in a
    /// `usize` (on 32-bit targets). The buffer is unchanged and `file` is closed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let path = std::env::temp_dir().join(format!("evbuffer-doc-{}", std::process::id()));
    /// std::fs::File::create(&path)?.write_all(b"0123456789")?;
    /// let mut buf = EvBuffer::new();
    /// buf.add_file(std::fs::File::open(&path)?, 2, Some(5))?;
    /// assert_eq!(buf.to_vec()?, b"23456");
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[doc(alias = "evbuffer_add_file")]
    pub fn add_file(
        &mut self,
        file: File,
        offset: u64,
        len: Option<u64>,
    ) -> Result<(), EvBufferError> {
        self.check_end()?;
        let size = file.metadata()?.len();
        let available = size.saturating_sub(offset);
        let len = len.unwrap_or(available);
        if offset > size || len > available {
            return Err(EvBufferError::OutOfRange {
                requested: usize::try_from(offset.saturating_add(len)).unwrap_or(usize::MAX),
                available: usize::try_from(size).unwrap_or(usize::MAX),
            });
        }
        let total = usize::try_from(len).map_err(|_| EvBufferError::TooLarge {
            requested: usize::MAX,
        })?;
        if total == 0 {
            return Ok(());
        }
        // Prove the file is readable now rather than on first use.
        chunk::read_exact_at(&file, &mut [0], offset)?;
        self.seal_tail();
        self.chunks.extend(chunk::file_chunks(file, offset, len));
        self.len += total;
        self.changed(total, 0);
        Ok(())
    }

    // ---- removing --------------------------------------------------------------

    /// Removes `min(dst.len(), self.len())` bytes from the front into `dst` and returns
    /// how many (`evbuffer_remove`). 0 on an empty buffer.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the front is frozen and there
    /// is something to remove; [`EvBufferError::Io`] (the read error's kind) if a file
    /// segment cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"abcdef")?;
    /// let mut out = [0; 4];
    /// assert_eq!(buf.remove(&mut out)?, 4);
    /// assert_eq!((&out, buf.len()), (b"abcd", 2));
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_remove")]
    pub fn remove(&mut self, dst: &mut [u8]) -> Result<usize, EvBufferError> {
        if self.len == 0 || dst.is_empty() {
            return Ok(0);
        }
        self.check_front()?;
        let n = self.copy_from(0, 0, dst)?;
        if n > 0 {
            self.consume(n);
            self.changed(0, n);
        }
        Ok(n)
    }

    /// Removes up to `n` bytes from the front and returns them as [`Bytes`].
    ///
    /// Zero-copy when the bytes lie in one chunk (the returned value shares its
    /// memory); otherwise they are gathered into one new allocation. Returns fewer than
    /// `n` bytes only when the buffer holds fewer.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the front is frozen and there
    /// is something to remove; [`EvBufferError::Io`] (the read error's kind) if a file
    /// segment cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"abcdef")?;
    /// assert_eq!(buf.remove_bytes(4)?, &b"abcd"[..]);
    /// assert_eq!(buf.remove_bytes(100)?, &b"ef"[..]);
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    pub fn remove_bytes(&mut self, n: usize) -> Result<Bytes, EvBufferError> {
        let n = n.min(self.len);
        if n == 0 {
            return Ok(Bytes::new());
        }
        self.check_front()?;
        let out = self.take_front(n)?;
        self.changed(0, n);
        Ok(out)
    }

    /// Moves up to `n` bytes from the front of this buffer to the end of `dst`, with an
    /// exact byte boundary, and returns how many (`evbuffer_remove_buffer`).
    ///
    /// Whole chunks move without copying, and so does a partial one (it is split, the
    /// two halves sharing memory). `dst`'s callbacks run first, then this buffer's.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if this buffer's front is
    /// frozen, or [`EvBufferError::EndFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if `dst`'s end is, even when
    /// this buffer is empty (B-108); nothing moves. `n == 0` moves nothing and
    /// succeeds, frozen or not.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let (mut src, mut dst) = (EvBuffer::new(), EvBuffer::new());
    /// src.add(b"hello world")?;
    /// assert_eq!(src.remove_buffer(&mut dst, 5)?, 5);
    /// assert_eq!((src.to_vec()?, dst.to_vec()?), (b" world".to_vec(), b"hello".to_vec()));
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_remove_buffer")]
    pub fn remove_buffer(&mut self, dst: &mut EvBuffer, n: usize) -> Result<usize, EvBufferError> {
        if n == 0 {
            return Ok(0);
        }
        // Frozen is an error even with nothing to move, as in libevent.
        self.check_front()?;
        dst.check_end()?;
        let n = n.min(self.len);
        if n == 0 {
            return Ok(0);
        }
        Ok(self.move_front_to(dst, n))
    }

    /// Discards up to `n` bytes from the front (`evbuffer_drain`); `n` may exceed the
    /// length (`usize::MAX` empties the buffer).
    ///
    /// O(chunks dropped). Released chunks free their memory (and run the owners' `Drop`
    /// of [`add_bytes`](Self::add_bytes) data no one else holds).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the front is frozen and the
    /// buffer is not empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"abcdef")?;
    /// buf.drain(2)?;
    /// assert_eq!(buf.to_vec()?, b"cdef");
    /// buf.drain(usize::MAX)?;
    /// assert!(buf.is_empty());
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[inline]
    #[doc(alias = "evbuffer_drain")]
    pub fn drain(&mut self, n: usize) -> Result<(), EvBufferError> {
        if self.len == 0 {
            return Ok(());
        }
        self.check_front()?;
        let n = n.min(self.len);
        if n > 0 {
            self.consume(n);
            self.changed(0, n);
        }
        Ok(())
    }

    // ---- copying out -----------------------------------------------------------

    /// Copies `min(dst.len(), self.len())` bytes from the front into `dst` without
    /// removing them, and returns how many (`evbuffer_copyout`).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the front is frozen and there
    /// is something to copy; [`EvBufferError::Io`] (the read error's kind) if a file
    /// segment cannot be read.
    #[doc(alias = "evbuffer_copyout")]
    pub fn copyout(&self, dst: &mut [u8]) -> Result<usize, EvBufferError> {
        if self.len == 0 || dst.is_empty() {
            return Ok(0);
        }
        self.check_front()?;
        self.copy_from(0, 0, dst)
    }

    /// Copies bytes starting at `pos` into `dst` without removing them, and returns how
    /// many: `min(dst.len(), self.len() - pos)`, 0 at the end (`evbuffer_copyout_from`).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind
    /// [`WouldBlock`](std::io::ErrorKind::WouldBlock)) if the front is frozen and there
    /// is something to copy; [`EvBufferError::StalePosition`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if the buffer changed since
    /// `pos` was made; [`EvBufferError::Io`] (the read error's kind) if a file segment
    /// cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"abcdef")?;
    /// let pos = buf.position(4)?;
    /// let mut out = [0; 8];
    /// assert_eq!(buf.copyout_from(&pos, &mut out)?, 2);
    /// assert_eq!(&out[..2], b"ef");
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_copyout_from")]
    pub fn copyout_from(&self, pos: &Position, dst: &mut [u8]) -> Result<usize, EvBufferError> {
        self.check_position(pos)?;
        if pos.pos == self.len || dst.is_empty() {
            return Ok(0);
        }
        self.check_front()?;
        self.copy_from(pos.seg, pos.off, dst)
    }

    /// Copies every byte into a new `Vec`, ignoring freezing. O(len).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::Io`] (the read error's kind) if a file segment cannot be read.
    pub fn to_vec(&self) -> Result<Vec<u8>, EvBufferError> {
        let mut out = vec![0; self.len];
        self.copy_from(0, 0, &mut out)?;
        Ok(out)
    }

    /// Returns the extents (slices into the buffer, no copy) that cover `len` bytes from
    /// `start` (from the front when `None`), or every extent to the end when `len` is
    /// `None` (`evbuffer_peek`).
    ///
    /// The first extent begins at `start`; the last may cover more than asked. An empty
    /// buffer, a start at the end, or a `len` of 0 gives no extents (libevent gives
    /// the start's extent for 0 bytes; D-E17). Any byte count beyond the end is
    /// clamped. O(extents).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::StalePosition`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) for a stale `start`;
    /// [`EvBufferError::Io`] (the read error's kind) if a file segment in the range
    /// cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add_bytes(Bytes::from_static(b"abc"))?;
    /// buf.add_bytes(Bytes::from_static(b"def"))?;
    /// let extents = buf.peek(None, Some(4))?;
    /// assert_eq!(extents, [&b"abc"[..], &b"def"[..]]);
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_peek")]
    pub fn peek(
        &self,
        start: Option<&Position>,
        len: Option<usize>,
    ) -> Result<Vec<&[u8]>, EvBufferError> {
        let (mut seg, mut off, mut left) = match start {
            Some(p) => {
                self.check_position(p)?;
                (p.seg, p.off, self.len - p.pos)
            }
            None => (0, 0, self.len),
        };
        if let Some(len) = len {
            left = left.min(len);
        }
        let mut out = Vec::new();
        while left > 0 && seg < self.seg_count() {
            let data = &self.seg_data(seg)?[off..];
            if !data.is_empty() {
                out.push(data);
                left = left.saturating_sub(data.len());
            }
            seg += 1;
            off = 0;
        }
        Ok(out)
    }

    /// Fills `out` with the buffer's first extents, ready for a vectored write, and
    /// returns how many it filled. No copy.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::Io`] (the read error's kind) if a file segment cannot be read.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> Result<usize, EvBufferError> {
        self.io_slices_max(out, usize::MAX)
    }

    /// Makes the first `n` bytes (all of them when `None`) contiguous and returns them
    /// (`evbuffer_pullup`).
    ///
    /// Free when they already lie in the first chunk; otherwise they are copied into one
    /// new chunk (releasing the chunks they came from). Freezing does not affect it.
    /// Returns an empty slice for `n == 0` or an empty buffer, where libevent returns
    /// `NULL`.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::OutOfRange`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if `n` exceeds the length
    /// (the buffer is unchanged); [`EvBufferError::Io`] (the read error's kind) if a
    /// file segment cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add_bytes(Bytes::from_static(b"ab"))?;
    /// buf.add_bytes(Bytes::from_static(b"cd"))?;
    /// assert_eq!(buf.pullup(Some(3))?, b"abc");
    /// assert_eq!(buf.contiguous_space(), 3);
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_pullup")]
    pub fn pullup(&mut self, n: Option<usize>) -> Result<&[u8], EvBufferError> {
        let n = n.unwrap_or(self.len);
        if n > self.len {
            return Err(EvBufferError::OutOfRange {
                requested: n,
                available: self.len,
            });
        }
        if n == 0 {
            return Ok(&[]);
        }
        if self.seg_len(0) < n {
            let joined = self.take_front(n)?;
            self.chunks.push_front(Chunk::Mem(joined));
            self.len += n;
            self.generation += 1;
        }
        Ok(&self.seg_data(0)?[..n])
    }

    // ---- space -----------------------------------------------------------------

    /// Guarantees room for at least `n` more bytes at the end, in one contiguous piece,
    /// without changing the length (`evbuffer_expand`).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::TooLarge`] (kind
    /// [`OutOfMemory`](std::io::ErrorKind::OutOfMemory)) if that much memory cannot be
    /// allocated; the buffer is unchanged and nothing panics or aborts.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::{EvBuffer, EvBufferError};
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.expand(4096)?;
    /// assert!(matches!(buf.expand(usize::MAX), Err(EvBufferError::TooLarge { .. })));
    /// # Ok::<(), EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_expand")]
    pub fn expand(&mut self, n: usize) -> Result<(), EvBufferError> {
        if self.tail.capacity() - self.tail.len() >= n {
            return Ok(());
        }
        let mut fresh = Vec::new();
        fresh
            .try_reserve_exact(n.max(self.next_tail as usize))
            .map_err(|_| EvBufferError::TooLarge { requested: n })?;
        // Keeps the capacity: a unique `Bytes` turns back into its `BytesMut` for free.
        self.install_tail(BytesMut::from(Bytes::from(fresh)));
        Ok(())
    }

    /// Releases unused memory: the writable tail's spare room and the chunk list's
    /// spare slots. A buffer drained to empty then holds no memory at all. The next
    /// append allocates again.
    pub fn shrink_to_fit(&mut self) {
        if self.tail.is_empty() {
            self.tail = BytesMut::new();
            self.next_tail = MIN_TAIL as u32;
        } else if self.tail.capacity() > self.tail.len() {
            self.seal_tail();
            self.tail = BytesMut::new();
        }
        self.chunks.shrink_to_fit();
    }

    /// Whether the buffer holds memory beyond its bytes (what
    /// [`shrink_to_fit`](Self::shrink_to_fit) would release).
    pub(crate) fn has_spare_memory(&self) -> bool {
        self.spare_capacity() > 0 || self.chunks.capacity() > self.chunks.len()
    }

    /// Whether dropping the buffer loses nothing: it is empty, holds no memory, has
    /// no callbacks and nothing frozen. (Its generation and the size of its next
    /// tail may differ from a [`new`](Self::new) one's.)
    pub(crate) fn is_pristine(&self) -> bool {
        self.len == 0
            && self.tail.capacity() == 0
            && self.chunks.capacity() == 0
            && self.callbacks.is_none()
            && !self.front_frozen
            && !self.end_frozen
    }

    /// An empty buffer to replace one that was dropped, carrying on from where that
    /// one was: positions taken from the old one stay stale in the new one if
    /// `generation` is past the old one's [`generation`](Self::generation), and it
    /// allocates its next tail as the old one would have (`next_tail`, from
    /// [`next_tail`](Self::next_tail); 0 for a new buffer's).
    pub(crate) fn starting_at(generation: u64, next_tail: u32) -> Self {
        let mut buf = Self::new();
        buf.restart_at(generation, next_tail);
        buf
    }

    /// Makes a pristine buffer as [`starting_at`](Self::starting_at) would, for reuse
    /// in place of another.
    pub(crate) fn restart_at(&mut self, generation: u64, next_tail: u32) {
        debug_assert!(self.is_pristine());
        self.generation = generation;
        self.next_tail = next_tail.clamp(MIN_TAIL as u32, MAX_TAIL as u32);
    }

    /// The capacity of the next tail this buffer will allocate: it grows as data
    /// streams in, so that fewer, larger tails hold it.
    pub(crate) fn next_tail(&self) -> u32 {
        self.next_tail
    }

    /// How many modifications the buffer has seen: what positions remember.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    // ---- std::io glue ------------------------------------------------------------

    /// Writes from the front of the buffer to `writer` with one vectored write and
    /// drains what was written (`evbuffer_write`). Returns the number of bytes written.
    ///
    /// # Errors
    ///
    /// The writer's error; an [`io::Error`] made from [`EvBufferError::FrontFrozen`]
    /// (kind [`io::ErrorKind::WouldBlock`]) if the front is frozen, even when the buffer
    /// is empty; one made from [`EvBufferError::Io`] (the read error's kind) if a file
    /// segment cannot be read. Nothing is drained on error.
    #[doc(alias = "evbuffer_write")]
    #[doc(alias = "evbuffer_write_atmost")]
    pub fn write_to<W: io::Write + ?Sized>(&mut self, writer: &mut W) -> io::Result<usize> {
        self.check_front()?;
        let mut slices = [IoSlice::new(&[]); 64];
        let filled = self.io_slices(&mut slices)?;
        let n = writer.write_vectored(&slices[..filled])?;
        self.drain(n)?;
        Ok(n)
    }

    /// Reads up to `max` bytes from `reader` into the end of the buffer with one read
    /// call (`evbuffer_read`). Returns the number of bytes read; 0 means end of file
    /// (or `max == 0`).
    ///
    /// # Errors
    ///
    /// The reader's error; an [`io::Error`] made from [`EvBufferError::EndFrozen`]
    /// (kind [`io::ErrorKind::WouldBlock`]) if the end is frozen, from
    /// [`EvBufferError::TooLarge`] (kind [`io::ErrorKind::OutOfMemory`]) if `max` bytes
    /// of room cannot be allocated, or from [`EvBufferError::CommitTooLarge`] (kind
    /// [`io::ErrorKind::InvalidInput`]) if `reader` claims to have read more than
    /// `max` bytes. Nothing is appended on error.
    #[doc(alias = "evbuffer_read")]
    pub fn read_from<R: io::Read + ?Sized>(
        &mut self,
        reader: &mut R,
        max: usize,
    ) -> io::Result<usize> {
        let mut space = self.reserve(max)?;
        let n = reader.read(&mut space)?;
        space.commit(n)?;
        Ok(n)
    }

    // ---- for the bufferevent engine --------------------------------------------
    //
    // A bufferevent's own input and output are reachable only through views that
    // cannot freeze them (`Input`, `Output`, a filter's source and sink), so the
    // engine appends and drains them without the freeze checks, which could not fail.

    /// Appends a copy of `data` to a buffer that is never frozen.
    pub(crate) fn append_copy(&mut self, data: &[u8]) {
        debug_assert!(!self.end_frozen, "the crate never freezes its own buffers");
        if !data.is_empty() {
            self.append(data);
            self.changed(data.len(), 0);
        }
    }

    /// Appends `data` without copying to a buffer that is never frozen.
    pub(crate) fn append_bytes(&mut self, data: Bytes) {
        debug_assert!(!self.end_frozen, "the crate never freezes its own buffers");
        if !data.is_empty() {
            let n = data.len();
            self.push_chunk(Chunk::Mem(data));
            self.changed(n, 0);
        }
    }

    /// Moves all of `src` to the end of this buffer; neither is ever frozen.
    pub(crate) fn append_buffer(&mut self, src: &mut EvBuffer) {
        debug_assert!(!self.end_frozen && !src.front_frozen);
        if src.len == 0 {
            return;
        }
        let n = src.len;
        if self.len == 0 && self.chunks.is_empty() {
            // Hand over the whole chain and writable tail; `src` keeps our (empty) ones.
            mem::swap(&mut self.chunks, &mut src.chunks);
            mem::swap(&mut self.tail, &mut src.tail);
            src.tail.clear();
        } else {
            self.seal_tail();
            self.chunks.append(&mut src.chunks);
            if !src.tail.is_empty() {
                self.chunks.push_back(Chunk::Mem(src.tail.split().freeze()));
            }
        }
        self.len += n;
        src.len = 0;
        src.changed(0, n);
        self.changed(n, 0);
    }

    /// Moves up to `n` bytes from the front to the end of `dst`, with an exact byte
    /// boundary and without copying; neither buffer is frozen (or was checked).
    pub(crate) fn move_front_to(&mut self, dst: &mut EvBuffer, n: usize) -> usize {
        let n = n.min(self.len);
        if n == 0 {
            return 0;
        }
        if n == self.len {
            dst.append_buffer(self);
            return n;
        }
        dst.seal_tail();
        let mut left = n;
        while left > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= left => {
                    left -= front.len();
                    let whole = self.chunks.pop_front().expect("front exists");
                    dst.chunks.push_back(whole);
                }
                Some(front) => {
                    dst.chunks.push_back(front.split_to(left));
                    left = 0;
                }
                None => {
                    dst.chunks
                        .push_back(Chunk::Mem(self.tail.split_to(left).freeze()));
                    left = 0;
                }
            }
        }
        self.len -= n;
        dst.len += n;
        dst.changed(n, 0);
        self.changed(0, n);
        n
    }

    /// Puts `data` back in front of the contents of a buffer that is never frozen
    /// (bytes a cancelled reader had taken).
    pub(crate) fn unread(&mut self, data: Bytes) {
        debug_assert!(
            !self.front_frozen,
            "the crate never freezes its own buffers"
        );
        if data.is_empty() {
            return;
        }
        let n = data.len();
        if self.chunks.is_empty() && !self.tail.is_empty() {
            // The tail holds the contents: it becomes a chunk behind the returned data.
            self.seal_tail();
        }
        self.chunks.push_front(Chunk::Mem(data));
        self.len += n;
        self.changed(n, 0);
    }

    /// Removes up to `n` bytes from the front of a buffer that is never frozen.
    pub(crate) fn discard(&mut self, n: usize) {
        self.advance_sent(n);
    }

    /// Free room in the writable tail.
    pub(crate) fn spare_capacity(&self) -> usize {
        self.tail.capacity() - self.tail.len()
    }

    /// The writable tail with at least `n` bytes of room, for reading straight into
    /// it; report what was appended with [`EvBuffer::commit_appended`].
    pub(crate) fn tail_with_room(&mut self, n: usize) -> &mut BytesMut {
        if self.spare_capacity() < n {
            self.grow_tail(n);
        }
        &mut self.tail
    }

    /// Appends a copy of `data` without accounting for it (report it with
    /// [`EvBuffer::commit_appended`]): into the tail when it has room, else into a new
    /// tail of exactly this size, so a small read allocates only what it holds.
    pub(crate) fn stage_copy(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.spare_capacity() >= data.len() {
            self.tail.extend_from_slice(data);
        } else {
            // A new tail of exactly this size: no chunk-list slot for the common case
            // of one small read consumed before the next.
            self.seal_tail();
            self.tail = BytesMut::from(data);
        }
    }

    /// Accounts for `n` bytes appended by [`EvBuffer::tail_with_room`] or
    /// [`EvBuffer::stage_copy`].
    pub(crate) fn commit_appended(&mut self, n: usize) {
        if n > 0 {
            self.len += n;
            self.changed(n, 0);
        }
    }

    /// Removes `n` bytes that a transport took from the front (handed out by
    /// [`EvBuffer::single_segment`] or [`EvBuffer::io_slices_max`]): once sent they
    /// must leave the buffer, so there is nothing to refuse. `n` past the end removes
    /// everything.
    pub(crate) fn advance_sent(&mut self, n: usize) {
        let n = n.min(self.len);
        if n > 0 {
            self.consume(n);
            self.changed(0, n);
        }
    }

    /// All the bytes, when they lie in one segment: a writer's common case, which
    /// then needs no slice array.
    pub(crate) fn single_segment(&self) -> Option<Result<&[u8], EvBufferError>> {
        match (self.chunks.len(), self.tail.is_empty()) {
            (0, _) => Some(Ok(&self.tail)),
            (1, true) => Some(self.chunks[0].data()),
            _ => None,
        }
    }

    /// Like [`io_slices`](Self::io_slices), covering at most `max` bytes.
    pub(crate) fn io_slices_max<'a>(
        &'a self,
        out: &mut [IoSlice<'a>],
        max: usize,
    ) -> Result<usize, EvBufferError> {
        let mut filled = 0;
        let mut left = max;
        for seg in 0..self.seg_count() {
            if filled == out.len() || left == 0 {
                break;
            }
            let data = self.seg_data(seg)?;
            if !data.is_empty() {
                let take = data.len().min(left);
                out[filled] = IoSlice::new(&data[..take]);
                filled += 1;
                left -= take;
            }
        }
        Ok(filled)
    }

    // ---- internals -------------------------------------------------------------

    /// Segments are the chunks followed by the tail, which may be empty.
    #[inline]
    fn seg_count(&self) -> usize {
        self.chunks.len() + 1
    }

    #[inline]
    fn seg_len(&self, seg: usize) -> usize {
        match self.chunks.get(seg) {
            Some(c) => c.len(),
            None => self.tail.len(),
        }
    }

    #[inline]
    fn seg_data(&self, seg: usize) -> Result<&[u8], EvBufferError> {
        match self.chunks.get(seg) {
            Some(c) => c.data(),
            None => Ok(&self.tail),
        }
    }

    /// Copies from segment `seg`, offset `off`, as many bytes as fit in `dst`.
    fn copy_from(
        &self,
        mut seg: usize,
        mut off: usize,
        dst: &mut [u8],
    ) -> Result<usize, EvBufferError> {
        let mut done = 0;
        while done < dst.len() && seg < self.seg_count() {
            let data = &self.seg_data(seg)?[off..];
            let k = data.len().min(dst.len() - done);
            dst[done..done + k].copy_from_slice(&data[..k]);
            done += k;
            seg += 1;
            off = 0;
        }
        Ok(done)
    }

    /// Appends without checks or callbacks; the caller reports the change.
    #[inline]
    fn append(&mut self, mut data: &[u8]) {
        self.len += data.len();
        loop {
            let room = self.tail.capacity() - self.tail.len();
            if data.len() <= room {
                self.tail.extend_from_slice(data);
                return;
            }
            let (now, rest) = data.split_at(room);
            self.tail.extend_from_slice(now);
            data = rest;
            self.grow_tail(data.len());
        }
    }

    /// Starts a new tail with room for at least `need` bytes.
    #[cold]
    fn grow_tail(&mut self, need: usize) {
        let cap = if need >= MAX_TAIL {
            need
        } else {
            need.max(self.next_tail as usize)
        };
        self.next_tail = (self.next_tail * 2).min(MAX_TAIL as u32);
        self.install_tail(BytesMut::with_capacity(cap));
    }

    /// Replaces the tail, sealing its bytes into a chunk first.
    fn install_tail(&mut self, fresh: BytesMut) {
        let old = mem::replace(&mut self.tail, fresh);
        if !old.is_empty() {
            self.chunks.push_back(Chunk::Mem(old.freeze()));
        }
    }

    /// Turns the tail's bytes into a chunk, keeping its spare room as the new tail.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let sealed = self.split_tail_to(self.tail.len());
            self.chunks.push_back(Chunk::Mem(sealed.freeze()));
        }
    }

    /// The tail's first `n` bytes, split off. A full tail taken whole moves out
    /// instead: split, its empty remainder would still share (and keep alive) the
    /// memory of what was taken.
    fn split_tail_to(&mut self, n: usize) -> BytesMut {
        if n == self.tail.capacity() {
            mem::take(&mut self.tail)
        } else {
            self.tail.split_to(n)
        }
    }

    /// Appends a chunk after the current contents; the caller reports the change.
    fn push_chunk(&mut self, chunk: Chunk) {
        self.seal_tail();
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Drops the first `n <= len` bytes; the caller reports the change.
    fn consume(&mut self, n: usize) {
        if n == self.len {
            self.chunks.clear();
            self.tail.clear();
            // Win back the room before the tail's start when nothing else shares it,
            // so a buffer that fills and drains repeatedly stops allocating.
            let _ = self.tail.try_reclaim(self.tail.capacity() + 1);
            self.len = 0;
            return;
        }
        self.len -= n;
        let mut left = n;
        while left > 0 {
            match self.chunks.front_mut() {
                Some(front) if front.len() <= left => {
                    left -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(left);
                    return;
                }
                None => {
                    self.tail.advance(left);
                    return;
                }
            }
        }
    }

    /// Removes the first `n` bytes (`0 < n <= len`) as one `Bytes`, sharing memory when
    /// they lie in one segment. On error nothing is removed. The caller reports the
    /// change.
    fn take_front(&mut self, n: usize) -> Result<Bytes, EvBufferError> {
        if n <= self.seg_len(0) {
            let piece = match self.chunks.front_mut() {
                Some(front) => {
                    front.data()?; // a file segment must load before anything moves
                    if front.len() == n {
                        self.chunks.pop_front().expect("front exists")
                    } else {
                        front.split_to(n)
                    }
                }
                None => Chunk::Mem(self.split_tail_to(n).freeze()),
            };
            self.len -= n;
            return piece.into_bytes();
        }
        let mut joined = BytesMut::zeroed(n);
        self.copy_from(0, 0, &mut joined)?;
        self.consume(n);
        Ok(joined.freeze())
    }
}

impl Default for EvBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for EvBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvBuffer")
            .field("len", &self.len)
            .field("chunks", &self.seg_count())
            .field("front_frozen", &self.front_frozen)
            .field("end_frozen", &self.end_frozen)
            .field(
                "callbacks",
                &self.callbacks.as_ref().map_or(0, |c| c.count()),
            )
            .finish()
    }
}

/// `write!(buf, ...)` appends formatted text; it fails only when the end is frozen.
impl fmt::Write for EvBuffer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.add(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

/// Writing appends; it fails only when the end is frozen
/// ([`EvBufferError::EndFrozen`], kind [`io::ErrorKind::WouldBlock`]).
impl io::Write for EvBuffer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.add(data)?;
        Ok(data.len())
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(self.add_iovec(bufs)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reading removes from the front; it fails only when the front is frozen
/// ([`EvBufferError::FrontFrozen`], kind [`io::ErrorKind::WouldBlock`]) and the
/// buffer is not empty, or a file segment cannot be read ([`EvBufferError::Io`], the
/// read error's kind).
impl io::Read for EvBuffer {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        Ok(self.remove(dst)?)
    }
}

/// Appends formatted pieces without per-piece checks or callbacks.
struct Appender<'a>(&'a mut EvBuffer);

impl fmt::Write for Appender<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.append(s.as_bytes());
        Ok(())
    }
}
