//! State the task publishes for handles: cheap facts in atomics, the last event and
//! the final outcome, and one `Notify` that wakes every waiter on any change.
//!
//! It lives with the mailbox in one allocation, a [`Remote`]. A bufferevent that no
//! handle can reach any more (every handle dropped, no weak handle of a pair partner
//! or filter left) drops its `Remote` and runs on without publishing anything: a
//! socket server that keeps no handles pays neither the memory nor the work. (The two
//! elements of a pair keep weak handles to each other, so a pair keeps its state while
//! both elements live.)

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::events::{Direction, Events, Watermarks};
use super::mailbox::Mailbox;

/// What handles and the task share: the published state and the command queue, in
/// one allocation.
pub(crate) struct Remote<T, S> {
    pub(crate) shared: Shared,
    pub(crate) mailbox: Mailbox<T, S>,
}

impl<T, S> Remote<T, S> {
    /// A remote with one handle.
    pub(crate) fn new(shared: Shared) -> Arc<Self> {
        Arc::new(Self {
            shared,
            mailbox: Mailbox::new(),
        })
    }
}

/// How a bufferevent ended, as reported by [`BufferEvent::closed`](super::BufferEvent::closed).
#[derive(Clone, Debug)]
pub struct Closed {
    /// The last events delivered before the end (empty when the bufferevent was
    /// freed or closed by its user without any event).
    pub events: Events,
    /// The error that ended it, if one did: a transport error, or a callback that
    /// panicked.
    pub error: Option<Arc<io::Error>>,
    /// Bytes still in the output that were never sent (discarded by `free`, or left
    /// behind by a write error).
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

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) input_len: AtomicUsize,
    /// Bytes in the output buffer, as last published by the task.
    pub(crate) output_len: AtomicUsize,
    /// Bytes written by handles that the task has not applied yet.
    pub(crate) in_flight: AtomicUsize,
    pub(crate) write_low: AtomicUsize,
    pub(crate) write_high: AtomicUsize,
    read_low: AtomicUsize,
    read_high: AtomicUsize,
    /// Timeouts in nanoseconds; 0 is none.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    pub(crate) enabled: AtomicU8,
    pub(crate) connected: AtomicBool,
    /// Reading stopped for good: EOF or a read error.
    pub(crate) read_closed: AtomicBool,
    /// Writing stopped for good: the write side was shut down, or a write failed.
    pub(crate) write_closed: AtomicBool,
    info: Mutex<TransportInfo>,
    /// Failed connect attempts so far, so `connected()` can stop waiting.
    pub(crate) connect_failures: AtomicUsize,
    dirty: AtomicBool,
    event_seq: AtomicU64,
    /// The bufferevent ended (`closed` in `extra` is set).
    ended: AtomicBool,
    /// What handles need rarely, allocated the first time any of it is set: an idle
    /// connection never pays for it.
    extra: Mutex<Option<Box<Extra>>>,
    pub(crate) notify: Notify,
    /// Tasks inside `wait_until`; with none, the task skips `Notify` (and its lock).
    waiters: AtomicUsize,
}

/// A copy of `error` for handles: `io::Error` is not `Clone`, so kind and message.
pub(crate) fn copy_error(error: &io::Error) -> Arc<io::Error> {
    Arc::new(io::Error::new(error.kind(), error.to_string()))
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
    last_event: Option<EventRecord>,
    closed: Option<Closed>,
    /// A pair's partner or a filter's underlying bufferevent, as weak references
    /// (see `pair.rs` and `filter.rs`); cleared when this bufferevent ends.
    relative: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// What a handle can tell about the transport without asking the task.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TransportInfo {
    #[cfg(unix)]
    pub(crate) fd: Option<std::os::fd::RawFd>,
    pub(crate) local: Option<SocketAddr>,
    pub(crate) peer: Option<SocketAddr>,
}

impl TransportInfo {
    pub(crate) fn of_tcp(stream: &TcpStream) -> Self {
        Self {
            #[cfg(unix)]
            fd: Some(std::os::fd::AsRawFd::as_raw_fd(stream)),
            local: stream.local_addr().ok(),
            peer: stream.peer_addr().ok(),
        }
    }
}

/// Settings handles can read without a round trip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) read_wm: Watermarks,
    pub(crate) write_wm: Watermarks,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
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

    pub(crate) fn set_settings(&self, settings: Settings) {
        let nanos =
            |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.read_low.store(settings.read_wm.low, Ordering::Release);
        self.read_high
            .store(settings.read_wm.high, Ordering::Release);
        self.write_low
            .store(settings.write_wm.low, Ordering::Release);
        self.write_high
            .store(settings.write_wm.high, Ordering::Release);
        self.read_timeout
            .store(nanos(settings.read_timeout), Ordering::Release);
        self.write_timeout
            .store(nanos(settings.write_timeout), Ordering::Release);
        self.dirty.store(true, Ordering::Release);
    }

    pub(crate) fn settings(&self) -> Settings {
        let duration = |cell: &AtomicU64| match cell.load(Ordering::Acquire) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        };
        Settings {
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
        }
    }

    pub(crate) fn set_connect_timeout(&self, timeout: Option<Duration>) {
        self.set_extra(timeout, |x| &mut x.connect_timeout);
    }

    pub(crate) fn connect_timeout(&self) -> Option<Duration> {
        self.extra(|x| x.connect_timeout).flatten()
    }

    #[cfg(feature = "dns")]
    pub(crate) fn set_dns_error(&self, error: Option<super::DnsError>) {
        self.set_extra(error, |x| &mut x.dns_error);
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

    /// Whether an event or a setting changed since the last call.
    pub(crate) fn take_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire) && self.dirty.swap(false, Ordering::AcqRel)
    }

    /// The task moved `n` written bytes from "in flight" into its output buffer.
    pub(crate) fn applied(&self, n: usize) {
        // Count the bytes in the output before they leave "in flight", so a handle never
        // sees them in neither (`publish` later stores the exact output length).
        self.output_len.fetch_add(n, Ordering::AcqRel);
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        self.dirty.store(true, Ordering::Release);
    }

    /// Output bytes as a handle sees them: buffered plus still on the way.
    pub(crate) fn output_total(&self) -> usize {
        // In-flight first: bytes move from it to `output_len` (added there before they
        // are taken off here), so this order can only count a moving byte twice,
        // never miss it.
        let in_flight = self.in_flight.load(Ordering::Acquire);
        in_flight + self.output_len.load(Ordering::Acquire)
    }

    pub(crate) fn new(enabled: Direction) -> Self {
        let shared = Self::default();
        shared.enabled.store(enabled.bits(), Ordering::Relaxed);
        shared
    }

    pub(crate) fn changed(&self) {
        // SeqCst pairs with `wait_until`: a waiter that registered after this load
        // checks its condition after the change was stored, so it cannot miss it.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn record_event(&self, events: Events, error: Option<Arc<io::Error>>) {
        self.extra_mut(|x| x.last_event = Some(EventRecord { events, error }));
        self.event_seq.fetch_add(1, Ordering::AcqRel);
        self.dirty.store(true, Ordering::Release);
    }

    pub(crate) fn event_seq(&self) -> u64 {
        self.event_seq.load(Ordering::Acquire)
    }

    pub(crate) fn last_event(&self) -> Option<EventRecord> {
        self.extra(|x| x.last_event.clone()).flatten()
    }

    pub(crate) fn set_closed(&self, closed: Closed) {
        self.read_closed.store(true, Ordering::Release);
        self.write_closed.store(true, Ordering::Release);
        self.extra_mut(|x| {
            if x.closed.is_none() {
                x.closed = Some(closed);
            }
        });
        self.ended.store(true, Ordering::Release);
        self.changed();
    }

    pub(crate) fn closed(&self) -> Option<Closed> {
        self.extra(|x| x.closed.clone()).flatten()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Waits until `ready` holds or the bufferevent ended; returns whether `ready` held.
    ///
    /// Cancel safe: nothing is consumed while waiting.
    pub(crate) async fn wait_until(&self, mut ready: impl FnMut(&Self) -> bool) -> bool {
        if ready(self) {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let _registered = WaiterGuard(&self.waiters);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a change between the check and the await
            // is not missed.
            notified.as_mut().enable();
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
