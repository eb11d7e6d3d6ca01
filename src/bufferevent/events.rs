//! Small value types: event flags, I/O directions, flush modes, watermarks.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// What happened, as reported to the event callback (libevent's `BEV_EVENT_*` bits).
///
/// A direction bit ([`READING`](Self::READING) or [`WRITING`](Self::WRITING)) says
/// which side the condition concerns; the values are libevent's, so
/// `Events::READING | Events::EOF` has the bits `0x11`. This type is distinct from
/// [`Direction`], whose `READ` and `WRITE` have other values: libevent confused the two
/// once (issue #359); separate types make that impossible.
///
/// # Examples
///
/// ```
/// use tokio_bufferevent::bufferevent::Events;
///
/// let what = Events::READING | Events::EOF;
/// assert!(what.contains(Events::EOF));
/// assert_eq!(what.bits(), 0x11);
/// assert_eq!(format!("{what:?}"), "Events(READING | EOF)");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Events(u8);

impl Events {
    /// The condition arose while reading (`BEV_EVENT_READING`, 0x01).
    pub const READING: Self = Self(0x01);
    /// The condition arose while writing (`BEV_EVENT_WRITING`, 0x02).
    pub const WRITING: Self = Self(0x02);
    /// The peer closed its side (`BEV_EVENT_EOF`, 0x10).
    pub const EOF: Self = Self(0x10);
    /// An error; the event callback also receives it (`BEV_EVENT_ERROR`, 0x20).
    pub const ERROR: Self = Self(0x20);
    /// A read or write timeout expired (`BEV_EVENT_TIMEOUT`, 0x40).
    pub const TIMEOUT: Self = Self(0x40);
    /// A connect completed (`BEV_EVENT_CONNECTED`, 0x80).
    pub const CONNECTED: Self = Self(0x80);

    /// No flags.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Flags from their libevent bit values; unknown bits are kept, as
    /// `bufferevent_trigger_event` does.
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The libevent bit values.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Events {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Events {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Events, &str); 6] = [
            (Events::READING, "READING"),
            (Events::WRITING, "WRITING"),
            (Events::EOF, "EOF"),
            (Events::ERROR, "ERROR"),
            (Events::TIMEOUT, "TIMEOUT"),
            (Events::CONNECTED, "CONNECTED"),
        ];
        f.write_str("Events(")?;
        let mut rest = self.0;
        let mut first = true;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !flag.0;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{rest:#04x}")?;
        }
        f.write_str(")")
    }
}

/// A set of I/O directions: what `enable`, `disable`, watermarks, `trigger` and
/// `flush` act on (libevent's `EV_READ` 0x02 and `EV_WRITE` 0x04).
///
/// # Examples
///
/// ```
/// use tokio_bufferevent::bufferevent::Direction;
///
/// let both = Direction::READ | Direction::WRITE;
/// assert!(both.contains(Direction::WRITE));
/// assert_eq!(both.bits(), 0x06);
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Direction(u8);

impl Direction {
    /// Reading (`EV_READ`).
    pub const READ: Self = Self(0x02);
    /// Writing (`EV_WRITE`).
    pub const WRITE: Self = Self(0x04);
    /// Both directions.
    pub const BOTH: Self = Self(0x06);

    /// No direction.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The libevent bit values.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Directions from libevent bit values; bits other than 0x02 and 0x04 are dropped.
    pub const fn from_bits_truncate(bits: u8) -> Self {
        Self(bits & 0x06)
    }

    /// Whether every direction of `other` is in the set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl BitOr for Direction {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for Direction {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (self.contains(Self::READ), self.contains(Self::WRITE)) {
            (true, true) => "READ | WRITE",
            (true, false) => "READ",
            (false, true) => "WRITE",
            (false, false) => "",
        };
        write!(f, "Direction({name})")
    }
}

/// Why [`BufferEvent::readable`](super::BufferEvent::readable) stopped waiting.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Readiness {
    /// The input holds what was asked for.
    Ready,
    /// The peer finished (EOF) first.
    Eof,
    /// Reading failed first, with this error.
    Failed(std::sync::Arc<std::io::Error>),
    /// The read timeout expired first (it disabled READ; enable it to read on).
    TimedOut,
    /// The bufferevent ended first.
    Ended,
    /// More was asked for than the read high watermark lets the input hold.
    AboveHighWatermark {
        /// The read high watermark.
        high: usize,
    },
}

impl PartialEq for Readiness {
    /// Equal when of the same kind (two `Failed` compare their errors' kinds).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Failed(a), Self::Failed(b)) => a.kind() == b.kind(),
            (Self::AboveHighWatermark { high: a }, Self::AboveHighWatermark { high: b }) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// How hard [`BufferEvent::flush`](super::BufferEvent::flush) pushes
/// (`enum bufferevent_flush_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlushMode {
    /// Nothing beyond ordinary operation (`BEV_NORMAL`).
    Normal,
    /// Push out what is queued (`BEV_FLUSH`).
    Flush,
    /// Push out what is queued, then signal that no more data follows
    /// (`BEV_FINISHED`); for a socket, shut down the write side once the output is sent.
    Finished,
}

/// A low and a high watermark for one direction, in bytes. 0 means "none" for both.
///
/// Reading: the read callback runs when the input holds at least `low` bytes; reading
/// stops while it holds `high` bytes or more. Writing: the write callback runs when the
/// output drains to `low` bytes or fewer; `high` throttles async writers
/// ([`BufferEvent::write`](super::BufferEvent::write) waits while the output is above
/// it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Watermarks {
    /// The low watermark.
    pub low: usize,
    /// The high watermark; 0 means unlimited.
    pub high: usize,
}

impl Watermarks {
    /// Watermarks `low` and `high` (0 = unlimited).
    pub const fn new(low: usize, high: usize) -> Self {
        Self { low, high }
    }
}
