//! The task behind every bufferevent. An [`Engine`] is one bufferevent's state (its
//! [`Side`]: buffers, callbacks, timers, mailbox) plus the [`Link`] it moves bytes
//! through: a stream, a pair's partner, or a filter's underlying bufferevent. A link
//! may host other engines (a pair's second element, a filter's underlying), which then
//! run inside the same task, so bytes cross between them without a channel.

use std::any::Any;
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep, sleep_until};

use super::context::{Callbacks, Context, Inner};
use super::core::{Core, Pending, suspend};
use super::events::{Direction, Events, FlushRequests};
use super::shared::{Closed, Remote, Settings, Shared, TransportInfo, copy_error};
use super::timeouts::Timeouts;
use crate::buffer::EvBuffer;

/// Loop iterations before the task yields to the scheduler, so one busy connection
/// cannot starve the others.
const ITERATIONS_PER_POLL: usize = 32;
/// Commands applied per loop iteration at most.
const COMMANDS_PER_PASS: usize = 64;

/// A closure a handle sends to run on the task.
pub(crate) type Job<S> = Box<dyn FnOnce(&mut Context<'_, S>) + Send>;

/// A closure whose result goes back to the handle that sent it: it returns the
/// [`Reply`] that sends the result.
pub(crate) type Ask<S> = Box<dyn FnOnce(&mut Context<'_, S>) -> Reply + Send>;

/// Sends a result to a waiting handle; run once the task has published its state.
pub(crate) type Reply = Box<dyn FnOnce() + Send>;

/// A connect in progress (`bufferevent_socket_connect`).
pub(crate) type Connecting<T> =
    Pin<Box<dyn Future<Output = io::Result<(T, TransportInfo)>> + Send>>;

/// Work that goes on in a task after its own bufferevent ended: bufferevents it hosts.
pub(crate) type Hosting = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A job for the task, sent by a handle.
pub(crate) enum Command<T, S> {
    /// Run a closure with the task's context (most handle operations).
    Run(Job<S>),
    /// Run a closure and answer with its result (`with`).
    Ask(Ask<S>),
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
    /// Be wrapped by a new filter: the filter takes this bufferevent's place, in its
    /// task, with this bufferevent as its underlying one.
    Wrap(PendingFilter),
}

/// What an engine moves bytes through.
///
/// `poll_input` runs before the read callback and `poll_output` after it, so an echo
/// callback's output goes out in the same pass as the input that caused it.
pub(crate) trait Link<S>: Send + Sized + 'static {
    /// The transport type handles know (`BufferEvent`'s `T`).
    type Transport: Send + 'static;

    /// Brings data in (and anything else that is not sending); whether anything
    /// happened.
    fn poll_input(&mut self, cx: &mut TaskContext<'_>, side: &mut Side<Self::Transport, S>)
    -> bool;

    /// Sends data out; whether anything happened.
    fn poll_output(
        &mut self,
        cx: &mut TaskContext<'_>,
        side: &mut Side<Self::Transport, S>,
    ) -> bool;

    /// `bufferevent_setfd`. Links without a replaceable transport drop it.
    fn set_transport(&mut self, side: &mut Side<Self::Transport, S>, transport: Self::Transport) {
        let _ = (side, transport);
    }

    /// `bufferevent_socket_connect`. Links that cannot connect drop it.
    fn connect(
        &mut self,
        side: &mut Side<Self::Transport, S>,
        connecting: Connecting<Self::Transport>,
    ) {
        let _ = (side, connecting);
    }

    /// The transport, for `into_inner`.
    fn take_transport(&mut self) -> Option<Self::Transport> {
        None
    }

    /// Whether data can still come or go: a transport, a connect under way, a partner.
    fn is_attached(&self) -> bool;

    /// Whether data is streaming in, so the input's memory is worth keeping.
    fn streaming(&self) -> bool {
        false
    }

    /// Whether the link holds nothing of ours still to send (a filter: everything
    /// written has left the underlying bufferevent too).
    fn is_idle(&self) -> bool {
        true
    }

    /// This engine now runs on a different task: forget the wakers of the old one,
    /// here and in what the link hosts.
    fn forget_wakers(&mut self) {}

    /// The bufferevent ended; says what takes its place.
    fn finish(self, side: &mut Side<Self::Transport, S>) -> Ended {
        let _ = side;
        Ended::Gone(None)
    }

    /// The buffers of the pair element at the bottom of this link, for its partner's
    /// transfers: the element itself, or a filter's underlying element.
    fn pair_io<'a>(&'a mut self, side: &'a mut Side<Self::Transport, S>) -> Option<Io<'a>> {
        let _ = side;
        None
    }

    /// The pair element at the bottom of this link lost its partner.
    fn partner_gone(&mut self, side: &mut Side<Self::Transport, S>) {
        let _ = side;
    }
}

/// What takes an ended bufferevent's place in its task.
pub(crate) enum Ended {
    /// Nothing, or work that must still run (bufferevents it hosted).
    Gone(Option<Hosting>),
    /// A filter released its underlying bufferevent, which goes on in its place.
    Replaced(Box<dyn Hosted>),
}

/// Runs a hosted bufferevent's end; what must still run afterwards.
pub(crate) fn end_hosted(hosted: Box<dyn Hosted>) -> Option<Hosting> {
    match hosted.end_into() {
        Ended::Gone(rest) => rest,
        Ended::Replaced(successor) => Some(successor.run_alone()),
    }
}

/// An engine run by another engine's task: a pair's second element, or a filter's
/// underlying bufferevent. Object safe, so a filter need not know its underlying's
/// types.
pub(crate) trait Hosted: Send + 'static {
    /// One pass: commands, I/O and timers, and the callbacks unless `dispatch` is
    /// false (a filter takes the underlying's callbacks' place). Whether anything
    /// happened.
    fn poll_pass(&mut self, cx: &mut TaskContext<'_>, dispatch: bool) -> bool;
    /// The buffers and state a host works with.
    fn io(&mut self) -> Io<'_>;
    /// The pair element at the bottom (see [`Link::pair_io`]).
    fn pair_io(&mut self) -> Option<Io<'_>>;
    /// The pair element at the bottom lost its partner.
    fn partner_gone(&mut self);
    /// A filter that asked to wrap this bufferevent.
    fn take_wrap(&mut self) -> Option<Box<dyn Wrapper>>;
    /// See [`Link::forget_wakers`].
    fn forget_wakers(&mut self);
    /// Takes the due callbacks instead of running them, recording the events as
    /// delivered.
    fn take_pending(&mut self) -> Pending;
    /// Whether this bufferevent is over.
    fn is_done(&self) -> bool;
    /// What handles know of the transport.
    fn info(&self) -> TransportInfo;
    /// Ends this bufferevent; says what takes its place.
    fn end_into(self: Box<Self>) -> Ended;
    /// Runs this bufferevent on its own until it ends.
    fn run_alone(self: Box<Self>) -> Hosting;
    /// A filter takes this bufferevent over (B-84): its callbacks are removed, both
    /// directions enabled, and it lives on without handles.
    fn take_over(&mut self);
    /// The filter let go (B-92): no more filter suspension, and handles matter again.
    fn release(&mut self);
}

/// A new filtering bufferevent, not yet in place.
pub(crate) trait Wrapper: Hosted {
    /// Puts `underlying` under this filter and takes it over.
    fn set_underlying(&mut self, underlying: Box<dyn Hosted>);
    /// Its underlying bufferevent ended before the filter got it.
    fn orphan(&mut self);
}

/// A filter on its way to the bufferevent it wraps. If it never arrives (that
/// bufferevent ended, or is already filtered), it runs on its own and reports it.
pub(crate) struct PendingFilter {
    filter: Option<Box<dyn Wrapper>>,
    runtime: tokio::runtime::Handle,
}

impl PendingFilter {
    pub(crate) fn new(filter: Box<dyn Wrapper>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            filter: Some(filter),
            runtime,
        }
    }

    fn take(mut self) -> Box<dyn Wrapper> {
        self.filter.take().expect("taken once")
    }
}

impl Drop for PendingFilter {
    fn drop(&mut self) {
        if let Some(mut filter) = self.filter.take() {
            filter.orphan();
            let hosted: Box<dyn Hosted> = filter;
            self.runtime.spawn(hosted.run_alone());
        }
    }
}

/// A view of one bufferevent's buffers and state, free of its type parameters.
pub(crate) struct Io<'a> {
    pub(crate) input: &'a mut EvBuffer,
    pub(crate) output: &'a mut EvBuffer,
    pub(crate) core: &'a mut Core,
    pub(crate) timeouts: &'a mut Timeouts,
    pub(crate) flushes: &'a mut FlushRequests,
    pub(crate) shutdown_requested: &'a mut bool,
    pub(crate) read_closed: &'a mut bool,
    pub(crate) write_closed: &'a mut bool,
    pub(crate) closing: bool,
    pub(crate) freed: &'a mut bool,
    /// What handles read; `None` once no handle can (see `shared.rs`).
    pub(crate) shared: Option<&'a Shared>,
}

impl Io<'_> {
    /// Wakes the handles' waiters (if any handle can still wait).
    pub(crate) fn changed(&self) {
        if let Some(shared) = self.shared {
            shared.changed();
        }
    }

    /// Reading stops for good: EOF or an error (B-30, B-31).
    pub(crate) fn end_reading(&mut self, events: Events, error: Option<io::Error>) {
        tracing::debug!(?events, ?error, "reading ended");
        self.mark_read_closed(error.as_ref());
        self.core.disable(Direction::READ);
        self.core.event(events, error);
    }

    /// Nothing more will be read. Adapters report the read error at the end of the
    /// stream, whatever happens after it; the event callback gets the error itself.
    pub(crate) fn mark_read_closed(&mut self, error: Option<&io::Error>) {
        *self.read_closed = true;
        if let Some(shared) = self.shared {
            shared.set_read_error(error.map(copy_error));
            shared.read_closed.store(true, Ordering::Release);
        }
    }

    /// Writing stops for good (B-32). Queued output stays in the output buffer and is
    /// reported by `closed()`.
    pub(crate) fn end_writing(&mut self, events: Events, error: Option<io::Error>) {
        tracing::debug!(?events, ?error, unsent = self.output.len(), "writing ended");
        self.mark_write_closed();
        self.core.disable(Direction::WRITE);
        self.core.event(events, error);
    }

    /// The write side is finished (shut down, or failed).
    pub(crate) fn mark_write_closed(&mut self) {
        *self.write_closed = true;
        *self.shutdown_requested = false;
        if let Some(shared) = self.shared {
            shared.write_closed.store(true, Ordering::Release);
            shared.changed();
        }
    }

    /// Whether everything asked of the write side is done: sent, flushed, shut down.
    pub(crate) fn write_finished(&self) -> bool {
        *self.write_closed
            || (self.output.is_empty() && self.flushes.is_empty() && !*self.shutdown_requested)
    }
}

/// Which callback to run.
#[derive(Clone, Copy, Debug)]
enum Which {
    Read,
    Write,
    Event,
}

/// One bufferevent's state apart from its link.
pub(crate) struct Side<T, S> {
    pub(crate) inner: Inner<S>,
    /// Shared with handles; dropped once none is left and none can be made.
    remote: Option<Arc<Remote<T, S>>>,
    pub(crate) defer_callbacks: bool,
    pub(crate) read_closed: bool,
    pub(crate) write_closed: bool,
    handles_gone: bool,
    last_events: Events,
    /// Boxed on first use: most bufferevents never need any of it.
    rare: Option<Box<Rare<T>>>,
    /// Another bufferevent (a filter) depends on this one: it lives on without
    /// handles.
    pub(crate) in_use: bool,
    /// A pair element or filter hears `READING | EOF` when its partner ends.
    pub(crate) partner_end_is_eof: bool,
}

/// The parts of a [`Side`] most bufferevents never use: a timer, an error, a
/// hand-over. Kept out of line so that every task stays small.
struct Rare<T> {
    timer: Option<Pin<Box<Sleep>>>,
    last_error: Option<Arc<io::Error>>,
    give_back: Option<oneshot::Sender<Option<T>>>,
    wrap: Option<Box<dyn Wrapper>>,
    /// Answers to `with` calls, sent once the task has published its state.
    replies: Vec<Reply>,
}

// Not derived: that would ask for `T: Default`.
impl<T> Default for Rare<T> {
    fn default() -> Self {
        Self {
            timer: None,
            last_error: None,
            give_back: None,
            wrap: None,
            replies: Vec::new(),
        }
    }
}

/// A bufferevent: its state and its link.
pub(crate) struct Engine<L: Link<S>, S> {
    pub(crate) link: L,
    pub(crate) side: Side<L::Transport, S>,
}

impl<T, S> Side<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    pub(crate) fn new(inner: Inner<S>, remote: Arc<Remote<T, S>>, defer_callbacks: bool) -> Self {
        Self {
            inner,
            remote: Some(remote),
            defer_callbacks,
            read_closed: false,
            write_closed: false,
            handles_gone: false,
            last_events: Events::empty(),
            rare: None,
            in_use: false,
            partner_end_is_eof: false,
        }
    }

    pub(crate) fn io(&mut self) -> Io<'_> {
        Io {
            input: &mut self.inner.input,
            output: &mut self.inner.output,
            core: &mut self.inner.core,
            timeouts: &mut self.inner.timeouts,
            flushes: &mut self.inner.flushes,
            shutdown_requested: &mut self.inner.shutdown_requested,
            read_closed: &mut self.read_closed,
            write_closed: &mut self.write_closed,
            closing: self.inner.closing,
            freed: &mut self.inner.freed,
            shared: self.remote.as_deref().map(|r| &r.shared),
        }
    }

    /// What handles read, unless no handle can read it any more.
    pub(crate) fn shared(&self) -> Option<&Shared> {
        self.remote.as_deref().map(|r| &r.shared)
    }

    /// Drops what handles share once none is left and none can be made: no handle,
    /// no weak handle (a pair partner's or a filter's), nothing the task hosts or
    /// runs holding a reference. From then on nothing is published, so a bufferevent
    /// run only by its callbacks costs no memory or work for handles.
    fn detach_if_unobserved(&mut self) {
        if self.in_use || self.stopping() {
            return;
        }
        let Some(remote) = &self.remote else {
            return;
        };
        let unreferenced = Arc::strong_count(remote) == 1 && Arc::weak_count(remote) == 0;
        // The counts are relaxed loads: the fence orders them before the handle count,
        // so a handle made from the last weak handle before it went is seen.
        std::sync::atomic::fence(Ordering::Acquire);
        if unreferenced && !remote.mailbox.has_handles() {
            tracing::trace!("no handle left: state no longer published");
            self.remote = None;
        }
    }

    /// Whether the bufferevent stopped for good, or was asked to hand itself over.
    fn stopping(&self) -> bool {
        self.inner.freed
            || self
                .rare
                .as_ref()
                .is_some_and(|r| r.give_back.is_some() || r.wrap.is_some())
    }

    fn rare(&mut self) -> &mut Rare<T> {
        self.rare.get_or_insert_with(Box::default)
    }

    fn last_error(&self) -> Option<Arc<io::Error>> {
        self.rare.as_ref().and_then(|r| r.last_error.clone())
    }

    // ---- timeouts ----------------------------------------------------------------

    fn poll_timer(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let has_timer = self.rare.as_ref().is_some_and(|r| r.timer.is_some());
        if self.inner.timeouts.get() == (None, None) && !has_timer {
            return false;
        }
        let now = Instant::now();
        let reading = self.inner.core.reading() && !self.read_closed;
        let writing =
            self.inner.core.writing() && !self.write_closed && !self.inner.output.is_empty();
        self.inner.timeouts.update(now, reading, writing);
        let Some(deadline) = self.inner.timeouts.next_deadline() else {
            if let Some(rare) = self.rare.as_mut() {
                rare.timer = None;
            }
            return false;
        };
        let timer = self
            .rare()
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
            self.rare().last_error.clone_from(&error);
        }
        if let Some(shared) = self.shared() {
            shared.record_event(events, error.clone());
        }
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

    /// Runs a closure a handle sent; a panic in it ends the bufferevent as a panicking
    /// callback does (`what` names it in the error).
    fn run_closure<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Context<'_, S>) -> R,
    ) -> Option<R> {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            f(&mut Context {
                inner: &mut self.inner,
            })
        }));
        match outcome {
            Ok(result) => Some(result),
            Err(panic) => {
                self.panicked(what, panic);
                None
            }
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
        self.rare().last_error = Some(Arc::clone(&error));
        if let Some(shared) = self.shared() {
            shared.record_event(Events::ERROR, Some(error));
        }
        self.inner.freed = true;
    }

    // ---- bookkeeping -------------------------------------------------------------

    /// Gives back buffer memory once a buffer is empty and data is not streaming, so an
    /// idle connection holds no buffers (as libevent frees drained chains).
    fn release_idle_memory(&mut self, streaming: bool) {
        let input = &mut self.inner.input;
        if input.is_empty() && !streaming && input.has_spare_memory() {
            input.shrink_to_fit();
        }
        let output = &mut self.inner.output;
        if output.is_empty() && output.has_spare_memory() {
            output.shrink_to_fit();
        }
    }

    /// Publishes the cheap facts handles read, waking waiters when they changed.
    fn publish(&mut self) {
        let Some(remote) = self.remote.as_deref() else {
            // Nobody waits for these any more; dropping them drops what they hold.
            if let Some(rare) = self.rare.as_mut() {
                rare.replies.clear();
            }
            return;
        };
        let s = &remote.shared;
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
        if self.inner.settings_changed {
            self.inner.settings_changed = false;
            let (read_timeout, write_timeout) = self.inner.timeouts.get();
            let settings = Settings {
                read_wm: self.inner.core.read_watermarks(),
                write_wm: self.inner.core.write_watermarks(),
                read_timeout,
                write_timeout,
            };
            s.set_settings(settings);
        }
        // Answers to `with` go out only now, so the caller sees lengths that include
        // what its closure did.
        if let Some(rare) = self.rare.as_mut() {
            for reply in rare.replies.drain(..) {
                reply();
            }
        }
        if changed || s.take_dirty() {
            s.changed();
        }
    }

    /// Whether this bufferevent is over; `attached` says whether its link can still
    /// move data.
    fn done(&self, attached: bool, link_idle: bool) -> bool {
        if self.stopping() {
            return true;
        }
        let output_idle = (self.write_closed || self.inner.output.is_empty()) && link_idle;
        if self.inner.closing && (self.write_closed || !attached) {
            return true;
        }
        let has_handles = self
            .remote
            .as_ref()
            .is_some_and(|r| r.mailbox.has_handles());
        if !self.handles_gone || self.in_use || has_handles {
            return false;
        }
        // No handle is left: stop once nothing more can happen for anyone.
        let callbacks = &self.inner.callbacks;
        let no_callbacks =
            callbacks.read.is_none() && callbacks.write.is_none() && callbacks.event.is_none();
        !attached || (no_callbacks && output_idle) || (self.read_closed && output_idle)
    }

    /// Publishes how the bufferevent ended; `transport` goes to `into_inner`'s caller.
    pub(crate) fn finish(&mut self, transport: Option<T>) {
        self.publish();
        if let Some(remote) = &self.remote {
            remote.mailbox.close();
        }
        let unsent = self.inner.output.len();
        match self.rare.as_mut().and_then(|r| r.give_back.take()) {
            Some(reply) => {
                let _ = reply.send(transport);
            }
            None => drop(transport), // closes it
        }
        tracing::debug!(events = ?self.last_events, unsent, "bufferevent finished");
        let Some(shared) = self.shared() else {
            return;
        };
        shared.connected.store(false, Ordering::Release);
        shared.clear_relative();
        shared.set_closed(Closed {
            events: self.last_events,
            error: self.last_error(),
            unsent,
        });
    }

    /// The due callbacks, for a host that runs its own code in their place; events
    /// count as delivered.
    fn take_pending(&mut self) -> Pending {
        let pending = self.inner.core.take_pending();
        let mut events = pending.events;
        if pending.connected {
            events |= Events::CONNECTED;
        }
        if !events.is_empty() {
            let error = pending.error.as_ref().map(copy_error);
            self.last_events = events;
            if error.is_some() {
                self.rare().last_error.clone_from(&error);
            }
            if let Some(shared) = self.shared() {
                shared.record_event(events, error);
            }
        }
        pending
    }
}

impl<L, S> Engine<L, S>
where
    L: Link<S>,
    S: Send + 'static,
{
    pub(crate) fn new(link: L, side: Side<L::Transport, S>) -> Self {
        Self { link, side }
    }

    /// The future that runs the bufferevent until it ends, then whatever takes its
    /// place: a filter that wraps it, or what it hosts.
    pub(crate) fn run(mut self) -> Run<L, S> {
        // The engine may have run on another task before (hosted, then spawned).
        Hosted::forget_wakers(&mut self);
        Run {
            state: RunState::Engine(self),
        }
    }

    pub(crate) fn end(self) -> Ended {
        let Engine { mut link, mut side } = self;
        side.publish();
        let transport = if side.rare.as_ref().is_some_and(|r| r.give_back.is_some()) {
            link.take_transport()
        } else {
            None
        };
        let rest = link.finish(&mut side);
        side.finish(transport);
        rest
    }

    fn poll_run(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        for _ in 0..ITERATIONS_PER_POLL {
            let progress = self.pass(cx, true);
            if self.is_over() {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
        // Out of budget. Deferred callbacks run now rather than wait for a quiet pass,
        // which a peer that never stops sending would never allow.
        if self.side.dispatch() {
            self.side.release_idle_memory(self.link.streaming());
            self.side.publish();
            if self.is_over() {
                return Poll::Ready(());
            }
        }
        // Let other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// One round of everything: commands, input, callbacks, output, timers. Returns
    /// whether anything happened.
    pub(crate) fn pass(&mut self, cx: &mut TaskContext<'_>, dispatch: bool) -> bool {
        let mut progress = self.poll_commands(cx);
        if !self.side.stopping() {
            // Removals by callbacks and handles may have lifted the watermark pause
            // (B-20).
            let len = self.side.inner.input.len();
            self.side.inner.core.input_changed(len);
            progress |= self.link.poll_input(cx, &mut self.side);
        }
        let defer = self.side.defer_callbacks;
        if dispatch && !defer {
            progress |= self.side.dispatch();
        }
        if !self.side.stopping() {
            progress |= self.link.poll_output(cx, &mut self.side);
        }
        progress |= self.side.poll_timer(cx);
        if dispatch && (!defer || !progress) {
            // Deferred callbacks wait until this wake-up's I/O is done, so they are
            // coalesced: one read, one write and one event call (B-59).
            progress |= self.side.dispatch();
        }
        self.side.release_idle_memory(self.link.streaming());
        self.side.publish();
        progress
    }

    pub(crate) fn is_over(&self) -> bool {
        self.side.done(self.link.is_attached(), self.link.is_idle())
    }

    // ---- commands ----------------------------------------------------------------

    fn poll_commands(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let mut progress = false;
        // Bounded, so a handle that sends without pause cannot hold the task here.
        for _ in 0..COMMANDS_PER_PASS {
            if self.side.stopping() {
                break;
            }
            let Some(remote) = self.side.remote.as_deref() else {
                break;
            };
            match remote.mailbox.poll_recv(cx) {
                Poll::Ready(Some(command)) => {
                    self.apply(command);
                    progress = true;
                }
                Poll::Ready(None) => {
                    self.side.handles_gone = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        if self.side.handles_gone {
            self.side.detach_if_unobserved();
        }
        progress
    }

    fn apply(&mut self, command: Command<L::Transport, S>) {
        let side = &mut self.side;
        match command {
            Command::Run(f) => {
                side.run_closure("a handle's command", f);
            }
            Command::Ask(f) => {
                if let Some(reply) = side.run_closure("a closure passed to `with`", f) {
                    side.rare().replies.push(reply);
                }
            }
            Command::Write(data) => {
                let n = data.len();
                let _ = side.inner.output.add_bytes(data);
                if let Some(shared) = side.shared() {
                    shared.applied(n);
                }
            }
            Command::WriteBuffer(mut buf) => {
                let n = buf.len();
                let _ = side.inner.output.add_buffer(&mut buf);
                if let Some(shared) = side.shared() {
                    shared.applied(n);
                }
            }
            Command::SetTransport(t) => self.link.set_transport(side, t),
            Command::Connect(connecting) => self.link.connect(side, connecting),
            Command::IntoInner(reply) => side.rare().give_back = Some(reply),
            Command::Wrap(pending) => {
                // One filter per bufferevent: a second one would steal the first's
                // underlying (libevent lets it, and breaks the first).
                if !side.in_use && side.rare.as_ref().is_none_or(|r| r.wrap.is_none()) {
                    side.rare().wrap = Some(pending.take());
                }
            }
        }
    }
}

/// The future of a bufferevent's task. Hand-written rather than an `async fn`, which
/// would keep a second copy of the engine in its state (the argument and the local):
/// with one bufferevent per connection, that copy is most of an idle connection's
/// memory.
pub(crate) struct Run<L: Link<S>, S> {
    state: RunState<L, S>,
}

// The engine inline is the point: boxing it would add an allocation per bufferevent.
#[allow(clippy::large_enum_variant)]
enum RunState<L: Link<S>, S> {
    Engine(Engine<L, S>),
    Then(Hosting),
    Done,
}

// Nothing in `Run` is ever pinned in place: the engine's self-referential parts
// (timers, connects, hosted futures) are boxed.
impl<L: Link<S>, S> Unpin for Run<L, S> {}

impl<L, S> Future for Run<L, S>
where
    L: Link<S>,
    S: Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                RunState::Engine(engine) => {
                    if engine.poll_run(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let RunState::Engine(engine) =
                        std::mem::replace(&mut this.state, RunState::Done)
                    else {
                        unreachable!("matched above");
                    };
                    match engine.succeed() {
                        Some(next) => this.state = RunState::Then(next),
                        None => return Poll::Ready(()),
                    }
                }
                RunState::Then(next) => {
                    if next.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.state = RunState::Done;
                }
                RunState::Done => return Poll::Ready(()),
            }
        }
    }
}

impl<L, S> Engine<L, S>
where
    L: Link<S>,
    S: Send + 'static,
{
    /// The engine stopped: a filter that wraps it takes its place, or it ends and
    /// what it hosted goes on.
    fn succeed(mut self) -> Option<Hosting> {
        if let Some(mut filter) = self.side.rare.as_mut().and_then(|r| r.wrap.take()) {
            tracing::debug!("wrapped by a filter");
            filter.set_underlying(Box::new(self));
            let filter: Box<dyn Hosted> = filter;
            return Some(filter.run_alone());
        }
        match self.end() {
            Ended::Gone(rest) => rest,
            Ended::Replaced(successor) => Some(successor.run_alone()),
        }
    }
}

impl<L, S> Hosted for Engine<L, S>
where
    L: Link<S>,
    S: Send + 'static,
{
    fn poll_pass(&mut self, cx: &mut TaskContext<'_>, dispatch: bool) -> bool {
        self.pass(cx, dispatch)
    }

    fn io(&mut self) -> Io<'_> {
        self.side.io()
    }

    fn take_pending(&mut self) -> Pending {
        self.side.take_pending()
    }

    fn is_done(&self) -> bool {
        self.is_over()
    }

    fn info(&self) -> TransportInfo {
        self.side.shared().map(Shared::info).unwrap_or_default()
    }

    fn end_into(self: Box<Self>) -> Ended {
        (*self).end()
    }

    fn pair_io(&mut self) -> Option<Io<'_>> {
        self.link.pair_io(&mut self.side)
    }

    fn partner_gone(&mut self) {
        self.link.partner_gone(&mut self.side);
    }

    fn take_wrap(&mut self) -> Option<Box<dyn Wrapper>> {
        self.side.rare.as_mut().and_then(|r| r.wrap.take())
    }

    fn forget_wakers(&mut self) {
        if let Some(remote) = &self.side.remote {
            remote.mailbox.forget_waker();
        }
        self.link.forget_wakers();
    }

    fn run_alone(self: Box<Self>) -> Hosting {
        Box::pin((*self).run())
    }

    fn release(&mut self) {
        self.side.in_use = false;
        self.side.inner.core.unsuspend_read(suspend::FILTER);
        if let Some(shared) = self.side.shared() {
            shared.changed();
        }
    }

    fn take_over(&mut self) {
        let side = &mut self.side;
        side.in_use = true;
        side.inner.callbacks = Callbacks::default();
        side.inner.callbacks_generation += 1;
        side.inner.core.enable(Direction::BOTH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bufferevent::shared::TransportInfo;
    use crate::bufferevent::stream::StreamLink;
    use crate::bufferevent::{BufferEvent, WeakHandle};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    type Echo = Engine<StreamLink<DuplexStream>, ()>;

    /// An echo engine over one end of an in-memory stream, run by hand.
    fn echo_engine() -> (Echo, BufferEvent<DuplexStream>, DuplexStream) {
        let (ours, peer) = duplex(1024);
        let (side, bev) = BufferEvent::builder()
            .enable(Direction::READ)
            .on_read(|ctx| {
                let (mut input, mut output) = ctx.io();
                output.append_input(&mut input);
            })
            .assemble(true, TransportInfo::default());
        (Engine::new(StreamLink::new(Some(ours)), side), bev, peer)
    }

    async fn run_passes(engine: &mut Echo) {
        std::future::poll_fn(|cx| {
            while engine.pass(cx, true) {}
            Poll::Ready(())
        })
        .await;
    }

    async fn echoes(engine: &mut Echo, peer: &mut DuplexStream) {
        peer.write_all(b"ping").await.unwrap();
        run_passes(engine).await;
        let mut back = [0; 4];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
    }

    #[tokio::test]
    async fn the_shared_state_is_dropped_once_no_handle_can_reach_it() {
        let (mut engine, bev, mut peer) = echo_engine();
        echoes(&mut engine, &mut peer).await;
        assert!(engine.side.shared().is_some(), "a handle is alive");
        assert_eq!(bev.input_len(), 0, "published while a handle exists");
        drop(bev);
        run_passes(&mut engine).await;
        assert!(engine.side.shared().is_none(), "no handle can read it");
        // It goes on serving its peer, publishing nothing.
        echoes(&mut engine, &mut peer).await;
        assert!(!engine.is_over());
    }

    /// A `with` whose caller gave up before the answer: once no handle is left, the
    /// answer (here the last handle of another bufferevent) is dropped, not kept for
    /// the rest of the bufferevent's life.
    #[tokio::test]
    async fn an_answer_nobody_waits_for_is_dropped_when_the_state_goes() {
        let (mut engine, bev, _peer) = echo_engine();
        let (stream, _other_peer) = duplex(64);
        let other = BufferEvent::builder().stream(stream);
        let other_alive = WeakHandle::of(&other);
        {
            let ask = bev.with(move |_| other);
            let mut ask = std::pin::pin!(ask);
            // One poll sends the closure; then the caller gives up.
            std::future::poll_fn(|cx| {
                assert!(ask.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
        }
        drop(bev);
        run_passes(&mut engine).await;
        assert!(engine.side.shared().is_none());
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while other_alive.upgrade().is_some() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the other bufferevent ends once its last handle is dropped");
    }

    #[tokio::test]
    async fn a_weak_handle_keeps_the_shared_state() {
        let (mut engine, bev, mut peer) = echo_engine();
        let weak = WeakHandle::of(&bev);
        drop(bev);
        run_passes(&mut engine).await;
        assert!(engine.side.shared().is_some(), "a weak handle may upgrade");
        let again = weak.upgrade().expect("still running");
        echoes(&mut engine, &mut peer).await;
        run_passes(&mut engine).await;
        assert_eq!(again.output_len(), 0);
        drop((again, weak));
        run_passes(&mut engine).await;
        assert!(engine.side.shared().is_none());
    }

    /// With one task per connection, the task's future is most of an idle
    /// connection's memory. Tokio rounds a task to 128 bytes; at most 416 bytes of
    /// future keep a TCP bufferevent's task in 512 (see `docs/PERFORMANCE.md`). A
    /// field added to the engine should make room elsewhere, or change this figure
    /// knowingly.
    #[test]
    fn a_tcp_bufferevent_task_stays_small() {
        let size = size_of::<Run<StreamLink<tokio::net::TcpStream>, ()>>();
        assert!(size <= 416, "the task future grew to {size} bytes");
    }
}
