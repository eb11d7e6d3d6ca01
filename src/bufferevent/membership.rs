//! A bufferevent's membership of a listener: what the listener needs of each live
//! connection without keeping a handle (which would keep the state handles share, and
//! the work of publishing it, alive for every connection).
//!
//! The task holds the membership; the listener holds a weak reference. The task
//! counts its statistics into it, looks once per wake-up for a close the listener
//! asked for, and dropping it (the task ended) tells the listener how the connection ended.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::time::Duration;

use super::shared::Counters;

/// Who hears of a membership's end: its listener.
pub(crate) trait EndSink: Send + Sync {
    /// The connection in `slot` ended; `cut`: by an error, or with output unsent.
    fn ended(&self, slot: usize, cut: bool);
}

pub(crate) struct Membership {
    pub(crate) counters: Counters,
    /// A close the listener asked for: its deadline, in milliseconds since [`epoch`]
    /// plus one; 0: none. A point in time, not a length: a task that gets to it late
    /// has only what is left of it.
    close: AtomicU64,
    /// The task's waker is in `waker`: registered once, not on every poll.
    registered: AtomicBool,
    waker: Mutex<Option<Waker>>,
    cut: AtomicBool,
    /// Set once by the listener: no closure to allocate per connection.
    sink: OnceLock<(Arc<dyn EndSink>, usize)>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Membership {
    pub(crate) fn new() -> Self {
        Self {
            counters: Counters::default(),
            close: AtomicU64::new(0),
            registered: AtomicBool::new(false),
            waker: Mutex::new(None),
            cut: AtomicBool::new(false),
            sink: OnceLock::new(),
        }
    }

    /// Tells `sink` of the end (the task ended and dropped the membership), as `slot`.
    pub(crate) fn report_to(&self, sink: Arc<dyn EndSink>, slot: usize) {
        let _ = self.sink.set((sink, slot));
    }

    /// Asks the task to close within `within` from now (sending what is queued), and
    /// wakes it.
    pub(crate) fn request_close(&self, within: Duration) {
        let at = now()
            .saturating_duration_since(epoch())
            .saturating_add(within);
        // Stored plus one, so at most `u64::MAX - 1` (half a billion years) fits.
        let ms = u64::try_from(at.as_millis()).map_or(u64::MAX - 1, |ms| ms.min(u64::MAX - 1));
        self.close.store(ms + 1, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// On the task, each pass: registers its waker the first time, and takes a close
    /// request.
    pub(crate) fn poll(&self, waker: &Waker) -> Option<Duration> {
        if !self.registered.load(Ordering::Relaxed) {
            *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
            self.registered.store(true, Ordering::Release);
            // A request made before the waker was in place is seen below.
        }
        if self.close.load(Ordering::Acquire) == 0 {
            return None;
        }
        match self.close.swap(0, Ordering::AcqRel) {
            0 => None,
            ms => {
                let at = Duration::from_millis(ms - 1);
                Some(at.saturating_sub(now().saturating_duration_since(epoch())))
            }
        }
    }

    /// The task moved to another (a filter hosts it): register again.
    pub(crate) fn forget_waker(&self) {
        self.registered.store(false, Ordering::Release);
    }

    /// The task finishes: how it ended.
    pub(crate) fn ended(&self, cut: bool) {
        self.cut.store(cut, Ordering::Release);
    }
}

/// Tokio's clock (which `tokio::time::pause()` controls), as the listener's deadline
/// counts.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// What close deadlines are counted from: the first time one was asked for.
fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(now)
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some((sink, slot)) = self.sink.take() {
            sink.ended(slot, *self.cut.get_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection a listener accepts pays for one; the idle-memory figures in
    /// docs/PERFORMANCE.md depend on it.
    /// A close asked for with a deadline is due at that point in time: a task that
    /// takes the request late has only what is left of the deadline.
    #[tokio::test(start_paused = true)]
    async fn a_close_request_is_a_point_in_time() {
        let member = Membership::new();
        member.request_close(Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(600)).await;
        let waker = futures::task::noop_waker();
        let left = member.poll(&waker).expect("the request");
        assert!(
            left <= Duration::from_millis(400),
            "{left:?} left of a 1 s deadline 600 ms later"
        );
        assert!(left >= Duration::from_millis(399), "{left:?}");
        member.request_close(Duration::from_millis(100));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(member.poll(&waker), Some(Duration::ZERO), "already due");
    }

    #[test]
    fn a_membership_stays_small() {
        let size = size_of::<Membership>();
        assert!(size <= 168, "the membership grew to {size} bytes");
    }
}
