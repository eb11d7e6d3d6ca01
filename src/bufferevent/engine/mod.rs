//! The task behind every bufferevent: it pumps and decides nothing.
//!
//! An [`Engine`] is one bufferevent's state (its [`Side`]: buffers, [`Core`],
//! callbacks, timer, published state) plus the [`Link`] it moves bytes through. Each
//! pass applies handle commands to the core, moves bytes between the transport and
//! the buffers, and runs the callbacks the core says are due; every rule about what
//! happens when lives in the core.
//!
//! - this file: the pass loop, handle commands, and the task's future;
//! - [`dispatch`]: running callbacks and handle closures, containing panics;
//! - [`publish`]: what handles read, and how a bufferevent ends;
//! - [`hosting`]: engines run inside another engine's task (pairs, filters).

pub(crate) mod dispatch;
mod hosting;
mod publish;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep, sleep_until};

use super::context::Inner;
use super::core::{Core, DEFAULT_CLOSE_TIMEOUT};
use super::mailbox::{Command, Remote, Reply};
use super::membership::Membership;
use super::shared::{Counters, Shared, WakeClock};
use super::transport::{Ended, Hosting, Io, Link, Wrapper};

/// Loop iterations before the task yields to the scheduler, so one busy connection
/// cannot starve the others.
const ITERATIONS_PER_POLL: usize = 32;
/// Commands applied per loop iteration at most.
const COMMANDS_PER_PASS: usize = 64;

/// One bufferevent's state apart from its link.
pub(crate) struct Side<T: Send + 'static, S: Send + 'static> {
    pub(crate) inner: Inner<S>,
    /// Shared with handles; dropped once none is left and none can be made.
    /// (Whether every handle is gone, and whether a filter depends on this one,
    /// live in the core's flags: there they cost the task no bytes.)
    remote: Option<Arc<Remote<T, S>>>,
    /// Boxed on first use: most bufferevents never need any of it.
    rare: Option<Box<Rare<T>>>,
    /// Its listener's view of it, for a bufferevent a listener accepted.
    pub(crate) member: Option<Arc<Membership>>,
}

/// The parts of a [`Side`] most bufferevents never use: a timer, the last error, a
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

/// Where statistics go: the listener's membership, or what handles read; `None` when
/// nobody can read them. (A function of the two fields, so that `Side::io` can use it
/// while it lends out the buffers.)
fn counters_of<'a, T, S>(
    member: Option<&'a Membership>,
    remote: Option<&'a Remote<T, S>>,
) -> Option<&'a Counters> {
    match member {
        Some(member) => Some(&member.counters),
        None => remote.map(|r| &r.shared.counters),
    }
}

/// A bufferevent: its state and its link.
pub(crate) struct Engine<L: Link, S: Send + 'static> {
    pub(crate) link: L,
    pub(crate) side: Side<L::Transport, S>,
}

impl<T, S> Side<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    pub(crate) fn new(inner: Inner<S>, remote: Arc<Remote<T, S>>) -> Self {
        Self {
            inner,
            remote: Some(remote),
            rare: None,
            member: None,
        }
    }

    /// A side no handle will ever reach: it shares and publishes nothing. (Its first
    /// pass records that no handle is left.)
    pub(crate) fn detached(inner: Inner<S>, member: Option<Arc<Membership>>) -> Self {
        Self {
            inner,
            remote: None,
            rare: None,
            member,
        }
    }

    /// Puts input handed to a reader and not taken back at the input's front.
    fn restore_input(&mut self) {
        if let Some(remote) = self.remote.as_deref()
            && let Some(polled) = remote.shared.polled_if_any()
        {
            polled
                .takeout
                .restore(self.inner.buffers.input(), &remote.shared.input_len);
        }
    }

    /// Drops a reader's standing request for input, and puts back what it was handed
    /// and did not take.
    fn withdraw_reader(&mut self) {
        if let Some(polled) = self.shared().and_then(Shared::polled_if_any) {
            polled.takeout.withdraw();
        }
        self.restore_input();
    }

    /// The view a transport works with.
    pub(crate) fn io(&mut self) -> Io<'_> {
        let both = self.inner.buffers.get();
        Io {
            input: &mut both.input,
            output: &mut both.output,
            core: &mut self.inner.core,
            shared: self.remote.as_deref().map(|r| &r.shared),
            counters: counters_of(self.member.as_deref(), self.remote.as_deref()),
        }
    }

    /// Where statistics go; see [`counters_of`].
    pub(crate) fn counters(&self) -> Option<&Counters> {
        counters_of(self.member.as_deref(), self.remote.as_deref())
    }

    /// A close the listener asked for; registers the task's waker with it once.
    fn poll_membership(&mut self, cx: &mut TaskContext<'_>) {
        if let Some(member) = &self.member
            && let Some(within) = member.poll(cx.waker())
        {
            self.inner.core.close_at_most(within);
        }
    }

    pub(crate) fn core(&self) -> &Core {
        &self.inner.core
    }

    /// What handles read, unless no handle can read it any more.
    pub(crate) fn shared(&self) -> Option<&Shared> {
        self.remote.as_deref().map(|r| &r.shared)
    }

    /// Whether the bufferevent stopped for good, or was asked to hand itself over.
    fn stopping(&self) -> bool {
        self.inner.core.freed()
            || self
                .rare
                .as_ref()
                .is_some_and(|r| r.give_back.is_some() || r.wrap.is_some())
    }

    fn rare(&mut self) -> &mut Rare<T> {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Whether anyone may still act on this bufferevent: a handle, or a filter that
    /// uses it.
    fn observed(&self) -> bool {
        let has_handles = self
            .remote
            .as_ref()
            .is_some_and(|r| r.mailbox.has_handles());
        !self.inner.core.handles_gone() || self.inner.core.in_use() || has_handles
    }

    /// Whether nothing outside the task can make this bufferevent act: no handle (and
    /// none can be made), no filter over it, nothing to send or flush, no timer, no
    /// callback due.
    fn unreachable(&self) -> bool {
        !self.observed() && self.quiet()
    }

    /// Whether nothing is left to do by itself: nothing to send or flush, no timer, no
    /// callback due (see [`unreachable`](Self::unreachable)).
    fn quiet(&self) -> bool {
        let core = &self.inner.core;
        let callbacks = &self.inner.callbacks;
        self.inner.buffers.output_len() == 0
            && !core.has_flushes()
            && !core.has_timeouts()
            && self.rare.as_ref().is_none_or(|r| r.timer.is_none())
            // A call due (a pair's are deferred) may still write, or take what came.
            && !core.has_calls_due(callbacks.read.is_some(), callbacks.write.is_some())
    }

    /// Whether no handle's news waits: no command is queued, and the last handle did
    /// not go unnoticed.
    fn no_news(&self) -> bool {
        self.remote.as_deref().is_none_or(|r| {
            !r.mailbox.has_queued() && (r.mailbox.has_handles() || self.core().handles_gone())
        })
    }

    /// Whether a pass would find nothing to do here: no callback to call (deferred
    /// ones included; a read or write due with no callback calls nothing), no flush,
    /// nothing left to send, no timeout or rate limit to keep, no queued command, the
    /// last handle's going noticed, and the mailbox listening: it holds the task's
    /// waker, so a command or the last handle's going wakes the task. (Both the queue
    /// and the waker count: a command sent while the task stored its waker may be
    /// left over by a pass's limit with the waker stored.)
    /// The link's own part is for the link to say.
    fn settled(&self) -> bool {
        let core = &self.inner.core;
        let callbacks = &self.inner.callbacks;
        self.inner.buffers.output_len() == 0
            && !core.has_calls_due(callbacks.read.is_some(), callbacks.write.is_some())
            && !core.has_flushes()
            && !core.has_timeouts()
            && self.rare.as_ref().is_none_or(|r| r.timer.is_none())
            && self.remote.as_ref().is_none_or(|r| {
                let mailbox = &r.mailbox;
                // Once every handle is gone: noticed, and let go of (a handle dropped
                // on another thread may still hold the shared state; the next pass
                // looks again whether it can go).
                let handles_settled =
                    mailbox.has_handles() || (core.handles_gone() && Arc::strong_count(r) == 1);
                mailbox.is_listening() && !mailbox.has_queued() && handles_settled
            })
    }

    /// Once [`settled`](Self::settled) holds, what is still due calls nothing (a
    /// read or write due with no callback): dropped, as the quiet pass's dispatch
    /// would have, so that a callback set later does not run for it.
    fn forget_uncalled_due(&mut self) {
        let _ = self.inner.core.take_due();
    }

    // ---- timeouts ----------------------------------------------------------------

    /// Keeps a timer for the core's next deadline and reports the deadlines that
    /// passed. Reads the clock only while a timeout is set or a timer is left over.
    fn poll_timer(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let has_timer = self.rare.as_ref().is_some_and(|r| r.timer.is_some());
        if !self.inner.core.has_timeouts() && !has_timer {
            return false;
        }
        let now = Instant::now();
        // Token buckets refill first: a lifted suspension is progress, so the pass
        // that follows moves bytes again.
        let resumed = self.inner.core.refill(now.into_std());
        let output_len = self.inner.buffers.output_len();
        let Some(deadline) = self.inner.core.poll_timeout(now.into_std(), output_len) else {
            if let Some(rare) = self.rare.as_mut() {
                rare.timer = None;
            }
            return resumed;
        };
        let deadline = Instant::from_std(deadline);
        let timer = self
            .rare()
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return resumed;
        }
        let now = Instant::now().into_std();
        self.inner.core.refill(now);
        self.inner.core.handle_timeout(now);
        // A deadline passed: whatever it changed, the next pass arms the next one.
        true
    }
}

impl<L, S> Engine<L, S>
where
    L: Link,
    S: Send + 'static,
{
    pub(crate) fn new(link: L, side: Side<L::Transport, S>) -> Self {
        Self { link, side }
    }

    /// The future that runs the bufferevent until it ends, then whatever takes its
    /// place: a filter that wraps it, or what it hosts.
    pub(crate) fn run(mut self) -> Run<L, S> {
        // The engine may have run on another task before (hosted, then spawned).
        self.forget_wakers();
        Run {
            state: RunState::Engine(self),
        }
    }

    /// The future that runs on its own an engine another task hosted until now.
    pub(crate) fn resume(self) -> Resumed<L, S> {
        Resumed {
            run: self.run(),
            looked: false,
        }
    }

    fn poll_run(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        // Once per wake-up: a close request wakes the task.
        self.side.poll_membership(cx);
        for _ in 0..ITERATIONS_PER_POLL {
            if self.pass(cx, true) {
                if self.is_over() {
                    return Poll::Ready(());
                }
                // A pass that changed something is followed by one that finds nothing
                // left to do, unless this one can tell already: then the engines it
                // hosts end their wake-up as that quiet pass would have ended it.
                if !self.settled() {
                    continue;
                }
                self.side.forget_uncalled_due();
                if self.settle_hosted() {
                    continue;
                }
            }
            // Nothing changed since the last pass (or nothing is left to do after
            // it), which found it not over (a first pass that changes nothing finds a
            // new bufferevent not over either).
            // Publish for handles once per wake-up, not after every pass; input
            // handed to a reader may lift a watermark pause: then look again.
            if self.side.publish() {
                continue;
            }
            // Going idle: give back what the buffers no longer need, once per
            // wake-up rather than after every pass.
            self.side.release_idle_memory(self.link.streaming(), false);
            self.tally_all(&mut WakeClock::default());
            return Poll::Pending;
        }
        // Out of budget. Deferred callbacks run now rather than wait for a quiet pass,
        // which a peer that never stops sending would never allow.
        let dispatched = self.side.dispatch();
        if dispatched {
            self.side.release_idle_memory(self.link.streaming(), false);
        }
        // Handles see this wake-up's work before the task yields, here and in what
        // the link hosts; the wake-up below comes back for anything this hands to a
        // reader.
        self.publish_all();
        self.tally_all(&mut WakeClock::default());
        if dispatched && self.is_over() {
            return Poll::Ready(());
        }
        // Let other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// One round of everything: commands, input, callbacks, output, timers. Returns
    /// whether anything happened. What handles read is published by the caller once
    /// a pass changes nothing.
    pub(crate) fn pass(&mut self, cx: &mut TaskContext<'_>, dispatch: bool) -> bool {
        // Buckets first, so that budgets and what handles ask of them (`read_limit`)
        // are current.
        let mut progress = self.side.inner.core.is_rate_limited()
            && self.side.inner.core.refill(Instant::now().into_std());
        progress |= self.poll_commands(cx);
        if !self.side.stopping() {
            // Removals by callbacks and handles may have lifted the watermark pause
            // (B-20).
            let len = self.side.inner.buffers.input_len();
            self.side.inner.core.on_input_removed(len);
            progress |= self.link.poll_input(cx, &mut self.side.io());
        }
        if dispatch && self.side.core().dispatch_now(true) {
            progress |= self.side.dispatch();
        }
        if !self.side.stopping() {
            progress |= self.link.poll_output(cx, &mut self.side.io());
        }
        progress |= self.side.poll_timer(cx);
        if dispatch && self.side.core().dispatch_now(progress) {
            // Deferred callbacks wait until this wake-up's I/O is done, so they are
            // coalesced: one read, one write and one event call (B-59).
            progress |= self.side.dispatch();
        }
        progress |= self.close_instead_of_vanishing();
        progress
    }

    /// A bufferevent about to end because no handle is left (D-B12) closes instead
    /// when its link's stream has an end of its own to send: a filter's output is
    /// flushed with `Finished` (a compressor's last block, TLS's `close_notify`) and
    /// the underlying's write side finished, within the close timeout (the default
    /// one if none is set: this ending too is bounded).
    fn close_instead_of_vanishing(&mut self) -> bool {
        if !self.link.ends_with_a_close() {
            return false;
        }
        let core = self.side.core();
        // Stopping (freed, handing itself over, or being wrapped) is not vanishing. A
        // write side already finished (a `Finished` flush) still closes: the close is
        // over at once, and ends the underlying gently instead of freeing it.
        if core.closing() || self.side.stopping() || !self.is_over() {
            return false;
        }
        let within = core.close_timeout().unwrap_or(DEFAULT_CLOSE_TIMEOUT);
        self.side.inner.core.close(Some(within));
        true
    }

    /// After a pass that changed something: whether the next pass would change
    /// nothing, so the task may go idle without running it. Anything still to do
    /// counts (see [`Side::settled`]), and so does whatever a link cannot vouch for:
    /// only a pair's, whose transfers and whose partner's pass all run in the pass
    /// just made, can tell (a stream's readiness and a filter's decisions are found
    /// out by a pass).
    fn settled(&mut self) -> bool {
        let Some(hosted) = self.link.hosted() else {
            return false; // a stream: only a read that finds nothing tells
        };
        if self.side.core().handles_gone() {
            // A handle dropped on another thread may have let go of the shared state
            // only after this pass looked (`poll_commands`): look again, as the
            // confirming pass would.
            self.side.detach_if_unobserved();
        }
        self.side.settled() && hosted.settled()
    }

    /// What the quiet pass would have done in the engines this one hosts, for a
    /// wake-up that ends without it ([`settled`](Self::settled)): publish for their
    /// handles and give back memory. Whether publishing calls for a pass after all.
    fn settle_hosted(&mut self) -> bool {
        self.link.hosted().is_some_and(|h| h.settle_hosted())
    }

    /// Publishes for this engine's handles and for those of every engine it hosts.
    fn publish_all(&mut self) {
        self.side.publish();
        if let Some(hosted) = self.link.hosted() {
            hosted.publish_hosted();
        }
    }

    /// Tallies the statistics of this engine and of every engine it hosts, as the
    /// task's wake-up ends: a hosted engine tallies on its own only as it ends.
    fn tally_all(&mut self, clock: &mut WakeClock) {
        self.side.tally(clock);
        if let Some(hosted) = self.link.hosted() {
            hosted.tally_hosted(clock);
        }
    }

    #[inline(always)]
    pub(crate) fn is_over(&self) -> bool {
        if self.side.stopping() {
            return true;
        }
        let side = &self.side;
        // What lies beyond counts as gone when nothing can ever reach either side: a
        // pair whose elements both lost their handles (D-B12 would keep each for the
        // other's sake for ever).
        let observed = side.observed();
        let attached = self.link.is_attached()
            && (observed
                || !(L::MAY_STRAND_ITS_HOST
                    && side.quiet()
                    && self.link.beyond_unreachable(false)))
            // A close with nothing to send is not held up by a connect under way (to
            // a host that never answers, it would last until the close's deadline).
            && !(side.inner.core.closing()
                && side.inner.buffers.output_len() == 0
                && self.link.only_connecting());
        side.inner.core.is_over(
            side.inner.buffers.output_len(),
            attached,
            self.link.is_idle(),
            observed,
            side.inner.has_callbacks(),
        )
    }

    // ---- commands ----------------------------------------------------------------

    fn poll_commands(&mut self, cx: &mut TaskContext<'_>) -> bool {
        let mut progress = false;
        if self.side.inner.core.handles_gone()
            && self
                .side
                .remote
                .as_deref()
                .is_some_and(|r| r.mailbox.has_handles())
        {
            // A handle came back: its going will be news again.
            self.side.inner.core.handles_back();
        }
        // Bounded, so a handle that sends without pause cannot hold the task here.
        for _ in 0..COMMANDS_PER_PASS {
            if self.side.stopping() {
                break;
            }
            let Some(remote) = self.side.remote.as_deref() else {
                // Detached from the start: no handle is news once, as when the last
                // handle goes (the end may be due).
                progress |= self.side.inner.core.set_handles_gone();
                break;
            };
            match remote.mailbox.poll_recv(cx) {
                Poll::Ready(Some(command)) => {
                    self.apply(command);
                    progress = true;
                }
                Poll::Ready(None) => {
                    // The last handle going is a change: the end may be due.
                    progress |= self.side.inner.core.set_handles_gone();
                    break;
                }
                Poll::Pending => break,
            }
        }
        if self.side.inner.core.handles_gone() {
            self.side.detach_if_unobserved();
        }
        progress
    }

    fn apply(&mut self, command: Command<L::Transport, S>) {
        let side = &mut self.side;
        if !matches!(command, Command::Write(_) | Command::WriteBuffer(_)) {
            // Whatever runs next sees the whole input, in order: answers still waiting
            // go out first, so that what one whose caller gave up had taken is back
            // in front.
            side.answer_waiting();
            side.restore_input();
        }
        match command {
            Command::Run(f) => {
                side.run_closure("a handle's command", f);
            }
            Command::Set(knob, f) => {
                side.run_closure("a handle's command", f);
                side.applied_setting(knob);
            }
            Command::Ask(f) => {
                if let Some(reply) = side.run_closure("a closure passed to `with`", f) {
                    side.rare().replies.push(reply);
                }
            }
            Command::Write(data) => {
                let n = data.len();
                side.inner.buffers.output().append_bytes(data);
                if let Some(shared) = side.shared() {
                    shared.applied(n);
                }
            }
            Command::WriteBuffer(mut buf) => {
                let n = buf.len();
                side.inner.buffers.output().append_buffer(&mut buf);
                if let Some(shared) = side.shared() {
                    shared.applied(n);
                }
            }
            Command::Attach(attach) => self.link.attach(&mut side.io(), attach),
            Command::IntoInner(reply) => {
                side.withdraw_reader();
                side.rare().give_back = Some(reply);
            }
            Command::Wrap(pending) => {
                // One filter per bufferevent: a second one would steal the first's
                // underlying (libevent lets it, and breaks the first).
                if !side.inner.core.in_use() && side.rare.as_ref().is_none_or(|r| r.wrap.is_none())
                {
                    // From now on the filter reads this input: no reader may take it.
                    side.withdraw_reader();
                    side.rare().wrap = Some(pending.take());
                }
            }
        }
    }

    /// Ends the bufferevent: publishes how, hands the transport to `into_inner`'s
    /// caller (or closes it), and says what takes its place.
    pub(crate) fn end(self) -> Ended {
        let Engine { mut link, mut side } = self;
        side.publish();
        let transport = if side.rare.as_ref().is_some_and(|r| r.give_back.is_some()) {
            link.take_transport()
        } else {
            None
        };
        let beneath = link.unsent();
        let rest = link.finish(side.inner.core.ending());
        side.finish(transport, beneath);
        rest
    }

    /// The engine stopped: a filter that wraps it takes its place, or it ends and
    /// what it hosted goes on.
    fn succeed(mut self) -> Option<Hosting> {
        if let Some(mut filter) = self.side.rare.as_mut().and_then(|r| r.wrap.take()) {
            tracing::debug!("wrapped by a filter");
            filter.set_underlying(Box::new(self));
            let filter: Box<dyn super::transport::Hosted> = filter;
            return Some(filter.run_alone());
        }
        match self.end() {
            Ended::Gone(rest) => rest,
            Ended::Replaced(successor) => Some(successor.run_alone()),
        }
    }

    /// This engine now runs on a different task: forget the old task's wakers, here
    /// and in what the link hosts.
    fn forget_wakers(&mut self) {
        if let Some(remote) = &self.side.remote {
            remote.mailbox.forget_waker();
        }
        if let Some(member) = &self.side.member {
            member.forget_waker();
        }
        if let Some(hosted) = self.link.hosted() {
            hosted.forget_wakers();
        }
    }
}

/// The future of a bufferevent's task. Hand-written rather than an `async fn`, which
/// would keep a second copy of the engine in its state (the argument and the local):
/// with one bufferevent per connection, that copy is most of an idle connection's
/// memory.
pub(crate) struct Run<L: Link, S: Send + 'static> {
    state: RunState<L, S>,
}

// The engine inline is the point: boxing it would add an allocation per bufferevent.
#[allow(clippy::large_enum_variant)]
enum RunState<L: Link, S: Send + 'static> {
    Engine(Engine<L, S>),
    Then(Hosting),
    Done,
}

// Nothing in `Run` is ever pinned in place: the engine's self-referential parts
// (timers, connects, hosted futures) are boxed.
impl<L: Link, S: Send + 'static> Unpin for Run<L, S> {}

impl<L, S> Future for Run<L, S>
where
    L: Link,
    S: Send + 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                RunState::Engine(engine) => {
                    // User code the engine calls outside callbacks (a filter, a
                    // transport) may panic: the bufferevent ends with that error, and
                    // every engine it hosts with its own (their drop reports it).
                    match catch_unwind(AssertUnwindSafe(|| engine.poll_run(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(())) => {
                            if this.conclude() {
                                return Poll::Ready(());
                            }
                        }
                        Err(panic) => {
                            let what = "the bufferevent's filter or transport";
                            let error = dispatch::panic_error(what, &*panic);
                            tracing::error!(%error, "bufferevent stopped");
                            engine.side.stop_abruptly(error);
                            this.state = RunState::Done;
                            return Poll::Ready(());
                        }
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

impl<L, S> Run<L, S>
where
    L: Link,
    S: Send + 'static,
{
    /// The engine is over: it ends, and whatever takes its place runs next. Whether
    /// nothing does.
    fn conclude(&mut self) -> bool {
        let RunState::Engine(engine) = std::mem::replace(&mut self.state, RunState::Done) else {
            unreachable!("only a running engine concludes");
        };
        match engine.succeed() {
            Some(next) => {
                self.state = RunState::Then(next);
                false
            }
            None => true,
        }
    }
}

/// The future of an engine another task hosted until now. It may have become over
/// outside any pass (its pair partner went, or its filter let it go), which a first
/// wake-up whose passes find nothing to do would not look at: it looks once after
/// that wake-up (not before it, which would skip callbacks still due, such as the
/// `EOF` a partner's end queued). (Kept apart from [`Run`], which every
/// bufferevent's task holds inline: hosted engines resume boxed.)
pub(crate) struct Resumed<L: Link, S: Send + 'static> {
    run: Run<L, S>,
    looked: bool,
}

impl<L, S> Future for Resumed<L, S>
where
    L: Link,
    S: Send + 'static,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        loop {
            if Pin::new(&mut self.run).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            if self.looked {
                return Poll::Pending;
            }
            self.looked = true;
            let over = matches!(&self.run.state, RunState::Engine(engine) if engine.is_over());
            if !over {
                return Poll::Pending;
            }
            if self.run.conclude() {
                return Poll::Ready(());
            }
            // What it hosted runs on: poll it.
        }
    }
}
