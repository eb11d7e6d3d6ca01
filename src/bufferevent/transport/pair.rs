//! Paired bufferevents (`bufferevent_pair_new`): two bufferevents joined in memory.
//! What one writes appears in the other's input, moved chunk by chunk, never copied.
//!
//! Both elements run on one task: the first element's link hosts the second's
//! engine, so a transfer is a move between two buffers the task owns, exact to the
//! byte, with the rules of B-78..B-80 checked on both sides at once. When the first
//! element ends, the task goes on running the second alone.

use std::fmt;
use std::task::Context as TaskContext;

use super::{Ended, Hosted, Hosts, Io, Link};
use crate::bufferevent::core::{Core, Ending};
use crate::bufferevent::events::{Direction, Events, FlushMode};
use crate::bufferevent::shared::WakeClock;

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
    /// The partner is a filter whose underlying bufferevent, the second element, is
    /// gone: the filter still runs here, but nothing reaches a partner any more.
    element_gone: bool,
}

impl PairLink {
    /// The first element's link, hosting the second element's engine.
    pub(crate) fn new(partner: Box<dyn Hosted>) -> Self {
        Self {
            partner: Some(partner),
            element_gone: false,
        }
    }
}

/// The link of the second element: the first one's task moves its data.
pub(crate) struct PairBack {
    /// Still hosted by the first element.
    attached: bool,
}

impl PairBack {
    /// The second element's link, hosted by the first element.
    pub(crate) fn new() -> Self {
        Self { attached: true }
    }
}

impl Link for PairLink {
    type Transport = Pair;

    const MAY_STRAND_ITS_HOST: bool = true;

    fn poll_input(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        io.core.take_write_ready(); // B-14 is a socket's
        let Some(mut partner) = self.partner.take() else {
            io.core.clear_flushes(); // B-73: nothing to flush into
            return false;
        };
        // What this element wrote reaches the partner before the partner's pass, so
        // its callbacks answer in this pass rather than the next; unless the partner
        // is not ready for it (see `takes_input_early`), or this element has flushes
        // to carry out, which move the rest and may deliver an end after the data.
        let mut progress = false;
        if !io.core.has_flushes()
            && partner.takes_input_early()
            && let Some(mut b) = partner.pair_io()
        {
            progress = transfer(io, &mut b, false);
        }
        // The partner's commands, timers and callbacks run on this task.
        progress |= partner.poll_pass(cx, true);
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
            io.partner_gone();
            return true;
        }
        match partner.pair_io() {
            Some(mut b) => {
                progress |= flush_requests(io, &mut b);
                progress |= flush_requests(&mut b, io);
                progress |= transfer(&mut b, io, false);
                progress |= transfer(io, &mut b, false);
            }
            None if !self.element_gone => {
                // A filter over the second element outlived it: the element is gone
                // as surely as if it had ended here (D-P1).
                tracing::debug!("pair partner ended beneath a filter");
                self.element_gone = true;
                io.partner_gone();
                progress = true;
            }
            None => io.core.clear_flushes(), // B-73: nothing to flush into
        }
        self.partner = Some(partner);
        progress
    }

    fn poll_output(&mut self, _cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        io.core.take_write_ready();
        let Some(mut b) = self.partner.as_mut().and_then(|p| p.pair_io()) else {
            return false;
        };
        transfer(io, &mut b, false)
    }

    fn is_attached(&self) -> bool {
        self.partner.is_some() && !self.element_gone
    }

    fn beyond_unreachable(&self, _for_host: bool) -> bool {
        self.partner.as_deref().is_some_and(|p| p.unreachable())
    }

    fn stranded(&self) -> bool {
        self.partner.is_none() || self.element_gone
    }

    fn hosted(&mut self) -> Option<&mut dyn Hosts> {
        Some(self)
    }

    fn finish(self, _how: Ending) -> Ended {
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

impl Hosts for PairLink {
    fn forget_wakers(&mut self) {
        if let Some(partner) = self.partner.as_mut() {
            partner.forget_wakers();
        }
    }

    fn pair_io<'a>(&'a mut self, _own: Io<'a>) -> Option<Io<'a>> {
        None // the first element's buffers are reached directly, not through it
    }

    fn partner_gone(&mut self, _own: &mut Io<'_>) {}

    fn publish_hosted(&mut self) {
        if let Some(partner) = self.partner.as_mut() {
            partner.publish();
        }
    }

    fn tally_hosted(&mut self, clock: &mut WakeClock) {
        if let Some(partner) = self.partner.as_mut() {
            partner.tally(clock);
        }
    }

    fn lets_input_in_early(&mut self) -> bool {
        false // the host of a pair, never a partner
    }

    fn settled(&mut self) -> bool {
        // Its transfers and its partner's pass all ran in the pass just made; what
        // is left is the partner's to say.
        self.partner.as_mut().is_some_and(|p| p.settled())
    }

    fn settle_hosted(&mut self) -> bool {
        self.partner.as_mut().is_some_and(|p| p.settle())
    }
}

impl Link for PairBack {
    type Transport = Pair;

    fn poll_input(&mut self, _cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        io.core.take_write_ready();
        if !self.attached {
            io.core.clear_flushes(); // B-73: the partner is gone
        }
        false
    }

    fn poll_output(&mut self, _cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        io.core.take_write_ready();
        false
    }

    fn is_attached(&self) -> bool {
        self.attached
    }

    fn beyond_unreachable(&self, for_host: bool) -> bool {
        // Beyond is the first element, which hosts this one and judges both.
        for_host
    }

    fn stranded(&self) -> bool {
        !self.attached
    }

    fn hosted(&mut self) -> Option<&mut dyn Hosts> {
        Some(self)
    }
}

impl Hosts for PairBack {
    fn forget_wakers(&mut self) {}

    fn pair_io<'a>(&'a mut self, own: Io<'a>) -> Option<Io<'a>> {
        self.attached.then_some(own)
    }

    fn partner_gone(&mut self, own: &mut Io<'_>) {
        self.attached = false;
        own.partner_gone();
        own.changed();
    }

    fn publish_hosted(&mut self) {}

    fn tally_hosted(&mut self, _clock: &mut WakeClock) {}

    fn lets_input_in_early(&mut self) -> bool {
        true
    }

    fn settled(&mut self) -> bool {
        true // its host moves its data
    }

    fn settle_hosted(&mut self) -> bool {
        false
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

/// Carries out `from`'s flush requests against its partner `to`.
fn flush_requests(from: &mut Io<'_>, to: &mut Io<'_>) -> bool {
    if !from.core.has_flushes() {
        return false;
    }
    for (dirs, mode) in from.core.take_flushes() {
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
            if dirs.contains(Direction::WRITE) {
                // Our end of the stream went out: the write side is done, as a
                // socket's after the same flush (D-B14), so what is written later is
                // refused rather than piled up for a partner that no longer reads.
                from.core.on_shutdown();
            }
        }
    }
    true
}

/// Moves bytes from `src`'s output to `dst`'s input. A normal transfer needs `src`
/// writing and `dst` reading and stops at `dst`'s read high watermark, at the exact
/// byte; a forced one (a flush) moves everything. Either
/// schedules `dst`'s read callback and `src`'s write callback as their low
/// watermarks allow, even when nothing moved. Returns whether it happened.
/// What `core`'s rate limits let move now one way, from buckets brought up to now
/// first: a transfer may run before either element's own pass.
fn bandwidth_now(core: &mut Core, read: bool) -> usize {
    if !core.is_rate_limited() {
        return usize::MAX;
    }
    core.refill(tokio::time::Instant::now().into_std());
    core.bandwidth(read).unwrap_or(usize::MAX)
}

fn transfer(src: &mut Io<'_>, dst: &mut Io<'_>, force: bool) -> bool {
    let n = if force {
        src.output.len()
    } else {
        if src.output.is_empty()
            || !src.core.writing()
            || !dst.core.reading()
            || src.core.write_closed()
            || !dst.core.read_open()
        {
            return false;
        }
        let room = match dst.core.read_watermarks().high {
            0 => usize::MAX,
            high => high.saturating_sub(dst.input.len()),
        };
        // Beyond libevent (B-103): rate limits throttle pairs too, so a pair can
        // stand in for a slow link.
        let room = room
            .min(bandwidth_now(src.core, false))
            .min(bandwidth_now(dst.core, true));
        if room == 0 {
            return false; // refused by a full destination, or an empty bucket
        }
        room.min(src.output.len())
    };
    src.count_written(n, src.output.len());
    src.output.move_front_to(dst.input, n);
    dst.count_read(n);
    src.core.charge(false, n);
    dst.core.charge(true, n);
    // B-45: the reader's read timer restarts with each transfer; the writer's write
    // timer restarts too (the fix of B-47's stale-timer bug).
    dst.core.on_read(dst.input.len());
    src.core.on_written(src.output.len());
    // Handles learn of it when the task publishes, as for a stream's reads: waking
    // them now would show them lengths not yet published.
    true
}
