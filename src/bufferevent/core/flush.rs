//! Flush requests (`bufferevent_flush`) waiting for the transport to carry them out.

use crate::bufferevent::events::{Direction, FlushMode};

/// Flushes asked for and not yet carried out: the strongest mode per direction
/// (flushing twice is flushing once, as hard as the harder of the two).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FlushRequests {
    read: Option<FlushMode>,
    write: Option<FlushMode>,
}

impl FlushRequests {
    pub(crate) fn push(&mut self, (dirs, mode): (Direction, FlushMode)) {
        if dirs.contains(Direction::READ) {
            self.read = self.read.max(Some(mode));
        }
        if dirs.contains(Direction::WRITE) {
            self.write = self.write.max(Some(mode));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.read.is_none() && self.write.is_none()
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Takes the requests: one for both directions when their modes agree.
    pub(crate) fn take(&mut self) -> impl Iterator<Item = (Direction, FlushMode)> + use<> {
        let requests = match (self.read.take(), self.write.take()) {
            (Some(r), Some(w)) if r == w => [Some((Direction::BOTH, r)), None],
            (r, w) => [
                r.map(|m| (Direction::READ, m)),
                w.map(|m| (Direction::WRITE, m)),
            ],
        };
        requests.into_iter().flatten()
    }
}
