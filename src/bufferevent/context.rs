//! What callbacks see: the [`Context`] of a bufferevent, its [`Input`] (removal only)
//! and [`Output`] (addition only), and the [`Callbacks`] themselves.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::Bytes;

use super::buffers::Buffers;
use super::core::ratelim::RateLimit;
use super::core::{Core, running};
use super::events::{Direction, Events, FlushMode, Watermarks};
use crate::buffer::{EolStyle, EvBuffer, EvBufferError, LineReader, Position};

/// A read or write callback: runs on the bufferevent's task with its [`Context`].
pub type DataCallback<S> = Box<dyn FnMut(&mut Context<'_, S>) + Send>;

/// An event callback: receives the [`Events`] and, for `ERROR`, the error itself.
pub type EventCallback<S> = Box<dyn FnMut(&mut Context<'_, S>, Events, Option<&io::Error>) + Send>;

/// The three callbacks of a bufferevent (`bufferevent_setcb`); `None` disables one.
pub struct Callbacks<S> {
    /// Runs when the input reached the read low watermark.
    pub read: Option<DataCallback<S>>,
    /// Runs when the output drained to the write low watermark.
    pub write: Option<DataCallback<S>>,
    /// Runs on EOF, errors, timeouts and connect completion.
    pub event: Option<EventCallback<S>>,
}

impl<S> Default for Callbacks<S> {
    fn default() -> Self {
        Self {
            read: None,
            write: None,
            event: None,
        }
    }
}

impl<S> fmt::Debug for Callbacks<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("read", &self.read.is_some())
            .field("write", &self.write.is_some())
            .field("event", &self.event.is_some())
            .finish()
    }
}

/// Everything of a bufferevent but its transport: what a [`Context`] gives access to.
pub(crate) struct Inner<S> {
    pub(crate) buffers: Buffers,
    pub(crate) core: Core,
    pub(crate) state: S,
    pub(crate) callbacks: Callbacks<S>,
}

impl<S> Inner<S> {
    pub(crate) fn has_callbacks(&self) -> bool {
        let c = &self.callbacks;
        c.read.is_some() || c.write.is_some() || c.event.is_some()
    }
}

/// A bufferevent as seen from inside one of its callbacks, or from
/// [`BufferEvent::with`](super::BufferEvent::with).
///
/// It gives exclusive access to the input (removal only), the output (addition only),
/// the user state, and the settings. Calls take effect at once; no lock is held.
pub struct Context<'a, S> {
    pub(crate) inner: &'a mut Inner<S>,
}

impl<S> Context<'_, S> {
    /// The input buffer, from which data may only be removed.
    #[doc(alias = "bufferevent_get_input")]
    pub fn input(&mut self) -> Input<'_> {
        Input {
            buf: self.inner.buffers.input(),
        }
    }

    /// The output buffer, to which data may only be added.
    #[doc(alias = "bufferevent_get_output")]
    pub fn output(&mut self) -> Output<'_> {
        Output {
            buf: self.inner.buffers.output(),
        }
    }

    /// Both buffers at once, for moving data from one to the other.
    ///
    /// # Examples
    ///
    /// An echo read callback:
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::Context;
    ///
    /// fn echo(ctx: &mut Context<'_, ()>) {
    ///     let (mut input, mut output) = ctx.io();
    ///     output.append_input(&mut input);
    /// }
    /// # let _ = echo;
    /// ```
    pub fn io(&mut self) -> (Input<'_>, Output<'_>) {
        let both = self.inner.buffers.get();
        (
            Input {
                buf: &mut both.input,
            },
            Output {
                buf: &mut both.output,
            },
        )
    }

    /// The user state owned by the bufferevent's task.
    pub fn state(&mut self) -> &mut S {
        &mut self.inner.state
    }

    /// The input, the output and the user state at once, so a callback can parse
    /// input into its state, or answer from it, without copying.
    ///
    /// # Examples
    ///
    /// A read callback that counts lines into its state and acknowledges each:
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EolStyle;
    /// use tokio_bufferevent::bufferevent::Context;
    ///
    /// fn on_read(ctx: &mut Context<'_, Vec<bytes::Bytes>>) {
    ///     let (mut input, mut output, lines) = ctx.parts();
    ///     while let Some(line) = input.readln(EolStyle::Lf) {
    ///         lines.push(line);
    ///         output.add(b"ok\n");
    ///     }
    /// }
    /// # let _ = on_read;
    /// ```
    pub fn parts(&mut self) -> (Input<'_>, Output<'_>, &mut S) {
        let inner = &mut *self.inner;
        let both = inner.buffers.get();
        (
            Input {
                buf: &mut both.input,
            },
            Output {
                buf: &mut both.output,
            },
            &mut inner.state,
        )
    }

    /// Turns directions on (`bufferevent_enable`). On a socket or stream with a
    /// transport, enabling WRITE with an empty output yields one write callback (not
    /// on pairs and filters, B-14); enabling a direction restarts its timeout;
    /// enabling READ while it was off, with input that reaches the low watermark (and
    /// is not empty), runs the read callback for that data.
    #[doc(alias = "bufferevent_enable")]
    pub fn enable(&mut self, dirs: Direction) {
        let (i, o) = self.inner.buffers.lens();
        self.inner.core.enable(dirs, i, o);
    }

    /// Turns directions off (`bufferevent_disable`).
    #[doc(alias = "bufferevent_disable")]
    pub fn disable(&mut self, dirs: Direction) {
        self.inner.core.disable(dirs);
    }

    /// The directions the user enabled (`bufferevent_get_enabled`); a direction
    /// suspended by a watermark still counts as enabled.
    #[doc(alias = "bufferevent_get_enabled")]
    pub fn enabled(&self) -> Direction {
        self.inner.core.enabled()
    }

    /// Sets the watermarks of one or both directions (`bufferevent_setwatermark`).
    #[doc(alias = "bufferevent_setwatermark")]
    pub fn set_watermarks(&mut self, dirs: Direction, wm: Watermarks) {
        let len = self.inner.buffers.input_len();
        self.inner.core.set_watermarks(dirs, wm, len);
    }

    /// The watermarks of one direction, or `None` unless `dir` is exactly one
    /// direction (`bufferevent_getwatermark`).
    ///
    /// # Errors
    ///
    /// `None` if `dir` is empty or both directions (libevent returns -1).
    #[doc(alias = "bufferevent_getwatermark")]
    pub fn watermarks(&self, dir: Direction) -> Option<Watermarks> {
        self.inner.core.watermarks(dir)
    }

    /// Sets the read and write timeouts (`bufferevent_set_timeouts`); `None` or zero
    /// means no timeout. A running timer restarts with the new value.
    #[doc(alias = "bufferevent_set_timeouts")]
    pub fn set_timeouts(&mut self, read: Option<Duration>, write: Option<Duration>) {
        self.inner.core.set_timeouts(read, write);
    }

    /// The read and write timeouts.
    pub fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        self.inner.core.timeouts()
    }

    /// Sets the most bytes one read asks the transport for
    /// (`bufferevent_set_max_single_read`); 0, or more than fits in a `u32`, resets
    /// it to the default of 16 KiB.
    #[doc(alias = "bufferevent_set_max_single_read")]
    pub fn set_max_single_read(&mut self, n: usize) {
        self.inner.core.set_max_single(Some(n), None);
    }

    /// Sets the most bytes one write hands the transport
    /// (`bufferevent_set_max_single_write`); 0, or more than fits in a `u32`, resets
    /// it to the default of 16 KiB.
    #[doc(alias = "bufferevent_set_max_single_write")]
    pub fn set_max_single_write(&mut self, n: usize) {
        self.inner.core.set_max_single(None, Some(n));
    }

    /// The most bytes one read asks for (`bufferevent_get_max_single_read`).
    #[doc(alias = "bufferevent_get_max_single_read")]
    pub fn max_single_read(&self) -> usize {
        self.inner.core.max_single_read()
    }

    /// The most bytes one write hands the transport
    /// (`bufferevent_get_max_single_write`).
    #[doc(alias = "bufferevent_get_max_single_write")]
    pub fn max_single_write(&self) -> usize {
        self.inner.core.max_single_write()
    }

    /// Sets, replaces or removes this bufferevent's own rate limit
    /// (`bufferevent_set_rate_limit`): a new limit starts its buckets at the
    /// rate; another configuration keeps the current buckets, clipped to the new
    /// bursts; `None` removes it and lifts its suspension at once.
    #[doc(alias = "bufferevent_set_rate_limit")]
    pub fn set_rate_limit(&mut self, limit: Option<RateLimit>) {
        self.inner.core.set_rate_limit(limit);
    }

    /// The own rate limit, if any.
    #[doc(alias = "bufferevent_get_token_bucket_cfg")]
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.inner.core.rate_limit()
    }

    /// The read bucket (`bufferevent_get_read_limit`): may be negative; `None`
    /// without an own limit (a group's bucket is not counted).
    #[doc(alias = "bufferevent_get_read_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_get_read_limit")]
    pub fn read_limit(&self) -> Option<i64> {
        self.inner.core.limit(true)
    }

    /// The write bucket (`bufferevent_get_write_limit`), as [`read_limit`](Self::read_limit).
    #[doc(alias = "bufferevent_get_write_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_get_write_limit")]
    pub fn write_limit(&self) -> Option<i64> {
        self.inner.core.limit(false)
    }

    /// Takes `n` tokens from the read bucket (`bufferevent_decrement_read_limit`);
    /// a negative `n` gives tokens back. Reading is suspended while the bucket
    /// is at or below 0, and resumes when it rises above. Returns `false` (and does
    /// nothing) without an own limit, where libevent asserts.
    ///
    /// # Errors
    ///
    /// `false` if the bufferevent has no own rate limit (a group's bucket is never
    /// touched here).
    #[doc(alias = "bufferevent_decrement_read_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_decrement_read")]
    pub fn decrement_read_limit(&mut self, n: i64) -> bool {
        self.inner.core.decrement_limit(true, n)
    }

    /// As [`decrement_read_limit`](Self::decrement_read_limit), for writing.
    ///
    /// # Errors
    ///
    /// `false` if the bufferevent has no own rate limit.
    #[doc(alias = "bufferevent_decrement_write_limit")]
    #[doc(alias = "bufferevent_rate_limit_group_decrement_write")]
    pub fn decrement_write_limit(&mut self, n: i64) -> bool {
        self.inner.core.decrement_limit(false, n)
    }

    /// How many bytes the next read may take now (`bufferevent_get_max_to_read`):
    /// `max_single_read`, or the rate limits' allowance where one applies.
    #[doc(alias = "bufferevent_get_max_to_read")]
    pub fn max_to_read(&self) -> usize {
        self.inner.core.single_io(true)
    }

    /// How many bytes the next write may hand the transport now
    /// (`bufferevent_get_max_to_write`).
    #[doc(alias = "bufferevent_get_max_to_write")]
    pub fn max_to_write(&self) -> usize {
        self.inner.core.single_io(false)
    }

    /// Replaces all three callbacks and returns the previous ones (`bufferevent_setcb`,
    /// and `bufferevent_getcb` through the return value). Calls of removed callbacks
    /// that were due are dropped, and so are calls that fell due while a callback was
    /// unset: as in libevent (B-10), an event that finds no callback is dropped, not
    /// kept for one installed later.
    ///
    /// Inside a callback, the returned set lacks the callback that is running: it
    /// cannot be handed out while it runs. The new set applies once it returns.
    #[doc(alias = "bufferevent_getcb")]
    #[doc(alias = "bufferevent_setcb")]
    pub fn set_callbacks(&mut self, callbacks: Callbacks<S>) -> Callbacks<S> {
        let old = &self.inner.callbacks;
        let core = &self.inner.core;
        // Unset, as opposed to taken out because it is the one running.
        let unset = |none: bool, kind: u8| none && !core.is_running(kind);
        let forget = (
            callbacks.read.is_none() || unset(old.read.is_none(), running::READ),
            callbacks.write.is_none() || unset(old.write.is_none(), running::WRITE),
            callbacks.event.is_none() || unset(old.event.is_none(), running::EVENT),
        );
        self.inner.core.forget(forget.0, forget.1, forget.2);
        self.inner.core.callbacks_replaced();
        std::mem::replace(&mut self.inner.callbacks, callbacks)
    }

    /// Runs the read and/or write callback as if data had arrived or drained
    /// (`bufferevent_trigger`), honouring the watermarks unless `ignore_watermarks`.
    /// The calls are made once the current callback returns.
    #[doc(alias = "bufferevent_trigger")]
    pub fn trigger(&mut self, dirs: Direction, ignore_watermarks: bool) {
        let (i, o) = self.inner.buffers.lens();
        self.inner.core.trigger(dirs, ignore_watermarks, i, o);
    }

    /// Delivers `events` to the event callback (`bufferevent_trigger_event`), once the
    /// current callback returns.
    #[doc(alias = "bufferevent_trigger_event")]
    pub fn trigger_event(&mut self, events: Events) {
        self.inner.core.event(events, None);
    }

    /// Frees the bufferevent (`bufferevent_free`): no callback runs afterwards, pending
    /// output is discarded, and the transport is closed when the current callback
    /// returns.
    #[doc(alias = "bufferevent_free")]
    pub fn free(&mut self) {
        self.inner.core.free();
    }

    /// The graceful end (what [`BufferEvent::close`](super::BufferEvent::close)
    /// does): reading stops at once (a filter still reads beneath it, discarding what
    /// it reads, so that its protocol can finish), what is queued is sent, the write
    /// side shuts down, then the bufferevent is freed. If that takes longer than the builder's
    /// [`close_timeout`](super::Builder::close_timeout) (30 s by default), it is freed
    /// with the rest unsent. Callbacks keep running until the end.
    #[doc(alias = "bufferevent_free")]
    pub fn close(&mut self) {
        self.inner.core.close(None);
    }

    /// As [`close`](Self::close), giving up after `within` instead of the builder's
    /// close timeout.
    pub fn close_within(&mut self, within: Duration) {
        self.inner.core.close(Some(within));
    }

    /// Flushes (`bufferevent_flush`), once the current callback returns.
    ///
    /// - Socket or stream: `Normal` and `Flush` do nothing beyond ordinary operation;
    ///   `Finished` with WRITE shuts down the write side once the queued output
    ///   is sent.
    /// - Pair: `Normal` does nothing; `Flush` and `Finished` move everything
    ///   across regardless of watermarks and enabled directions (READ pulls the
    ///   partner's output, WRITE pushes ours), and `Finished` then delivers `EOF` to the
    ///   partner; with WRITE, `Finished` also finishes this element's write side (later
    ///   writes fail with `Error::WriteClosed`, D-P2).
    /// - Filter: runs the input (READ) and/or output (WRITE) filter in `mode`, then
    ///   flushes the underlying bufferevent the same way. A `Normal` flush of
    ///   a disabled direction runs no filter, as in libevent, and is still passed on
    ///   to the underlying bufferevent. With WRITE, `Finished` also finishes the
    ///   filter's write side once everything beneath has passed it on (later writes
    ///   fail with `Error::WriteClosed`).
    #[doc(alias = "bufferevent_flush")]
    pub fn flush(&mut self, dirs: Direction, mode: FlushMode) {
        self.inner.core.flush(dirs, mode);
    }

    /// Whether [`free`](Self::free) was called.
    pub fn is_freed(&self) -> bool {
        self.inner.core.freed()
    }
}

impl<S: fmt::Debug> fmt::Debug for Context<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("input", &self.inner.buffers.input_len())
            .field("output", &self.inner.buffers.output_len())
            .field("enabled", &self.inner.core.enabled())
            .field("state", &self.inner.state)
            .finish()
    }
}

/// A bufferevent's input buffer, seen by user code: data may only be removed
/// (libevent freezes the end of a socket bufferevent's input).
///
/// The methods that copy bytes out without returning a `Result`
/// ([`remove_bytes`](Self::remove_bytes), [`take_all`](Self::take_all),
/// [`remove`](Self::remove), [`readln`](Self::readln), [`copyout`](Self::copyout))
/// give nothing, and remove nothing, when the bytes lie in a file segment (see
/// [`EvBuffer::add_file`]) that cannot be read; the `Result`-returning methods report
/// it as [`EvBufferError::Io`].
///
/// A [`Position`] kept from one callback to the next goes stale when the input
/// changes, as in an [`EvBuffer`]; and one taken while the input was empty also once
/// the task has gone idle with both buffers empty, since a bufferevent no handle can
/// reach then gives its buffers back.
pub struct Input<'a> {
    buf: &'a mut EvBuffer,
}

impl<'a> Input<'a> {
    /// The removal-only view of a buffer the crate owns.
    pub(crate) fn of(buf: &'a mut EvBuffer) -> Self {
        Self { buf }
    }
}

impl Input<'_> {
    /// Bytes in the input.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Removes up to `n` bytes from the front (zero-copy within a chunk).
    pub fn remove_bytes(&mut self, n: usize) -> Bytes {
        self.buf.remove_bytes(n).unwrap_or_default()
    }

    /// Removes everything as one `Bytes` (zero-copy when it is one chunk).
    pub fn take_all(&mut self) -> Bytes {
        self.remove_bytes(usize::MAX)
    }

    /// Copies and removes up to `dst.len()` bytes (`bufferevent_read`).
    pub fn remove(&mut self, dst: &mut [u8]) -> usize {
        self.buf.remove(dst).unwrap_or(0)
    }

    /// Discards up to `n` bytes.
    pub fn drain(&mut self, n: usize) {
        self.buf.discard(n);
    }

    /// Moves everything into a new buffer without copying (`bufferevent_read_buffer`
    /// into an empty buffer).
    pub fn take_buffer(&mut self) -> EvBuffer {
        let mut out = EvBuffer::new();
        out.append_buffer(self.buf);
        out
    }

    /// Moves everything into `dst` without copying (`bufferevent_read_buffer`).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind [`io::ErrorKind::WouldBlock`]) if `dst`'s end
    /// is frozen and the input is not empty; nothing moves.
    pub fn remove_into(&mut self, dst: &mut EvBuffer) -> Result<(), EvBufferError> {
        dst.add_buffer(self.buf)
    }

    /// Moves up to `n` bytes to the end of `dst` without copying (whole chunks move,
    /// a partial one is split), and returns how many (`evbuffer_remove_buffer`
    /// between a bufferevent's own buffers, as a filter does).
    pub fn remove_to(&mut self, dst: &mut Output<'_>, n: usize) -> usize {
        self.buf.move_front_to(dst.buf, n)
    }

    /// Moves up to `n` bytes into `dst` without copying.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::EndFrozen`] (kind [`io::ErrorKind::WouldBlock`]) if `dst`'s end
    /// is frozen and `n > 0`, even when the input is empty (B-108); nothing moves.
    pub fn remove_buffer(&mut self, dst: &mut EvBuffer, n: usize) -> Result<usize, EvBufferError> {
        self.buf.remove_buffer(dst, n)
    }

    /// Removes the next line (see [`EvBuffer::readln`]).
    ///
    /// # Errors
    ///
    /// `None`, with nothing removed, when no whole line is buffered, and also when a
    /// file segment in the input cannot be read (use
    /// [`readln_max`](Self::readln_max) to see that error).
    pub fn readln(&mut self, style: EolStyle) -> Option<Bytes> {
        self.buf.readln(style).ok().flatten()
    }

    /// Removes the next line of at most `max` bytes (see [`EvBuffer::readln_max`]).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::LineTooLong`] (kind [`io::ErrorKind::InvalidData`]) for a
    /// longer line, also one not terminated yet; [`EvBufferError::Io`] (the read
    /// error's kind) if a file segment in the input cannot be read. Nothing is
    /// removed.
    pub fn readln_max(
        &mut self,
        style: EolStyle,
        max: usize,
    ) -> Result<Option<Bytes>, EvBufferError> {
        self.buf.readln_max(style, max)
    }

    /// Reads a line through a [`LineReader`], which skips over-long lines.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::LineTooLong`] (kind [`io::ErrorKind::InvalidData`]) once per
    /// over-long line; [`EvBufferError::Io`] (the read error's kind) if a file
    /// segment in the input cannot be read. See [`LineReader::read_line`].
    pub fn read_line(&mut self, reader: &mut LineReader) -> Result<Option<Bytes>, EvBufferError> {
        reader.read_line(self.buf)
    }

    /// Searches the input (see [`EvBuffer::search`]).
    ///
    /// # Errors
    ///
    /// As [`EvBuffer::search`]: [`EvBufferError::StalePosition`] (kind
    /// [`io::ErrorKind::InvalidInput`]) for a stale `start`; [`EvBufferError::Io`]
    /// (the read error's kind) if a file segment cannot be read.
    pub fn search(
        &self,
        needle: &[u8],
        start: Option<&Position>,
    ) -> Result<Option<Position>, EvBufferError> {
        self.buf.search(needle, start)
    }

    /// Copies from the front without removing.
    pub fn copyout(&self, dst: &mut [u8]) -> usize {
        self.buf.copyout(dst).unwrap_or(0)
    }

    /// Read-only access to the whole buffer, for inspection (`peek`, `search_eol`, ...).
    pub fn buffer(&self) -> &EvBuffer {
        self.buf
    }
}

/// Reading removes what it reads, as `bufferevent_read` does. It fails only when a
/// file segment in the input cannot be read ([`EvBufferError::Io`], with the read
/// error's kind); nothing is removed then.
impl io::Read for Input<'_> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        self.buf.remove(dst).map_err(io::Error::from)
    }
}

impl fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input")
            .field("len", &self.buf.len())
            .finish()
    }
}

/// A bufferevent's output buffer, seen by user code: data may only be added
/// (libevent freezes the front of a socket bufferevent's output).
pub struct Output<'a> {
    buf: &'a mut EvBuffer,
}

impl<'a> Output<'a> {
    /// The addition-only view of a buffer the crate owns.
    pub(crate) fn of(buf: &'a mut EvBuffer) -> Self {
        Self { buf }
    }
}

impl Output<'_> {
    /// Bytes waiting to be sent.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is waiting to be sent.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Queues a copy of `data` (`bufferevent_write`).
    pub fn add(&mut self, data: &[u8]) {
        self.buf.append_copy(data);
    }

    /// Queues `data` without copying.
    pub fn add_bytes(&mut self, data: Bytes) {
        self.buf.append_bytes(data);
    }

    /// Queues formatted text and returns its length.
    pub fn add_fmt(&mut self, args: fmt::Arguments<'_>) -> usize {
        let before = self.buf.len();
        // `fmt::Write` for a buffer that is never frozen cannot fail; a `Display`
        // impl that fails leaves what it wrote so far, as `format!` would panic.
        if fmt::write(&mut Appender(self.buf), args).is_err() {
            tracing::debug!("a Display implementation failed while formatting output");
        }
        self.buf.len() - before
    }

    /// Moves all of `src` into the output without copying (`bufferevent_write_buffer`).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::FrontFrozen`] (kind [`io::ErrorKind::WouldBlock`]) if `src`'s
    /// front is frozen and `src` is not empty; nothing moves.
    pub fn add_buffer(&mut self, src: &mut EvBuffer) -> Result<(), EvBufferError> {
        self.buf.add_buffer(src)
    }

    /// Moves the whole input into the output without copying: an echo.
    pub fn append_input(&mut self, input: &mut Input<'_>) {
        self.buf.append_buffer(input.buf);
    }
}

/// Formats straight into a buffer the crate owns.
struct Appender<'a>(&'a mut EvBuffer);

impl fmt::Write for Appender<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.append_copy(s.as_bytes());
        Ok(())
    }
}

/// Writing appends a copy; it never fails and never writes short.
impl io::Write for Output<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.add(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Write for Output<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.add(s.as_bytes());
        Ok(())
    }
}

impl fmt::Debug for Output<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("len", &self.buf.len())
            .finish()
    }
}
