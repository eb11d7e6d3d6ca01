//! Read and write timeout bookkeeping: which deadlines are armed. No clock is read
//! here: every call that needs the time is given `now` (the engine passes Tokio's
//! clock, so `tokio::time::pause()` controls timeouts in tests).

use std::time::{Duration, Instant};

use crate::bufferevent::events::Direction;

/// Timeout settings and the deadlines they arm.
///
/// A deadline is armed only while its direction is actively doing I/O: reading
/// enabled and not suspended; writing enabled with something to write. Progress
/// (a read, a write) pushes the deadline back; enabling a direction or changing
/// the timeouts restarts it from now.
///
/// Every bufferevent carries one and most never set a timeout, so the state is boxed
/// the first time one is set: without timeouts this is one null pointer.
#[derive(Debug, Default)]
pub(crate) struct Timeouts {
    set: Option<Box<Armed>>,
}

#[derive(Debug, Default)]
struct Armed {
    read: Option<Duration>,
    write: Option<Duration>,
    read_deadline: Option<Instant>,
    write_deadline: Option<Instant>,
    restart_read: bool,
    restart_write: bool,
    /// `close()` asked to end within this long, from the next update.
    close_after: Option<Duration>,
    /// When a close under way gives up.
    close_deadline: Option<Instant>,
    /// A deadline from the next update that replaces a later one.
    close_sooner: Option<Duration>,
}

/// Longer than 584 years (what handles see, in nanoseconds) counts as 584 years, so
/// deadlines never overflow the clock.
fn capped(d: Duration) -> Duration {
    d.min(Duration::from_nanos(u64::MAX))
}

impl Timeouts {
    /// `None` or zero means no timeout; longer than 584 years (what handles see,
    /// in nanoseconds) counts as 584 years, so deadlines never overflow the clock.
    pub(crate) fn set(&mut self, read: Option<Duration>, write: Option<Duration>) {
        let usable = |d: Option<Duration>| d.filter(|d| !d.is_zero()).map(capped);
        let (read, write) = (usable(read), usable(write));
        let closing = self.set.as_ref().is_some_and(|a| {
            a.close_after.is_some() || a.close_deadline.is_some() || a.close_sooner.is_some()
        });
        if read.is_none() && write.is_none() && !closing {
            self.set = None;
            return;
        }
        let armed = self.set.get_or_insert_with(Box::default);
        armed.read = read;
        armed.write = write;
        self.restart(Direction::BOTH);
    }

    pub(crate) fn get(&self) -> (Option<Duration>, Option<Duration>) {
        self.set
            .as_ref()
            .map_or((None, None), |a| (a.read, a.write))
    }

    pub(crate) fn restart(&mut self, dirs: Direction) {
        if let Some(armed) = self.set.as_mut() {
            armed.restart_read |= dirs.contains(Direction::READ);
            armed.restart_write |= dirs.contains(Direction::WRITE);
        }
    }

    /// Arms or disarms the deadlines for what is active now.
    pub(crate) fn update(&mut self, now: Instant, reading: bool, writing: bool) {
        let Some(a) = self.set.as_mut() else {
            return;
        };
        a.read_deadline = arm(a.read, a.read_deadline, reading, a.restart_read, now);
        a.write_deadline = arm(a.write, a.write_deadline, writing, a.restart_write, now);
        if let Some(after) = a.close_after.take() {
            a.close_deadline = Some(now + after);
        }
        if let Some(after) = a.close_sooner.take() {
            let sooner = now + after;
            a.close_deadline = Some(a.close_deadline.map_or(sooner, |d| d.min(sooner)));
        }
        a.restart_read = false;
        a.restart_write = false;
    }

    /// A close under way must end within `within` from the next update.
    pub(crate) fn close_within(&mut self, within: Duration) {
        let armed = self.set.get_or_insert_with(Box::default);
        if armed.close_deadline.is_none() {
            armed.close_after = Some(capped(within));
        }
    }

    /// A close under way must end within `within` from the next update, or by the
    /// deadline it has if that is sooner: a deadline is only ever brought forward.
    pub(crate) fn close_within_at_most(&mut self, within: Duration) {
        let armed = self.set.get_or_insert_with(Box::default);
        let within = capped(within);
        armed.close_sooner = Some(armed.close_sooner.map_or(within, |w| w.min(within)));
    }

    /// Whether the close deadline has passed by `now`; disarms it.
    pub(crate) fn close_expired(&mut self, now: Instant) -> bool {
        let Some(a) = self.set.as_mut() else {
            return false;
        };
        let expired = a.close_deadline.is_some_and(|d| d <= now);
        if expired {
            a.close_deadline = None;
        }
        expired
    }

    /// Whether any timeout is set: without one, nothing here needs the time.
    pub(crate) fn any(&self) -> bool {
        self.set.is_some()
    }

    /// The earliest armed deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let a = self.set.as_ref()?;
        [a.read_deadline, a.write_deadline, a.close_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Disarms and returns the directions whose deadline has passed; with
    /// `one_at_a_time`, the read one first if both did (the write one is left armed,
    /// already due).
    pub(crate) fn expired(&mut self, now: Instant, one_at_a_time: bool) -> Direction {
        let mut dirs = Direction::empty();
        let Some(a) = self.set.as_mut() else {
            return dirs;
        };
        if a.read_deadline.is_some_and(|d| d <= now) {
            a.read_deadline = None;
            dirs |= Direction::READ;
            if one_at_a_time {
                return dirs;
            }
        }
        if a.write_deadline.is_some_and(|d| d <= now) {
            a.write_deadline = None;
            dirs |= Direction::WRITE;
        }
        dirs
    }
}

fn arm(
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    active: bool,
    restart: bool,
    now: Instant,
) -> Option<Instant> {
    match timeout {
        Some(t) if active => match deadline {
            Some(d) if !restart => Some(d),
            _ => Some(now + t),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armed_only_while_active_and_pushed_back_by_progress() {
        let t0 = Instant::now();
        let mut t = Timeouts::default();
        t.set(Some(Duration::from_millis(100)), Some(Duration::ZERO));
        t.update(t0, false, true);
        assert_eq!(t.next_deadline(), None, "inactive read, no write timeout");
        t.update(t0, true, true);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(100)));
        // Progress pushes the deadline back to a full interval from the next update.
        let t1 = t0 + Duration::from_millis(60);
        t.restart(Direction::READ);
        t.update(t1, true, true);
        let deadline = t.next_deadline().expect("armed");
        assert_eq!(deadline, t1 + Duration::from_millis(100));
        assert!(
            t.expired(deadline - Duration::from_millis(1), false)
                .is_empty()
        );
        assert_eq!(t.expired(deadline, false), Direction::READ);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn an_endless_timeout_arms_a_far_deadline_without_overflow() {
        let t0 = Instant::now();
        let mut t = Timeouts::default();
        t.set(Some(Duration::MAX), None);
        assert_eq!(t.get().0, Some(Duration::from_nanos(u64::MAX)));
        t.update(t0, true, false);
        t.restart(Direction::READ);
        t.update(t0, true, false);
        assert!(t.next_deadline().expect("armed") > t0 + Duration::from_secs(1 << 33));
    }

    #[test]
    fn restart_rearms_the_full_interval() {
        let t0 = Instant::now();
        let mut t = Timeouts::default();
        t.set(None, Some(Duration::from_secs(1)));
        t.update(t0, false, true);
        let later = t0 + Duration::from_millis(500);
        t.update(later, false, true);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(1)));
        t.restart(Direction::WRITE);
        t.update(later, false, true);
        assert_eq!(t.next_deadline(), Some(later + Duration::from_secs(1)));
    }
}

#[cfg(test)]
mod close_tests {
    use super::*;

    #[test]
    fn a_close_deadline_is_armed_once_and_survives_clearing_the_timeouts() {
        let t0 = Instant::now();
        let mut t = Timeouts::default();
        t.close_within(Duration::from_secs(2));
        t.set(None, None);
        t.update(t0, false, false);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(2)));
        t.close_within(Duration::from_secs(60));
        t.update(t0 + Duration::from_secs(1), false, false);
        assert_eq!(
            t.next_deadline(),
            Some(t0 + Duration::from_secs(2)),
            "the first stands"
        );
        assert!(!t.close_expired(t0 + Duration::from_millis(1999)));
        assert!(t.close_expired(t0 + Duration::from_secs(2)));
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_close_deadline_is_only_ever_brought_forward_by_at_most() {
        let t0 = Instant::now();
        let mut t = Timeouts::default();
        t.close_within(Duration::from_secs(30));
        t.update(t0, false, false);
        t.close_within_at_most(Duration::from_secs(60));
        t.update(t0 + Duration::from_secs(1), false, false);
        assert_eq!(
            t.next_deadline(),
            Some(t0 + Duration::from_secs(30)),
            "later: kept"
        );
        t.close_within_at_most(Duration::from_secs(2));
        t.update(t0 + Duration::from_secs(1), false, false);
        assert_eq!(
            t.next_deadline(),
            Some(t0 + Duration::from_secs(3)),
            "sooner: taken"
        );
        // A close with no deadline at all gets one.
        let mut none = Timeouts::default();
        none.close_within_at_most(Duration::from_millis(500));
        none.update(t0, false, false);
        assert_eq!(none.next_deadline(), Some(t0 + Duration::from_millis(500)));
    }
}
