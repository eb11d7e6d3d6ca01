//! A bufferevent's membership of a listener: what the listener needs of each live
//! connection without keeping a handle (which would keep the state handles share, and
//! the work of publishing it, alive for every connection).
//!
//! The task holds the membership; the listener holds a weak reference. The task
//! counts its statistics into it, looks once per wake-up for a close the listener
//! asked for, and dropping it (the task ended) tells the listener how the connection ended.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Waker;
use std::time::Duration;

use super::shared::Counters;

/// What runs when the membership ends; receives whether the connection was cut (ended
/// by an error, or with output unsent).
type OnEnd = Box<dyn FnOnce(bool) + Send>;

pub(crate) struct Membership {
    pub(crate) counters: Counters,
    /// A close the listener asked for: its deadline in milliseconds plus one; 0: none.
    close: AtomicU64,
    /// The task's waker is in `waker`: registered once, not on every poll.
    registered: AtomicBool,
    waker: Mutex<Option<Waker>>,
    cut: AtomicBool,
    on_end: Mutex<Option<OnEnd>>,
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
            on_end: Mutex::new(None),
        }
    }

    /// Sets what runs when the task ends (and drops the membership).
    pub(crate) fn on_end(&self, f: impl FnOnce(bool) + Send + 'static) {
        *self.on_end.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
    }

    /// Asks the task to close within `within` (sending what is queued), and wakes it.
    pub(crate) fn request_close(&self, within: Duration) {
        let ms = u64::try_from(within.as_millis()).unwrap_or(u64::MAX - 1);
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
            ms => Some(Duration::from_millis(ms - 1)),
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

impl Drop for Membership {
    fn drop(&mut self) {
        let on_end = self
            .on_end
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(on_end) = on_end {
            on_end(*self.cut.get_mut());
        }
    }
}
