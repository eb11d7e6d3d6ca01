//! The runtime-free heart of a bufferevent: enabled directions, suspension reasons,
//! watermarks and which callbacks are due. The engine moves bytes and asks this what
//! to do; everything here is plain synchronous state, tested without a runtime.

use std::io;

use super::events::{Direction, Events, Watermarks};

/// Why a direction is suspended (besides being disabled). Bit flags.
pub(crate) mod suspend {
    /// The input reached the read high watermark.
    pub(crate) const WATERMARK: u8 = 0x01;
    /// A filtering bufferevent over this one does not take input now (B-84).
    pub(crate) const FILTER: u8 = 0x02;
}

/// Callbacks that are due, coalesced (B-59, B-60).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// A connect completed: delivered alone, before everything else (B-61).
    pub(crate) connected: bool,
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) events: Events,
    /// The error of the most recent `ERROR` event.
    pub(crate) error: Option<io::Error>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        !self.connected && !self.read && !self.write && self.events.is_empty()
    }
}

/// Direction state, watermarks and due callbacks of one bufferevent.
#[derive(Debug)]
pub(crate) struct Core {
    enabled: Direction,
    read_suspended: u8,
    write_suspended: u8,
    read_wm: Watermarks,
    write_wm: Watermarks,
    pending: Pending,
}

impl Default for Core {
    /// B-1, B-2: WRITE enabled, READ disabled, all watermarks 0.
    fn default() -> Self {
        Self {
            enabled: Direction::WRITE,
            read_suspended: 0,
            write_suspended: 0,
            read_wm: Watermarks::default(),
            write_wm: Watermarks::default(),
            pending: Pending::default(),
        }
    }
}

impl Core {
    pub(crate) fn enabled(&self) -> Direction {
        self.enabled
    }

    pub(crate) fn enable(&mut self, dirs: Direction) {
        self.enabled |= dirs;
    }

    pub(crate) fn disable(&mut self, dirs: Direction) {
        self.enabled = self.enabled.without(dirs);
    }

    /// Reading runs only when enabled and not suspended (B-11, B-12).
    pub(crate) fn reading(&self) -> bool {
        self.enabled.contains(Direction::READ) && self.read_suspended == 0
    }

    pub(crate) fn writing(&self) -> bool {
        self.enabled.contains(Direction::WRITE) && self.write_suspended == 0
    }

    pub(crate) fn suspend_read(&mut self, reason: u8) {
        self.read_suspended |= reason;
    }

    pub(crate) fn unsuspend_read(&mut self, reason: u8) {
        self.read_suspended &= !reason;
    }

    pub(crate) fn read_watermarks(&self) -> Watermarks {
        self.read_wm
    }

    pub(crate) fn write_watermarks(&self) -> Watermarks {
        self.write_wm
    }

    /// Sets watermarks and re-evaluates the high-watermark suspension at once, both
    /// ways (B-21, B-24).
    pub(crate) fn set_watermarks(&mut self, dirs: Direction, wm: Watermarks, input_len: usize) {
        if dirs.contains(Direction::READ) {
            self.read_wm = wm;
            self.input_changed(input_len);
        }
        if dirs.contains(Direction::WRITE) {
            self.write_wm = wm;
        }
    }

    /// How many bytes the next read may ask for: never past the high watermark (B-19),
    /// never more than `max_single_read` (B-23), and 0 when reading must wait.
    pub(crate) fn read_budget(&self, input_len: usize, max_single_read: usize) -> usize {
        if !self.reading() {
            return 0;
        }
        let room = match self.read_wm.high {
            0 => usize::MAX,
            high => high.saturating_sub(input_len),
        };
        room.min(max_single_read)
    }

    /// Re-evaluates the high-watermark suspension after the input changed (B-20).
    pub(crate) fn input_changed(&mut self, input_len: usize) {
        let high = self.read_wm.high;
        if high != 0 && input_len >= high {
            self.suspend_read(suspend::WATERMARK);
        } else {
            self.unsuspend_read(suspend::WATERMARK);
        }
    }

    /// New data arrived: the read callback is due iff the input reached the low
    /// watermark (B-17).
    pub(crate) fn data_read(&mut self, input_len: usize) {
        if input_len >= self.read_wm.low {
            self.pending.read = true;
        }
        self.input_changed(input_len);
    }

    /// Data left: the write callback is due iff the output fell to the low watermark
    /// (B-25).
    pub(crate) fn data_written(&mut self, output_len: usize) {
        if output_len <= self.write_wm.low {
            self.pending.write = true;
        }
    }

    /// Explicit trigger (B-66): honours watermarks unless told not to; ignores
    /// `enabled`.
    pub(crate) fn trigger(
        &mut self,
        dirs: Direction,
        ignore_watermarks: bool,
        input_len: usize,
        output_len: usize,
    ) {
        if dirs.contains(Direction::READ) && (ignore_watermarks || input_len >= self.read_wm.low) {
            self.pending.read = true;
        }
        if dirs.contains(Direction::WRITE) && (ignore_watermarks || output_len <= self.write_wm.low)
        {
            self.pending.write = true;
        }
    }

    #[cfg(test)]
    pub(crate) fn schedule_read(&mut self) {
        self.pending.read = true;
    }

    pub(crate) fn schedule_write(&mut self) {
        self.pending.write = true;
    }

    /// Queues an event; bits accumulate until delivered (B-60). `CONNECTED` on its own
    /// is kept apart so it is delivered alone and first.
    pub(crate) fn event(&mut self, events: Events, error: Option<io::Error>) {
        if events == Events::CONNECTED {
            self.pending.connected = true;
        } else {
            self.pending.events |= events;
        }
        if error.is_some() {
            self.pending.error = error;
        }
    }

    /// Forgets due calls of callbacks that were removed (B-63 divergence).
    pub(crate) fn forget(&mut self, read: bool, write: bool, event: bool) {
        self.pending.read &= !read;
        self.pending.write &= !write;
        if event {
            self.pending.connected = false;
            self.pending.events = Events::empty();
            self.pending.error = None;
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub(crate) fn take_pending(&mut self) -> Pending {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_libevents() {
        let core = Core::default();
        assert_eq!(core.enabled(), Direction::WRITE);
        assert!(!core.reading());
        assert!(core.writing());
        assert_eq!(core.read_watermarks(), Watermarks::new(0, 0));
        assert_eq!(core.write_watermarks(), Watermarks::new(0, 0));
    }

    #[test]
    fn read_budget_never_passes_the_high_watermark() {
        let mut core = Core::default();
        core.enable(Direction::READ);
        assert_eq!(core.read_budget(0, 16384), 16384);
        core.set_watermarks(Direction::READ, Watermarks::new(0, 8), 0);
        assert_eq!(core.read_budget(0, 16384), 8);
        assert_eq!(core.read_budget(5, 16384), 3);
        core.data_read(8);
        assert!(!core.reading(), "suspended at the high watermark");
        assert_eq!(core.read_budget(8, 16384), 0);
        core.input_changed(7);
        assert!(core.reading(), "any removal below the mark resumes");
        assert_eq!(
            core.enabled(),
            Direction::BOTH,
            "suspension is not disablement"
        );
    }

    #[test]
    fn watermark_changes_reevaluate_suspension_both_ways() {
        let mut core = Core::default();
        core.enable(Direction::READ);
        core.set_watermarks(Direction::READ, Watermarks::new(0, 10), 20);
        assert!(!core.reading());
        core.set_watermarks(Direction::READ, Watermarks::new(0, 0), 20);
        assert!(core.reading());
    }

    #[test]
    fn low_watermarks_gate_callbacks() {
        let mut core = Core::default();
        core.set_watermarks(Direction::BOTH, Watermarks::new(10, 0), 0);
        core.data_read(9);
        assert!(!core.take_pending().read);
        core.data_read(10);
        assert!(core.take_pending().read);
        core.data_written(11);
        assert!(!core.take_pending().write);
        core.data_written(10);
        assert!(core.take_pending().write);
    }

    #[test]
    fn events_accumulate_and_forget_clears() {
        let mut core = Core::default();
        core.event(Events::READING | Events::EOF, None);
        core.event(Events::WRITING | Events::TIMEOUT, None);
        core.schedule_read();
        let p = core.take_pending();
        assert_eq!(p.events.bits(), 0x53);
        assert!(p.read);
        core.schedule_read();
        core.forget(true, false, false);
        assert!(!core.has_pending());
    }

    #[test]
    fn trigger_honours_watermarks_unless_ignored() {
        let mut core = Core::default();
        core.set_watermarks(Direction::READ, Watermarks::new(5, 0), 0);
        core.trigger(Direction::READ, false, 4, 0);
        assert!(!core.has_pending());
        core.trigger(Direction::READ, true, 4, 0);
        assert!(core.take_pending().read);
        core.trigger(Direction::WRITE, false, 0, 0);
        assert!(core.take_pending().write);
    }
}
