//! What an accept error means for the accept loop, and how long it waits before the
//! next attempt.

use std::io;
use std::time::Duration;

/// The first pause after a resource error.
pub(crate) const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause: a listener out of descriptors retries at least this often.
pub(crate) const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// What an accept error says about the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AcceptFailure {
    /// One connection failed before it was accepted (the peer reset it, a protocol
    /// error, a firewall): the next accept may succeed at once.
    Connection,
    /// The process or the system ran out of something (descriptors, buffers,
    /// memory): accepting again at once would fail the same way, so wait.
    Resources,
    /// Anything else: reported, and waited on as a resource error, so that an
    /// unknown error can never make the loop spin.
    Other,
}

impl AcceptFailure {
    pub(crate) fn of(error: &io::Error) -> Self {
        use io::ErrorKind::*;
        match error.kind() {
            ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | HostUnreachable
            | NetworkUnreachable | PermissionDenied | TimedOut => return Self::Connection,
            OutOfMemory => return Self::Resources,
            _ => {}
        }
        match error.raw_os_error() {
            Some(code) if errno::CONNECTION.contains(&code) => Self::Connection,
            Some(code) if errno::RESOURCES.contains(&code) => Self::Resources,
            _ => Self::Other,
        }
    }
}

/// The error numbers `accept(2)` returns that `io::ErrorKind` does not name.
#[cfg(target_os = "linux")]
mod errno {
    /// EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET, EOPNOTSUPP, ENETDOWN.
    pub(super) const CONNECTION: [i32; 6] = [71, 92, 112, 64, 95, 100];
    /// ENFILE, EMFILE, ENOBUFS, ENOMEM.
    pub(super) const RESOURCES: [i32; 4] = [23, 24, 105, 12];
}

/// The error numbers `accept(2)` returns that `io::ErrorKind` does not name.
#[cfg(all(unix, not(target_os = "linux")))]
mod errno {
    /// EPROTO, ENOPROTOOPT, EHOSTDOWN, EOPNOTSUPP, ENETDOWN (BSD numbering).
    pub(super) const CONNECTION: [i32; 5] = [100, 42, 64, 45, 50];
    /// ENFILE, EMFILE, ENOBUFS, ENOMEM.
    pub(super) const RESOURCES: [i32; 4] = [23, 24, 55, 12];
}

#[cfg(not(unix))]
mod errno {
    pub(super) const CONNECTION: [i32; 0] = [];
    pub(super) const RESOURCES: [i32; 0] = [];
}

/// Exponential back-off between failed accepts: 1 ms, doubling to 1 s, and back to
/// 1 ms after a success.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// The pause before the next attempt, after a failure.
    pub(crate) fn fail(&mut self) -> Duration {
        let pause = self.next.unwrap_or(FIRST_PAUSE);
        self.next = Some((pause * 2).min(LONGEST_PAUSE));
        pause
    }

    /// An accept succeeded.
    pub(crate) fn succeed(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_to_one_second_and_reset_on_success() {
        let mut backoff = Backoff::default();
        let pauses: Vec<_> = (0..12).map(|_| backoff.fail().as_millis()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000]);
        backoff.succeed();
        assert_eq!(backoff.fail(), FIRST_PAUSE);
    }

    #[test]
    fn errors_are_sorted_by_what_they_say_about_the_listener() {
        let kind = |k| AcceptFailure::of(&io::Error::from(k));
        assert_eq!(
            kind(io::ErrorKind::ConnectionAborted),
            AcceptFailure::Connection
        );
        assert_eq!(kind(io::ErrorKind::OutOfMemory), AcceptFailure::Resources);
        assert_eq!(kind(io::ErrorKind::InvalidInput), AcceptFailure::Other);
        #[cfg(target_os = "linux")]
        {
            let os = |code| AcceptFailure::of(&io::Error::from_raw_os_error(code));
            assert_eq!(os(24), AcceptFailure::Resources, "EMFILE");
            assert_eq!(os(23), AcceptFailure::Resources, "ENFILE");
            assert_eq!(os(105), AcceptFailure::Resources, "ENOBUFS");
            assert_eq!(os(71), AcceptFailure::Connection, "EPROTO");
            assert_eq!(os(9), AcceptFailure::Other, "EBADF");
        }
    }
}
