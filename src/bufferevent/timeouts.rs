//! Read and write timeout bookkeeping: which deadlines are armed, on the Tokio clock
//! (so `tokio::time::pause()` controls them in tests).

use std::time::Duration;

use tokio::time::Instant;

use super::events::Direction;

/// Timeout settings and the deadlines they arm.
///
/// A deadline is armed only while its direction is actively doing I/O: reading
/// enabled and not suspended; writing enabled with something to write (B-40). Progress
/// (a read, a write) pushes the deadline back (B-42); enabling a direction or changing
/// the timeouts restarts it from now (B-13, B-43).
#[derive(Debug, Default)]
pub(crate) struct Timeouts {
    /// The timeouts in nanoseconds, 0 for none: half the room of `Option<Duration>`,
    /// in a struct every bufferevent carries.
    read: u64,
    write: u64,
    read_deadline: Option<Instant>,
    write_deadline: Option<Instant>,
    restart_read: bool,
    restart_write: bool,
}

impl Timeouts {
    /// `None` or zero means no timeout (B-39).
    pub(crate) fn set(&mut self, read: Option<Duration>, write: Option<Duration>) {
        self.read = nanos(read);
        self.write = nanos(write);
        self.restart(Direction::BOTH);
    }

    pub(crate) fn get(&self) -> (Option<Duration>, Option<Duration>) {
        (duration(self.read), duration(self.write))
    }

    pub(crate) fn restart(&mut self, dirs: Direction) {
        self.restart_read |= dirs.contains(Direction::READ);
        self.restart_write |= dirs.contains(Direction::WRITE);
    }

    /// Arms or disarms the deadlines for what is active now.
    pub(crate) fn update(&mut self, now: Instant, reading: bool, writing: bool) {
        self.read_deadline = arm(
            duration(self.read),
            self.read_deadline,
            reading,
            self.restart_read,
            now,
        );
        self.write_deadline = arm(
            duration(self.write),
            self.write_deadline,
            writing,
            self.restart_write,
            now,
        );
        self.restart_read = false;
        self.restart_write = false;
    }

    /// A read made progress: push the read deadline back. Reads the clock only when a
    /// read timeout is set.
    pub(crate) fn read_progress(&mut self) {
        if let Some(t) = duration(self.read) {
            self.read_deadline = Some(Instant::now() + t);
        }
    }

    /// A write made progress: push the write deadline back.
    pub(crate) fn write_progress(&mut self) {
        if let Some(t) = duration(self.write) {
            self.write_deadline = Some(Instant::now() + t);
        }
    }

    /// The earliest armed deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match (self.read_deadline, self.write_deadline) {
            (Some(r), Some(w)) => Some(r.min(w)),
            (r, w) => r.or(w),
        }
    }

    /// Disarms and returns the directions whose deadline has passed.
    pub(crate) fn expired(&mut self, now: Instant) -> Direction {
        let mut dirs = Direction::empty();
        if self.read_deadline.is_some_and(|d| d <= now) {
            self.read_deadline = None;
            dirs |= Direction::READ;
        }
        if self.write_deadline.is_some_and(|d| d <= now) {
            self.write_deadline = None;
            dirs |= Direction::WRITE;
        }
        dirs
    }
}

/// `None` and zero both mean "no timeout" (B-39); longer than 584 years is forever.
fn nanos(timeout: Option<Duration>) -> u64 {
    timeout.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn duration(nanos: u64) -> Option<Duration> {
    (nanos != 0).then(|| Duration::from_nanos(nanos))
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
        t.read_progress();
        let t1 = Instant::now();
        t.update(t1, true, true);
        let deadline = t.next_deadline().expect("armed");
        assert!(deadline >= t1 && deadline <= t1 + Duration::from_millis(100));
        assert!(t.expired(deadline - Duration::from_millis(1)).is_empty());
        assert_eq!(t.expired(deadline), Direction::READ);
        assert_eq!(t.next_deadline(), None);
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
