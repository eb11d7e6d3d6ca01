//! Filtering bufferevents (`bufferevent_filter_new`): a bufferevent whose transport
//! is another bufferevent, with a [`Filter`] transforming the bytes each way.
//!
//! The filter's task adopts the underlying bufferevent's engine and runs it itself:
//! the underlying's callbacks are replaced by the filter's processing, its
//! input is read by the input filter and its output written by the output filter,
//! with no channel in between. The underlying's handle keeps working. Filters stack:
//! a filter over a filter over a socket is a chain of adopted engines.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::task::Context as TaskContext;

use super::{Ended, Hosted, Hosts, Io, Link, end_hosted};
use crate::bufferevent::context::{Input, Output};
use crate::bufferevent::core::{Ending, suspend};
use crate::bufferevent::events::{Direction, Events, FlushMode};
use crate::bufferevent::shared::{Shared, WakeClock};

/// What a [`Filter`] call achieved (`enum bufferevent_filter_result`); a failure is
/// the call's `Err` (libevent's `BEV_ERROR`).
///
/// Unlike libevent, which ignores `BEV_ERROR`, the filtering bufferevent delivers
/// `READING | ERROR` (input filter) or `WRITING | ERROR` (output filter) with the
/// error, and that direction stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterResult {
    /// Something was produced or consumed (`BEV_OK`); processing goes on while the
    /// source has data and the destination is under its limit.
    Ok,
    /// Nothing more can be done until more input arrives (`BEV_NEED_MORE`).
    NeedMore,
    /// The source's stream ended cleanly, and everything before the end was produced
    /// (beyond libevent: a TLS peer's `close_notify`). From an input filter, the
    /// filtering bufferevent stops reading and reports `READING | EOF`, whatever the
    /// transport beneath does; the filter is not called again. From an output filter
    /// it means the same as `Ok`.
    EndOfStream,
}

/// A transformation from one buffer to another (`bufferevent_filter_cb`): the input
/// filter moves bytes from the underlying bufferevent's input to the filter's input,
/// the output filter from the filter's output to the underlying's output.
///
/// A filter sees the source as an [`Input`] (it may only remove bytes) and the
/// destination as an [`Output`] (it may only add bytes): it can neither freeze nor
/// reorder the buffers it works on, so every byte written to a bufferevent is either
/// queued, sent, or reported with an error. Errors are returned, so `?` works, as
/// in tokio-util's `Decoder`.
///
/// `dst_limit` is how many more bytes the destination wants (`None`: no limit); it is
/// advisory. `mode` is `Normal` in ordinary operation, and the mode of a
/// [`flush`](crate::bufferevent::BufferEvent::flush) otherwise; `Finished` asks the
/// filter to emit everything it holds (a compressor's trailer).
///
/// Closures of the same shape are filters, and [`PassThrough`] moves bytes unchanged.
///
/// # Errors
///
/// An error stops the filter's direction and reaches the event callback (see
/// [`FilterResult`]).
///
/// # Examples
///
/// An output filter that upper-cases ASCII:
///
/// ```
/// use std::io;
/// use tokio_bufferevent::bufferevent::{FilterResult, FlushMode, Input, Output};
///
/// fn upper(src: &mut Input<'_>, dst: &mut Output<'_>, _limit: Option<usize>, _mode: FlushMode)
///     -> io::Result<FilterResult>
/// {
///     let data = src.take_all();
///     dst.add(&data.to_ascii_uppercase());
///     Ok(FilterResult::Ok)
/// }
/// # let _ = upper;
/// ```
pub trait Filter: Send + 'static {
    /// Moves (and transforms) bytes from `src` to `dst`.
    ///
    /// # Errors
    ///
    /// Any [`io::Error`], for data that cannot be processed: the filtering
    /// bufferevent delivers it with `READING | ERROR` (input filter) or
    /// `WRITING | ERROR` (output filter), and that direction stops.
    fn filter(
        &mut self,
        src: &mut Input<'_>,
        dst: &mut Output<'_>,
        dst_limit: Option<usize>,
        mode: FlushMode,
    ) -> io::Result<FilterResult>;

    /// Whether this filter holds bytes it would emit even with an empty source (a
    /// TLS connection's handshake messages, or plaintext it decrypted beyond the last
    /// call's limit); it is then called with an empty source. Default: `false`.
    fn has_pending(&self) -> bool {
        false
    }

    /// Bytes this filter took from its source and has not emitted in any form yet
    /// (a TLS connection's plaintext written during its handshake), counted in
    /// [`Closed::unsent`](crate::bufferevent::Closed::unsent) if the bufferevent ends before they
    /// go. Default: 0.
    fn held(&self) -> usize {
        0
    }
}

impl<F> Filter for F
where
    F: FnMut(&mut Input<'_>, &mut Output<'_>, Option<usize>, FlushMode) -> io::Result<FilterResult>
        + Send
        + 'static,
{
    fn filter(
        &mut self,
        src: &mut Input<'_>,
        dst: &mut Output<'_>,
        dst_limit: Option<usize>,
        mode: FlushMode,
    ) -> io::Result<FilterResult> {
        self(src, dst, dst_limit, mode)
    }
}

/// The filter libevent uses for a missing filter function: moves up to
/// `dst_limit` bytes (everything without a limit) unchanged, without copying. It
/// never fails.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThrough;

impl Filter for PassThrough {
    fn filter(
        &mut self,
        src: &mut Input<'_>,
        dst: &mut Output<'_>,
        dst_limit: Option<usize>,
        _mode: FlushMode,
    ) -> io::Result<FilterResult> {
        src.remove_to(dst, dst_limit.unwrap_or(usize::MAX));
        Ok(FilterResult::Ok)
    }
}

/// The transport of a filtering bufferevent (`BufferEvent<Filtered<T, S>, _>`): the
/// underlying `BufferEvent<T, S>`. This type is never constructed; it only names the
/// kind.
pub struct Filtered<T, S = ()> {
    _never: PhantomData<fn() -> (T, S)>,
}

impl<T, S> fmt::Debug for Filtered<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Filtered")
    }
}

/// The link of a filtering bufferevent over a `BufferEvent<T, U>`.
pub(crate) struct FilterLink<T, U> {
    underlying: Option<Box<dyn Hosted>>,
    input: Box<dyn Filter>,
    output: Box<dyn Filter>,
    close_underlying: bool,
    /// The underlying's output reached its write high watermark; the output filter
    /// waits until it drains to the low one.
    throttled: bool,
    /// Buffer lengths when a filter last said `NeedMore`: nothing to do until they
    /// change.
    input_stalled: Option<(usize, usize)>,
    output_stalled: Option<(usize, usize)>,
    /// A `Finished` flush of WRITE (a `close()`, an adapter's shutdown): waiting for
    /// the underlying to finish its write side, to finish the filter's.
    finishing: bool,
    /// The input filter reported the end of its stream: it is not called again.
    input_ended: bool,
    /// A WRITE flush waiting for the output filter to emit everything before the
    /// underlying is flushed.
    flushing_output: Option<FlushMode>,
    /// Everything written has left the underlying too (as of the last pass).
    idle: bool,
    /// The underlying was given a transport since a filter above last asked.
    attached_anew: bool,
    /// The end of reading beneath (EOF or an error), held back while what came
    /// before it waits in the underlying's input for room in the filter's: the
    /// filter decodes it at the pace of its read high watermark, then ends.
    deferred_end: Option<(Events, Option<io::Error>)>,
    _kind: PhantomData<fn() -> (T, U)>,
}

impl<T, U> FilterLink<T, U> {
    /// A filter's link, waiting for its underlying bufferevent
    /// ([`FilterLink::set_underlying`]).
    pub(crate) fn new(input: impl Filter, output: impl Filter, close_underlying: bool) -> Self {
        Self {
            underlying: None,
            input: Box::new(input),
            output: Box::new(output),
            close_underlying,
            throttled: false,
            input_stalled: None,
            output_stalled: None,
            finishing: false,
            input_ended: false,
            flushing_output: None,
            idle: true,
            attached_anew: false,
            deferred_end: None,
            _kind: PhantomData,
        }
    }

    /// Puts `underlying` under this filter and takes it over; says what
    /// handles may know of the transport.
    pub(crate) fn set_underlying(
        &mut self,
        mut underlying: Box<dyn Hosted>,
    ) -> super::TransportInfo {
        underlying.take_over();
        let info = underlying.info();
        self.underlying = Some(underlying);
        info
    }
}

impl<T, U> Link for FilterLink<T, U>
where
    T: Send + 'static,
    U: Send + 'static,
{
    type Transport = Filtered<T, U>;

    fn take_new_transport(&mut self) -> bool {
        std::mem::take(&mut self.attached_anew)
    }

    fn poll_input(&mut self, cx: &mut TaskContext<'_>, filter: &mut Io<'_>) -> bool {
        filter.core.take_write_ready(); // B-14 is a socket's
        let mut progress = false;
        let Some(mut underlying) = self.underlying.take() else {
            filter.core.clear_flushes();
            return false;
        };
        // B-84: the underlying reads only while the filter may take what it reads, or
        // while a close is under way: the filter's protocol may still need the peer's
        // messages to finish (a TLS handshake, or its close_notify answer).
        {
            let u = underlying.io();
            let taking = filter.core.reading() && filter.core.read_open();
            // Nor while the underlying, with no read high watermark of its own,
            // already holds as much as the filter's would let it decode, unless the
            // filter asked for more of it (a TLS record larger than that): each drain
            // of the filter's input would otherwise let it read once more, and a peer
            // that floods would fill it without bound (D-F5).
            let filter_high = filter.core.read_watermarks().high;
            let u_marks = u.core.read_watermarks();
            let holds_enough = filter_high != 0
                && u_marks.high == 0
                && u.input.len() >= filter_high.max(u_marks.low)
                && self
                    .input_stalled
                    .is_none_or(|(held, _)| held != u.input.len());
            let taking = taking && !holds_enough;
            if taking || (filter.core.closing() && !self.input_ended) {
                u.core.unsuspend_read(suspend::FILTER);
            } else {
                u.core.suspend_read(suspend::FILTER);
            }
        }
        progress |= underlying.poll_pass(cx, false);
        if let (Some(shared), Some(beneath)) = (filter.shared, underlying.io().shared) {
            shared.follow_beneath(beneath);
        }
        if underlying.take_new_transport() {
            // `set_tcp` beneath: the filter is connected over the new transport too
            // (no `CONNECTED` event comes for it, as none comes beneath), and reopens
            // as the bufferevent beneath did: an end of reading or writing it saw was
            // the old transport's. (The filters themselves go on as they are.)
            self.attached_anew = true;
            // Both directions beneath, as when the filter took it over (an EOF there
            // turned its reading off).
            underlying.io().core.taken_over();
            filter.core.on_transport();
            self.input_ended = false;
            self.input_stalled = None;
            self.output_stalled = None;
            // The old transport's end is not the new one's.
            self.deferred_end = None;
            if self.finishing || filter.core.closing() {
                // A close or a `Finished` flush under way finishes over the new
                // transport: asked again beneath, where the old one may have finished.
                self.finishing = true;
                underlying
                    .io()
                    .core
                    .flush(Direction::WRITE, FlushMode::Finished);
            }
            if let Some(shared) = filter.shared {
                shared.set_info(underlying.info());
                if !shared.connected.load(Ordering::Acquire) {
                    shared.connect_succeeded();
                }
            }
        }
        let due = underlying.take_due();
        {
            let mut u = underlying.io();
            if due.write || u.output.len() <= u.core.write_watermarks().low {
                self.throttled = false; // B-87: the underlying drained
            }
            progress |= self.flush_requests(filter, &mut u);
            progress |= self.run_input(filter, &mut u, FlushMode::Normal, false, true);
            if self.deferred_end.is_some() && self.decoded_all_it_can(filter, &u) {
                // What came before the end is decoded: now the end itself.
                if let Some((events, error)) = self.deferred_end.take() {
                    progress = true;
                    self.forward(filter, &mut u, events, error);
                }
            }
            let events = due.all_events();
            if !events.is_empty() {
                progress = true;
                self.forward(filter, &mut u, events, due.error);
            }
        }
        // Finished beneath too: a filter underneath has passed it all on to its own
        // underlying, and so on down, before this one's close counts as done.
        if self.finishing && self.flushing_output.is_none() && underlying.write_finished() {
            self.finishing = false;
            filter.core.on_shutdown();
        } else if !self.finishing
            && !filter.core.write_closed()
            && underlying.io().core.write_closed()
        {
            // Shut down beneath by its own handle (a `Finished` flush there): nothing
            // the filter is given can leave any more, and its writers learn so.
            filter.core.on_shutdown();
        }
        if underlying.stranded() {
            let mut u = underlying.io();
            if !self.input_ended && filter.core.read_open() && self.decoded_all_it_can(filter, &u) {
                // Nothing more will come: the input filter hears the end, as at an
                // EOF, so a stream cut off mid-way (a zlib stream without its end, TLS
                // without close_notify) is an error, never a clean end.
                progress |= self.run_input(filter, &mut u, FlushMode::Finished, true, true);
                self.input_ended = true;
            }
            if let Some(shared) = filter.shared {
                // Nothing beneath can reach anything any more: neither can the filter.
                shared.strand();
            }
        }
        if underlying.is_done() {
            tracing::debug!("the underlying bufferevent ended");
            if let Some(rest) = end_hosted(underlying) {
                tokio::spawn(rest);
            }
            filter.partner_gone();
            if let Some(shared) = filter.shared {
                shared.clear_relative();
            }
            return true;
        }
        self.underlying = Some(underlying);
        progress
    }

    fn poll_output(&mut self, _cx: &mut TaskContext<'_>, filter: &mut Io<'_>) -> bool {
        let Some(mut underlying) = self.underlying.take() else {
            return false;
        };
        let progress = {
            let mut u = underlying.io();
            if self.flushing_output.is_some() {
                self.finish_output(filter, &mut u)
            } else {
                self.run_output(filter, &mut u, FlushMode::Normal, false)
            }
        };
        self.idle = self.flushing_output.is_none()
            && !self.output.has_pending()
            && underlying.write_finished();
        self.underlying = Some(underlying);
        progress
    }

    fn is_attached(&self) -> bool {
        self.underlying.is_some()
    }

    fn stranded(&self) -> bool {
        self.underlying.as_ref().is_some_and(|u| u.stranded())
    }

    fn is_idle(&self) -> bool {
        self.underlying.is_none() || self.idle
    }

    fn ends_with_a_close(&self) -> bool {
        // What the filters hold is flushed out only by `Finished`. An underlying the
        // filter releases (B-92) goes on untouched, as `free` leaves it; one with
        // nothing beyond it could never finish.
        self.close_underlying && self.underlying.as_ref().is_some_and(|u| !u.stranded())
    }

    fn hosted(&mut self) -> Option<&mut dyn Hosts> {
        Some(self)
    }

    fn unsent(&mut self) -> usize {
        let held = self.output.held();
        match self.underlying.as_mut() {
            // A released underlying goes on, and sends what it holds.
            Some(u) if self.close_underlying => held + u.unsent(),
            _ => held,
        }
    }

    fn finish(self, how: Ending) -> Ended {
        let Some(mut underlying) = self.underlying else {
            return Ended::Gone(None);
        };
        if how == Ending::Aborted {
            // The filter's failure is the connection's: reset the transport beneath.
            underlying.io().core.abort();
            Ended::Gone(end_hosted(underlying))
        } else if self.close_underlying {
            {
                let u = underlying.io();
                if how == Ending::Closed && u.core.write_closed() {
                    // The filter's close completed, and so did the underlying's write
                    // side: it ends as closed too, so a socket beneath lets go gently.
                    u.core.close(None);
                } else {
                    u.core.free();
                }
            }
            Ended::Gone(end_hosted(underlying))
        } else {
            // B-92: released, with no callbacks and no filter suspension; it takes
            // the filter's place.
            underlying.release();
            Ended::Replaced(underlying)
        }
    }
}

impl<T, U> Hosts for FilterLink<T, U> {
    fn forget_wakers(&mut self) {
        if let Some(underlying) = self.underlying.as_mut() {
            underlying.forget_wakers();
        }
    }

    fn publish_hosted(&mut self) {
        if let Some(underlying) = self.underlying.as_mut() {
            underlying.publish();
        }
    }

    fn tally_hosted(&mut self, clock: &mut WakeClock) {
        if let Some(underlying) = self.underlying.as_mut() {
            underlying.tally(clock);
        }
    }

    fn lets_input_in_early(&mut self) -> bool {
        false
    }

    fn settled(&mut self) -> bool {
        false // the filter's pass decides what its underlying reads and writes
    }

    fn settle_hosted(&mut self) -> bool {
        // Not reached while `settled` is false here. Were it, only publishing would
        // be safe: `Hosted::settle` drops due calls, and the filter collects its
        // underlying's through `take_due`.
        if let Some(underlying) = self.underlying.as_mut() {
            underlying.publish();
        }
        false
    }

    fn pair_io<'a>(&'a mut self, _own: Io<'a>) -> Option<Io<'a>> {
        self.underlying.as_mut()?.pair_io()
    }

    fn partner_gone(&mut self, _own: &mut Io<'_>) {
        if let Some(underlying) = self.underlying.as_mut() {
            underlying.partner_gone();
        }
    }
}

impl<T, U> FilterLink<T, U> {
    /// Forwards the underlying's events. EOF first runs the input filter with
    /// `Finished`, so a decoder emits what it holds (beyond libevent).
    fn forward(
        &mut self,
        filter: &mut Io<'_>,
        u: &mut Io<'_>,
        events: Events,
        error: Option<io::Error>,
    ) {
        let mut events = events;
        if self.input_ended && !events.contains(Events::ERROR) {
            // The filter already reported its own end of stream: not the reading half
            // again, though a write end that comes with it still counts.
            let mut reported = Events::READING.bits();
            if !events.contains(Events::WRITING) {
                reported |= Events::EOF.bits();
            }
            events = Events::from_bits(events.bits() & !reported);
            if events.is_empty() {
                return;
            }
        }
        let reading_ends =
            events.contains(Events::READING) && events.intersects(Events::EOF | Events::ERROR);
        if reading_ends
            && !events.contains(Events::WRITING)
            && filter.core.read_watermarks().high != 0
            && !filter.core.closing()
            && !self.input_ended
        {
            // Decoded all at once, what waits beneath could expand without bound (a
            // small compressed input): as much as the read high watermark lets in
            // now, the rest as the reader makes room, and the end after it.
            self.run_input(filter, u, FlushMode::Normal, false, true);
            if !self.decoded_all_it_can(filter, u) {
                self.deferred_end = Some((events, error));
                return;
            }
        }
        if events.contains(Events::READING | Events::EOF) {
            self.run_input(filter, u, FlushMode::Finished, true, true);
        } else if events.contains(Events::READING | Events::ERROR)
            && (!u.input.is_empty() || self.input.has_pending())
        {
            // Reading ends: what arrived before the error is not left behind, neither
            // in the underlying's input nor in the filter (plaintext TLS decrypted
            // beyond the read high watermark), since nothing will run the filter again.
            self.run_input(filter, u, FlushMode::Normal, true, false);
        }
        if let Some(shared) = filter.shared {
            if events.contains(Events::CONNECTED) {
                shared.set_info(u.shared.map(Shared::info).unwrap_or_default());
                shared.connect_succeeded();
            }
            let connect_failed = events.contains(Events::ERROR)
                && !events.intersects(Events::READING | Events::WRITING);
            if connect_failed {
                // A failed connect (B-33): `connected()` on the filter stops waiting too.
                let unattached = u.shared.is_some_and(|s| s.unconnected().is_some());
                shared.connect_failed(error.as_ref(), unattached);
            }
        }
        if events.contains(Events::READING)
            && events.intersects(Events::EOF | Events::ERROR)
            && filter.core.read_open()
        {
            // Reading is over for the filter too, though its enabled set stays as is.
            // (If the input filter already ended it with an error of its own, that
            // error stands: a truncated stream must not read as a clean end.)
            filter.read_closed(error.as_ref());
        }
        if events.contains(Events::WRITING) && events.intersects(Events::EOF | Events::ERROR) {
            filter.core.on_shutdown();
        }
        filter.core.event(events, error);
    }

    /// Whether the input filter has taken everything the underlying's input holds,
    /// or can take no more of it until more comes (it asked for more, which an end
    /// beneath means will never come: its `Finished` call then tells).
    fn decoded_all_it_can(&self, filter: &Io<'_>, u: &Io<'_>) -> bool {
        let pending = self.input.has_pending();
        (u.input.is_empty() && !pending)
            || self.input_stalled == Some((u.input.len(), filter.input.len()))
            // B-90: below the underlying's low watermark the filter is not called.
            || (!pending && u.input.len() < u.core.read_watermarks().low)
            || self.input_ended
            || !filter.core.read_open()
            // A close discards what it reads: its end need not wait for a reader.
            || filter.core.closing()
            // Nor does a filter whose reader turned READ off: it hears the end now
            // (as a paused socket does, D-B18), with everything beneath decoded.
            || !filter.core.enabled().contains(Direction::READ)
    }

    /// Carries out the filter's flush requests: each direction's filter runs at
    /// least once in the given mode, without limits, then the underlying is flushed
    /// the same way. For WRITE, the underlying is flushed only once the output filter
    /// has emitted everything (a TLS filter mid-handshake emits its close later).
    fn flush_requests(&mut self, filter: &mut Io<'_>, u: &mut Io<'_>) -> bool {
        if !filter.core.has_flushes() {
            return false;
        }
        let enabled = filter.core.enabled();
        for (dirs, mode) in filter.core.take_flushes() {
            // libevent's filters do nothing for a `Normal` flush of a disabled
            // direction; the underlying is flushed all the same.
            let skip = |dir| mode == FlushMode::Normal && !enabled.contains(dir);
            if dirs.contains(Direction::READ) {
                if !skip(Direction::READ) {
                    self.run_input(filter, u, mode, true, true);
                }
                u.core.flush(Direction::READ, mode);
            }
            if dirs.contains(Direction::WRITE) {
                if skip(Direction::WRITE) {
                    u.core.flush(Direction::WRITE, mode);
                    continue;
                }
                self.run_output(filter, u, mode, true);
                // The strongest mode asked for wins.
                self.flushing_output = Some(self.flushing_output.map_or(mode, |m| m.max(mode)));
                // Finished, closing or not: once everything beneath has passed it
                // on, the filter's own write side is finished too, as a socket's or a
                // pair's is after the same flush (D-B14, D-P2).
                if mode == FlushMode::Finished {
                    self.finishing = true;
                }
            }
        }
        self.finish_output(filter, u);
        true
    }

    /// Passes a WRITE flush on to the underlying once the output filter holds
    /// nothing more, running it again in the flush's mode until then.
    fn finish_output(&mut self, filter: &mut Io<'_>, u: &mut Io<'_>) -> bool {
        let Some(mode) = self.flushing_output else {
            return false;
        };
        let mut progress = false;
        if !filter.output.is_empty() || self.output.has_pending() {
            progress = self.run_output(filter, u, mode, true);
        }
        if filter.core.write_closed() || (filter.output.is_empty() && !self.output.has_pending()) {
            self.flushing_output = None;
            u.core.flush(Direction::WRITE, mode);
            progress = true;
        }
        progress
    }

    /// Runs the input filter from the underlying's input into the filter's input.
    /// `forced` (a flush, or EOF) runs it at least once, ignoring enabled directions
    /// and watermarks; `limited`: to the read high watermark (in `Normal` mode), or
    /// not at all (all of it, as reading ends with an error).
    fn run_input(
        &mut self,
        filter: &mut Io<'_>,
        u: &mut Io<'_>,
        mode: FlushMode,
        forced: bool,
        limited: bool,
    ) -> bool {
        if self.input_ended {
            return false;
        }
        if filter.core.closing() {
            return self.run_input_closing(filter, u);
        }
        if !forced {
            let pending = self.input.has_pending();
            if !filter.core.reading()
                || !filter.core.read_open()
                || (u.input.is_empty() && !pending)
            {
                return false;
            }
            // B-90: the underlying's own low watermark gates the input filter.
            if !pending && u.input.len() < u.core.read_watermarks().low {
                return false;
            }
            if !pending && self.input_stalled == Some((u.input.len(), filter.input.len())) {
                return false;
            }
        }
        let before = filter.input.len();
        let mut progress = false;
        let mut ended = false;
        loop {
            let limit = match (mode, filter.core.read_watermarks().high) {
                (FlushMode::Normal, high) if high != 0 && limited => {
                    Some(high.saturating_sub(filter.input.len()))
                }
                _ => None,
            };
            if limit == Some(0) && !forced {
                break;
            }
            let lengths = (u.input.len(), filter.input.len());
            let result = self.input.filter(
                &mut Input::of(u.input),
                &mut Output::of(filter.input),
                limit,
                mode,
            );
            match result {
                Ok(FilterResult::Ok) => {
                    let now = (u.input.len(), filter.input.len());
                    if now == lengths && !forced {
                        // Nothing moved: as `NeedMore`, nothing to do until the lengths
                        // change (else the task would call it again and again).
                        self.input_stalled = Some(now);
                        break;
                    }
                    progress = true;
                    let drained = u.input.is_empty() && !self.input.has_pending();
                    if now == lengths || drained {
                        break;
                    }
                    if !forced && !filter.core.reading() {
                        break;
                    }
                }
                Ok(FilterResult::NeedMore) => {
                    self.input_stalled = Some((u.input.len(), filter.input.len()));
                    break;
                }
                Ok(FilterResult::EndOfStream) => {
                    progress = true;
                    ended = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "input filter failed");
                    // What earlier rounds produced did arrive, and the read callback
                    // hears of it before the event callback hears the error (B-61).
                    if filter.input.len() > before {
                        filter.count_read(filter.input.len() - before);
                        filter.core.on_read(filter.input.len());
                        filter.changed();
                    }
                    // The filter's stream is over: it is not run again (a decoder
                    // would fail, and report, again at the transport's EOF).
                    self.input_ended = true;
                    filter.end_reading(Events::READING | Events::ERROR, Some(e));
                    u.core.suspend_read(suspend::FILTER);
                    return true;
                }
            }
        }
        if filter.input.len() > before {
            filter.count_read(filter.input.len() - before);
            self.input_stalled = None;
            filter.core.on_read(filter.input.len()); // the read timeout restarts (B-46)
            filter.changed();
        } else if forced && progress {
            // A forced call that produced nothing still lets the reader look (B-77).
            filter
                .core
                .trigger(Direction::READ, false, filter.input.len(), 0);
        }
        if ended {
            // A clean end inside the filtered stream (a TLS close_notify) is the
            // filter's EOF, whether or not the transport beneath stays open.
            tracing::debug!("the input filter's stream ended");
            self.input_ended = true;
            filter.end_reading(Events::READING | Events::EOF, None);
            u.core.suspend_read(suspend::FILTER);
        }
        progress
    }

    /// While a close is under way the input filter still runs, so the protocol can
    /// finish (a TLS handshake that must complete before our close_notify can go, or
    /// the peer's answer to it), but nothing more reaches the application: what it
    /// produces is discarded, as a socket's late input is.
    fn run_input_closing(&mut self, filter: &mut Io<'_>, u: &mut Io<'_>) -> bool {
        if u.input.is_empty() && !self.input.has_pending() {
            return false;
        }
        let before = u.input.len();
        let result = self.input.filter(
            &mut Input::of(u.input),
            &mut Output::of(filter.input),
            None,
            FlushMode::Normal,
        );
        filter.input.discard(filter.input.len());
        match result {
            Ok(FilterResult::EndOfStream) => {
                self.input_ended = true;
                u.core.suspend_read(suspend::FILTER);
                true
            }
            Ok(_) => u.input.len() != before,
            Err(e) => {
                // The close cannot complete as the protocol wants (a TLS handshake
                // failed): not a clean close, so `closed()` says why.
                tracing::debug!(error = %e, "input filter failed during a close");
                self.input_ended = true;
                u.core.suspend_read(suspend::FILTER);
                filter.end_reading(Events::READING | Events::ERROR, Some(e));
                true
            }
        }
    }

    /// Runs the output filter from the filter's output into the underlying's output.
    fn run_output(
        &mut self,
        filter: &mut Io<'_>,
        u: &mut Io<'_>,
        mode: FlushMode,
        forced: bool,
    ) -> bool {
        let (output, stalled, throttled) = (
            &mut *self.output,
            &mut self.output_stalled,
            &mut self.throttled,
        );
        let high = u.core.write_watermarks().high;
        // Beyond libevent: with no write high watermark beneath, the filter's own
        // bounds what waits there, so a writer into the filter is held back by the
        // network instead of filling the underlying's output without end (D-F5). The
        // filter's `dst_limit` stays libevent's (none without one beneath, B-86).
        let bound = match high {
            0 => filter.core.write_watermarks().high,
            high => high,
        };
        if !forced {
            if !filter.core.writing() || filter.core.write_closed() || u.core.write_closed() {
                return false;
            }
            if filter.output.is_empty() && !output.has_pending() {
                return false;
            }
            if bound != 0 && u.output.len() >= bound {
                *throttled = true;
            }
            let unchanged = *stalled == Some((filter.output.len(), u.output.len()));
            if *throttled || (unchanged && !output.has_pending()) {
                return false;
            }
        }
        let mut progress = false;
        let before = filter.output.len();
        loop {
            let limit = match (mode, high) {
                (FlushMode::Normal, high) if high != 0 => Some(high.saturating_sub(u.output.len())),
                _ => None,
            };
            let lengths = (filter.output.len(), u.output.len());
            let result = output.filter(
                &mut Input::of(filter.output),
                &mut Output::of(u.output),
                limit,
                mode,
            );
            match result {
                Ok(FilterResult::Ok | FilterResult::EndOfStream) => {
                    let now = (filter.output.len(), u.output.len());
                    if now == lengths && !forced {
                        // Nothing moved: as `NeedMore` (see `run_input`).
                        *stalled = Some(now);
                        break;
                    }
                    progress = true;
                    if now == lengths || (filter.output.is_empty() && !output.has_pending()) {
                        break;
                    }
                    if limit.is_some_and(|l| u.output.len() >= lengths.1 + l) {
                        break;
                    }
                }
                Ok(FilterResult::NeedMore) => {
                    *stalled = Some((filter.output.len(), u.output.len()));
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "output filter failed");
                    if filter.output.len() < before {
                        filter.count_written(before - filter.output.len(), before);
                    }
                    filter.end_writing(Events::WRITING | Events::ERROR, Some(e));
                    return true;
                }
            }
        }
        // Whatever the filter took, whichever way the rounds ended.
        if filter.output.len() < before {
            filter.count_written(before - filter.output.len(), before);
        }
        if progress {
            *stalled = None;
            // B-89: after progress the filter's write callback is due if its output is
            // at or below its write low watermark.
            filter.core.on_written(filter.output.len());
            u.changed();
        }
        progress
    }
}
