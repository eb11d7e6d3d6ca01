//! State the task publishes for handles: cheap facts in atomics, the last event and
//! the final outcome, and one notifier per condition handles wait for, so a waiter
//! wakes only when what it waits for may have changed.
//!
//! It lives with the mailbox in one allocation (`mailbox::Remote`). A bufferevent
//! that no handle can reach any more (every handle dropped, no weak handle of a pair
//! partner or filter left) drops it and runs on without publishing anything: a socket
//! server that keeps no handles pays neither the memory nor the work. (The two
//! elements of a pair keep weak handles to each other, so a pair keeps its state while
//! both elements live.)
//!
//! A handle reads its own writes: a setter stores the new value here at once and
//! counts itself pending for that setting; until the task has applied it, the task
//! publishes nothing over it.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;

use tokio::sync::Notify;

use std::time::Duration;

use super::core::Core;
use super::events::{Direction, Events, Watermarks};
pub(crate) use super::info::TransportInfo;
use super::takeout::Takeout;

/// How a bufferevent ended, as reported by [`BufferEvent::closed`](super::BufferEvent::closed).
#[derive(Clone, Debug)]
pub struct Closed {
    /// The last events delivered before the end (empty when the bufferevent was
    /// freed or closed by its user without any event). `ERROR` alone, delivered to no
    /// callback, when its task stopped before it ended: the runtime it ran on shut
    /// down, or a filter or transport on that task panicked.
    pub events: Events,
    /// The last error delivered to the event callback, even one the bufferevent went
    /// on after (a transport's read or write error, a failed connect, a filter's
    /// error), or the error of a callback or a [`with`](super::BufferEvent::with)
    /// closure that panicked, or of a task that stopped (see `events`; kind
    /// [`io::ErrorKind::Other`]); replaced by one of kind
    /// [`io::ErrorKind::TimedOut`] when a close ran out of time. `None` if there was
    /// none.
    pub error: Option<Arc<io::Error>>,
    /// Bytes still in the output that were never sent (discarded by `free`, left
    /// behind by a write error, or by a close that ran out of time), and writes a
    /// handle queued that the task never took (sent as it ended). For a filter
    /// this includes what was left in the bufferevents beneath it, counted as they
    /// held it (compressed or encrypted), and what the filter itself held
    /// ([`Filter::held`](super::Filter::held)).
    pub unsent: usize,
}

/// One delivered event, as reported by [`BufferEvent::next_event`](super::BufferEvent::next_event).
#[derive(Clone, Debug)]
pub struct EventRecord {
    /// The event flags.
    pub events: Events,
    /// The error that came with an `ERROR` event.
    pub error: Option<Arc<io::Error>>,
}

/// What handles wait for; each has its own notifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Condition {
    /// The input's length, or reading ended.
    Input = 0,
    /// The output's length, the write watermarks, or writing ended.
    Output = 1,
    /// A connect completed or failed.
    Connect = 2,
    /// An event was delivered.
    Event = 3,
}

/// Notifiers: the input's, the output's, and one that connects and events share (their
/// waiters are rare, and a wake-up for the other kind costs one look).
const NOTIFIERS: usize = 3;

impl Condition {
    fn notifier(self) -> usize {
        match self {
            Condition::Input => 0,
            Condition::Output => 1,
            Condition::Connect | Condition::Event => 2,
        }
    }
}

/// A setting a handle can change and read back at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Knob {
    Enabled = 0,
    Watermarks = 1,
    Timeouts = 2,
    MaxSingle = 3,
}

/// The write timeout expired, and WRITE was not enabled again since: the output
/// cannot drain until it is.
const WRITE_TIMED_OUT: u8 = 0x01;
/// The pair partner or the filter's underlying bufferevent is gone, as the task noted
/// ([`Shared::strand`]), not yet published.
const STRANDED_NOTED: u8 = 0x02;
/// The same, published after the input's length: nothing more can come in, and the
/// output can no longer leave, whatever the event callback heard (D-P1).
const STRANDED: u8 = 0x04;
/// A graceful close is under way (`close`, a listener's shutdown): the bufferevent
/// still sends what it holds, but is on its way out.
const CLOSING: u8 = 0x08;
/// The last connect failed and left no transport: nothing can come in or leave until
/// a new connect or a transport ([`Shared::unconnected`]).
const UNCONNECTED: u8 = 0x10;
const KNOBS: usize = 4;

/// Why the output cannot drain by itself ([`Shared::stall`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stall {
    /// The write side was shut down or failed.
    WriteClosed,
    /// The write timeout disabled WRITE; enabling it goes on.
    TimedOut,
    /// The pair partner or the filter's underlying bufferevent is gone.
    Stranded,
    /// The last connect failed and left no transport ([`Shared::unconnected`]).
    Unconnected,
}

/// Wakes the waiters of one condition; with none waiting, costs one load.
#[derive(Debug, Default)]
struct Waiters {
    notify: Notify,
    /// Tasks inside `wait_until` for this condition.
    count: AtomicUsize,
}

/// What the `AsyncRead`/`AsyncWrite` and `Stream`/`Sink` adapters use, allocated the
/// first time one polls: a bufferevent run by callbacks, or by the handle's futures,
/// never pays for it (and every connection's shared state stays small).
#[derive(Debug, Default)]
pub(crate) struct Polled {
    /// Input handed to a waiting reader (see `takeout.rs`).
    pub(crate) takeout: Takeout,
    /// The input's and the output's waiters, by [`Condition`].
    pub(crate) waiters: [PollWaiter; 2],
}

/// The wakers of the readers or writers that poll (the `AsyncRead`/`AsyncWrite` and
/// `Stream`/`Sink` adapters): no future to keep and no list to join, and, unless armed,
/// one load to pass by. Usually one adapter polls; more each keep their waker here.
#[derive(Debug, Default)]
pub(crate) struct PollWaiter {
    armed: AtomicBool,
    wakers: Mutex<Wakers>,
}

/// One waker inline (the common case allocates nothing), more in a list.
#[derive(Debug, Default)]
struct Wakers {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl PollWaiter {
    /// Registers `waker` for the next change; the caller checks its condition again
    /// afterwards.
    pub(crate) fn register(&self, waker: &Waker) {
        {
            let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
            let known = wakers.first.as_ref().is_some_and(|w| w.will_wake(waker))
                || wakers.more.iter().any(|w| w.will_wake(waker));
            if !known {
                if wakers.first.is_none() {
                    wakers.first = Some(waker.clone());
                } else {
                    wakers.more.push(waker.clone());
                }
            }
        }
        // Pairs with the fence in `Shared::wake`: either that wake sees the waiter
        // armed, or the caller's check after this sees the change.
        self.armed.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// Wakes every registered poller; each registers again when it polls.
    fn wake(&self) {
        if !self.armed.load(Ordering::SeqCst) || !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut wakers = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(first) = wakers.first.take() {
            first.wake();
        }
        for waker in wakers.more.drain(..) {
            waker.wake();
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Bytes in the task's input, as last published; handles add the takeout's.
    pub(crate) input_len: AtomicUsize,
    /// Bytes in the output buffer, as last published by the task.
    pub(crate) output_len: AtomicUsize,
    /// Bytes written by handles that the task has not applied yet.
    pub(crate) in_flight: AtomicUsize,
    write_low: AtomicUsize,
    write_high: AtomicUsize,
    read_low: AtomicUsize,
    read_high: AtomicUsize,
    /// Timeouts in nanoseconds; 0 is none.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    max_single_read: AtomicU32,
    max_single_write: AtomicU32,
    enabled: AtomicU8,
    /// Setting changes handles made that the task has not applied yet, per [`Knob`].
    /// The task publishes a setting only while none is pending; the lock makes that
    /// check and the task's store one step.
    pending: Mutex<[u32; KNOBS]>,
    pub(crate) connected: AtomicBool,
    /// Connects handles started, and connect outcomes the task reported.
    connects_started: AtomicU32,
    connects_done: AtomicU32,
    /// Reading stopped for good: EOF or a read error.
    pub(crate) read_closed: AtomicBool,
    /// Writing stopped for good: the write side was shut down, or a write failed.
    pub(crate) write_closed: AtomicBool,
    /// The read timeout expired, and READ was not enabled again since.
    pub(crate) read_timed_out: AtomicBool,
    /// Why the output cannot drain, in bits (one byte: every bufferevent with handles
    /// has this state): [`WRITE_TIMED_OUT`], [`STRANDED_NOTED`], [`STRANDED`].
    stalls: AtomicU8,
    info: Mutex<TransportInfo>,
    /// Conditions whose waiters the next publish wakes (bits of [`Condition`]).
    dirty: AtomicU8,
    event_seq: AtomicU64,
    /// The bufferevent ended (`closed` in `extra` is set).
    ended: AtomicBool,
    /// What handles need rarely, allocated the first time any of it is set: an idle
    /// connection never pays for it.
    extra: Mutex<Option<Box<Extra>>>,
    waiters: [Waiters; NOTIFIERS],
    /// What the polled adapters use, allocated the first time one polls.
    polled: OnceLock<Box<Polled>>,
    /// Statistics, kept by the task while handles can read them...
    pub(crate) counters: Counters,
    /// ...unless a listener accepted the bufferevent: then they are kept in its
    /// membership, for as long as the bufferevent lives.
    /// Weak: the task alone keeps it, so that its end reaches the listener however
    /// long handles live.
    pub(crate) member: OnceLock<std::sync::Weak<super::membership::Membership>>,
}

/// What a bufferevent has done, as [`BufferEvent::stats`](super::BufferEvent::stats)
/// reports it.
///
/// The task keeps these counters while any handle (or a listener) can read them, at
/// the cost of a few plain stores per read or write and one clock reading per wake-up
/// that moved bytes; a bufferevent that neither a handle nor a listener can reach
/// keeps none. Lengths, peaks and times are brought up to date once per wake-up of
/// the task, so they may lag by that much.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes read into the input: from the transport, the pair partner, or (for a
    /// filter) out of its input filter.
    pub bytes_read: u64,
    /// Bytes taken out of the output: sent, moved to the partner, or passed to the
    /// output filter.
    pub bytes_written: u64,
    /// Read callbacks run.
    pub read_callbacks: u64,
    /// Write callbacks run.
    pub write_callbacks: u64,
    /// Event callbacks run.
    pub event_callbacks: u64,
    /// The input's length now, as last published.
    pub input_len: usize,
    /// The output's length now, counting writes on their way to the task.
    pub output_len: usize,
    /// The longest the input has been.
    pub peak_input: usize,
    /// The longest the output has been.
    pub peak_output: usize,
    /// When bytes were last read, to the task's wake-up (`None`: never).
    pub last_read: Option<tokio::time::Instant>,
    /// When bytes were last written, to the task's wake-up (`None`: never).
    pub last_write: Option<tokio::time::Instant>,
}

/// Counters only the task writes and handles read, each on its own without a lock:
/// plain loads and stores, as there is one writer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes: [AtomicU64; 2],
    /// Read, write and event callbacks run.
    callbacks: [AtomicU64; 3],
    peak_input: AtomicUsize,
    peak_output: AtomicUsize,
    /// The input's and the output's lengths after the last pass.
    lengths: [AtomicUsize; 2],
    /// When bytes last moved each way: nanoseconds after [`epoch`] plus one; 0 is
    /// never.
    last: [AtomicU64; 2],
    /// Bytes moved since `last` was stamped: bit 0 read, bit 1 written.
    moved: AtomicU8,
}

/// Which callback ran, for [`Counters::callback`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum CallbackKind {
    Read = 0,
    Write = 1,
    Event = 2,
}

const READ: usize = 0;
const WRITE: usize = 1;

fn bump(cell: &AtomicU64, n: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

fn raise(cell: &AtomicUsize, value: usize) {
    if value > cell.load(Ordering::Relaxed) {
        cell.store(value, Ordering::Relaxed);
    }
}

/// The instant time stamps count from.
fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// The time of a task's wake-up for the statistics, read once however many engines
/// the task runs (a pair's two, a filter's stack) and only if one of them moved bytes.
#[derive(Debug, Default)]
pub(crate) struct WakeClock {
    /// Nanoseconds after [`epoch`] plus one, once read.
    stamp: Option<u64>,
}

impl WakeClock {
    fn stamp(&mut self) -> u64 {
        *self.stamp.get_or_insert_with(|| {
            let since = tokio::time::Instant::now()
                .into_std()
                .saturating_duration_since(epoch());
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1) + 1
        })
    }
}

impl Counters {
    /// `n` bytes were read; the input now holds `input_len`.
    pub(crate) fn read(&self, n: usize, input_len: usize) {
        bump(&self.bytes[READ], n as u64);
        raise(&self.peak_input, input_len);
        self.mark_moved(READ);
    }

    fn mark_moved(&self, way: usize) {
        let bit = 1 << way;
        let moved = self.moved.load(Ordering::Relaxed);
        if moved & bit == 0 {
            self.moved.store(moved | bit, Ordering::Relaxed);
        }
    }

    /// `n` bytes left an output that held `output_len` before.
    pub(crate) fn written(&self, n: usize, output_len: usize) {
        bump(&self.bytes[WRITE], n as u64);
        raise(&self.peak_output, output_len);
        self.mark_moved(WRITE);
    }

    pub(crate) fn callback(&self, kind: CallbackKind) {
        bump(&self.callbacks[kind as usize], 1);
    }

    /// After the passes of a wake-up: the peaks, the lengths, and the time of any read
    /// or write since the last call, read from `clock`.
    pub(crate) fn after_pass(&self, input_len: usize, output_len: usize, clock: &mut WakeClock) {
        raise(&self.peak_input, input_len);
        raise(&self.peak_output, output_len);
        self.lengths[READ].store(input_len, Ordering::Relaxed);
        self.lengths[WRITE].store(output_len, Ordering::Relaxed);
        let moved = self.moved.load(Ordering::Relaxed);
        if moved == 0 {
            return;
        }
        self.moved.store(0, Ordering::Relaxed);
        let now = clock.stamp();
        for way in [READ, WRITE] {
            if moved & (1 << way) != 0 {
                self.last[way].store(now, Ordering::Relaxed);
            }
        }
    }

    /// Takes `other`'s values: a membership's counters, kept for handles once the
    /// bufferevent ends.
    pub(crate) fn copy_from(&self, other: &Counters) {
        let copy64 = |to: &AtomicU64, from: &AtomicU64| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        let copy = |to: &AtomicUsize, from: &AtomicUsize| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        for i in 0..2 {
            copy64(&self.bytes[i], &other.bytes[i]);
            copy64(&self.last[i], &other.last[i]);
            copy(&self.lengths[i], &other.lengths[i]);
        }
        for i in 0..3 {
            copy64(&self.callbacks[i], &other.callbacks[i]);
        }
        copy(&self.peak_input, &other.peak_input);
        copy(&self.peak_output, &other.peak_output);
    }

    /// The statistics with the lengths as of the last pass.
    pub(crate) fn snapshot_as_tallied(&self) -> Stats {
        self.snapshot(
            self.lengths[READ].load(Ordering::Relaxed),
            self.lengths[WRITE].load(Ordering::Relaxed),
        )
    }

    pub(crate) fn snapshot(&self, input_len: usize, output_len: usize) -> Stats {
        let load = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let when = |cell: &AtomicU64| match load(cell) {
            0 => None,
            nanos => Some(tokio::time::Instant::from_std(
                epoch() + Duration::from_nanos(nanos - 1),
            )),
        };
        Stats {
            bytes_read: load(&self.bytes[READ]),
            bytes_written: load(&self.bytes[WRITE]),
            read_callbacks: load(&self.callbacks[0]),
            write_callbacks: load(&self.callbacks[1]),
            event_callbacks: load(&self.callbacks[2]),
            input_len,
            output_len,
            peak_input: self.peak_input.load(Ordering::Relaxed).max(input_len),
            peak_output: self.peak_output.load(Ordering::Relaxed).max(output_len),
            last_read: when(&self.last[READ]),
            last_write: when(&self.last[WRITE]),
        }
    }
}

/// A copy of `error` for handles: `io::Error` is not `Clone`, so the OS error code
/// when it has one (its kind and message follow from it), else kind and message.
pub(crate) fn copy_error(error: &io::Error) -> Arc<io::Error> {
    Arc::new(match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    })
}

/// The rarely needed part of [`Shared`].
#[derive(Debug, Default)]
struct Extra {
    /// Why reading stopped, if it failed.
    read_error: Option<Arc<io::Error>>,
    /// The builder's connect timeout, for the connects handles start.
    connect_timeout: Option<Duration>,
    #[cfg(feature = "dns")]
    dns_error: Option<super::DnsError>,
    /// `connect_hostname` calls so far: a lookup's failure counts only if no call
    /// came after the one that started it.
    #[cfg(feature = "dns")]
    lookups: u32,
    last_event: Option<EventRecord>,
    /// Why the last connect failed; cleared when a connect succeeds.
    connect_error: Option<Arc<io::Error>>,
    closed: Option<Closed>,
    /// A pair's partner or a filter's underlying bufferevent, as weak references
    /// (see `pair.rs` and `filter.rs`); cleared when this bufferevent ends.
    relative: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// See [`Shared::set_filtering`].
    filtering: bool,
}

/// Settings handles can read without a round trip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) enabled: Direction,
    pub(crate) read_wm: Watermarks,
    pub(crate) write_wm: Watermarks,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) max_single_read: usize,
    pub(crate) max_single_write: usize,
}

impl Settings {
    /// The settings as `core` has them, in the form handles read.
    pub(crate) fn of(core: &Core) -> Self {
        let (read_timeout, write_timeout) = core.timeouts();
        Self {
            enabled: core.enabled(),
            read_wm: core.read_watermarks(),
            write_wm: core.write_watermarks(),
            read_timeout,
            write_timeout,
            max_single_read: core.max_single_read(),
            max_single_write: core.max_single_write(),
        }
    }
}

impl Settings {
    /// Every knob at once.
    pub(crate) const ALL: [Knob; KNOBS] = [
        Knob::Enabled,
        Knob::Watermarks,
        Knob::Timeouts,
        Knob::MaxSingle,
    ];
}

fn bit(condition: Condition) -> u8 {
    1 << condition as u8
}

impl Shared {
    /// Reads the rare part; `None` while nothing of it was ever set.
    fn extra<R>(&self, f: impl FnOnce(&Extra) -> R) -> Option<R> {
        let slot = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_deref().map(f)
    }

    /// Changes the rare part, allocating it the first time.
    fn extra_mut<R>(&self, f: impl FnOnce(&mut Extra) -> R) -> R {
        let mut slot = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        f(slot.get_or_insert_with(Box::default))
    }

    /// Sets an optional field of the rare part; clearing one that was never set
    /// allocates nothing.
    fn set_extra<T>(&self, value: Option<T>, field: impl FnOnce(&mut Extra) -> &mut Option<T>) {
        let mut slot = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() && value.is_none() {
            return;
        }
        *field(slot.get_or_insert_with(Box::default)) = value;
    }

    /// Stores one knob's values; whether the watermarks changed (what waiters of
    /// the input and the output depend on).
    fn store_knob(&self, knob: Knob, settings: &Settings) -> bool {
        let nanos =
            |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let limit = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        match knob {
            Knob::Enabled => self
                .enabled
                .store(settings.enabled.bits(), Ordering::Release),
            Knob::Watermarks => {
                let cells = [
                    (&self.read_low, settings.read_wm.low),
                    (&self.read_high, settings.read_wm.high),
                    (&self.write_low, settings.write_wm.low),
                    (&self.write_high, settings.write_wm.high),
                ];
                let mut changed = false;
                for (cell, value) in cells {
                    changed |= cell.swap(value, Ordering::AcqRel) != value;
                }
                return changed;
            }
            Knob::Timeouts => {
                self.read_timeout
                    .store(nanos(settings.read_timeout), Ordering::Release);
                self.write_timeout
                    .store(nanos(settings.write_timeout), Ordering::Release);
            }
            Knob::MaxSingle => {
                self.max_single_read
                    .store(limit(settings.max_single_read), Ordering::Release);
                self.max_single_write
                    .store(limit(settings.max_single_write), Ordering::Release);
            }
        }
        false
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, [u32; KNOBS]> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle changes a setting: `send` queues the change for the task (false: the
    /// task has ended, and nothing changes), and `change` edits the current view,
    /// which handles see at once; the task publishes nothing over it until it applied
    /// the change ([`Shared::applied_setting`]). Both under the lock, so that handles
    /// racing to change one setting leave the view as the task's queue orders them.
    pub(crate) fn request(
        &self,
        knob: Knob,
        change: impl FnOnce(&mut Settings),
        send: impl FnOnce() -> bool,
    ) {
        let mut pending = self.pending();
        if !send() {
            return;
        }
        let mut settings = self.settings();
        change(&mut settings);
        let watermarks_changed = self.store_knob(knob, &settings);
        pending[knob as usize] += 1;
        drop(pending);
        if watermarks_changed {
            // `readable` and `writable` wait on the watermarks.
            self.wake(Condition::Input);
            self.wake(Condition::Output);
        }
    }

    /// The task applied a handle's change of `knob`: once no later change of it is
    /// on its way, publishes the task's value and lets the task publish that setting
    /// again. (With a later change pending, handles keep seeing that one.)
    pub(crate) fn applied_setting(&self, knob: Knob, settings: &Settings) {
        let mut pending = self.pending();
        let left = pending[knob as usize].saturating_sub(1);
        pending[knob as usize] = left;
        if left == 0 && self.store_knob(knob, settings) {
            self.mark(Condition::Input);
            self.mark(Condition::Output);
        }
    }

    /// Publishes the task's settings, but not over changes handles made that the
    /// task has not applied yet. Only the knobs in `knobs` are stored.
    pub(crate) fn publish_settings(&self, knobs: &[Knob], settings: &Settings) {
        let pending = self.pending();
        let mut watermarks_changed = false;
        for &knob in knobs {
            if pending[knob as usize] == 0 {
                watermarks_changed |= self.store_knob(knob, settings);
            }
        }
        drop(pending);
        if watermarks_changed {
            self.mark(Condition::Input);
            self.mark(Condition::Output);
        }
    }

    /// The enabled directions as handles see them.
    pub(crate) fn enabled(&self) -> Direction {
        Direction::from_bits_truncate(self.enabled.load(Ordering::Acquire))
    }

    pub(crate) fn settings(&self) -> Settings {
        let duration = |cell: &AtomicU64| match cell.load(Ordering::Acquire) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        };
        Settings {
            enabled: self.enabled(),
            read_wm: Watermarks::new(
                self.read_low.load(Ordering::Acquire),
                self.read_high.load(Ordering::Acquire),
            ),
            write_wm: Watermarks::new(
                self.write_low.load(Ordering::Acquire),
                self.write_high.load(Ordering::Acquire),
            ),
            read_timeout: duration(&self.read_timeout),
            write_timeout: duration(&self.write_timeout),
            max_single_read: self.max_single_read.load(Ordering::Acquire) as usize,
            max_single_write: self.max_single_write.load(Ordering::Acquire) as usize,
        }
    }

    pub(crate) fn write_low(&self) -> usize {
        self.write_low.load(Ordering::Acquire)
    }

    pub(crate) fn write_high(&self) -> usize {
        self.write_high.load(Ordering::Acquire)
    }

    /// What writers wait for: the output at or below the write high watermark (always,
    /// without one), or the write side closed (the writer then learns why).
    pub(crate) fn writable_or_closed(&self) -> bool {
        self.below_write_high() || self.write_stalled()
    }

    /// The output is at or below the write high watermark (always, without one).
    pub(crate) fn below_write_high(&self) -> bool {
        let high = self.write_high();
        high == 0 || self.output_total() <= high
    }

    /// The output cannot drain by itself (see [`stall`](Self::stall)).
    pub(crate) fn write_stalled(&self) -> bool {
        self.stall().is_some()
    }

    /// Why the output cannot drain by itself, the first that applies; `None`: it can.
    pub(crate) fn stall(&self) -> Option<Stall> {
        if self.write_closed.load(Ordering::Acquire) {
            return Some(Stall::WriteClosed);
        }
        let stalls = self.stalls.load(Ordering::Acquire);
        if stalls & WRITE_TIMED_OUT != 0 {
            Some(Stall::TimedOut)
        } else if stalls & STRANDED != 0 {
            Some(Stall::Stranded)
        } else if stalls & UNCONNECTED != 0 && self.unconnected().is_some() {
            Some(Stall::Unconnected)
        } else {
            None
        }
    }

    /// Whether the output is stalled in any way `stalls` records (the
    /// task's quick look, as it publishes).
    pub(crate) fn has_stalls(&self) -> bool {
        self.stalls.load(Ordering::Relaxed) != 0
    }

    /// The write timeout expired, and WRITE was not enabled again since.
    fn write_timed_out(&self) -> bool {
        self.stalls.load(Ordering::Acquire) & WRITE_TIMED_OUT != 0
    }

    /// Records the write timeout (the task), or takes it back (WRITE enabled again).
    pub(crate) fn set_write_timed_out(&self, on: bool) {
        if on {
            self.stalls.fetch_or(WRITE_TIMED_OUT, Ordering::AcqRel);
        } else if self.write_timed_out() {
            self.stalls.fetch_and(!WRITE_TIMED_OUT, Ordering::AcqRel);
        }
    }

    /// A graceful close is under way, as published.
    pub(crate) fn is_closing(&self) -> bool {
        self.stalls.load(Ordering::Acquire) & CLOSING != 0
    }

    /// On the task, as it publishes a close under way: whether this is news.
    pub(crate) fn publish_closing(&self) -> bool {
        if self.stalls.load(Ordering::Relaxed) & CLOSING != 0 {
            return false;
        }
        self.stalls.fetch_or(CLOSING, Ordering::AcqRel);
        true
    }

    /// The pair partner or the filter's underlying bufferevent is gone, as published.
    pub(crate) fn is_stranded(&self) -> bool {
        self.stalls.load(Ordering::Acquire) & STRANDED != 0
    }

    /// Nothing more can come in: stranded, or the last connect failed and left no
    /// transport (one look for both).
    pub(crate) fn is_cut_off(&self) -> bool {
        let stalls = self.stalls.load(Ordering::Acquire);
        stalls & STRANDED != 0 || stalls & UNCONNECTED != 0 && self.unconnected().is_some()
    }

    /// On the task: the pair partner or the filter's underlying bufferevent is gone.
    /// Handles learn it at the next publish, after the input that came before.
    pub(crate) fn strand(&self) {
        if self.stalls.load(Ordering::Relaxed) & STRANDED_NOTED == 0 {
            self.stalls.fetch_or(STRANDED_NOTED, Ordering::AcqRel);
        }
    }

    /// On the task, as it publishes: makes a noted strand visible; whether it did.
    pub(crate) fn publish_strand(&self) -> bool {
        let stalls = self.stalls.load(Ordering::Relaxed);
        let noted = stalls & (STRANDED_NOTED | STRANDED) == STRANDED_NOTED;
        if noted {
            self.stalls.fetch_or(STRANDED, Ordering::AcqRel);
        }
        noted
    }

    pub(crate) fn read_high(&self) -> usize {
        self.read_high.load(Ordering::Acquire)
    }

    // ---- connects -------------------------------------------------------------------

    /// A handle started a connect.
    pub(crate) fn connect_started(&self) {
        self.connects_started.fetch_add(1, Ordering::AcqRel);
    }

    /// A connect handles started will never report: it never reached the task, or a
    /// new transport replaced it. Waiters for it look again.
    pub(crate) fn connect_withdrawn(&self) {
        self.connects_started.fetch_sub(1, Ordering::AcqRel);
        self.wake(Condition::Connect);
    }

    /// A transport was given at once (`set_tcp`, `set_transport`): an earlier
    /// connect's failure no longer describes the bufferevent.
    pub(crate) fn transport_given(&self) {
        self.set_extra(None, |x| &mut x.connect_error);
        self.attached();
    }

    /// A connect succeeded.
    pub(crate) fn connect_succeeded(&self) {
        self.set_extra(None, |x| &mut x.connect_error);
        self.attached();
        self.connected.store(true, Ordering::Release);
        self.connects_done.fetch_add(1, Ordering::AcqRel);
        self.wake(Condition::Connect);
    }

    /// A connect failed (`error`, if known); `left_unattached`: no earlier transport
    /// stays in use (D-C3), so nothing can come in or leave until a new connect.
    pub(crate) fn connect_failed(&self, error: Option<&io::Error>, left_unattached: bool) {
        let error = error.map_or_else(
            || Arc::new(io::Error::other("the connect failed")),
            copy_error,
        );
        self.set_extra(Some(error), |x| &mut x.connect_error);
        if left_unattached {
            self.stalls.fetch_or(UNCONNECTED, Ordering::AcqRel);
        }
        self.connects_done.fetch_add(1, Ordering::AcqRel);
        self.wake(Condition::Connect);
        if left_unattached {
            // Readers and writers wait for what can no longer happen: they learn why.
            self.wake(Condition::Input);
            self.wake(Condition::Output);
        }
    }

    /// A transport is in place (given, or connected).
    fn attached(&self) {
        if self.stalls.load(Ordering::Relaxed) & UNCONNECTED != 0 {
            self.stalls.fetch_and(!UNCONNECTED, Ordering::AcqRel);
        }
    }

    /// For a filter, on its task: the bufferevent beneath is no longer left without a
    /// transport (a new connect, or a transport, was given to it), so neither is
    /// the filter. (Until that pass, the filter's waiters still see the failure.)
    pub(crate) fn follow_beneath(&self, beneath: &Shared) {
        // Its own bit first: one look on every pass of a filter that never failed.
        if self.stalls.load(Ordering::Relaxed) & UNCONNECTED != 0 && beneath.unconnected().is_none()
        {
            self.attached();
        }
    }

    /// Why nothing can come in or leave: the last connect failed, left no transport,
    /// and no connect is under way (a handle that starts one makes this `None` at once,
    /// as it counts the connect). `None` otherwise.
    pub(crate) fn unconnected(&self) -> Option<Arc<io::Error>> {
        if self.stalls.load(Ordering::Acquire) & UNCONNECTED == 0 {
            return None;
        }
        self.connect_outcome().flatten()
    }

    /// Whether every connect started has an outcome; with it, the last failure.
    pub(crate) fn connect_outcome(&self) -> Option<Option<Arc<io::Error>>> {
        let done = self.connects_done.load(Ordering::Acquire);
        let started = self.connects_started.load(Ordering::Acquire);
        (done >= started).then(|| self.extra(|x| x.connect_error.clone()).flatten())
    }

    pub(crate) fn set_connect_timeout(&self, timeout: Option<Duration>) {
        self.set_extra(timeout, |x| &mut x.connect_timeout);
    }

    pub(crate) fn connect_timeout(&self) -> Option<Duration> {
        self.extra(|x| x.connect_timeout).flatten()
    }

    /// A `connect_hostname` call: the last lookup's error is forgotten. The ticket
    /// for [`lookup_failed`](Self::lookup_failed).
    #[cfg(feature = "dns")]
    pub(crate) fn lookup_started(&self) -> u32 {
        self.extra_mut(|x| {
            x.dns_error = None;
            x.lookups = x.lookups.wrapping_add(1);
            x.lookups
        })
    }

    /// The lookup of the call that got `ticket` failed: recorded unless a later call
    /// began since (its own outcome is the one to tell).
    #[cfg(feature = "dns")]
    pub(crate) fn lookup_failed(&self, ticket: u32, error: super::DnsError) {
        self.extra_mut(|x| {
            if x.lookups == ticket {
                x.dns_error = Some(error);
            }
        });
    }

    #[cfg(feature = "dns")]
    pub(crate) fn dns_error(&self) -> Option<super::DnsError> {
        self.extra(|x| x.dns_error.clone()).flatten()
    }

    pub(crate) fn set_read_error(&self, error: Option<Arc<io::Error>>) {
        self.set_extra(error, |x| &mut x.read_error);
    }

    pub(crate) fn read_error(&self) -> Option<Arc<io::Error>> {
        self.extra(|x| x.read_error.clone()).flatten()
    }

    /// This bufferevent filters another: a flush through an adapter asks its filters
    /// to emit what they hold.
    pub(crate) fn set_filtering(&self) {
        self.extra_mut(|x| x.filtering = true);
    }

    pub(crate) fn is_filtering(&self) -> bool {
        self.extra(|x| x.filtering).unwrap_or(false)
    }

    pub(crate) fn set_relative(&self, relative: Box<dyn std::any::Any + Send + Sync>) {
        self.extra_mut(|x| x.relative = Some(relative));
    }

    pub(crate) fn clear_relative(&self) {
        let old = self
            .extra
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|x| x.relative.take());
        drop(old);
    }

    /// Runs `f` on the relative, if there is one of type `R`.
    pub(crate) fn with_relative<R: 'static, U>(
        &self,
        f: impl FnOnce(&R) -> Option<U>,
    ) -> Option<U> {
        self.extra(|x| x.relative.as_ref()?.downcast_ref::<R>().and_then(f))
            .flatten()
    }

    pub(crate) fn set_info(&self, info: TransportInfo) {
        *self.info.lock().unwrap_or_else(|e| e.into_inner()) = info;
    }

    pub(crate) fn info(&self) -> TransportInfo {
        *self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `condition` changed: the next [`Shared::wake_dirty`] wakes its waiters.
    /// Only the task marks and wakes the marked, so plain loads and stores do.
    pub(crate) fn mark(&self, condition: Condition) {
        let dirty = self.dirty.load(Ordering::Relaxed);
        if dirty & bit(condition) == 0 {
            self.dirty.store(dirty | bit(condition), Ordering::Relaxed);
        }
    }

    /// Wakes the waiters of every condition marked changed since the last call, with
    /// one fence for all of them.
    pub(crate) fn wake_dirty(&self) {
        let dirty = self.dirty.load(Ordering::Relaxed);
        if dirty == 0 {
            return;
        }
        self.dirty.store(0, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::SeqCst);
        for condition in [
            Condition::Input,
            Condition::Output,
            Condition::Connect,
            Condition::Event,
        ] {
            if dirty & bit(condition) != 0 {
                self.wake_fenced(condition);
            }
        }
    }

    /// The task moved `n` written bytes from "in flight" into its output buffer.
    pub(crate) fn applied(&self, n: usize) {
        // Count the bytes in the output before they leave "in flight", so a handle never
        // sees them in neither (`publish` later stores the exact output length).
        self.output_len.fetch_add(n, Ordering::AcqRel);
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        self.mark(Condition::Output);
    }

    /// Input bytes as a handle sees them: in the task's input plus handed over to a
    /// reader and not yet taken.
    pub(crate) fn input_total(&self) -> usize {
        let Some(polled) = self.polled_if_any() else {
            return self.input_len.load(Ordering::Acquire);
        };
        // Handing over adds to the takeout before it publishes the smaller input, and
        // putting back publishes the larger input before it takes from the takeout:
        // a length that did not change around the takeout's can count a moving byte
        // twice (handing over), never miss one (putting back).
        loop {
            let input = self.input_len.load(Ordering::Acquire);
            let handed = polled.takeout.len();
            if self.input_len.load(Ordering::Acquire) == input {
                return input + handed;
            }
        }
    }

    /// The adapters' part, allocated on first use.
    pub(crate) fn polled(&self) -> &Polled {
        self.polled.get_or_init(Box::default)
    }

    /// The adapters' part, if any adapter ever polled.
    pub(crate) fn polled_if_any(&self) -> Option<&Polled> {
        self.polled.get().map(|p| &**p)
    }

    /// Output bytes as a handle sees them: buffered plus still on the way.
    pub(crate) fn output_total(&self) -> usize {
        // In-flight first: bytes move from it to `output_len` (added there before they
        // are taken off here), so this order can only count a moving byte twice,
        // never miss it.
        let in_flight = self.in_flight.load(Ordering::Acquire);
        in_flight + self.output_len.load(Ordering::Acquire)
    }

    pub(crate) fn new(settings: &Settings) -> Self {
        let shared = Self::default();
        for knob in Settings::ALL {
            shared.store_knob(knob, settings);
        }
        shared
    }

    /// Wakes the waiters of `condition`.
    pub(crate) fn wake(&self, condition: Condition) {
        // The fence orders the change (stored before this call, with any ordering)
        // before the load of the count, pairing with `wait_until`'s SeqCst increment
        // (and a poller's SeqCst arming): a waiter that registered after this load
        // checks its condition after the change was stored, so it cannot miss it.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.wake_fenced(condition);
    }

    /// [`wake`](Self::wake), after the caller's fence.
    fn wake_fenced(&self, condition: Condition) {
        let waiters = &self.waiters[condition.notifier()];
        if waiters.count.load(Ordering::SeqCst) > 0 {
            waiters.notify.notify_waiters();
        }
        if let Some(polled) = self.polled_if_any()
            && let Some(waiter) = polled.waiters.get(condition as usize)
        {
            waiter.wake();
        }
    }

    /// Wakes every waiter: the input and the output changed, or everything did.
    pub(crate) fn changed(&self) {
        self.wake(Condition::Input);
        self.wake(Condition::Output);
    }

    fn wake_all(&self) {
        for condition in [
            Condition::Input,
            Condition::Output,
            Condition::Connect,
            Condition::Event,
        ] {
            self.wake(condition);
        }
    }

    pub(crate) fn record_event(&self, events: Events, error: Option<Arc<io::Error>>) {
        if events.contains(Events::READING | Events::TIMEOUT) {
            self.read_timed_out.store(true, Ordering::Release);
        }
        if events.contains(Events::WRITING | Events::TIMEOUT) {
            self.set_write_timed_out(true);
            // Writers wait for the output, and learn here that it will not drain.
            self.mark(Condition::Output);
        }
        self.extra_mut(|x| x.last_event = Some(EventRecord { events, error }));
        self.event_seq.fetch_add(1, Ordering::AcqRel);
        self.mark(Condition::Event);
        if events.contains(Events::READING) {
            // Readers wait for the input, and learn here that it will not grow.
            self.mark(Condition::Input);
        }
    }

    pub(crate) fn event_seq(&self) -> u64 {
        self.event_seq.load(Ordering::Acquire)
    }

    pub(crate) fn last_event(&self) -> Option<EventRecord> {
        self.extra(|x| x.last_event.clone()).flatten()
    }

    pub(crate) fn set_closed(&self, closed: Closed) {
        self.extra_mut(|x| {
            if x.closed.is_none() {
                x.closed = Some(closed);
            }
        });
        // The end before the halves: a handle that finds a half closed and then looks
        // at the end sees it, so it answers `Ended`, not `WriteClosed` or `Eof`.
        self.ended.store(true, Ordering::SeqCst);
        self.read_closed.store(true, Ordering::Release);
        self.write_closed.store(true, Ordering::Release);
        self.wake_all();
    }

    pub(crate) fn closed(&self) -> Option<Closed> {
        self.extra(|x| x.closed.clone()).flatten()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Waits until `ready` holds or the bufferevent ended, waking only when
    /// `condition` may have changed; returns whether `ready` held.
    ///
    /// Cancel safe: nothing is consumed while waiting.
    pub(crate) async fn wait_until(
        &self,
        condition: Condition,
        mut ready: impl FnMut(&Self) -> bool,
    ) -> bool {
        if ready(self) {
            return true;
        }
        let waiters = &self.waiters[condition.notifier()];
        waiters.count.fetch_add(1, Ordering::SeqCst);
        let _registered = WaiterGuard(&waiters.count);
        loop {
            let notified = waiters.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a change between the check and the await
            // is not missed. The fence pairs with the task's (`wake_dirty`): the
            // count above and the registration come before the loads of `ready`, by
            // the memory model and not only by what `Notify` happens to do inside.
            notified.as_mut().enable();
            std::sync::atomic::fence(Ordering::SeqCst);
            if ready(self) {
                return true;
            }
            if self.is_closed() {
                return ready(self);
            }
            notified.await;
        }
    }
}

/// Counts a waiter for as long as it waits, also when its future is dropped.
struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
