//! The task behind every bufferevent: it owns the transport and both buffers, moves
//! bytes between them, runs timers and callbacks, and applies the handles' commands.

use std::any::Any;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

use bytes::{BufMut, Bytes};
use tokio::io::ReadBuf;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep, sleep_until};

use super::Transport;
use super::context::{Context, Inner};
use super::events::{Direction, Events};
use super::mailbox::Mailbox;
use super::shared::{Closed, Settings, Shared, TransportInfo};
use crate::buffer::EvBuffer;

/// Reads smaller than this go through a stack buffer first, so an idle or chatty
/// connection holds no large buffer (see `docs/PERFORMANCE.md`).
const SMALL_READ: usize = 2048;
/// The largest buffer one direct read allocates.
const MAX_DIRECT_READ: usize = 64 * 1024;
/// Vectored writes gather at most this many chunks.
const MAX_IOVECS: usize = 64;
/// Loop iterations before the task yields to the scheduler, so one busy connection
/// cannot starve the others.
const ITERATIONS_PER_POLL: usize = 32;
/// Commands applied per loop iteration at most.
const COMMANDS_PER_PASS: usize = 64;

/// A closure a handle sends to run on the task.
pub(crate) type Job<S> = Box<dyn FnOnce(&mut Context<'_, S>) + Send>;

/// A connect in progress (`bufferevent_socket_connect`).
pub(crate) type Connecting<T> =
    Pin<Box<dyn Future<Output = io::Result<(T, TransportInfo)>> + Send>>;

/// A job for the task, sent by a handle.
pub(crate) enum Command<T, S> {
    /// Run a closure with the task's context (most handle operations).
    Run(Job<S>),
    /// Append to the output; `in_flight` is reduced by its length when applied.
    Write(Bytes),
    /// Move a whole buffer into the output.
    WriteBuffer(EvBuffer),
    /// Replace the transport (`bufferevent_setfd`).
    SetTransport(T),
    /// Connect: the future yields the transport and what handles may know of it.
    Connect(Connecting<T>),
    /// Stop and hand the transport back.
    IntoInner(oneshot::Sender<Option<T>>),
}

/// Which callback to run.
#[derive(Clone, Copy, Debug)]
enum Which {
    Read,
    Write,
    Event,
}

pub(crate) struct Engine<T, S> {
    transport: Option<T>,
    inner: Inner<S>,
    mailbox: Arc<Mailbox<T, S>>,
    shared: Arc<Shared>,
    defer_callbacks: bool,
    handles_gone: bool,
    read_closed: bool,
    write_closed: bool,
    /// The last read filled its buffer: data is flowing, read into the tail directly.
    read_hot: bool,
    timer: Option<Pin<Box<Sleep>>>,
    last_events: Events,
    last_error: Option<Arc<io::Error>>,
    give_back: Option<oneshot::Sender<Option<T>>>,
    connecting: Option<Connecting<T>>,
    /// What `publish` last stored in the shared settings.
    published_settings: Settings,
}

impl<T, S> Engine<T, S>
where
    T: Transport,
    S: Send + 'static,
{
    pub(crate) fn new(
        transport: Option<T>,
        inner: Inner<S>,
        mailbox: Arc<Mailbox<T, S>>,
        shared: Arc<Shared>,
        defer_callbacks: bool,
    ) -> Self {
        Self {
            transport,
            inner,
            mailbox,
            shared,
            defer_callbacks,
            handles_gone: false,
            read_closed: false,
            write_closed: false,
            read_hot: false,
            timer: None,
            last_events: Events::empty(),
            last_error: None,
            give_back: None,
            connecting: None,
            published_settings: Settings::default(),
        }
    }

    pub(crate) async fn run(mut self) {
        poll_fn(|cx| self.poll_run(cx)).await;
        self.finish();
    }

    fn poll_run(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        for _ in 0..ITERATIONS_PER_POLL {
            let mut progress = self.poll_commands(cx);
            progress |= self.poll_connect(cx);
            progress |= self.poll_read(cx);
            if !self.defer_callbacks {
                progress |= self.dispatch();
            }
            progress |= self.poll_write(cx);
            progress |= self.poll_timer(cx);
            if !self.defer_callbacks || !progress {
                // Deferred callbacks wait until this wake-up's I/O is done, so they are
                // coalesced: one read, one write and one event call (B-59).
                progress |= self.dispatch();
            }
            self.release_idle_memory();
            self.publish();
            if self.done() {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Out of budget. Deferred callbacks run now rather than wait for a quiet pass,
        // which a peer that never stops sending would never allow.
        if self.dispatch() {
            self.release_idle_memory();
            self.publish();
            if self.done() {
                return Poll::Ready(());
            }
        }
        // Let other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    // ---- commands ----------------------------------------------------------------

    fn poll_commands(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let mut progress = false;
        // Bounded, so a handle that sends without pause cannot hold the task here.
        for _ in 0..COMMANDS_PER_PASS {
            if self.inner.freed || self.give_back.is_some() {
                break;
            }
            match self.mailbox.poll_recv(cx) {
                Poll::Ready(Some(command)) => {
                    self.apply(command);
                    progress = true;
                }
                Poll::Ready(None) => {
                    self.handles_gone = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    fn apply(&mut self, command: Command<T, S>) {
        match command {
            Command::Run(f) => {
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    f(&mut Context {
                        inner: &mut self.inner,
                    })
                }));
                if let Err(panic) = outcome {
                    self.panicked("a closure passed to `with`", panic);
                }
            }
            Command::Write(data) => {
                let n = data.len();
                let _ = self.inner.output.add_bytes(data);
                self.shared.applied(n);
            }
            Command::WriteBuffer(mut buf) => {
                let n = buf.len();
                let _ = self.inner.output.add_buffer(&mut buf);
                self.shared.applied(n);
            }
            Command::SetTransport(t) => {
                self.connecting = None;
                self.install(t);
                // As libevent's setfd re-registers the write event: a writable transport
                // with nothing to send yields one write callback (B-6, B-14).
                if self.inner.core.enabled().contains(Direction::WRITE) {
                    self.inner.write_ready_callback = true;
                }
            }
            Command::Connect(connecting) => self.connecting = Some(connecting),
            Command::IntoInner(reply) => self.give_back = Some(reply),
        }
    }

    fn install(&mut self, transport: T) {
        self.transport = Some(transport);
        self.read_closed = false;
        self.write_closed = false;
        self.shared.read_closed.store(false, Ordering::Release);
        self.shared.write_closed.store(false, Ordering::Release);
        self.shared.set_read_error(None);
        self.shared.connected.store(true, Ordering::Release);
    }

    // ---- connecting --------------------------------------------------------------

    /// Drives a connect. Success delivers `CONNECTED` alone, then queued output goes
    /// out (B-35, B-50); failure delivers `ERROR` (with `TIMEOUT` for a connect
    /// timeout) without a direction bit and leaves `enabled` as it was (B-33).
    fn poll_connect(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let Some(connecting) = self.connecting.as_mut() else {
            return false;
        };
        let Poll::Ready(outcome) = connecting.as_mut().poll(cx) else {
            return false;
        };
        self.connecting = None;
        match outcome {
            Ok((transport, info)) => {
                tracing::debug!(peer = ?info.peer, "connected");
                self.shared.set_info(info);
                self.install(transport);
                self.inner.timeouts.restart(Direction::BOTH);
                self.inner.core.event(Events::CONNECTED, None);
            }
            Err(e) => {
                tracing::debug!(error = %e, "connect failed");
                let events = if e.kind() == io::ErrorKind::TimedOut {
                    Events::ERROR | Events::TIMEOUT
                } else {
                    Events::ERROR
                };
                self.inner.core.event(events, Some(e));
                self.shared.connect_failures.fetch_add(1, Ordering::AcqRel);
                self.shared.changed();
            }
        }
        true
    }

    // ---- reading -----------------------------------------------------------------

    fn poll_read(&mut self, cx: &mut TaskContext<'_>) -> bool {
        if self.read_closed || self.inner.freed {
            return false;
        }
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let input = &mut self.inner.input;
        // Removals by callbacks and handles may have lifted the watermark pause (B-20).
        self.inner.core.input_changed(input.len());
        let budget = self
            .inner
            .core
            .read_budget(input.len(), self.inner.max_single_read);
        if budget == 0 {
            return false; // never issue a 0-byte read: it would look like EOF
        }
        let direct = self.read_hot || input.spare_capacity() >= budget.min(SMALL_READ);
        let (outcome, asked) = if direct {
            let tail = input.tail_with_room(budget.min(MAX_DIRECT_READ));
            let mut limited = tail.limit(budget);
            let outcome = tokio_util::io::poll_read_buf(Pin::new(transport), cx, &mut limited);
            (outcome, budget.min(MAX_DIRECT_READ))
        } else {
            let want = budget.min(SMALL_READ);
            let mut stack = [MaybeUninit::<u8>::uninit(); SMALL_READ];
            let mut filled = ReadBuf::uninit(&mut stack[..want]);
            let outcome = Pin::new(transport).poll_read(cx, &mut filled).map_ok(|()| {
                let data = filled.filled();
                input.stage_copy(data);
                data.len()
            });
            (outcome, want)
        };
        match outcome {
            Poll::Pending => false,
            Poll::Ready(Ok(0)) => {
                self.end_reading(Events::READING | Events::EOF, None);
                true
            }
            Poll::Ready(Ok(n)) => {
                self.read_hot = n == asked;
                self.inner.input.commit_appended(n);
                self.inner.timeouts.read_progress();
                self.inner.core.data_read(self.inner.input.len());
                tracing::trace!(bytes = n, "read");
                true
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(e)) => {
                self.end_reading(Events::READING | Events::ERROR, Some(e));
                true
            }
        }
    }

    /// EOF or a read error: reading stops for good (B-30, B-31).
    fn end_reading(&mut self, events: Events, error: Option<io::Error>) {
        tracing::debug!(?events, ?error, "reading ended");
        self.read_closed = true;
        self.read_hot = false;
        // Adapters report the read error at the end of the stream, whatever happens
        // after it; the event callback gets the error itself.
        let kept = error
            .as_ref()
            .map(|e| Arc::new(io::Error::new(e.kind(), e.to_string())));
        self.shared.set_read_error(kept);
        self.shared.read_closed.store(true, Ordering::Release);
        self.inner.core.disable(Direction::READ);
        self.inner.core.event(events, error);
    }

    // ---- writing -----------------------------------------------------------------

    fn poll_write(&mut self, cx: &mut TaskContext<'_>) -> bool {
        if self.write_closed || self.inner.freed || !self.inner.core.writing() {
            return false;
        }
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let output = &mut self.inner.output;
        if output.is_empty() {
            if self.inner.write_ready_callback {
                // B-14: a writable transport with nothing to send yields one write
                // callback after enable(WRITE).
                self.inner.write_ready_callback = false;
                self.inner.core.schedule_write();
                return true;
            }
            if !self.inner.shutdown_requested {
                return false;
            }
            return match Pin::new(transport).poll_shutdown(cx) {
                Poll::Pending => false,
                Poll::Ready(result) => {
                    self.inner.shutdown_requested = false;
                    self.write_closed = true;
                    self.shared.write_closed.store(true, Ordering::Release);
                    self.shared.changed();
                    if let Err(e) = result {
                        self.end_writing(Events::WRITING | Events::ERROR, Some(e));
                    }
                    true
                }
            };
        }
        self.inner.write_ready_callback = false;
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let outcome = match output.io_slices_max(&mut slices, self.inner.max_single_write) {
            // One chunk: a plain write (`send`), which the kernel handles a little
            // faster than a one-element `writev`.
            Ok(1) => Pin::new(transport).poll_write(cx, &slices[0]),
            Ok(filled) => Pin::new(transport).poll_write_vectored(cx, &slices[..filled]),
            Err(e) => Poll::Ready(Err(e.into())),
        };
        match outcome {
            Poll::Pending => false,
            Poll::Ready(Ok(0)) => {
                self.end_writing(Events::WRITING | Events::EOF, None);
                true
            }
            Poll::Ready(Ok(n)) => {
                let _ = self.inner.output.drain(n);
                self.inner.timeouts.write_progress();
                self.inner.core.data_written(self.inner.output.len());
                tracing::trace!(bytes = n, "wrote");
                true
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(e)) => {
                self.end_writing(Events::WRITING | Events::ERROR, Some(e));
                true
            }
        }
    }

    /// A write error: writing stops for good (B-32). Queued output stays in the output
    /// buffer and is reported by `closed()`.
    fn end_writing(&mut self, events: Events, error: Option<io::Error>) {
        tracing::debug!(
            ?events,
            ?error,
            unsent = self.inner.output.len(),
            "writing ended"
        );
        self.write_closed = true;
        self.shared.write_closed.store(true, Ordering::Release);
        self.inner.shutdown_requested = false;
        self.inner.core.disable(Direction::WRITE);
        self.inner.core.event(events, error);
    }

    // ---- timeouts ----------------------------------------------------------------

    fn poll_timer(&mut self, cx: &mut TaskContext<'_>) -> bool {
        if self.inner.timeouts.get() == (None, None) && self.timer.is_none() {
            return false;
        }
        let now = Instant::now();
        let reading = self.inner.core.reading() && !self.read_closed;
        let writing =
            self.inner.core.writing() && !self.write_closed && !self.inner.output.is_empty();
        self.inner.timeouts.update(now, reading, writing);
        let Some(deadline) = self.inner.timeouts.next_deadline() else {
            self.timer = None;
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let expired = self.inner.timeouts.expired(Instant::now());
        // B-34, B-41: the direction is disabled and the event names it.
        if expired.contains(Direction::READ) {
            self.inner.core.disable(Direction::READ);
            self.inner
                .core
                .event(Events::READING | Events::TIMEOUT, None);
        }
        if expired.contains(Direction::WRITE) {
            self.inner.core.disable(Direction::WRITE);
            self.inner
                .core
                .event(Events::WRITING | Events::TIMEOUT, None);
        }
        !expired.is_empty()
    }

    // ---- callbacks ---------------------------------------------------------------

    /// Runs the callbacks that are due, once each: CONNECTED alone, then read, then
    /// write, then the other event bits (B-61). Callbacks
    /// these callbacks schedule run in a later round, so a callback that keeps
    /// triggering itself cannot monopolize the thread. Returns whether anything ran.
    fn dispatch(&mut self) -> bool {
        if !self.inner.core.has_pending() || self.inner.freed {
            return false;
        }
        let pending = self.inner.core.take_pending();
        let mut events = pending.events;
        let error = pending.error.map(Arc::new);
        // A deferred run also splits CONNECTED off a mask given to `trigger_event`, as
        // libevent's deferred run does; an immediate one delivers such a mask whole.
        let split = self.defer_callbacks && events.contains(Events::CONNECTED);
        if pending.connected || split {
            self.deliver_event(Events::CONNECTED, None);
            events = Events::from_bits(events.bits() & !Events::CONNECTED.bits());
        }
        if pending.read {
            self.call(Which::Read, Events::empty(), None);
        }
        if pending.write {
            self.call(Which::Write, Events::empty(), None);
        }
        if !events.is_empty() {
            self.deliver_event(events, error);
        }
        true
    }

    fn deliver_event(&mut self, events: Events, error: Option<Arc<io::Error>>) {
        self.last_events = events;
        if error.is_some() {
            self.last_error.clone_from(&error);
        }
        self.shared.record_event(events, error.clone());
        self.call(Which::Event, events, error);
    }

    fn call(&mut self, which: Which, events: Events, error: Option<Arc<io::Error>>) {
        if self.inner.freed {
            return;
        }
        let generation = self.inner.callbacks_generation;
        let callbacks = &mut self.inner.callbacks;
        let outcome = match which {
            Which::Read | Which::Write => {
                let slot = match which {
                    Which::Read => &mut callbacks.read,
                    _ => &mut callbacks.write,
                };
                let Some(mut callback) = slot.take() else {
                    return;
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    callback(&mut Context {
                        inner: &mut self.inner,
                    })
                }));
                if self.inner.callbacks_generation == generation {
                    let slot = match which {
                        Which::Read => &mut self.inner.callbacks.read,
                        _ => &mut self.inner.callbacks.write,
                    };
                    *slot = Some(callback);
                }
                outcome
            }
            Which::Event => {
                let Some(mut callback) = callbacks.event.take() else {
                    return;
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    callback(
                        &mut Context {
                            inner: &mut self.inner,
                        },
                        events,
                        error.as_deref(),
                    )
                }));
                if self.inner.callbacks_generation == generation {
                    self.inner.callbacks.event = Some(callback);
                }
                outcome
            }
        };
        if let Err(panic) = outcome {
            let name = match which {
                Which::Read => "the read callback",
                Which::Write => "the write callback",
                Which::Event => "the event callback",
            };
            self.panicked(name, panic);
        }
    }

    /// A callback panicked: the panic stops here, and this bufferevent ends with an
    /// error that `closed()` reports.
    fn panicked(&mut self, what: &str, payload: Box<dyn Any + Send>) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string payload".to_owned());
        let error = Arc::new(io::Error::other(format!("{what} panicked: {message}")));
        tracing::error!(%error, "bufferevent ends");
        self.last_events = Events::ERROR;
        self.last_error = Some(Arc::clone(&error));
        self.shared.record_event(Events::ERROR, Some(error));
        self.inner.freed = true;
    }

    // ---- bookkeeping -------------------------------------------------------------

    /// Gives back buffer memory once a buffer is empty and data is not streaming, so an
    /// idle connection holds no buffers (as libevent frees drained chains).
    fn release_idle_memory(&mut self) {
        let input = &mut self.inner.input;
        if input.is_empty() && !self.read_hot && input.has_spare_memory() {
            input.shrink_to_fit();
        }
        let output = &mut self.inner.output;
        if output.is_empty() && output.has_spare_memory() {
            output.shrink_to_fit();
        }
    }

    /// Publishes the cheap facts handles read, waking waiters when they changed.
    fn publish(&mut self) {
        let s = &self.shared;
        // Plain loads and stores: only this task writes these (besides `applied`, which
        // the exact length stored here supersedes), and most calls change nothing.
        let mut changed = false;
        let mut store = |cell: &std::sync::atomic::AtomicUsize, value: usize| {
            if cell.load(Ordering::Acquire) != value {
                cell.store(value, Ordering::Release);
                changed = true;
            }
        };
        store(&s.input_len, self.inner.input.len());
        store(&s.output_len, self.inner.output.len());
        let enabled = self.inner.core.enabled().bits();
        if s.enabled.load(Ordering::Acquire) != enabled {
            s.enabled.store(enabled, Ordering::Release);
            changed = true;
        }
        let (read_timeout, write_timeout) = self.inner.timeouts.get();
        let settings = Settings {
            read_wm: self.inner.core.read_watermarks(),
            write_wm: self.inner.core.write_watermarks(),
            read_timeout,
            write_timeout,
        };
        if settings != self.published_settings {
            self.published_settings = settings;
            s.write_low.store(settings.write_wm.low, Ordering::Release);
            s.write_high
                .store(settings.write_wm.high, Ordering::Release);
            s.set_settings(settings);
        }
        // Answers to `with` go out only now, so the caller sees lengths that include
        // what its closure did.
        for reply in self.inner.replies.drain(..) {
            reply();
        }
        if changed || s.take_dirty() {
            s.changed();
        }
    }

    /// Whether the task is over.
    fn done(&self) -> bool {
        if self.inner.freed || self.give_back.is_some() {
            return true;
        }
        let output_idle = self.write_closed || self.inner.output.is_empty();
        if self.inner.closing && (self.write_closed || self.transport.is_none()) {
            return true;
        }
        if !self.handles_gone {
            return false;
        }
        // No handle is left: stop once nothing more can happen for anyone.
        let callbacks = &self.inner.callbacks;
        let no_callbacks =
            callbacks.read.is_none() && callbacks.write.is_none() && callbacks.event.is_none();
        (self.transport.is_none() && self.connecting.is_none())
            || (no_callbacks && output_idle)
            || (self.read_closed && output_idle)
    }

    fn finish(&mut self) {
        self.publish();
        self.mailbox.close();
        let unsent = self.inner.output.len();
        if let Some(reply) = self.give_back.take() {
            let _ = reply.send(self.transport.take());
        }
        self.transport = None; // closes it
        self.shared.connected.store(false, Ordering::Release);
        tracing::debug!(events = ?self.last_events, unsent, "bufferevent finished");
        self.shared.set_closed(Closed {
            events: self.last_events,
            error: self.last_error.clone(),
            unsent,
        });
    }
}
