//! [`pipe`]: forwarding between two bufferevents in both directions, with watermark
//! backpressure and half-close, as every libevent proxy writes it by hand.
//!
//! Each side's read callback moves its input to the other side's output without
//! copying. When the other side's output (what it has not sent yet, including
//! writes still on their way to its task) is above its write high watermark, the
//! reader disables READ and asks the other side to run its write callback once its
//! output is at or below its write low watermark; that callback enables READ again.
//! Asking is what makes this safe on a multi-threaded runtime: the other side may
//! have drained before the reader paused, and the request, queued after the data,
//! then runs the callback at once.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::context::{Callbacks, Context};
use super::events::{Direction, Events, FlushMode, Watermarks};
use super::handle::BufferEvent;
use super::shared::{Closed, Condition, Shared, copy_error};

/// The write watermarks [`pipe`] gives a side whose write high watermark is unset:
/// forwarding into it stops above 1 MiB queued and resumes at 256 KiB.
pub const PIPE_WATERMARKS: Watermarks = Watermarks::new(256 << 10, 1 << 20);

/// The longest a [`pipe`] waits, at its end, for a side to send what it has queued: a
/// side's own close timeout applies if it is shorter (also when it has none, this
/// bounds the pipe's end).
pub const PIPE_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which bufferevent of a [`pipe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PipeSide {
    /// The first argument of [`pipe`].
    A,
    /// The second argument of [`pipe`].
    B,
}

/// How a [`pipe`] ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PipeEnd {
    /// Both directions finished: each side's EOF was passed on as a shut-down write
    /// side of the other, after everything before it was sent. Both sides were then
    /// closed, each sending everything it still held (a filter's last block).
    Finished,
    /// A side failed (an error, or a read or write timeout). That side was freed;
    /// the other was closed (what it had queued sent within its close deadline).
    /// Also the end when both directions finished but a side's closing close left
    /// bytes unsent (its close timed out): `error` is the close's error, or one of
    /// kind `TimedOut`.
    Failed {
        /// The side that failed.
        side: PipeSide,
        /// What its event callback received.
        events: Events,
        /// The error, if the failure came with one.
        error: Option<Arc<io::Error>>,
    },
    /// A side ended without the pipe (freed or closed through a handle), or began a
    /// close of its own (through a handle, or its listener's shutdown), or is a pair
    /// element whose partner (or a filter whose underlying bufferevent) is gone. That
    /// side was freed (one closing goes on closing, with nothing more forwarded to
    /// it), the other closed.
    Ended(PipeSide),
    /// A side's callbacks were replaced while the pipe ran (through a handle, or by
    /// a filter that wrapped it), and dropped: the pipe can no longer forward from
    /// it. It stopped as when its future is dropped, leaving both sides running.
    /// (Callbacks taken back with `set_callbacks` and kept may be put back: the pipe
    /// waits for them until they are dropped.)
    TakenOver(PipeSide),
}

/// What a [`pipe`] moved and how it ended.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Piped {
    /// Bytes moved from A's input to B's output.
    pub a_to_b: u64,
    /// Bytes moved from B's input to A's output.
    pub b_to_a: u64,
    /// How it ended.
    pub end: PipeEnd,
}

/// Forwards everything `a` reads to `b` and everything `b` reads to `a`, until both
/// directions finish or either side fails; resolves with the bytes moved each way
/// and how it ended.
///
/// - **Backpressure**: reading from one side stops while the other's output is above
///   its write high watermark and resumes once it drains to its write low watermark.
///   A side whose write high watermark is unset gets [`PIPE_WATERMARKS`]. Memory is
///   bounded by the watermarks plus one read per side, whatever the speeds of the
///   two peers.
/// - **Half-close**: EOF on one side becomes, once everything read before it is
///   sent, a shut-down write side of the other (a FIN for TCP, a `close_notify` for
///   TLS, the end of a zlib stream, `EOF` for a pair partner); the other direction
///   goes on.
/// - **End**: when both directions finished, both sides are closed (what a filter
///   still holds beneath is sent). When one side fails, it is freed and the other is
///   closed: what it had queued is sent within [`PIPE_CLOSE_TIMEOUT`] (or the side's
///   own close timeout, if sooner), so the pipe's end is bounded.
/// - A pair element whose partner is gone (or a filter whose underlying bufferevent
///   is) ends the pipe as [`PipeEnd::Ended`]: nothing more can come from it, and what
///   is forwarded to it could never leave. Finish a partner with
///   `flush(Direction::WRITE, FlushMode::Finished)` instead to end only its direction.
///
/// It works for any two bufferevents: sockets, pairs, and filters (a TLS-terminating
/// or a compressing proxy is a pipe between a filter and a socket). READ and WRITE
/// are enabled on both (a side whose write timeout disabled WRITE before the pipe
/// sends again). The pipe takes over both sides' callbacks; their user state is left
/// alone. Replacing a side's callbacks while it runs stops it
/// ([`PipeEnd::TakenOver`]).
///
/// # Panics
///
/// If `a` and `b` are handles of the same bufferevent: a bufferevent cannot be
/// forwarded to itself by a pipe (echo it with a read callback instead).
///
/// # Cancel safety
///
/// Dropping the future stops forwarding: both sides lose the pipe's callbacks (and
/// with them their references to each other), get back the write watermarks they had
/// before it, read again if they had stopped for backpressure, and are left running.
///
/// # Examples
///
/// ```
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::net::{TcpListener, TcpStream};
/// use tokio_bufferevent::bufferevent::{BufferEvent, PipeEnd, pipe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// // An upstream that answers "pong" and closes.
/// let upstream = TcpListener::bind("127.0.0.1:0").await?;
/// let upstream_addr = upstream.local_addr()?;
/// tokio::spawn(async move {
///     let (mut s, _) = upstream.accept().await?;
///     s.write_all(b"pong").await?;
///     s.shutdown().await
/// });
/// // A proxy for one connection.
/// let front = TcpListener::bind("127.0.0.1:0").await?;
/// let front_addr = front.local_addr()?;
/// let proxy = tokio::spawn(async move {
///     let (client, _) = front.accept().await?;
///     let client = BufferEvent::builder().tcp(client)?;
///     let server = BufferEvent::builder().connect(upstream_addr)?;
///     std::io::Result::Ok(pipe(&client, &server).await)
/// });
/// let mut client = TcpStream::connect(front_addr).await?;
/// client.shutdown().await?;
/// let mut answer = Vec::new();
/// client.read_to_end(&mut answer).await?;
/// assert_eq!(answer, b"pong");
/// let piped = proxy.await.unwrap()?;
/// assert_eq!((piped.a_to_b, piped.b_to_a), (0, 4));
/// assert!(matches!(piped.end, PipeEnd::Finished));
/// # Ok(()) }
/// ```
pub async fn pipe<T1, S1, T2, S2>(a: &BufferEvent<T1, S1>, b: &BufferEvent<T2, S2>) -> Piped
where
    T1: Send + 'static,
    S1: Send + 'static,
    T2: Send + 'static,
    S2: Send + 'static,
{
    assert!(
        !a.same_as(b),
        "pipe: `a` and `b` are the same bufferevent, which cannot be forwarded to itself"
    );
    let state = Arc::new(PipeState::default());
    let watermarks = [for_destination(a), for_destination(b)];
    a.replace_callbacks(forwarding(PipeSide::A, b.clone(), Arc::clone(&state)));
    b.replace_callbacks(forwarding(PipeSide::B, a.clone(), Arc::clone(&state)));
    for side in [Direction::READ, Direction::WRITE] {
        a.enable(side);
        b.enable(side);
    }
    let guard = Unhook {
        a,
        b,
        state: Arc::clone(&state),
        watermarks,
    };
    // What arrived before the callbacks did (data, an EOF, an error) is not lost.
    catch_up(PipeSide::A, a, b, &state).await;
    catch_up(PipeSide::B, b, a, &state).await;
    // A side that paused before the other's callbacks were the pipe's may have asked
    // the callback it replaced to resume it: ask the pipe's own (nothing happens if
    // that side's output is still above its low watermark; draining will ask).
    if state.paused[0].load(Ordering::Acquire) {
        b.trigger(Direction::WRITE, false);
    }
    if state.paused[1].load(Ordering::Acquire) {
        a.trigger(Direction::WRITE, false);
    }

    let finished =
        async { tokio::join!(pass_on_eof(&state.eof[0], b), pass_on_eof(&state.eof[1], a)) };
    let found = tokio::select! {
        biased;
        () = state.failed.wait() => None,
        () = ended(a) => Some(PipeEnd::Ended(PipeSide::A)),
        () = ended(b) => Some(PipeEnd::Ended(PipeSide::B)),
        _ = finished => Some(PipeEnd::Finished),
        () = state.taken[0].wait() => Some(PipeEnd::TakenOver(PipeSide::A)),
        () = state.taken[1].wait() => Some(PipeEnd::TakenOver(PipeSide::B)),
    };
    // A side's event callback flags a failure before its task publishes the end the
    // failure caused: one flagged after the select looked still comes first. And an
    // ending drops the callbacks too, after publishing the end: that is the end.
    let end = match found {
        _ if state.failed.is_set() => state.failure(),
        Some(PipeEnd::TakenOver(PipeSide::A)) if gone(a) => PipeEnd::Ended(PipeSide::A),
        Some(PipeEnd::TakenOver(PipeSide::B)) if gone(b) => PipeEnd::Ended(PipeSide::B),
        Some(end) => end,
        None => state.failure(),
    };
    drop(guard);
    let end = match end {
        PipeEnd::Finished => {
            // Everything was passed on; closing sends what a filter still holds
            // beneath (a TLS close_notify, the end of a zlib stream). A close that
            // did not get it all out in time is the pipe's failure, not a finish.
            let (a_closed, b_closed) = tokio::join!(close_bounded(a), close_bounded(b));
            [(PipeSide::A, a_closed), (PipeSide::B, b_closed)]
                .into_iter()
                .find(|(_, closed)| closed.unsent > 0)
                .map_or(PipeEnd::Finished, |(side, closed)| {
                    let unsent = closed.unsent;
                    PipeEnd::Failed {
                        side,
                        events: closed.events,
                        error: closed.error.or_else(|| {
                            Some(Arc::new(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("{unsent} bytes were left unsent at the close"),
                            )))
                        }),
                    }
                })
        }
        end => {
            if let PipeEnd::Failed { side, .. } | PipeEnd::Ended(side) = &end {
                // The failed side goes at once (unless it is closing: its close goes
                // on); the other sends what it has queued.
                if *side == PipeSide::A {
                    free_unless_closing(a);
                    close_bounded(b).await;
                } else {
                    free_unless_closing(b);
                    close_bounded(a).await;
                }
            }
            end
        }
    };
    Piped {
        a_to_b: state.moved[0].load(Ordering::Relaxed),
        b_to_a: state.moved[1].load(Ordering::Relaxed),
        end,
    }
}

/// Forwards what `from` holds already, and notes an end it reached before the
/// pipe's callbacks were in place.
async fn catch_up<T1, S1, T2, S2>(
    side: PipeSide,
    from: &BufferEvent<T1, S1>,
    to: &BufferEvent<T2, S2>,
    state: &Arc<PipeState>,
) where
    T1: Send + 'static,
    S1: Send + 'static,
    T2: Send + 'static,
    S2: Send + 'static,
{
    let (to, shared) = (to.clone(), Arc::clone(state));
    let index = side as usize;
    let caught_up = from.with(move |ctx| {
        shared.forward(index, ctx, &to);
        let core = &ctx.inner.core;
        if core.read_open() {
            return Ok(());
        }
        let events = core.last_events();
        if events.intersects(Events::ERROR | Events::TIMEOUT) {
            Err(events)
        } else {
            shared.eof[index].set();
            Ok(())
        }
    });
    // An ended side is the pipe's end, seen by its future.
    if let Ok(Err(events)) = caught_up.await {
        let error = from.last_event().and_then(|record| record.error);
        state.fail(side, events, error.as_deref());
    }
}

/// Once `eof` is set, finishes `to`'s output (the end of the stream follows what
/// was forwarded) and waits until it has all left.
async fn pass_on_eof<T: Send + 'static, S: Send + 'static>(eof: &Flag, to: &BufferEvent<T, S>) {
    eof.wait().await;
    to.flush(Direction::WRITE, FlushMode::Finished);
    // In order after the flush: once this returns, the flush was applied.
    if to.with(|_| ()).await.is_err() {
        return std::future::pending().await; // ended: the pipe's future sees that
    }
    // Finished: the write side is done once everything before the end has left,
    // beneath a filter too (an empty output alone says only that it moved beneath).
    to.shared()
        .wait_until(Condition::Output, |s| {
            s.write_closed.load(Ordering::Acquire)
        })
        .await;
}

/// Closes `bev` (sending what is queued) within [`PIPE_CLOSE_TIMEOUT`], or its own
/// close timeout if that is sooner; resolves once it ended, with how.
async fn close_bounded<T: Send + 'static, S: Send + 'static>(bev: &BufferEvent<T, S>) -> Closed {
    bev.run(|ctx| ctx.inner.core.close_at_most(PIPE_CLOSE_TIMEOUT));
    bev.closed().await
}

/// Resolves once `bev` is [`gone`], or closing (a `close` or a listener's shutdown
/// through another handle): what is forwarded to it would hold its close back, and
/// what it sends now is all it will.
async fn ended<T: Send + 'static, S: Send + 'static>(bev: &BufferEvent<T, S>) {
    bev.shared()
        .wait_until(Condition::Event, |s| is_gone(s) || s.is_closing())
        .await;
}

/// Frees `bev`, unless a close of its own is under way (then it ends by that).
fn free_unless_closing<T: Send + 'static, S: Send + 'static>(bev: &BufferEvent<T, S>) {
    if !bev.shared().is_closing() {
        bev.free();
    }
}

/// Whether `bev` ended, or has nothing left beyond it (a pair partner, a filter's
/// underlying bufferevent).
fn gone<T: Send + 'static, S: Send + 'static>(bev: &BufferEvent<T, S>) -> bool {
    is_gone(bev.shared())
}

fn is_gone(shared: &Shared) -> bool {
    shared.is_closed() || shared.is_stranded()
}

/// Gives `bev` the pipe's write watermarks unless it has a write high watermark;
/// the ones it had, if they were replaced.
fn for_destination<T: Send + 'static, S: Send + 'static>(
    bev: &BufferEvent<T, S>,
) -> Option<Watermarks> {
    let before = bev.watermarks(Direction::WRITE).unwrap_or_default();
    if before.high != 0 {
        return None;
    }
    bev.set_watermarks(Direction::WRITE, PIPE_WATERMARKS);
    Some(before)
}

/// The callbacks of one side; `to` is the other side.
fn forwarding<S, T2, S2>(
    side: PipeSide,
    to: BufferEvent<T2, S2>,
    state: Arc<PipeState>,
) -> Callbacks<S>
where
    S: Send + 'static,
    T2: Send + 'static,
    S2: Send + 'static,
{
    let index = side as usize;
    let other = 1 - index;
    let (read_state, write_state) = (Arc::clone(&state), Arc::clone(&state));
    let (read_to, event_to) = (to.clone(), to.clone());
    let hooked = Hooked {
        state: Arc::clone(&state),
        index,
    };
    let callbacks = Callbacks {
        read: Some(Box::new(move |ctx: &mut Context<'_, S>| {
            read_state.forward(index, ctx, &read_to);
        })),
        // This side's output drained to its low watermark: the other side may read
        // again if it paused for us.
        write: Some(Box::new(move |_ctx: &mut Context<'_, S>| {
            if write_state.paused[other].swap(false, Ordering::AcqRel) {
                to.enable(Direction::READ);
            }
        })),
        event: Some(Box::new(move |ctx, events, error| {
            let state = &hooked.state;
            // A write that returned 0 (`WRITING | EOF`) is a failure of this side, not
            // the end of what it reads.
            let write_ended = events.contains(Events::WRITING | Events::EOF);
            if events.intersects(Events::ERROR | Events::TIMEOUT) || write_ended {
                state.fail(side, events, error);
            } else if events.contains(Events::READING | Events::EOF) {
                // What arrived with the EOF goes first; the pipe's future then
                // finishes the other side's output.
                state.forward(index, ctx, &event_to);
                state.eof[index].set();
            }
        })),
    };
    state.installed[index].store(identity(&callbacks), Ordering::Release);
    callbacks
}

/// Tells a set of callbacks apart from any other: the address of its event callback's
/// closure (the pipe's holds state, so it has an address of its own).
fn identity<S>(callbacks: &Callbacks<S>) -> usize {
    callbacks
        .event
        .as_deref()
        .map_or(0, |event| std::ptr::from_ref(event).cast::<()>() as usize)
}

/// What both sides' callbacks and the pipe's future share.
#[derive(Debug, Default)]
struct PipeState {
    /// Bytes moved out of A's input (`[0]`) and B's input (`[1]`).
    moved: [AtomicU64; 2],
    /// A side stopped reading because the other's output was full.
    paused: [AtomicBool; 2],
    /// A side's EOF was passed on.
    eof: [Flag; 2],
    /// A side's callbacks were dropped while the pipe ran: replaced, or the side ended.
    taken: [Flag; 2],
    /// The pipe takes its callbacks off: their dropping is not news.
    unhooking: AtomicBool,
    /// Each side's callbacks as the pipe installed them (see [`identity`]), so that
    /// taking them off leaves a set the application installed since alone.
    installed: [AtomicUsize; 2],
    failed: Flag,
    failure: Mutex<Option<PipeEnd>>,
}

impl PipeState {
    /// Moves side `index`'s input to `to`'s output; pauses reading while `to`'s
    /// output is above its high watermark.
    fn forward<S, T2, S2>(&self, index: usize, ctx: &mut Context<'_, S>, to: &BufferEvent<T2, S2>)
    where
        T2: Send + 'static,
        S2: Send + 'static,
    {
        let mut data = ctx.input().take_buffer();
        let n = data.len();
        if n == 0 {
            return;
        }
        if let Err(error) = to.write_buffer(&mut data) {
            ctx.disable(Direction::READ);
            if to.shared().is_closing() || is_gone(to.shared()) {
                // It closed, or is going, of its own accord: the pipe ends there
                // (`ended` sees it), and what it could no longer take goes with it.
                return;
            }
            // The other side can take nothing more: the pipe fails there, with the
            // bytes that were on their way.
            let other = if index == 0 { PipeSide::B } else { PipeSide::A };
            let error = io::Error::new(
                error.kind(),
                format!("{n} bytes could not be passed on: {error}"),
            );
            self.fail(other, Events::WRITING | Events::ERROR, Some(&error));
            return;
        }
        self.moved[index].fetch_add(n as u64, Ordering::Relaxed);
        let high = to.watermarks(Direction::WRITE).map_or(0, |wm| wm.high);
        if high == 0 {
            return;
        }
        // Flagged before looking, so a write callback of `to` that runs from here on
        // sees it and enables us again.
        self.paused[index].store(true, Ordering::Release);
        if to.output_len() > high {
            ctx.disable(Direction::READ);
            // Runs `to`'s write callback after this data if its output is already at
            // or below its low watermark; otherwise draining to it will.
            to.trigger(Direction::WRITE, false);
        } else {
            self.paused[index].store(false, Ordering::Release);
        }
    }

    fn fail(&self, side: PipeSide, events: Events, error: Option<&io::Error>) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none() {
            *failure = Some(PipeEnd::Failed {
                side,
                events,
                error: error.map(copy_error),
            });
        }
        drop(failure);
        self.failed.set();
    }

    fn failure(&self) -> PipeEnd {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.clone().expect("set before the flag")
    }
}

/// Held by a side's callbacks: their dropping while the pipe runs tells it that it
/// lost that side.
struct Hooked {
    state: Arc<PipeState>,
    index: usize,
}

impl Drop for Hooked {
    fn drop(&mut self) {
        if !self.state.unhooking.load(Ordering::Acquire) {
            self.state.taken[self.index].set();
        }
    }
}

/// A one-way flag a task can wait for.
#[derive(Debug, Default)]
struct Flag {
    set: AtomicBool,
    notify: Notify,
}

impl Flag {
    fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    async fn wait(&self) {
        crate::wait::until(&self.notify, || self.is_set()).await;
    }
}

/// Takes the pipe's callbacks off both sides, and with them the handles each holds
/// of the other.
struct Unhook<'a, T1, S1, T2, S2>
where
    T1: Send + 'static,
    S1: Send + 'static,
    T2: Send + 'static,
    S2: Send + 'static,
{
    a: &'a BufferEvent<T1, S1>,
    b: &'a BufferEvent<T2, S2>,
    state: Arc<PipeState>,
    /// The write watermarks each side had before the pipe replaced them.
    watermarks: [Option<Watermarks>; 2],
}

impl<T1, S1, T2, S2> Drop for Unhook<'_, T1, S1, T2, S2>
where
    T1: Send + 'static,
    S1: Send + 'static,
    T2: Send + 'static,
    S2: Send + 'static,
{
    fn drop(&mut self) {
        self.state.unhooking.store(true, Ordering::Release);
        unhook(self.a, 0, &self.state, self.watermarks[0]);
        unhook(self.b, 1, &self.state, self.watermarks[1]);
    }
}

/// Leaves side `index` as the pipe found it, on its task (where its read callback
/// runs, so no pause can come after the look): without the pipe's callbacks (but with
/// any the application installed since), reading if the pipe paused it for
/// backpressure, and with the write watermarks it had, unless changed since.
fn unhook<T: Send + 'static, S: Send + 'static>(
    bev: &BufferEvent<T, S>,
    index: usize,
    state: &Arc<PipeState>,
    watermarks: Option<Watermarks>,
) {
    let state = Arc::clone(state);
    bev.run(move |ctx| {
        // Once the pipe's callbacks were dropped, whatever is installed is the
        // application's, even at the address theirs had (freed, so reusable).
        if !state.taken[index].is_set()
            && identity(&ctx.inner.callbacks) == state.installed[index].load(Ordering::Acquire)
        {
            drop(ctx.set_callbacks(Callbacks::default()));
        }
        if state.paused[index].swap(false, Ordering::AcqRel) {
            ctx.enable(Direction::READ);
        }
        if let Some(before) = watermarks
            && ctx.watermarks(Direction::WRITE) == Some(PIPE_WATERMARKS)
        {
            ctx.set_watermarks(Direction::WRITE, before);
        }
    });
}
