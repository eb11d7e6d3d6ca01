//! Which callbacks are due, coalesced until they run, and the order in
//! which they run.

use std::io;

use crate::bufferevent::events::Events;

/// Callbacks that are due, coalesced: one read, one write, and event bits OR-ed
/// together until delivered.
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// A connect completed: delivered alone, before everything else.
    pub(crate) connected: bool,
    pub(crate) read: bool,
    pub(crate) write: bool,
    pub(crate) events: Events,
    /// The error of the most recent `ERROR` event.
    pub(crate) error: Option<io::Error>,
}

/// One callback to run.
#[derive(Debug)]
pub(crate) enum Callback {
    Read,
    Write,
    Event(Events, Option<io::Error>),
}

impl Due {
    pub(crate) fn is_empty(&self) -> bool {
        !self.connected && !self.read && !self.write && self.events.is_empty()
    }

    /// The events due, `CONNECTED` included.
    pub(crate) fn all_events(&self) -> Events {
        if self.connected {
            self.events | Events::CONNECTED
        } else {
            self.events
        }
    }

    /// The next call to make, removed from what is due, in the order they run:
    /// `CONNECTED` alone, then read, then write, then the other event bits.
    /// `deferred` also splits `CONNECTED` off a mask given to
    /// `trigger_event`, as libevent's deferred run does; an immediate run delivers
    /// such a mask whole.
    ///
    /// A method rather than an iterator chain: this runs for every callback, and the
    /// plain branches cost a fraction of the adapters.
    pub(crate) fn pop(&mut self, deferred: bool) -> Option<Callback> {
        if self.connected || (deferred && self.events.contains(Events::CONNECTED)) {
            self.connected = false;
            self.events = Events::from_bits(self.events.bits() & !Events::CONNECTED.bits());
            return Some(Callback::Event(Events::CONNECTED, None));
        }
        if std::mem::take(&mut self.read) {
            return Some(Callback::Read);
        }
        if std::mem::take(&mut self.write) {
            return Some(Callback::Write);
        }
        if self.events.is_empty() {
            return None;
        }
        let events = std::mem::take(&mut self.events);
        Some(Callback::Event(events, self.error.take()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(mut due: Due, deferred: bool) -> Vec<String> {
        std::iter::from_fn(|| due.pop(deferred))
            .map(|c| match c {
                Callback::Read => "read".to_owned(),
                Callback::Write => "write".to_owned(),
                Callback::Event(e, _) => format!("{e:?}"),
            })
            .collect()
    }

    #[test]
    fn connected_first_then_read_write_event() {
        let due = Due {
            connected: true,
            read: true,
            write: true,
            events: Events::READING | Events::EOF,
            error: None,
        };
        assert_eq!(
            names(due, false),
            [
                "Events(CONNECTED)",
                "read",
                "write",
                "Events(READING | EOF)"
            ]
        );
    }

    #[test]
    fn a_triggered_mask_is_split_only_when_deferred() {
        let mask = || Due {
            events: Events::CONNECTED | Events::EOF,
            ..Due::default()
        };
        assert_eq!(names(mask(), false), ["Events(EOF | CONNECTED)"]);
        assert_eq!(names(mask(), true), ["Events(CONNECTED)", "Events(EOF)"]);
    }
}
