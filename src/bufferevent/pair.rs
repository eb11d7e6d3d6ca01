//! Paired bufferevents (`bufferevent_pair_new`): two bufferevents joined in memory.
//! What one writes appears in the other's input, moved chunk by chunk, never copied.
//!
//! Both elements run on one task: the first element's link hosts the second's
//! engine, so a transfer is a move between two buffers the task owns, exact to the
//! byte, with the rules of B-78..B-80 checked on both sides at once. When the first
//! element ends, the task goes on running the second alone.

use std::fmt;
use std::task::Context as TaskContext;

use tracing::Instrument;

use super::builder::Builder;
use super::engine::{Ended, Engine, Hosted, Io, Link, Side};
use super::events::{Direction, Events, FlushMode};
use super::shared::TransportInfo;
use super::{BufferEvent, WeakHandle};

/// The transport of a pair element (`BufferEvent<Pair, S>`): there is none, the
/// partner is the other end. This type is never constructed; it only names the kind.
pub struct Pair {
    _never: (),
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pair")
    }
}

/// The link of the first element: it hosts the second (or a filter over it).
pub(crate) struct PairLink {
    partner: Option<Box<dyn Hosted>>,
}

/// The link of the second element: the first one's task moves its data.
pub(crate) struct PairBack {
    /// Still hosted by the first element.
    attached: bool,
}

impl<S: Send + 'static> Builder<S> {
    /// Creates a pair of connected bufferevents (`bufferevent_pair_new`): this
    /// builder's settings for the first, `other`'s for the second.
    ///
    /// Data written to one appears in the other's input without any socket, moving
    /// chunks, never copying bytes. A transfer happens when the writer's WRITE and
    /// the reader's READ are enabled; the reader's read high watermark caps it at the
    /// exact byte, and the rest waits in the writer's output until the reader drains
    /// (B-78..B-80). Callbacks are always deferred. Flushing with `Flush` or
    /// `Finished` moves everything at once, and `Finished` delivers `EOF` to the
    /// partner (B-74..B-76). Timeouts are plain timers; a write timeout is armed only
    /// while there is something to send (a divergence, see `docs/DIVERGENCES.md`).
    ///
    /// When one element ends, the other's [`partner`](BufferEvent::partner) becomes
    /// `None` and data it writes stays in its output; it hears `READING | EOF` only
    /// if built with [`partner_end_is_eof`](Builder::partner_end_is_eof).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Builder::runtime) was given. Both
    /// elements run on this builder's runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Direction};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let (a, b) = BufferEvent::builder()
    ///     .pair(BufferEvent::builder().enable(Direction::READ));
    /// a.write(&b"ping"[..]).await?;
    /// b.readable(4).await;
    /// assert_eq!(b.read(10).await?, &b"ping"[..]);
    /// assert!(a.partner().is_some());
    /// # Ok(()) }
    /// ```
    pub fn pair(self, other: Builder<S>) -> (BufferEvent<Pair, S>, BufferEvent<Pair, S>) {
        let (mut first, a) = self.assemble::<Pair>(true, TransportInfo::default());
        let other = other.runtime(a.runtime.clone());
        let (mut second, b) = other.assemble::<Pair>(true, TransportInfo::default());
        // Pairs always defer their callbacks (libevent forces BEV_OPT_DEFER_CALLBACKS).
        first.defer_callbacks = true;
        second.defer_callbacks = true;
        a.shared().set_relative(Box::new(WeakHandle::of(&b)));
        b.shared().set_relative(Box::new(WeakHandle::of(&a)));
        let hosted = Engine::new(PairBack { attached: true }, second);
        let link = PairLink {
            partner: Some(Box::new(hosted)),
        };
        let span = tracing::debug_span!("bufferevent_pair");
        a.runtime
            .spawn(Engine::new(link, first).run().instrument(span));
        (a, b)
    }
}

impl BufferEvent {
    /// A pair of connected bufferevents with default settings
    /// (`bufferevent_pair_new`); see [`Builder::pair`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn pair() -> (BufferEvent<Pair>, BufferEvent<Pair>) {
        Builder::new(()).pair(Builder::new(()))
    }
}

impl<S: Send + 'static> BufferEvent<Pair, S> {
    /// The bufferevent under this one (`bufferevent_get_underlying`): always `None`,
    /// as for libevent's pairs; the item type is uninhabited. A pair element's
    /// counterpart is its [`partner`](Self::partner).
    pub fn underlying(&self) -> Option<std::convert::Infallible> {
        None
    }

    /// The other element of the pair (`bufferevent_pair_get_partner`), or `None` once
    /// it has ended.
    pub fn partner(&self) -> Option<BufferEvent<Pair, S>> {
        self.shared()
            .with_relative(|r: &WeakHandle<Pair, S>| r.upgrade())
    }
}

impl<S: Send + 'static> Link<S> for PairLink {
    type Transport = Pair;

    fn poll_input(&mut self, cx: &mut TaskContext<'_>, side: &mut Side<Pair, S>) -> bool {
        side.inner.write_ready_callback = false;
        let Some(mut partner) = self.partner.take() else {
            side.inner.flushes.clear(); // B-73: nothing to flush into
            return false;
        };
        // The partner's commands, timers and callbacks run on this task.
        let mut progress = partner.poll_pass(cx, true);
        let wrapped;
        (partner, wrapped) = in_place_of(partner);
        progress |= wrapped;
        if partner.is_done() {
            match partner.end_into() {
                // A filter over the partner let it go: the partner is back.
                Ended::Replaced(successor) => {
                    self.partner = Some(successor);
                    return true;
                }
                Ended::Gone(rest) => {
                    tracing::debug!("pair partner ended");
                    if let Some(rest) = rest {
                        tokio::spawn(rest);
                    }
                }
            }
            if side.partner_end_is_eof && !side.read_closed {
                side.io().end_reading(Events::READING | Events::EOF, None);
            }
            return true;
        }
        if let Some(mut b) = partner.pair_io() {
            let mut a = side.io();
            progress |= flush_requests(&mut a, &mut b);
            progress |= flush_requests(&mut b, &mut a);
            progress |= transfer(&mut b, &mut a, false);
            progress |= transfer(&mut a, &mut b, false);
        }
        self.partner = Some(partner);
        progress
    }

    fn poll_output(&mut self, _cx: &mut TaskContext<'_>, side: &mut Side<Pair, S>) -> bool {
        side.inner.write_ready_callback = false;
        let Some(mut b) = self.partner.as_mut().and_then(|p| p.pair_io()) else {
            return false;
        };
        transfer(&mut side.io(), &mut b, false)
    }

    fn is_attached(&self) -> bool {
        self.partner.is_some()
    }

    fn forget_wakers(&mut self) {
        if let Some(partner) = self.partner.as_mut() {
            partner.forget_wakers();
        }
    }

    fn finish(self, _side: &mut Side<Pair, S>) -> Ended {
        let Some(mut partner) = self.partner else {
            return Ended::Gone(None);
        };
        (partner, _) = in_place_of(partner);
        if partner.is_done() {
            match partner.end_into() {
                Ended::Gone(rest) => return Ended::Gone(rest),
                Ended::Replaced(successor) => partner = successor,
            }
        }
        // The partner lives on alone on this task (B-81).
        partner.partner_gone();
        Ended::Gone(Some(partner.run_alone()))
    }
}

impl<S: Send + 'static> Link<S> for PairBack {
    type Transport = Pair;

    fn poll_input(&mut self, _cx: &mut TaskContext<'_>, side: &mut Side<Pair, S>) -> bool {
        side.inner.write_ready_callback = false;
        if !self.attached {
            side.inner.flushes.clear(); // B-73: the partner is gone
        }
        false
    }

    fn poll_output(&mut self, _cx: &mut TaskContext<'_>, side: &mut Side<Pair, S>) -> bool {
        side.inner.write_ready_callback = false;
        false
    }

    fn is_attached(&self) -> bool {
        self.attached
    }

    fn pair_io<'a>(&'a mut self, side: &'a mut Side<Pair, S>) -> Option<Io<'a>> {
        self.attached.then(|| side.io())
    }

    fn partner_gone(&mut self, side: &mut Side<Pair, S>) {
        self.attached = false;
        if side.partner_end_is_eof && !side.read_closed {
            side.io().end_reading(Events::READING | Events::EOF, None);
        }
        side.io().changed();
    }
}

/// The filter that asked to wrap `partner`, with `partner` under it, in its place;
/// or `partner` itself. Says whether a filter took the place.
fn in_place_of(mut partner: Box<dyn Hosted>) -> (Box<dyn Hosted>, bool) {
    match partner.take_wrap() {
        Some(mut filter) => {
            filter.set_underlying(partner);
            (filter, true)
        }
        None => (partner, false),
    }
}

/// Carries out `from`'s flush requests against its partner `to` (B-73..B-76).
fn flush_requests(from: &mut Io<'_>, to: &mut Io<'_>) -> bool {
    if from.flushes.is_empty() {
        return false;
    }
    for (dirs, mode) in from.flushes.take() {
        if mode == FlushMode::Normal {
            continue; // B-73
        }
        if dirs.contains(Direction::READ) {
            transfer(to, from, true);
        }
        if dirs.contains(Direction::WRITE) {
            transfer(from, to, true);
        }
        if mode == FlushMode::Finished {
            // B-76: READING when our output was flushed into it, WRITING when we
            // pulled from it.
            let mut events = Events::EOF;
            if dirs.contains(Direction::WRITE) {
                events |= Events::READING;
            }
            if dirs.contains(Direction::READ) {
                events |= Events::WRITING;
            }
            if events.contains(Events::READING) {
                to.end_reading(events, None);
            } else {
                to.core.event(events, None);
            }
            if from.closing && dirs.contains(Direction::WRITE) {
                from.mark_write_closed();
            }
        }
    }
    true
}

/// Moves bytes from `src`'s output to `dst`'s input. A normal transfer needs `src`
/// writing and `dst` reading and stops at `dst`'s read high watermark, at the exact
/// byte (B-78, B-80); a forced one (a flush) moves everything (B-74). Either
/// schedules `dst`'s read callback and `src`'s write callback as their low
/// watermarks allow, even when nothing moved (B-75). Returns whether it happened.
fn transfer(src: &mut Io<'_>, dst: &mut Io<'_>, force: bool) -> bool {
    let n = if force {
        src.output.len()
    } else {
        if src.output.is_empty()
            || !src.core.writing()
            || !dst.core.reading()
            || *src.write_closed
            || *dst.read_closed
        {
            return false;
        }
        let room = match dst.core.read_watermarks().high {
            0 => usize::MAX,
            high => high.saturating_sub(dst.input.len()),
        };
        if room == 0 {
            return false; // refused by a full destination
        }
        room.min(src.output.len())
    };
    if n > 0 && src.output.remove_buffer(dst.input, n).is_err() {
        return false; // a frozen buffer of the user's: leave the data where it is
    }
    // B-45: the reader's read timer restarts with each transfer; the writer's write
    // timer restarts too (the fix of B-47's stale-timer bug).
    dst.timeouts.read_progress();
    src.timeouts.write_progress();
    dst.core.data_read(dst.input.len());
    src.core.data_written(src.output.len());
    dst.changed();
    true
}
