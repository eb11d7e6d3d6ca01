//! [`BufferEvent`], the handle: a cloneable remote control for one bufferevent.
//!
//! Every operation is a command to the bufferevent's task; what handles read (buffer
//! lengths, settings, connected, closed) is published by the task, and a setter's
//! new value is shown at once by every handle (see `shared.rs`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::context::{Callbacks, Context};
use super::core;
use super::error::Error;
use super::events::{Direction, Events, FlushMode, Readiness, Watermarks};
use super::mailbox::{Command, Remote};
use super::shared::{Closed, Condition, EventRecord, Knob, Shared, Stall, Stats, TransportInfo};
use super::transport::{Attach, Transport};
use crate::buffer::EvBuffer;

/// A handle to a bufferevent (`struct bufferevent *`): cheap to clone, `Send + Sync`,
/// usable from any thread.
///
/// Every operation is a message to the bufferevent's task, applied in order; the
/// facts handles poll often (buffer lengths, enabled directions, connected, closed)
/// are published by the task and read without a round trip. Dropping every handle
/// does not stop a bufferevent that still has callbacks and a peer to serve; it ends
/// when it is freed or closed, or when no handle is left and nothing more can happen
/// (the peer finished and the output is sent, or it has no callbacks and nothing left
/// to send).
///
/// Memory: a handle shares one allocation with its bufferevent (about 550 bytes: the
/// published facts and the command queue). Once no handle is left, nor any handle
/// that a pair partner or a filter could hand out, the bufferevent drops it and
/// publishes nothing more, so a server that keeps no handles (as libevent servers keep
/// only the callbacks' context) pays for the task alone: about 1.1 KiB per idle TCP
/// connection, see [`docs/PERFORMANCE.md`](https://github.com/tokio-bufferevent/tokio-bufferevent/blob/main/docs/PERFORMANCE.md).
///
/// Operations on a bufferevent that has ended do nothing; those that return a result
/// report it with [`Error::Ended`].
///
/// A handle reads its own writes: after `enable`, `disable`, `set_watermarks`,
/// `set_timeouts` or `set_max_single_*` returns, [`enabled`](Self::enabled),
/// [`watermarks`](Self::watermarks), [`timeouts`](Self::timeouts) and the
/// `max_single_*` getters show the change, from this handle and every other, with no
/// `.await`; [`output_len`](Self::output_len) counts a write at once. What only the
/// task can know is as the task last published it, so it may lag by one pass of the
/// task: [`input_len`](Self::input_len) (data arrives on its own),
/// [`is_connected`](Self::is_connected) after a connect, [`is_closed`](Self::is_closed),
/// [`last_event`](Self::last_event), and a direction the task disabled itself (on EOF,
/// an error or a timeout). The readiness futures wait for those.
#[doc(alias = "bufferevent")]
pub struct BufferEvent<T = TcpStream, S = ()> {
    pub(crate) remote: Arc<Remote<T, S>>,
    pub(crate) runtime: Handle,
}

impl<T, S> Clone for BufferEvent<T, S> {
    fn clone(&self) -> Self {
        self.remote.mailbox.add_handle();
        Self {
            remote: Arc::clone(&self.remote),
            runtime: self.runtime.clone(),
        }
    }
}

impl<T, S> Drop for BufferEvent<T, S> {
    fn drop(&mut self) {
        self.remote.mailbox.drop_handle();
    }
}

impl<T, S> BufferEvent<T, S> {
    pub(crate) fn shared(&self) -> &Shared {
        &self.remote.shared
    }
}

/// A handle that does not keep its bufferevent alive: what a pair element keeps of
/// its partner, and a filter of its underlying bufferevent.
pub(crate) struct WeakHandle<T, S> {
    remote: std::sync::Weak<Remote<T, S>>,
    runtime: Handle,
}

impl<T, S> WeakHandle<T, S> {
    pub(crate) fn of(bev: &BufferEvent<T, S>) -> Self {
        Self {
            remote: Arc::downgrade(&bev.remote),
            runtime: bev.runtime.clone(),
        }
    }

    /// A handle, unless the bufferevent has ended.
    pub(crate) fn upgrade(&self) -> Option<BufferEvent<T, S>> {
        let remote = self.remote.upgrade()?;
        if remote.shared.is_closed() {
            return None;
        }
        remote.mailbox.add_handle();
        Some(BufferEvent {
            remote,
            runtime: self.runtime.clone(),
        })
    }
}

impl<T, S> BufferEvent<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    pub(crate) fn send(&self, command: Command<T, S>) -> bool {
        self.remote.mailbox.send(command)
    }

    /// Refuses writes once the write side is shut down or failed: they could never
    /// be sent.
    pub(crate) fn check_writable(&self) -> Result<(), Error> {
        // The half, then the end: the task stores the end first as it ends.
        let write_closed = self.shared().write_closed.load(Ordering::Acquire);
        if self.shared().is_closed() {
            Err(Error::Ended)
        } else if write_closed {
            Err(Error::WriteClosed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn run(&self, f: impl FnOnce(&mut Context<'_, S>) + Send + 'static) {
        self.send(Command::Run(Box::new(f)));
    }

    /// Changes a setting: every handle shows `change` at once, and the task applies
    /// `f`. Nothing happens if the bufferevent has ended.
    fn set(
        &self,
        knob: Knob,
        change: impl FnOnce(&mut super::shared::Settings),
        f: impl FnOnce(&mut Context<'_, S>) + Send + 'static,
    ) {
        if self.shared().is_closed() {
            return;
        }
        self.shared()
            .request(knob, change, || self.send(Command::Set(knob, Box::new(f))));
    }

    // ---- settings ----------------------------------------------------------------

    /// Enables directions (`bufferevent_enable`). On a socket or stream with a
    /// transport, enabling WRITE with an empty output yields one write callback (not
    /// on pairs and filters, B-14); enabling restarts the direction's timeout.
    /// [`enabled`](Self::enabled) shows the change at once.
    #[doc(alias = "bufferevent_enable")]
    pub fn enable(&self, dirs: Direction) {
        // Going on after a timeout: waiters wait again rather than see it. Only here:
        // the view may still show the direction on while its timeout is delivered,
        // before the task publishes it off, so no other setting may clear it. Before
        // the command: a timeout that fires after the task has applied it is a new
        // one, and must stay seen (one that fired before is cleared by the task as it
        // publishes the direction on).
        if dirs.contains(Direction::READ) {
            self.shared().read_timed_out.store(false, Ordering::Release);
        }
        if dirs.contains(Direction::WRITE) {
            self.shared().set_write_timed_out(false);
        }
        self.set(
            Knob::Enabled,
            |s| s.enabled |= dirs,
            move |ctx| ctx.enable(dirs),
        );
    }

    /// Disables directions (`bufferevent_disable`). [`enabled`](Self::enabled) shows
    /// the change at once.
    #[doc(alias = "bufferevent_disable")]
    pub fn disable(&self, dirs: Direction) {
        self.set(
            Knob::Enabled,
            |s| s.enabled = s.enabled.without(dirs),
            move |ctx| ctx.disable(dirs),
        );
    }

    /// The enabled directions (`bufferevent_get_enabled`): what this handle (or any
    /// handle) last set, otherwise as last published by the task, which disables a
    /// direction on EOF, errors and timeouts. A direction paused by a watermark
    /// still counts as enabled.
    #[doc(alias = "bufferevent_get_enabled")]
    pub fn enabled(&self) -> Direction {
        self.shared().enabled()
    }

    /// Sets the watermarks of one or both directions (`bufferevent_setwatermark`);
    /// [`watermarks`](Self::watermarks) shows them at once.
    #[doc(alias = "bufferevent_setwatermark")]
    pub fn set_watermarks(&self, dirs: Direction, wm: Watermarks) {
        self.set(
            Knob::Watermarks,
            |s| {
                if dirs.contains(Direction::READ) {
                    s.read_wm = wm;
                }
                if dirs.contains(Direction::WRITE) {
                    s.write_wm = wm;
                }
            },
            move |ctx| ctx.set_watermarks(dirs, wm),
        );
    }

    /// The watermarks of `dir`, or `None` unless `dir` is exactly one direction
    /// (`bufferevent_getwatermark`).
    ///
    /// # Errors
    ///
    /// `None` if `dir` is empty or both directions (libevent returns -1).
    #[doc(alias = "bufferevent_getwatermark")]
    pub fn watermarks(&self, dir: Direction) -> Option<Watermarks> {
        let s = self.shared().settings();
        if dir == Direction::READ {
            Some(s.read_wm)
        } else if dir == Direction::WRITE {
            Some(s.write_wm)
        } else {
            None
        }
    }

    /// Sets the read and write timeouts (`bufferevent_set_timeouts`); `None` or zero
    /// means none. [`timeouts`](Self::timeouts) shows them at once.
    #[doc(alias = "bufferevent_set_timeouts")]
    pub fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) {
        let usable = |d: Option<Duration>| {
            d.filter(|d| !d.is_zero())
                .map(|d| d.min(Duration::from_nanos(u64::MAX)))
        };
        self.set(
            Knob::Timeouts,
            |s| {
                s.read_timeout = usable(read);
                s.write_timeout = usable(write);
            },
            move |ctx| ctx.set_timeouts(read, write),
        );
    }

    /// The read and write timeouts (`None`: no timeout).
    pub fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        let s = self.shared().settings();
        (s.read_timeout, s.write_timeout)
    }

    /// Sets the most bytes one read asks the transport for
    /// (`bufferevent_set_max_single_read`): 0, or 4 GiB or more, resets it to
    /// the default of 16 KiB. [`max_single_read`](Self::max_single_read) shows it at
    /// once.
    #[doc(alias = "bufferevent_set_max_single_read")]
    pub fn set_max_single_read(&self, n: usize) {
        self.set(
            Knob::MaxSingle,
            |s| s.max_single_read = core::single_io_limit(n) as usize,
            move |ctx| ctx.set_max_single_read(n),
        );
    }

    /// Sets the most bytes one write hands the transport
    /// (`bufferevent_set_max_single_write`): 0, or 4 GiB or more, resets it
    /// to the default of 16 KiB.
    #[doc(alias = "bufferevent_set_max_single_write")]
    pub fn set_max_single_write(&self, n: usize) {
        self.set(
            Knob::MaxSingle,
            |s| s.max_single_write = core::single_io_limit(n) as usize,
            move |ctx| ctx.set_max_single_write(n),
        );
    }

    /// The most bytes one read asks the transport for
    /// (`bufferevent_get_max_single_read`).
    #[doc(alias = "bufferevent_get_max_single_read")]
    pub fn max_single_read(&self) -> usize {
        self.shared().settings().max_single_read
    }

    /// The most bytes one write hands the transport
    /// (`bufferevent_get_max_single_write`).
    #[doc(alias = "bufferevent_get_max_single_write")]
    pub fn max_single_write(&self) -> usize {
        self.shared().settings().max_single_write
    }

    /// Replaces the callbacks without waiting (`bufferevent_setcb`): a command applied
    /// in order with this handle's others, like [`enable`](Self::enable), so it can be
    /// issued for another bufferevent from inside a callback, as libevent's `le-proxy`
    /// does for its partner on EOF. The previous callbacks are dropped on the task;
    /// use [`set_callbacks`](Self::set_callbacks) to get them back. Nothing happens if
    /// the bufferevent has ended.
    #[doc(alias = "bufferevent_setcb")]
    pub fn replace_callbacks(&self, callbacks: Callbacks<S>) {
        self.run(move |ctx| drop(ctx.set_callbacks(callbacks)));
    }

    /// Replaces the callbacks and returns the previous ones (`bufferevent_setcb`;
    /// the returned set is `bufferevent_getcb`).
    ///
    /// # Errors
    ///
    /// [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)) if the
    /// bufferevent has ended; `callbacks` are dropped then.
    ///
    /// # Cancel safety
    ///
    /// If cancelled, the callbacks may or may not have been replaced.
    #[doc(alias = "bufferevent_getcb")]
    #[doc(alias = "bufferevent_setcb")]
    pub async fn set_callbacks(&self, callbacks: Callbacks<S>) -> Result<Callbacks<S>, Error> {
        self.with(move |ctx| ctx.set_callbacks(callbacks)).await
    }

    // ---- data ------------------------------------------------------------------

    /// Queues `data` for sending without waiting (`bufferevent_write`). Never blocks,
    /// whatever the watermarks say; [`output_len`](Self::output_len) counts it at
    /// once.
    ///
    /// # Errors
    ///
    /// [`Error::WriteClosed`] (kind
    /// [`io::ErrorKind::BrokenPipe`](std::io::ErrorKind::BrokenPipe)) if the write side
    /// was shut down or failed; [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)) if the
    /// bufferevent has ended. Nothing is queued then. Empty `data` always succeeds.
    #[doc(alias = "bufferevent_write")]
    pub fn write_now(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        let data = data.into();
        if data.is_empty() {
            return Ok(()); // B-28
        }
        self.check_writable()?;
        let n = data.len();
        self.shared().in_flight.fetch_add(n, Ordering::AcqRel);
        if self.send(Command::Write(data)) {
            Ok(())
        } else {
            self.shared().in_flight.fetch_sub(n, Ordering::AcqRel);
            Err(Error::Ended)
        }
    }

    /// Queues `data` for sending, first waiting while the output is above the write
    /// high watermark when one is set: backpressure for async writers.
    ///
    /// # Errors
    ///
    /// As [`writable`](Self::writable); nothing is queued then.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if cancelled while waiting, nothing was queued.
    #[doc(alias = "bufferevent_write")]
    pub async fn write(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        let data = data.into();
        self.writable().await?;
        self.write_now(data)
    }

    /// Waits until the output is at or below the write high watermark (immediately
    /// when none is set).
    ///
    /// # Errors
    ///
    /// [`Error::WriteClosed`] (kind [`io::ErrorKind::BrokenPipe`](std::io::ErrorKind::BrokenPipe)) if the write side
    /// was shut down or failed, at once or while waiting, or if the output is above the
    /// high watermark with nothing left to take it (a pair element whose partner, or
    /// a filter whose underlying bufferevent, is gone); [`Error::TimedOut`] if the
    /// output is above the high watermark and the write timeout disabled WRITE (enable
    /// it to go on); [`Error::ConnectFailed`] if the output is above the high
    /// watermark and the last connect failed and left no transport; [`Error::Ended`]
    /// (kind [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)) if the
    /// bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn writable(&self) -> Result<(), Error> {
        let shared = self.shared();
        loop {
            let ok = shared
                .wait_until(Condition::Output, Shared::writable_or_closed)
                .await;
            if !ok || shared.is_closed() {
                return Err(Error::Ended);
            }
            self.check_writable()?;
            if shared.below_write_high() {
                return Ok(());
            }
            match shared.stall() {
                Some(Stall::TimedOut) => return Err(Error::TimedOut),
                Some(Stall::WriteClosed | Stall::Stranded) => return Err(Error::WriteClosed),
                Some(Stall::Unconnected) => {
                    // None: a new connect began meanwhile; wait for it.
                    if let Some(e) = shared.unconnected() {
                        return Err(Error::ConnectFailed(e));
                    }
                }
                None => {}
            }
            // Woken by a timeout that WRITE, enabled again since, took back: wait on.
        }
    }

    /// Moves all of `buf` to the output without copying (`bufferevent_write_buffer`);
    /// `buf` is left empty.
    ///
    /// # Errors
    ///
    /// [`Error::Buffer`] with
    /// [`EvBufferError::FrontFrozen`](crate::buffer::EvBufferError::FrontFrozen) (kind
    /// [`io::ErrorKind::InvalidInput`](std::io::ErrorKind::InvalidInput)) if
    /// `buf`'s front is frozen and `buf` is not empty (nothing moves);
    /// [`Error::WriteClosed`] (kind
    /// [`io::ErrorKind::BrokenPipe`](std::io::ErrorKind::BrokenPipe)) if the write side
    /// was shut down or failed; [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)) if the
    /// bufferevent has ended. On these errors `buf` keeps its bytes (unless the
    /// bufferevent ended in the instant between the check and the hand-over: then they
    /// are gone with it). An empty `buf` always succeeds.
    #[doc(alias = "bufferevent_write_buffer")]
    pub fn write_buffer(&self, buf: &mut EvBuffer) -> Result<(), Error> {
        // A buffer of our own, never frozen: the task appends it without a check.
        let mut moved = EvBuffer::new();
        moved.add_buffer(buf).map_err(Error::Buffer)?;
        let n = moved.len();
        if n == 0 {
            return Ok(());
        }
        if let Err(refused) = self.check_writable() {
            // Nothing is lost: the bytes go back where they were (its front was not
            // frozen, or nothing would have moved).
            let _ = buf.prepend_buffer(&mut moved);
            return Err(refused);
        }
        self.shared().in_flight.fetch_add(n, Ordering::AcqRel);
        if self.send(Command::WriteBuffer(moved)) {
            Ok(())
        } else {
            self.shared().in_flight.fetch_sub(n, Ordering::AcqRel);
            Err(Error::Ended)
        }
    }

    /// Removes up to `max` bytes from the input (`bufferevent_read`); empty when the
    /// input is empty.
    ///
    /// # Errors
    ///
    /// [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)) if the
    /// bufferevent has ended; [`Error::Buffer`] with
    /// [`EvBufferError::Io`](crate::buffer::EvBufferError::Io) (the read
    /// error's kind), nothing removed, if the bytes lie in a file segment that cannot
    /// be read (see [`EvBuffer::add_file`]).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if cancelled after the task removed the bytes, they are lost.
    #[doc(alias = "bufferevent_read")]
    pub async fn read(&self, max: usize) -> Result<Bytes, Error> {
        // Input already handed to readers answers without a round trip.
        let shared = self.shared();
        if let Some(taken) = shared
            .polled_if_any()
            .and_then(|p| p.takeout.take_up_to(max, &shared.input_len))
        {
            return Ok(taken);
        }
        self.with(move |ctx| ctx.inner.buffers.input().remove_bytes(max))
            .await?
            .map_err(Error::Buffer)
    }

    /// Moves the whole input into a new buffer without copying
    /// (`bufferevent_read_buffer`).
    ///
    /// # Errors
    ///
    /// [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)) if the
    /// bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`read`](Self::read).
    #[doc(alias = "bufferevent_read_buffer")]
    pub async fn read_buffer(&self) -> Result<EvBuffer, Error> {
        let shared = self.shared();
        if let Some(taken) = shared
            .polled_if_any()
            .and_then(|p| p.takeout.take_all(&shared.input_len))
        {
            return Ok(taken);
        }
        self.with(|ctx| ctx.input().take_buffer()).await
    }

    /// Whether `other` is a handle of this same bufferevent.
    pub(crate) fn same_as<T2, S2>(&self, other: &BufferEvent<T2, S2>) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.remote), Arc::as_ptr(&other.remote))
    }

    /// Bytes in the input, as last published by the task.
    pub fn input_len(&self) -> usize {
        self.shared().input_total()
    }

    /// Bytes waiting to be sent, including writes the task has not applied yet.
    pub fn output_len(&self) -> usize {
        self.shared().output_total()
    }

    /// What the bufferevent has done: bytes read and written, callbacks run by kind,
    /// buffer lengths now and at their peak, and when bytes last moved each way.
    ///
    /// Read without a lock or a round trip, as the task last published it: lengths,
    /// peaks and times may lag by one wake-up of the task. The counters are kept from
    /// the start, and for as long as any handle exists; a bufferevent that no handle
    /// can reach stops keeping them.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Direction};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokio_bufferevent::bufferevent::Error> {
    /// let (a, b) = BufferEvent::pair();
    /// b.enable(Direction::READ);
    /// a.write(&b"twelve bytes"[..]).await?;
    /// b.read_exact(12).await?;
    /// assert_eq!(a.stats().bytes_written, 12);
    /// assert_eq!(b.stats().bytes_read, 12);
    /// assert!(b.stats().last_read.is_some());
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        let shared = self.shared();
        let lengths = (shared.input_total(), shared.output_total());
        // A listener's connection counts into its membership while it lives, and
        // leaves a copy here when it ends.
        let member = shared.member.get().and_then(std::sync::Weak::upgrade);
        let counters = member.as_deref().map_or(&shared.counters, |m| &m.counters);
        counters.snapshot(lengths.0, lengths.1)
    }

    // ---- control -------------------------------------------------------------------

    /// Runs `f` on the task with the bufferevent's [`Context`] and returns its result:
    /// an atomic batch of operations (libevent's `bufferevent_lock`/`unlock`). No
    /// callback or I/O runs in between.
    ///
    /// A panic in `f` is contained like a panicking callback: the bufferevent ends
    /// with an error.
    ///
    /// # Errors
    ///
    /// [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)) if the
    /// bufferevent has ended before `f` ran (`f` is dropped then), or if `f` panicked
    /// (which ends it).
    ///
    /// # Cancel safety
    ///
    /// If cancelled before the task reached `f`, `f` does not run; if cancelled
    /// after, `f` has run and its result is dropped: a call cancelled and made again
    /// at once, as in a `select!` loop, may run `f` twice. (The read helpers, which
    /// run on `with`, put back what a cancelled call took.)
    #[doc(alias = "bufferevent_lock")]
    #[doc(alias = "bufferevent_unlock")]
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Context<'_, S>) -> R + Send + 'static,
    ) -> Result<R, Error> {
        // The caller may stop waiting after `f` ran: then its result is dropped.
        self.ask(f, |_| None).await
    }

    /// [`with`](Self::with), where `give_back` says which bytes `f`'s result took from
    /// the input: if the caller stopped waiting before the answer went out, the task
    /// puts them back at the input's front before it runs anything else, so a call
    /// made again at once sees them first.
    pub(crate) async fn ask<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Context<'_, S>) -> R + Send + 'static,
        give_back: fn(R) -> Option<Bytes>,
    ) -> Result<R, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Ask(Box::new(move |ctx| {
            if tx.is_closed() {
                // Nobody waits: what `f` would take (a read helper's bytes) stays put
                // for the calls after this one.
                return Box::new(|| None);
            }
            let out = f(ctx);
            Box::new(move || tx.send(out).err().and_then(give_back))
        })));
        rx.await.map_err(|_| Error::Ended)
    }

    /// Flushes (`bufferevent_flush`); what that means depends on the kind of
    /// bufferevent, see [`Context::flush`].
    #[doc(alias = "bufferevent_flush")]
    pub fn flush(&self, dirs: Direction, mode: FlushMode) {
        self.run(move |ctx| ctx.flush(dirs, mode));
    }

    /// Runs the read and/or write callback as if data had arrived or drained
    /// (`bufferevent_trigger`), honouring the watermarks unless `ignore_watermarks`.
    #[doc(alias = "bufferevent_trigger")]
    pub fn trigger(&self, dirs: Direction, ignore_watermarks: bool) {
        self.run(move |ctx| ctx.trigger(dirs, ignore_watermarks));
    }

    /// Delivers `events` to the event callback (`bufferevent_trigger_event`).
    #[doc(alias = "bufferevent_trigger_event")]
    pub fn trigger_event(&self, events: Events) {
        self.run(move |ctx| ctx.trigger_event(events));
    }

    /// Frees the bufferevent (`bufferevent_free`): no callback runs afterwards,
    /// pending output is discarded, and the transport is closed by the task.
    /// Use [`close`](Self::close) to send the output first.
    #[doc(alias = "bufferevent_free")]
    pub fn free(&self) {
        self.run(|ctx| ctx.free());
    }

    /// The graceful end, bounded in time: reading stops at once (nothing more is read
    /// from the transport; a filter still reads beneath it, so that its protocol can
    /// finish, as TLS's close exchange, and discards what it reads), what is queued is
    /// sent, the write side shuts down, then the bufferevent is freed. Resolves with
    /// how it ended.
    ///
    /// A peer that does not read (or a TLS peer that never answers) cannot hold it:
    /// after the builder's [`close_timeout`](super::Builder::close_timeout) (30 s by
    /// default) the bufferevent is freed anyway, and [`Closed::unsent`] says how many
    /// bytes were left; [`Closed::error`] is then of kind
    /// [`io::ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut). A socket
    /// bufferevent whose connect is under way with no transport yet ends at once when
    /// nothing is queued (the connect is abandoned); with data queued it waits for the
    /// connect to send it. (A filter over such a socket waits for the connect.)
    ///
    /// # Errors
    ///
    /// None as such: failures show in the [`Closed`] it resolves with.
    /// [`Closed::error`] is of kind
    /// [`io::ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut) when the close
    /// timeout expired; otherwise it is the last error delivered to the event
    /// callback, if any (such as the transport's error when a write failed during
    /// the close, the rest then counted in [`Closed::unsent`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the close goes on without the caller.
    #[doc(alias = "bufferevent_free")]
    pub async fn close(&self) -> Closed {
        self.run(|ctx| ctx.close());
        self.closed().await
    }

    /// As [`close`](Self::close), giving up after `within` instead of the builder's
    /// close timeout.
    ///
    /// # Errors
    ///
    /// As [`close`](Self::close): [`Closed::error`] is of kind
    /// [`io::ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut) when `within`
    /// passed first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the close goes on without the caller.
    pub async fn close_within(&self, within: Duration) -> Closed {
        self.run(move |ctx| ctx.close_within(within));
        self.closed().await
    }

    /// The runtime the task runs on (`bufferevent_get_base`).
    #[doc(alias = "bufferevent_get_base")]
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// Whether the bufferevent has a connected transport (false before a connect
    /// completes and after the bufferevent ended).
    pub fn is_connected(&self) -> bool {
        self.shared().connected.load(Ordering::Acquire)
    }

    /// Whether the bufferevent has ended.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    // ---- readiness ---------------------------------------------------------------

    /// Waits until the input holds at least `n` bytes, and says why it stopped
    /// waiting: [`Readiness::Ready`], or, when `n` bytes can no longer come, the reason
    /// (EOF, a read error, the read timeout, the end of the bufferevent). `n` above
    /// the read high watermark can never be held: that resolves at once with
    /// [`Readiness::AboveHighWatermark`], as does a wait whose `n` a new high watermark
    /// puts out of reach. What did arrive stays in the input
    /// ([`input_len`](Self::input_len)).
    ///
    /// Waiting does not enable reading. While READ is disabled (as on a new
    /// bufferevent, which enables only WRITE, as libevent's does), bytes come only
    /// once a handle or a callback enables it, and the wait lasts until then: enable
    /// READ first, as the example does ([`into_io`](Self::into_io) does it for you).
    ///
    /// # Errors
    ///
    /// A failure is a [`Readiness`] other than [`Readiness::Ready`]:
    /// [`Readiness::AboveHighWatermark`] at once if `n` is above the read high
    /// watermark; otherwise, once fewer than `n` bytes can come, the first that
    /// applies of [`Readiness::TimedOut`] (the read timeout expired and READ was
    /// not enabled again), [`Readiness::Failed`] (reading failed; the transport's
    /// error), [`Readiness::Ended`] (the bufferevent ended, also after an EOF) and
    /// [`Readiness::Eof`] (the peer finished, or, for a pair element or a filter, its
    /// partner or underlying bufferevent is gone, even when its event callback hears
    /// nothing of it: D-P1); last, [`Readiness::Failed`] with the connect's error when
    /// the last connect failed and left no transport (nothing can arrive until a new
    /// connect, which makes the next call wait again).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: waiting consumes nothing. Any number of tasks may wait at once.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Readiness};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokio_bufferevent::bufferevent::Error> {
    /// let (a, b) = BufferEvent::builder()
    ///     .pair(BufferEvent::builder().enable(Direction::READ).partner_end_is_eof(true));
    /// a.write(&b"four"[..]).await?;
    /// assert_eq!(b.readable(4).await, Readiness::Ready);
    /// a.close().await;
    /// assert_eq!(b.readable(100).await, Readiness::Eof);
    /// assert_eq!(b.input_len(), 4, "kept");
    /// # Ok(()) }
    /// ```
    pub async fn readable(&self, n: usize) -> Readiness {
        let shared = self.shared();
        // Also while waiting: a watermark lowered below `n` ends the wait.
        let too_high = |s: &Shared| {
            let high = s.read_high();
            high != 0 && n > high
        };
        loop {
            let high = shared.read_high();
            if high != 0 && n > high {
                return Readiness::AboveHighWatermark { high };
            }
            shared
                .wait_until(Condition::Input, |s| {
                    s.input_total() >= n
                        || s.read_closed.load(Ordering::Acquire)
                        || s.read_timed_out.load(Ordering::Acquire)
                        || s.is_cut_off()
                        || too_high(s)
                })
                .await;
            // The ends first, then the length: the task publishes the length first,
            // so a length read after an end includes the input that came before it.
            let timed_out = shared.read_timed_out.load(Ordering::Acquire);
            let closed = shared.is_closed();
            let no_more = shared.read_closed.load(Ordering::Acquire) || shared.is_stranded();
            return if shared.input_total() >= n {
                Readiness::Ready
            } else if too_high(shared) {
                continue;
            } else if timed_out {
                Readiness::TimedOut
            } else if let Some(e) = shared.read_error() {
                Readiness::Failed(e)
            } else if closed {
                Readiness::Ended
            } else if no_more {
                Readiness::Eof
            } else if let Some(e) = shared.unconnected() {
                Readiness::Failed(e)
            } else {
                // What woke the wait no longer holds (another reader took the bytes,
                // READ was enabled again after a timeout): wait again.
                continue;
            };
        }
    }

    /// Waits until the output is at or below the write low watermark (empty with the
    /// default of 0), or it can no longer drain: the write side closed with data
    /// unsent, the write timeout disabled WRITE, the pair partner (or the filter's
    /// underlying bufferevent) is gone, the last connect failed and left no transport
    /// (the output stays queued for a new connect), or the bufferevent ended.
    /// [`output_len`](Self::output_len) tells which.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Any number of tasks may wait at once.
    pub async fn drained(&self) {
        self.shared()
            .wait_until(Condition::Output, |s| {
                s.output_total() <= s.write_low() || s.write_stalled()
            })
            .await;
    }

    /// Waits until the bufferevent has a connected transport.
    ///
    /// Resolves at once when it is connected, or when the last connect already
    /// failed and no other is under way; waits while a connect is under way (also
    /// when an earlier transport stays in use meanwhile, D-C3: the answer is that
    /// connect's), or while there is no transport yet (one may still be given).
    ///
    /// # Errors
    ///
    /// [`Error::ConnectFailed`] with the reason when the last connect failed (also for
    /// a filter whose underlying bufferevent failed to connect, before or after the
    /// filter was made), even if the
    /// bufferevent ended since. Its kind is the connect's: the OS's (such as
    /// [`ConnectionRefused`](std::io::ErrorKind::ConnectionRefused)),
    /// [`TimedOut`](std::io::ErrorKind::TimedOut) when the builder's
    /// [`connect_timeout`](super::Builder::connect_timeout) expired, and for a failed
    /// hostname lookup [`NotFound`](std::io::ErrorKind::NotFound) (no such host, no
    /// address), [`ConnectionRefused`](std::io::ErrorKind::ConnectionRefused) (the name
    /// server refused) or [`Other`](std::io::ErrorKind::Other) (a timeout included;
    /// `BufferEvent::dns_error` tells which). [`Error::Ended`] (kind
    /// [`io::ErrorKind::NotConnected`](std::io::ErrorKind::NotConnected)) if the
    /// bufferevent ended with no connect failed, or nothing can connect it any more (a
    /// filter, never connected, whose underlying bufferevent is gone).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Any number of tasks may wait at once.
    pub async fn connected(&self) -> Result<(), Error> {
        let shared = self.shared();
        let failed = |s: &Shared| matches!(s.connect_outcome(), Some(Some(_)));
        // Connected, with no connect under way: a transport still in use while a new
        // connect runs (D-C3) is not the answer to that connect.
        let settled = |s: &Shared| {
            s.connected.load(Ordering::Acquire) && matches!(s.connect_outcome(), Some(None))
        };
        loop {
            shared
                .wait_until(Condition::Connect, |s| {
                    settled(s) || failed(s) || s.is_stranded() || s.is_closed()
                })
                .await;
            if settled(shared) {
                return Ok(());
            }
            match shared.connect_outcome() {
                Some(Some(error)) => return Err(Error::ConnectFailed(error)),
                _ if shared.is_closed() || shared.is_stranded() => return Err(Error::Ended),
                // The failure that woke the wait gave way to a new connect (another
                // handle started one): wait for that one.
                _ => {}
            }
        }
    }

    /// Waits until the bufferevent has ended and says how.
    ///
    /// # Errors
    ///
    /// None as such: how it ended, errors included, is in the [`Closed`] it resolves
    /// with (see [`Closed::error`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Any number of tasks may wait at once.
    pub async fn closed(&self) -> Closed {
        self.shared()
            .wait_until(Condition::Event, Shared::is_closed)
            .await;
        self.shared().closed().unwrap_or(Closed {
            events: Events::empty(),
            error: None,
            unsent: 0,
        })
    }

    /// The most recent event delivered to the event callback, if any, without
    /// waiting.
    pub fn last_event(&self) -> Option<EventRecord> {
        self.shared().last_event()
    }

    /// The socket's file descriptor (`bufferevent_getfd`). Known for a socket given
    /// through [`Builder::tcp`](super::Builder::tcp), [`set_tcp`](Self::set_tcp) or
    /// a `connect*` method; `None` otherwise (a pair, any stream given through
    /// `stream` or [`set_transport`](Self::set_transport), a `TcpStream` too). A
    /// filter reports its underlying bufferevent's.
    #[cfg(unix)]
    #[doc(alias = "bufferevent_getfd")]
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.shared().info().fd
    }

    /// The socket's local address; known when [`fd`](Self::fd) is.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared().info().local
    }

    /// The peer's address; known when [`fd`](Self::fd) is.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared().info().peer
    }

    /// Waits for the next event delivered after the call; `None` if the bufferevent
    /// ended without one.
    ///
    /// # Errors
    ///
    /// `None` if the bufferevent ended (or had ended) with no event delivered after
    /// the call. An event's own error is in [`EventRecord::error`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Any number of tasks may wait at once; each sees the event.
    pub async fn next_event(&self) -> Option<EventRecord> {
        let seen = self.shared().event_seq();
        let got = self
            .shared()
            .wait_until(Condition::Event, |s| s.event_seq() != seen)
            .await;
        if got {
            self.shared().last_event()
        } else {
            None
        }
    }
}

impl<T, S> BufferEvent<T, S>
where
    T: Transport,
    S: Send + 'static,
{
    /// Stops the bufferevent and returns its transport, or `None` if it has none or
    /// has already ended. Pending output is not sent.
    ///
    /// # Errors
    ///
    /// `None` if the bufferevent has no transport (none was given, or a connect is
    /// still under way: it is dropped) or has already ended.
    ///
    /// # Cancel safety
    ///
    /// If cancelled, the transport is dropped (closed).
    pub async fn into_inner(self) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::IntoInner(tx)) {
            return None;
        }
        rx.await.ok().flatten()
    }

    /// The bufferevent under this one (`bufferevent_get_underlying`): always `None`,
    /// since a stream bufferevent sits directly on its transport, as libevent's socket
    /// bufferevent returns `NULL`. The item type is uninhabited; a filtering
    /// bufferevent's `underlying()` (on [`BufferEvent<Filtered<T, U>, S>`](super::Filtered))
    /// returns the handle of the bufferevent it filters.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::net::{TcpListener, TcpStream};
    /// use tokio_bufferevent::bufferevent::BufferEvent;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let stream = TcpStream::connect(listener.local_addr()?).await?;
    /// let bev = BufferEvent::builder().tcp(stream)?;
    /// assert!(bev.underlying().is_none());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "bufferevent_get_underlying")]
    pub fn underlying(&self) -> Option<std::convert::Infallible> {
        None
    }

    /// Gives the bufferevent a (new) transport (`bufferevent_setfd`); the previous one
    /// is closed. Reading and writing resume as enabled.
    #[doc(alias = "bufferevent_setfd")]
    pub fn set_transport(&self, transport: T) {
        self.attach_now(transport, TransportInfo::default());
    }

    /// Sends a connected transport to the task; handles see it connected, and `info`
    /// about it, at once.
    pub(crate) fn attach_now(&self, transport: T, info: TransportInfo) {
        self.shared().set_info(info);
        self.shared().transport_given();
        // Before the send: once the task has ended, what it stored last must stand.
        self.shared().connected.store(true, Ordering::SeqCst);
        if self.send(Command::Attach(Attach::Now(transport, Box::new(info)))) {
            self.shared().wake(Condition::Connect);
        } else {
            self.shared().connected.store(false, Ordering::SeqCst);
        }
    }
}

impl<T, S> fmt::Debug for BufferEvent<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferEvent")
            .field("input", &self.shared().input_total())
            .field("output", &self.shared().output_total())
            .field("enabled", &self.shared().enabled())
            .field("closed", &self.shared().is_closed())
            .finish()
    }
}
