//! Where a bufferevent is in its life: which halves can still move data, whether a
//! graceful close is under way, and whether it is over.
//!
//! ```text
//!                         EOF, read error,              shutdown done, write error,
//!                         partner's FINISHED            0-byte write, partner gone
//!        ┌─────────────┐  (read: Open → Closed)        (write: * → Closed)
//!        │    Open     │───────────────────────┐
//!        │ read, write │  flush(WRITE, FINISHED) on a stream
//!        └─────────────┘  (write: Open → ShutdownPending; output drains, then shutdown)
//!          │   ▲    │
//!   close()│   │    │ new transport (setfd, connect): both halves Open again
//!          ▼   │    │
//!        ┌─────────────┐
//!        │   Closing   │  as Open, plus: the bufferevent ends once its write half
//!        │ read, write │  is Closed, or it has no transport left
//!        └─────────────┘
//!          │        │
//!          ▼        ▼ free(), a panicking callback, the end of a close
//!        ┌─────────────┐
//!        │    Freed    │  terminal: no I/O, no callback
//!        └─────────────┘
//! ```
//!
//! Closed halves reopen only when the transport is replaced; `Freed` never changes.

/// One direction's half of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadHalf {
    /// Data may still arrive.
    Open,
    /// EOF or an error: nothing more will be read from this transport.
    Closed,
}

/// The write half, which can be asked to end gracefully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteHalf {
    /// Data may still be sent.
    Open,
    /// `flush(WRITE, FINISHED)`: shut the write side down once the output is sent.
    ShutdownPending,
    /// Shut down, or failed: nothing more will be sent on this transport.
    Closed,
}

/// The lifecycle of one bufferevent (see the module docs for the diagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Running.
    Open { read: ReadHalf, write: WriteHalf },
    /// Running until the write half closes: `close()` was called.
    Closing { read: ReadHalf, write: WriteHalf },
    /// Over: freed, closed, or a callback panicked.
    Freed,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::Open {
            read: ReadHalf::Open,
            write: WriteHalf::Open,
        }
    }
}

impl Lifecycle {
    fn halves(&self) -> Option<(ReadHalf, WriteHalf)> {
        match *self {
            Self::Open { read, write } | Self::Closing { read, write } => Some((read, write)),
            Self::Freed => None,
        }
    }

    fn set_halves(&mut self, read: ReadHalf, write: WriteHalf) {
        match self {
            Self::Open { read: r, write: w } | Self::Closing { read: r, write: w } => {
                *r = read;
                *w = write;
            }
            Self::Freed => {}
        }
    }

    /// Whether data may still arrive (a freed bufferevent reads nothing).
    pub(crate) fn read_open(&self) -> bool {
        matches!(self.halves(), Some((ReadHalf::Open, _)))
    }

    /// Whether the write half is closed for good (a freed bufferevent's is).
    pub(crate) fn write_closed(&self) -> bool {
        matches!(self.halves(), None | Some((_, WriteHalf::Closed)))
    }

    /// Whether the write side is to be shut down once the output is sent.
    pub(crate) fn shutdown_pending(&self) -> bool {
        matches!(self.halves(), Some((_, WriteHalf::ShutdownPending)))
    }

    /// Whether `close()` was called and the bufferevent has not ended yet.
    pub(crate) fn closing(&self) -> bool {
        matches!(self, Self::Closing { .. })
    }

    /// Whether the bufferevent is over.
    pub(crate) fn freed(&self) -> bool {
        matches!(self, Self::Freed)
    }

    /// Reading is over: EOF or an error.
    pub(crate) fn close_read(&mut self) {
        if let Some((_, write)) = self.halves() {
            self.set_halves(ReadHalf::Closed, write);
        }
    }

    /// Writing is over: shut down, or failed.
    pub(crate) fn close_write(&mut self) {
        if let Some((read, _)) = self.halves() {
            self.set_halves(read, WriteHalf::Closed);
        }
    }

    /// Asks for the write side to be shut down once the output is sent.
    pub(crate) fn request_shutdown(&mut self) {
        if let Some((read, WriteHalf::Open)) = self.halves() {
            self.set_halves(read, WriteHalf::ShutdownPending);
        }
    }

    /// A new transport: both halves open again. A shutdown asked for (a `FINISHED`
    /// flush, or a close under way) still applies to the new transport.
    pub(crate) fn reopen(&mut self) {
        let Some((_, write)) = self.halves() else {
            return;
        };
        let write = if write == WriteHalf::ShutdownPending || self.closing() {
            WriteHalf::ShutdownPending
        } else {
            WriteHalf::Open
        };
        self.set_halves(ReadHalf::Open, write);
    }

    /// `close()`: end once the write half closes.
    pub(crate) fn close(&mut self) {
        if let Self::Open { read, write } = *self {
            *self = Self::Closing { read, write };
        }
    }

    /// `free()`: over, at once.
    pub(crate) fn free(&mut self) {
        *self = Self::Freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_close_and_reopen_with_a_new_transport() {
        let mut life = Lifecycle::default();
        assert!(life.read_open() && !life.write_closed());
        life.close_read();
        assert!(!life.read_open());
        life.request_shutdown();
        assert!(life.shutdown_pending());
        life.close_write();
        assert!(life.write_closed() && !life.shutdown_pending());
        life.request_shutdown();
        assert!(life.write_closed(), "a closed half stays closed");
        life.reopen();
        assert_eq!(life, Lifecycle::default());
        life.request_shutdown();
        life.reopen();
        assert!(
            life.shutdown_pending(),
            "a shutdown asked for outlives the transport"
        );
    }

    #[test]
    fn closing_keeps_the_halves_and_freed_is_terminal() {
        let mut life = Lifecycle::default();
        life.close_read();
        life.close();
        assert!(life.closing() && !life.read_open());
        life.close_write();
        assert!(life.closing() && life.write_closed());
        life.free();
        assert!(life.freed() && life.write_closed() && !life.read_open());
        life.reopen();
        life.close();
        assert!(life.freed(), "nothing leaves Freed");
    }
}
