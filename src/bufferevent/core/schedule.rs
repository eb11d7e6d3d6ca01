//! Which callbacks are due, coalesced until they run (B-59, B-60), and the order in
//! which they run (B-61).

use std::io;

use crate::bufferevent::events::Events;

/// Callbacks that are due, coalesced: one read, one write, and event bits OR-ed
/// together until delivered.
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// A connect completed: delivered alone, before everything else (B-61).
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

    /// The calls in the order they run: `CONNECTED` alone, then read, then write,
    /// then the other event bits (B-61). `deferred` (B-59) also splits `CONNECTED` off
    /// a mask given to `trigger_event`, as libevent's deferred run does; an immediate
    /// run delivers such a mask whole.
    pub(crate) fn in_order(self, deferred: bool) -> impl Iterator<Item = Callback> {
        let mut events = self.events;
        let split = deferred && events.contains(Events::CONNECTED);
        let connected = (self.connected || split).then(|| {
            events = Events::from_bits(events.bits() & !Events::CONNECTED.bits());
            Callback::Event(Events::CONNECTED, None)
        });
        let read = self.read.then_some(Callback::Read);
        let write = self.write.then_some(Callback::Write);
        let rest = (!events.is_empty()).then_some(Callback::Event(events, self.error));
        connected.into_iter().chain(read).chain(write).chain(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(due: Due, deferred: bool) -> Vec<String> {
        due.in_order(deferred)
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
