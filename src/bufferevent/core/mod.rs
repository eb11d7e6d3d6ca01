//! The runtime-free heart of a bufferevent: every decision about what happens next.
//!
//! [`Core`] is plain synchronous state, in the manner of quinn-proto's `Connection`:
//! no Tokio, no clock, no I/O. The engine (the task) moves bytes and calls it; it
//! answers what the engine must do. Everything a bufferevent *decides* lives here:
//! enabled directions and suspension reasons, watermarks, which callbacks are due
//! and in which order, what a timeout, EOF, error or connect outcome becomes, the
//! write callback after `enable(WRITE)`, the read re-announcement that
//! replaces libevent's callback storm, flush requests, the lifecycle, and
//! when the bufferevent is over.
//!
//! # Call protocol
//!
//! Inputs are methods named for what happened; outputs are queries and `take_*` /
//! `poll_*` calls. Within one pass of the engine:
//!
//! 1. Apply handle commands: [`enable`](Core::enable), [`set_watermarks`](Core::set_watermarks),
//!    [`flush`](Core::flush), [`close`](Core::close), ... (also what callbacks do
//!    through their `Context`).
//! 2. After the user removed input, [`on_input_removed`](Core::on_input_removed)
//!    re-evaluates the high-watermark pause.
//! 3. Move bytes in: ask [`read_budget`](Core::read_budget) (0: do not read; never a
//!    0-byte read), then report [`on_read`](Core::on_read),
//!    [`on_read_end`](Core::on_read_end), [`on_connected`](Core::on_connected) or
//!    [`on_connect_failed`](Core::on_connect_failed).
//! 4. Unless callbacks are deferred, run [`take_due`](Core::take_due)'s callbacks in
//!    the order [`Due::pop`] gives.
//! 5. Move bytes out: ask [`write_budget`](Core::write_budget),
//!    [`take_write_ready`](Core::take_write_ready) and
//!    [`shutdown_due`](Core::shutdown_due), then report
//!    [`on_written`](Core::on_written), [`on_write_end`](Core::on_write_end) or
//!    [`on_shutdown`](Core::on_shutdown).
//! 6. Timers: [`poll_timeout`](Core::poll_timeout) with `now` gives the next deadline;
//!    when it passes, [`handle_timeout`](Core::handle_timeout) with `now`.
//! 7. Run the callbacks now due (deferred ones once the pass made no more progress),
//!    then ask [`is_over`](Core::is_over).
//!
//! Time only enters through `now` arguments, so tests drive a core on virtual time.

mod flush;
mod lifecycle;
pub(crate) mod ratelim;
mod schedule;
mod timeouts;

#[cfg(test)]
mod tests;

use std::io;
use std::time::{Duration, Instant};

use self::flush::FlushRequests;
pub(crate) use self::lifecycle::Lifecycle;
use self::lifecycle::ReadHalf;
use self::ratelim::{Buckets, GroupShared, Member, RateLimit, RateLimiter};
pub(crate) use self::schedule::{Callback, Due};
use self::timeouts::Timeouts;
use super::error::ConnectTimedOut;
use super::events::{Direction, Events, FlushMode, Watermarks};
use std::sync::Arc;

/// The default of `max_single_read` and `max_single_write`, as libevent's.
pub(crate) const DEFAULT_MAX_SINGLE_IO: usize = 16 * 1024;

/// Why a direction is suspended (besides being disabled). Bit flags.
pub(crate) mod suspend {
    /// The input reached the read high watermark.
    pub(crate) const WATERMARK: u8 = 0x01;
    /// A filtering bufferevent over this one does not take input now.
    pub(crate) const FILTER: u8 = 0x02;
    /// Its own token bucket is empty (libevent's `BEV_SUSPEND_BW`).
    pub(crate) const BANDWIDTH: u8 = 0x04;
    /// Its group's bucket, or its share of it, is used up (`BEV_SUSPEND_BW_GROUP`).
    pub(crate) const GROUP: u8 = 0x08;
    /// A connect failed with no transport left: libevent deregisters both events
    /// (B-33), so no timeout runs until `enable`, a new connect or a transport.
    pub(crate) const UNREGISTERED: u8 = 0x10;
    /// A hostname lookup is under way (B-53): both directions wait for it, and no
    /// timeout runs meanwhile.
    pub(crate) const LOOKUP: u8 = 0x20;
}

/// How a bufferevent ended, which decides how its transport is let go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A close completed: everything was sent and the write side shut down.
    Closed,
    /// Freed (by the user, a deadline, or its handles going): the transport closes.
    Freed,
    /// A failure of its own (a panicking callback): the transport is reset, so the
    /// peer can tell it from an answer.
    Aborted,
}

/// The bits of `Core::flags`.
mod flag {
    /// `enable(WRITE)` asked for one write callback while the output is empty.
    pub(super) const WRITE_READY: u8 = 0x01;
    /// `BEV_OPT_DEFER_CALLBACKS` (always on for pairs).
    pub(super) const DEFER: u8 = 0x02;
    /// A pair element or filter hears `READING | EOF` when its partner ends.
    pub(super) const PARTNER_EOF: u8 = 0x04;
    /// Watermarks, timeouts or single-I/O limits changed since last taken.
    pub(super) const SETTINGS_CHANGED: u8 = 0x08;
    /// Ended by a failure of its own (a panicking callback): the transport is
    /// reset, not closed.
    pub(super) const ABORTED: u8 = 0x10;
    /// Freed because a close did not finish by its deadline.
    pub(super) const CLOSE_TIMED_OUT: u8 = 0x20;
    /// Every handle is gone and none can be made again.
    pub(super) const HANDLES_GONE: u8 = 0x40;
    /// A filter above depends on this bufferevent: it lives on without handles.
    pub(super) const IN_USE: u8 = 0x80;
}

/// Bits of [`Core::running`].
pub(crate) mod running {
    /// The callbacks were replaced since the running callback started.
    pub(crate) const REPLACED: u8 = 0x01;
    pub(crate) const READ: u8 = 0x02;
    pub(crate) const WRITE: u8 = 0x04;
    pub(crate) const EVENT: u8 = 0x08;
}

/// What a new core starts with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) enabled: Direction,
    pub(crate) read_wm: Watermarks,
    pub(crate) write_wm: Watermarks,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) max_single_read: usize,
    pub(crate) max_single_write: usize,
    /// `BEV_OPT_DEFER_CALLBACKS` (always on for pairs).
    pub(crate) defer_callbacks: bool,
    /// A pair element or filter hears `READING | EOF` when its partner ends.
    pub(crate) partner_end_is_eof: bool,
    /// How long `close()` may take before the bufferevent is freed; `None`: no limit.
    pub(crate) close_timeout: Option<Duration>,
}

/// The default of `close_timeout`: long enough for a healthy peer to take what is
/// queued over a slow link, short enough that a dead or hostile peer cannot hold a
/// connection (and its descriptor and buffers) for long.
pub(crate) const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Settings {
    /// B-1, B-2: WRITE enabled, READ disabled, all watermarks 0, no timeouts, 16 KiB
    /// single reads and writes.
    fn default() -> Self {
        Self {
            enabled: Direction::WRITE,
            read_wm: Watermarks::default(),
            write_wm: Watermarks::default(),
            read_timeout: None,
            write_timeout: None,
            max_single_read: DEFAULT_MAX_SINGLE_IO,
            max_single_write: DEFAULT_MAX_SINGLE_IO,
            defer_callbacks: false,
            partner_end_is_eof: false,
            close_timeout: Some(DEFAULT_CLOSE_TIMEOUT),
        }
    }
}

/// Every decision of one bufferevent (see the module docs for the call protocol).
#[derive(Debug)]
pub(crate) struct Core {
    enabled: Direction,
    read_suspended: u8,
    write_suspended: u8,
    read_wm: Watermarks,
    write_wm: Watermarks,
    due: Due,
    flushes: FlushRequests,
    lifecycle: Lifecycle,
    timeouts: Timeouts,
    /// `u32`: a single read or write of 4 GiB is more than any transport takes.
    max_single_read: u32,
    max_single_write: u32,
    /// Yes-or-no state, as [`flag`] bits: one byte, as every task carries it.
    flags: u8,
    /// The builder's close deadline in milliseconds (0: none); small, as every task
    /// carries it.
    close_timeout_ms: u32,
    /// The events most recently delivered, for `closed()`. Kept here rather than in
    /// the engine because it fits the core's padding: the task stays within its
    /// size class (see `a_tcp_bufferevent_task_stays_small`).
    last_events: Events,
    /// Token buckets; boxed on first use, so unlimited bufferevents pay one pointer
    /// and consult nothing.
    ratelim: Option<Box<RateLimiter>>,
    /// Which callback runs, and whether the callbacks were replaced since it started
    /// (then it is not put back over its replacement): [`running`] bits.
    running: u8,
}

impl Default for Core {
    fn default() -> Self {
        Self::new(Settings::default())
    }
}

/// A single-I/O limit as B-97 has it: 0, or more than a `u32` holds, is the default.
pub(crate) fn single_io_limit(n: usize) -> u32 {
    match u32::try_from(n) {
        Ok(0) | Err(_) => DEFAULT_MAX_SINGLE_IO as u32,
        Ok(n) => n,
    }
}

impl Core {
    pub(crate) fn new(settings: Settings) -> Self {
        let mut timeouts = Timeouts::default();
        timeouts.set(settings.read_timeout, settings.write_timeout);
        let mut core = Self {
            enabled: settings.enabled,
            read_suspended: 0,
            write_suspended: 0,
            read_wm: Watermarks::default(),
            write_wm: settings.write_wm,
            due: Due::default(),
            flushes: FlushRequests::default(),
            lifecycle: Lifecycle::default(),
            timeouts,
            max_single_read: single_io_limit(settings.max_single_read),
            max_single_write: single_io_limit(settings.max_single_write),
            flags: (if settings.defer_callbacks {
                flag::DEFER
            } else {
                0
            }) | (if settings.partner_end_is_eof {
                flag::PARTNER_EOF
            } else {
                0
            }),
            close_timeout_ms: settings.close_timeout.map_or(0, |d| {
                u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
            }),
            last_events: Events::empty(),
            ratelim: None,
            running: 0,
        };
        core.set_watermarks(Direction::READ, settings.read_wm, 0);
        core.set_flag(flag::SETTINGS_CHANGED, false);
        core
    }

    fn flag(&self, bit: u8) -> bool {
        self.flags & bit != 0
    }

    fn set_flag(&mut self, bit: u8, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    fn take_flag(&mut self, bit: u8) -> bool {
        let was = self.flag(bit);
        self.flags &= !bit;
        was
    }

    // ---- what keeps the task alive --------------------------------------------------

    /// Whether every handle is gone for good.
    pub(crate) fn handles_gone(&self) -> bool {
        self.flag(flag::HANDLES_GONE)
    }

    /// A handle came back (a weak reference, such as a pair partner's, upgraded after
    /// the last one went): its going will be news again.
    pub(crate) fn handles_back(&mut self) {
        self.set_flag(flag::HANDLES_GONE, false);
    }

    /// Records that every handle is gone; returns whether that is news.
    pub(crate) fn set_handles_gone(&mut self) -> bool {
        let news = !self.handles_gone();
        self.set_flag(flag::HANDLES_GONE, true);
        news
    }

    /// Whether a filter above depends on this bufferevent.
    pub(crate) fn in_use(&self) -> bool {
        self.flag(flag::IN_USE)
    }

    /// A filter above starts (`true`) or stops depending on this bufferevent.
    pub(crate) fn set_in_use(&mut self, on: bool) {
        self.set_flag(flag::IN_USE, on);
    }

    /// The callbacks were replaced (`setcb`).
    pub(crate) fn callbacks_replaced(&mut self) {
        self.running |= running::REPLACED;
    }

    /// The `kind` callback (a [`running`] bit) is about to run: whether it is replaced
    /// from now on is what counts.
    pub(crate) fn callback_starts(&mut self, kind: u8) {
        self.running = kind;
    }

    /// The running callback returned.
    pub(crate) fn callback_ends(&mut self) {
        self.running &= running::REPLACED;
    }

    /// Whether the `kind` callback (a [`running`] bit) is the one running.
    pub(crate) fn is_running(&self, kind: u8) -> bool {
        self.running & kind != 0
    }

    /// Whether the callbacks were replaced since the running callback started.
    pub(crate) fn replaced_since_callback_started(&self) -> bool {
        self.running & running::REPLACED != 0
    }

    /// The events most recently delivered to the event callback.
    pub(crate) fn last_events(&self) -> Events {
        self.last_events
    }

    /// Records events as delivered to the event callback.
    pub(crate) fn record_events(&mut self, events: Events) {
        self.last_events = events;
    }

    // ---- what handles and callbacks see ----------------------------------------------

    pub(crate) fn enabled(&self) -> Direction {
        self.enabled
    }

    /// Reading runs only when enabled and not suspended.
    pub(crate) fn reading(&self) -> bool {
        self.enabled.contains(Direction::READ) && self.read_suspended == 0
    }

    pub(crate) fn writing(&self) -> bool {
        self.enabled.contains(Direction::WRITE) && self.write_suspended == 0
    }

    pub(crate) fn read_watermarks(&self) -> Watermarks {
        self.read_wm
    }

    pub(crate) fn write_watermarks(&self) -> Watermarks {
        self.write_wm
    }

    /// The watermarks of exactly one direction.
    pub(crate) fn watermarks(&self, dir: Direction) -> Option<Watermarks> {
        if dir == Direction::READ {
            Some(self.read_wm)
        } else if dir == Direction::WRITE {
            Some(self.write_wm)
        } else {
            None
        }
    }

    pub(crate) fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        self.timeouts.get()
    }

    pub(crate) fn max_single_read(&self) -> usize {
        self.max_single_read as usize
    }

    pub(crate) fn max_single_write(&self) -> usize {
        self.max_single_write as usize
    }

    pub(crate) fn read_open(&self) -> bool {
        self.lifecycle.read_open()
    }

    pub(crate) fn write_closed(&self) -> bool {
        self.lifecycle.write_closed()
    }

    pub(crate) fn closing(&self) -> bool {
        self.lifecycle.closing()
    }

    pub(crate) fn freed(&self) -> bool {
        self.lifecycle.freed()
    }

    /// How the bufferevent ended, for the transport to close accordingly.
    pub(crate) fn ending(&self) -> Ending {
        if self.flag(flag::ABORTED) {
            Ending::Aborted
        } else if self.closing() && self.write_closed() {
            Ending::Closed
        } else {
            Ending::Freed
        }
    }

    /// Whether a close ran out of time (the bufferevent was freed with output unsent).
    pub(crate) fn close_timed_out(&self) -> bool {
        self.flag(flag::CLOSE_TIMED_OUT)
    }

    /// The builder's close deadline.
    pub(crate) fn close_timeout(&self) -> Option<Duration> {
        (self.close_timeout_ms != 0).then(|| Duration::from_millis(self.close_timeout_ms.into()))
    }

    pub(crate) fn defers_callbacks(&self) -> bool {
        self.flag(flag::DEFER)
    }

    // ---- user commands -----------------------------------------------------------------

    /// `bufferevent_enable`. Enabling WRITE with an empty output asks for one write
    /// callback; enabling restarts the direction's timeout; enabling
    /// READ while the input holds at least the low watermark announces that data
    /// again (the crate's answer to libevent's read-callback storm, B-22: no
    /// repeats, but no stall either).
    pub(crate) fn enable(&mut self, dirs: Direction, input_len: usize, output_len: usize) {
        let was_reading = self.enabled.contains(Direction::READ);
        self.enabled |= dirs;
        if dirs.contains(Direction::READ) {
            self.read_suspended &= !suspend::UNREGISTERED;
        }
        if dirs.contains(Direction::WRITE) {
            self.write_suspended &= !suspend::UNREGISTERED;
        }
        if dirs.contains(Direction::READ)
            && !was_reading
            && input_len > 0
            && input_len >= self.read_wm.low
        {
            self.due.read = true;
        }
        if dirs.contains(Direction::WRITE) && output_len == 0 {
            self.set_flag(flag::WRITE_READY, true);
        }
        self.timeouts.restart(dirs);
    }

    /// `bufferevent_disable`.
    pub(crate) fn disable(&mut self, dirs: Direction) {
        self.enabled = self.enabled.without(dirs);
    }

    /// Sets watermarks and re-evaluates the high-watermark suspension at once, both
    /// ways.
    pub(crate) fn set_watermarks(&mut self, dirs: Direction, wm: Watermarks, input_len: usize) {
        if dirs.contains(Direction::READ) {
            self.read_wm = wm;
            self.on_input_removed(input_len);
        }
        if dirs.contains(Direction::WRITE) {
            self.write_wm = wm;
        }
        self.set_flag(flag::SETTINGS_CHANGED, true);
    }

    /// `bufferevent_set_timeouts`; `None` or zero means none. A running timer
    /// restarts with the new value.
    pub(crate) fn set_timeouts(&mut self, read: Option<Duration>, write: Option<Duration>) {
        self.timeouts.set(read, write);
        self.set_flag(flag::SETTINGS_CHANGED, true);
    }

    /// `bufferevent_set_max_single_read` / `_write`: 0, or more than a
    /// single I/O can carry, resets to the default of 16 KiB.
    pub(crate) fn set_max_single(&mut self, read: Option<usize>, write: Option<usize>) {
        if let Some(n) = read {
            self.max_single_read = single_io_limit(n);
        }
        if let Some(n) = write {
            self.max_single_write = single_io_limit(n);
        }
        self.set_flag(flag::SETTINGS_CHANGED, true);
    }

    /// `bufferevent_trigger`: honours the watermarks unless told not to;
    /// ignores `enabled`.
    pub(crate) fn trigger(
        &mut self,
        dirs: Direction,
        ignore_watermarks: bool,
        input_len: usize,
        output_len: usize,
    ) {
        if dirs.contains(Direction::READ) && (ignore_watermarks || input_len >= self.read_wm.low) {
            self.due.read = true;
        }
        if dirs.contains(Direction::WRITE) && (ignore_watermarks || output_len <= self.write_wm.low)
        {
            self.due.write = true;
        }
    }

    /// Queues an event; bits accumulate until delivered. `CONNECTED` on its own
    /// is kept apart so it is delivered alone and first.
    pub(crate) fn event(&mut self, events: Events, error: Option<io::Error>) {
        if events == Events::CONNECTED {
            self.due.connected = true;
        } else {
            self.due.events |= events;
        }
        if error.is_some() {
            self.due.error = error;
        }
    }

    /// `bufferevent_flush`: carried out by the transport (see `take_flushes`).
    pub(crate) fn flush(&mut self, dirs: Direction, mode: FlushMode) {
        if !dirs.is_empty() {
            self.flushes.push((dirs, mode));
        }
    }

    /// `bufferevent_free`: over at once, pending output discarded.
    pub(crate) fn free(&mut self) {
        self.lifecycle.free();
    }

    /// Ends at once by a failure of its own: like `free`, and the transport is reset
    /// rather than closed (a panicking callback).
    pub(crate) fn abort(&mut self) {
        self.set_flag(flag::ABORTED, true);
        self.lifecycle.free();
    }

    /// The graceful end, bounded in time: nothing more is read (READ off at once), what
    /// is queued is sent, the write side shuts down, then the bufferevent ends. If that
    /// takes longer than `within` (default: the builder's close timeout), it is freed
    /// with what is left unsent. A close already under way keeps its deadline.
    pub(crate) fn close(&mut self, within: Option<Duration>) {
        if !matches!(self.lifecycle, Lifecycle::Open { .. }) {
            return; // closing already, or over
        }
        self.lifecycle.close();
        self.disable(Direction::READ);
        self.flush(Direction::WRITE, FlushMode::Finished);
        self.enabled |= Direction::WRITE;
        if let Some(within) = within.or_else(|| self.close_timeout()) {
            self.timeouts.close_within(within);
        }
    }

    /// Closes within `within` at the latest: as [`close`](Self::close) when open (or
    /// sooner, with a shorter close timeout of its own); a close under way keeps its
    /// deadline if that is sooner and gets this one otherwise. What a listener's
    /// shutdown asks of each connection.
    pub(crate) fn close_at_most(&mut self, within: Duration) {
        if matches!(self.lifecycle, Lifecycle::Open { .. }) {
            let own = self.close_timeout().unwrap_or(Duration::MAX);
            self.close(Some(within.min(own)));
        } else if self.closing() {
            self.timeouts.close_within_at_most(within);
        }
    }

    /// Callbacks were replaced: forget due calls of the removed ones (B-63
    /// divergence).
    pub(crate) fn forget(&mut self, read: bool, write: bool, event: bool) {
        self.due.read &= !read;
        self.due.write &= !write;
        if event {
            self.due.connected = false;
            self.due.events = Events::empty();
            self.due.error = None;
        }
    }

    /// A filter took this bufferevent over: both directions on, so the filter
    /// alone decides (through `suspend::FILTER`) when it reads.
    pub(crate) fn taken_over(&mut self) {
        self.enabled |= Direction::BOTH;
    }

    pub(crate) fn suspend_read(&mut self, reason: u8) {
        self.read_suspended |= reason;
    }

    pub(crate) fn unsuspend_read(&mut self, reason: u8) {
        self.read_suspended &= !reason;
    }

    /// A hostname lookup begins, or ends: both directions wait for it (B-53).
    pub(crate) fn suspend_for_lookup(&mut self, on: bool) {
        if on {
            self.read_suspended |= suspend::LOOKUP;
            self.write_suspended |= suspend::LOOKUP;
        } else {
            self.read_suspended &= !suspend::LOOKUP;
            self.write_suspended &= !suspend::LOOKUP;
        }
    }

    // ---- what the transport reports --------------------------------------------------

    /// The user removed input: any removal below the high watermark resumes reading.
    pub(crate) fn on_input_removed(&mut self, input_len: usize) {
        let high = self.read_wm.high;
        if high != 0 && input_len >= high {
            self.suspend_read(suspend::WATERMARK);
        } else {
            self.unsuspend_read(suspend::WATERMARK);
        }
    }

    /// New data arrived: the read callback is due iff the input reached the low
    /// watermark; the read timeout starts over.
    pub(crate) fn on_read(&mut self, input_len: usize) {
        if input_len >= self.read_wm.low {
            self.due.read = true;
        }
        self.on_input_removed(input_len);
        self.timeouts.restart(Direction::READ);
    }

    /// Reading is over for good: EOF or an error. The direction is
    /// disabled and the event queued.
    pub(crate) fn on_read_end(&mut self, events: Events, error: Option<io::Error>) {
        self.lifecycle.close_read();
        self.disable(Direction::READ);
        self.event(events, error);
    }

    /// Nothing more will be read, with no event and `enabled` as it is (a filter
    /// whose underlying bufferevent stopped reading forwards that event itself).
    pub(crate) fn on_read_closed(&mut self) {
        self.lifecycle.close_read();
    }

    /// Data left: the write callback is due iff the output fell to the low watermark
    ///; the write timeout starts over.
    pub(crate) fn on_written(&mut self, output_len: usize) {
        if output_len <= self.write_wm.low {
            self.due.write = true;
        }
        self.timeouts.restart(Direction::WRITE);
    }

    /// Writing is over for good: the direction is disabled and the event
    /// queued. Queued output stays where it is, reported at the end.
    pub(crate) fn on_write_end(&mut self, events: Events, error: Option<io::Error>) {
        self.lifecycle.close_write();
        self.disable(Direction::WRITE);
        self.event(events, error);
    }

    /// The write side was shut down (or its other end finished): nothing more is
    /// sent, with no event.
    pub(crate) fn on_shutdown(&mut self) {
        self.lifecycle.close_write();
    }

    /// A transport was installed (`bufferevent_setfd`): both halves open again, and,
    /// as libevent re-registers the write event, a writable transport with nothing
    /// to send yields one write callback.
    pub(crate) fn on_transport(&mut self) {
        self.register_again();
        self.lifecycle.reopen();
        if self.enabled.contains(Direction::WRITE) {
            self.set_flag(flag::WRITE_READY, true);
        }
    }

    /// A connect succeeded: `CONNECTED` alone, the timeouts restart, and queued
    /// output goes out after it. With nothing queued, no write callback follows
    ///, even if WRITE was enabled while there was no transport.
    pub(crate) fn on_connected(&mut self) {
        self.register_again();
        self.lifecycle.reopen();
        self.set_flag(flag::WRITE_READY, false);
        self.timeouts.restart(Direction::BOTH);
        self.event(Events::CONNECTED, None);
    }

    /// A connect failed: `ERROR` (with `TIMEOUT` for the builder's connect timeout,
    /// not for other errors of kind `TimedOut`) and no
    /// direction bit, leaving `enabled` as it was. With no transport left
    /// (`transport_left`: an earlier one stays in use, D-C3), both directions are
    /// unregistered, as libevent deregisters their events (B-33): no timeout follows
    /// until `enable`, a new connect or a transport.
    pub(crate) fn on_connect_failed(&mut self, error: io::Error, transport_left: bool) {
        let events = if ConnectTimedOut::is(&error) {
            Events::ERROR | Events::TIMEOUT
        } else {
            Events::ERROR
        };
        if !transport_left {
            self.read_suspended |= suspend::UNREGISTERED;
            self.write_suspended |= suspend::UNREGISTERED;
        }
        self.event(events, Some(error));
    }

    /// A connect starts, or a transport arrives: both directions are registered
    /// again (see [`on_connect_failed`](Self::on_connect_failed)).
    pub(crate) fn register_again(&mut self) {
        self.read_suspended &= !suspend::UNREGISTERED;
        self.write_suspended &= !suspend::UNREGISTERED;
    }

    /// The partner of a pair element (or a filter's underlying bufferevent) ended:
    /// `READING | EOF` if this bufferevent asked for it.
    pub(crate) fn on_partner_gone(&mut self) {
        if self.flag(flag::PARTNER_EOF) && self.read_open() {
            self.on_read_end(Events::READING | Events::EOF, None);
        }
    }

    // ---- what the transport asks -------------------------------------------------------

    /// How many bytes the next read may ask for: never past the high watermark,
    /// never more than `max_single_read`, and 0 when reading must wait. A
    /// transport never issues a 0-byte read: it would look like EOF.
    pub(crate) fn read_budget(&self, input_len: usize) -> usize {
        // One look at the lifecycle: open (not closing, not freed) with its read half
        // open.
        let open = matches!(
            self.lifecycle,
            Lifecycle::Open {
                read: ReadHalf::Open,
                ..
            }
        );
        if !open || !self.reading() {
            return 0;
        }
        let room = match self.read_wm.high {
            0 => usize::MAX,
            high => high.saturating_sub(input_len),
        };
        room.min(self.single_io(true))
    }

    /// The most one read (`read`) or write may move now (B-96): the bufferevent's
    /// own token bucket replaces `max_single_read`/`write`; a group's share alone
    /// caps it.
    pub(crate) fn single_io(&self, read: bool) -> usize {
        let max_single = if read {
            self.max_single_read
        } else {
            self.max_single_write
        } as usize;
        match self.ratelim.as_deref() {
            None => max_single,
            Some(limiter) => match limiter.allowance(read) {
                None => max_single,
                Some(allowed) if limiter.own.is_some() => allowed,
                Some(share) => share.min(max_single),
            },
        }
    }

    /// How many bytes the next write may hand the transport; 0 when writing must
    /// wait or is over.
    pub(crate) fn write_budget(&self) -> usize {
        if self.write_closed() || !self.writing() {
            return 0;
        }
        self.single_io(false)
    }

    /// Whether a transport that can write and has nothing to send owes the write
    /// callback `enable(WRITE)` asked for; asking consumes it.
    pub(crate) fn take_write_ready(&mut self) -> bool {
        self.take_flag(flag::WRITE_READY)
    }

    /// Whether the write side is to be shut down now: asked for, and the output is
    /// sent.
    pub(crate) fn shutdown_due(&self, output_len: usize) -> bool {
        output_len == 0 && self.lifecycle.shutdown_pending()
    }

    /// Asks for the write side to be shut down once the output is sent (a stream's
    /// `FINISHED` flush).
    pub(crate) fn request_shutdown(&mut self) {
        self.lifecycle.request_shutdown();
    }

    pub(crate) fn has_flushes(&self) -> bool {
        !self.flushes.is_empty()
    }

    /// The flushes asked for, for the transport to carry out: one for both
    /// directions when their modes agree.
    pub(crate) fn take_flushes(&mut self) -> impl Iterator<Item = (Direction, FlushMode)> + use<> {
        self.flushes.take()
    }

    /// Drops flush requests there is nothing to carry them out against.
    pub(crate) fn clear_flushes(&mut self) {
        self.flushes.clear();
    }

    /// Whether a transport with nothing to send owes nothing either: no B-14 write
    /// callback and no shutdown are due, or writing is off or over. A write bucket
    /// does not count: neither spends tokens.
    pub(crate) fn writes_nothing_owed(&self) -> bool {
        // The common case first, and cheap: nothing is owed.
        if !self.flag(flag::WRITE_READY) && !self.lifecycle.shutdown_pending() {
            return true;
        }
        self.write_closed()
            || !self.enabled.contains(Direction::WRITE)
            || self.write_suspended & !(suspend::BANDWIDTH | suspend::GROUP) != 0
    }

    /// Reading waits for the input to fall below the read high watermark.
    pub(crate) fn paused_by_watermark(&self) -> bool {
        self.read_suspended & suspend::WATERMARK != 0
    }

    /// Whether reading stopped for reasons that can last (the high watermark, a
    /// filter over this bufferevent, or READ disabled while the input holds data),
    /// so a peer that hangs up meanwhile is worth watching for. A rate limit's pause
    /// lasts a tick, and a bufferevent that never reads is not watched.
    pub(crate) fn paused_for_a_while(&self, input_len: usize) -> bool {
        if self.enabled.contains(Direction::READ) {
            self.read_suspended & (suspend::WATERMARK | suspend::FILTER) != 0
        } else {
            input_len > 0
        }
    }

    /// Whether everything asked of the write side is done: sent, flushed, shut down.
    pub(crate) fn write_finished(&self, output_len: usize) -> bool {
        self.write_closed()
            || (output_len == 0 && self.flushes.is_empty() && !self.lifecycle.shutdown_pending())
    }

    // ---- timers ------------------------------------------------------------------------

    /// Whether any timeout is set, or a rate limit; without either the engine keeps
    /// no timer and reads no clock.
    pub(crate) fn has_timeouts(&self) -> bool {
        self.timeouts.any() || self.ratelim.is_some()
    }

    /// Arms the deadlines for what is active now and returns the earliest. A read
    /// deadline runs while reading is enabled, unsuspended and open; a write
    /// deadline while writing is, with something to write (for pairs and
    /// filters this also fixes B-46 and B-47).
    pub(crate) fn poll_timeout(&mut self, now: Instant, output_len: usize) -> Option<Instant> {
        let reading = self.reading() && self.read_open();
        let writing = self.writing() && !self.write_closed() && output_len > 0;
        self.timeouts.update(now, reading, writing);
        let refill = self
            .bandwidth_suspended()
            .then(|| self.ratelim.as_ref()?.next_refill());
        match (self.timeouts.next_deadline(), refill.flatten()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the deadlines that passed by `now`: the direction is disabled and the
    /// event names it; a close that ran out of time frees the
    /// bufferevent. Whether any fired.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.timeouts.close_expired(now) && self.closing() {
            self.set_flag(flag::CLOSE_TIMED_OUT, true);
            self.lifecycle.free();
            return true;
        }
        // Each timeout is its own event (B-34): without deferred callbacks, which
        // coalesce events (B-60), the write one waits for the read one's call.
        let expired = self.timeouts.expired(now, !self.flag(flag::DEFER));
        if expired.contains(Direction::READ) {
            self.disable(Direction::READ);
            self.event(Events::READING | Events::TIMEOUT, None);
        }
        if expired.contains(Direction::WRITE) {
            self.disable(Direction::WRITE);
            self.event(Events::WRITING | Events::TIMEOUT, None);
        }
        !expired.is_empty()
    }

    // ---- rate limiting -----------------------------------------------------------------

    fn limiter(&mut self) -> &mut RateLimiter {
        self.ratelim.get_or_insert_with(Box::default)
    }

    /// What the buckets allow one direction to move now; `None` without a limit.
    pub(crate) fn bandwidth(&self, read: bool) -> Option<usize> {
        self.ratelim.as_ref()?.allowance(read)
    }

    fn bandwidth_suspended(&self) -> bool {
        let bits = suspend::BANDWIDTH | suspend::GROUP;
        (self.read_suspended | self.write_suspended) & bits != 0
    }

    /// Suspends or resumes each direction by what its buckets hold: a bucket at
    /// or below 0 silences the direction until a refill lifts it above 0.
    fn update_bandwidth_suspension(&mut self) {
        let state = |read: bool| {
            let Some(rl) = self.ratelim.as_deref() else {
                return 0;
            };
            let mut bits = 0;
            if rl.own.as_ref().is_some_and(|b| b.get(read) <= 0) {
                bits |= suspend::BANDWIDTH;
            }
            if rl.allowance(read) == Some(0) && bits == 0 {
                bits |= suspend::GROUP;
            }
            bits
        };
        let (read, write) = (state(true), state(false));
        let mask = !(suspend::BANDWIDTH | suspend::GROUP);
        self.read_suspended = (self.read_suspended & mask) | read;
        self.write_suspended = (self.write_suspended & mask) | write;
    }

    /// `bufferevent_set_rate_limit`: a new limit starts its buckets at the
    /// rate; another configuration keeps them, clipped to the new bursts; `None`
    /// removes the limit and lifts its suspension at once.
    pub(crate) fn set_rate_limit(&mut self, cfg: Option<RateLimit>) {
        match cfg {
            Some(cfg) => match self.limiter().own.as_mut() {
                Some(own) => own.reconfigure(cfg),
                None => self.limiter().own = Some(Buckets::new(cfg)),
            },
            None => {
                if let Some(rl) = self.ratelim.as_mut() {
                    rl.own = None;
                }
            }
        }
        self.drop_empty_limiter();
        self.update_bandwidth_suspension();
    }

    /// The per-bufferevent configuration.
    pub(crate) fn rate_limit(&self) -> Option<RateLimit> {
        self.ratelim.as_ref()?.own.as_ref().map(Buckets::cfg)
    }

    /// Joins `group`, leaving any other; joining the same group again does
    /// nothing.
    pub(crate) fn join_group(&mut self, group: Arc<GroupShared>, now: Instant) {
        let limiter = self.limiter();
        if limiter
            .member
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(m.group(), &group))
        {
            return;
        }
        limiter.member = Some(Member::join(group, now));
        self.update_bandwidth_suspension();
    }

    /// Leaves its group, lifting the group's suspension at once.
    pub(crate) fn leave_group(&mut self) {
        if let Some(rl) = self.ratelim.as_mut() {
            rl.member = None;
        }
        self.drop_empty_limiter();
        self.update_bandwidth_suspension();
    }

    /// Whether this bufferevent is in a group, and in which.
    pub(crate) fn group(&self) -> Option<&Arc<GroupShared>> {
        self.ratelim.as_ref()?.member.as_ref().map(Member::group)
    }

    fn drop_empty_limiter(&mut self) {
        if self.ratelim.as_ref().is_some_and(|rl| rl.is_empty()) {
            self.ratelim = None;
        }
    }

    /// The own bucket of a direction (`bufferevent_get_read_limit`): may be
    /// negative; `None` without a per-bufferevent limit. The group is not counted.
    pub(crate) fn limit(&self, read: bool) -> Option<i64> {
        Some(self.ratelim.as_ref()?.own.as_ref()?.get(read))
    }

    /// `bufferevent_decrement_read_limit`: takes `n` tokens (negative `n` gives
    /// them back), suspending or resuming on crossing 0. Whether there was a limit.
    pub(crate) fn decrement_limit(&mut self, read: bool, n: i64) -> bool {
        let Some(own) = self.ratelim.as_mut().and_then(|rl| rl.own.as_mut()) else {
            return false;
        };
        own.charge(read, n);
        self.update_bandwidth_suspension();
        true
    }

    /// Bytes a transport moved: taken from the buckets. Without a limit this
    /// is one test.
    pub(crate) fn charge(&mut self, read: bool, n: usize) {
        if let Some(rl) = self.ratelim.as_mut() {
            rl.charge(read, n);
            self.update_bandwidth_suspension();
        }
    }

    /// Whether a token bucket or a group limits this bufferevent.
    pub(crate) fn is_rate_limited(&self) -> bool {
        self.ratelim.is_some()
    }

    /// Brings the buckets up to `now`; whether a suspension was lifted, so the engine
    /// knows to move bytes again. Called before any budget is taken from them, as
    /// libevent refills while it computes a budget: a budget from buckets last
    /// refilled before an idle spell would add what was left to the refill after it.
    pub(crate) fn refill(&mut self, now: Instant) -> bool {
        let Some(rl) = self.ratelim.as_mut() else {
            return false;
        };
        rl.drop_dissolved();
        rl.refill(now);
        self.drop_empty_limiter();
        let before = (self.read_suspended, self.write_suspended);
        self.update_bandwidth_suspension();
        (self.read_suspended, self.write_suspended) != before
    }

    // ---- callbacks ---------------------------------------------------------------------

    pub(crate) fn has_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// Whether running what is due would call anything: an event always does (it is
    /// recorded even with no event callback); a read or a write only if its callback
    /// is set (`read_callback`, `write_callback`).
    pub(crate) fn has_calls_due(&self, read_callback: bool, write_callback: bool) -> bool {
        let due = &self.due;
        !self.freed()
            && (due.connected
                || !due.events.is_empty()
                || (due.read && read_callback)
                || (due.write && write_callback))
    }

    /// The callbacks due now, to run in the order [`Due::pop`] gives; callbacks they schedule
    /// are due in a later round, so one that keeps triggering itself cannot hold the
    /// thread. Nothing is due once the bufferevent is freed.
    pub(crate) fn take_due(&mut self) -> Due {
        if self.freed() {
            return Due::default();
        }
        std::mem::take(&mut self.due)
    }

    /// Whether due callbacks run right after the I/O step that caused them; deferred
    /// ones wait until a pass makes no more progress, so they coalesce.
    pub(crate) fn dispatch_now(&self, progress: bool) -> bool {
        !self.flag(flag::DEFER) || !progress
    }

    /// Whether watermarks, timeouts or limits changed since the last call.
    pub(crate) fn take_settings_changed(&mut self) -> bool {
        self.take_flag(flag::SETTINGS_CHANGED)
    }

    // ---- the end -----------------------------------------------------------------------

    /// Whether the bufferevent is over.
    ///
    /// - `attached`: its transport can still move data (a transport, a connect under
    ///   way, a partner);
    /// - `link_idle`: the transport holds nothing of ours still to send;
    /// - `observed`: a handle may still act on it, or another bufferevent uses it;
    /// - `has_callbacks`: any callback is set.
    ///
    /// Freed, or closed with its write half done, it is over. With no observer it
    /// is over once nothing more can happen for anyone: no transport, or nothing
    /// left to send and no callback (or no more input) to act on.
    pub(crate) fn is_over(
        &self,
        output_len: usize,
        attached: bool,
        link_idle: bool,
        observed: bool,
        has_callbacks: bool,
    ) -> bool {
        if self.freed() {
            return true;
        }
        if self.closing() {
            // A close ends by completing, or at its deadline (which frees): not
            // earlier because nothing observes it, or a filter's end of stream would
            // never be sent.
            return self.write_closed() || !attached;
        }
        if observed {
            return false;
        }
        let output_idle = (self.write_closed() || output_len == 0) && link_idle;
        !attached || (!has_callbacks && output_idle) || (!self.read_open() && output_idle)
    }
}
