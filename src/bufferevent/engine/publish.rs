//! What handles read: the task publishes cheap facts once a pass changes nothing (once
//! per wake-up, and before it yields), hands input to a waiting adapter, wakes the
//! waiters whose condition changed, and at the end says how the bufferevent ended.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;

use super::Side;
use crate::bufferevent::events::{Direction, Events};
use crate::bufferevent::shared::{Closed, Condition, Knob, Settings, WakeClock};

impl<T, S> Side<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    /// A handle's change of `knob` was applied: handles may see the task's value
    /// again.
    pub(super) fn applied_setting(&mut self, knob: Knob) {
        let settings = Settings::of(&self.inner.core);
        if let Some(shared) = self.shared() {
            shared.applied_setting(knob, &settings);
        }
    }

    /// Publishes the cheap facts handles read, waking the waiters of what changed, and
    /// hands input to a waiting reader. Returns whether another pass is due: it
    /// handed input over while reading waited for the input to shrink.
    pub(super) fn publish(&mut self) -> bool {
        self.publish_handing_over(true)
    }

    /// Sends the answers to `with` still waiting, with what they promise published
    /// first, in the middle of a pass: before the next closure runs, so that what an
    /// answer nobody took had taken is back in front of the input. Hands nothing to
    /// a reader: the closure that follows is to see the whole input.
    pub(super) fn answer_waiting(&mut self) {
        if self.rare.as_ref().is_some_and(|r| !r.replies.is_empty()) {
            self.publish_handing_over(false);
        }
    }

    fn publish_handing_over(&mut self, hand_over: bool) -> bool {
        let Some(remote) = self.remote.as_deref() else {
            // Nobody waits for these any more; dropping them drops what they hold.
            if let Some(rare) = self.rare.as_mut() {
                rare.replies.clear();
            }
            return false;
        };
        let s = &remote.shared;
        let core = &mut self.inner.core;
        // Plain loads and stores: only this task writes these (besides `applied`, which
        // the exact length stored here supersedes), and most calls change nothing.
        // A freed bufferevent is about to end: handles learn that from `is_closed`,
        // not from its halves looking closed a moment earlier.
        let freed = core.freed();
        if store(&s.input_len, self.inner.buffers.input_len())
            | flag(&s.read_closed, !core.read_open() && !freed)
        {
            s.mark(Condition::Input);
        }
        // One look for both rare states.
        if s.has_stalls() {
            if core.enabled().contains(Direction::WRITE) {
                s.set_write_timed_out(false);
            }
            if s.publish_strand() {
                // After the length: a reader that sees it sees the last input too.
                s.mark(Condition::Input);
                s.mark(Condition::Output);
                s.mark(Condition::Event);
            }
        }
        if core.closing() && s.publish_closing() {
            // Its end is near: whoever forwards into it (a `pipe`) stops.
            s.mark(Condition::Event);
        }
        if store(&s.output_len, self.inner.buffers.output_len())
            | flag(&s.write_closed, core.write_closed() && !freed)
        {
            s.mark(Condition::Output);
        }
        if core.enabled().contains(Direction::READ) && s.read_timed_out.load(Ordering::Acquire) {
            s.read_timed_out.store(false, Ordering::Release);
        }
        let settings_changed = core.take_settings_changed();
        if settings_changed || s.enabled() != core.enabled() {
            let knobs: &[Knob] = if settings_changed {
                &Settings::ALL
            } else {
                &[Knob::Enabled]
            };
            let settings = Settings::of(&self.inner.core);
            s.publish_settings(knobs, &settings);
        }
        // Answers to `with` go out only now, so the caller sees lengths that include
        // what its closure did. What an answer nobody took had taken from the input
        // goes back to its front, in the order it was taken.
        if let Some(rare) = self.rare.as_mut()
            && !rare.replies.is_empty()
        {
            let mut returned: Vec<Bytes> = rare.replies.drain(..).filter_map(|r| r()).collect();
            if !returned.is_empty() {
                // Ahead of anything handed over and not taken, which came after.
                if let Some(polled) = s.polled_if_any() {
                    polled
                        .takeout
                        .restore(self.inner.buffers.input(), &s.input_len);
                }
                let input = self.inner.buffers.input();
                while let Some(data) = returned.pop() {
                    input.unread(data);
                }
                s.input_len.store(input.len(), Ordering::Release);
                s.mark(Condition::Input);
            }
        }
        // After the length is published (see `Takeout::want`), and after the answers:
        // what one nobody took gave back is the input's front, and must not come
        // after what a reader is handed.
        let handed = hand_over
            && s.polled_if_any()
                .is_some_and(|p| p.takeout.fill(self.inner.buffers.input()) > 0);
        if handed {
            s.input_len
                .store(self.inner.buffers.input_len(), Ordering::Release);
            s.mark(Condition::Input);
        }
        s.wake_dirty();
        handed && self.inner.core.paused_by_watermark()
    }

    /// Brings the statistics up to date: peaks, lengths, and when bytes last moved.
    /// Once per wake-up of the task (as it goes idle or yields), not per pass: one
    /// clock reading covers every pass of the wake-up, and every engine of the task.
    pub(crate) fn tally(&mut self, clock: &mut WakeClock) {
        if let Some(counters) = self.counters() {
            let (input, output) = self.inner.buffers.lens();
            counters.after_pass(input, output, clock);
        }
    }

    /// Gives back buffer memory once a buffer is empty and data is not streaming, so an
    /// idle connection holds no buffers (as libevent frees drained chains). The pair
    /// itself goes only when no handle can reach this bufferevent (a handle's next
    /// call would take it back at once, and beside what handles share it is small)
    /// and it is not `hosted` (the host's next pass reaches its buffers, whether it
    /// has anything for them or not).
    pub(super) fn release_idle_memory(&mut self, streaming: bool, hosted: bool) {
        let whole = !hosted && self.remote.is_none();
        self.inner.buffers.release_idle_memory(streaming, whole);
    }

    /// Drops what handles share once none is left and none can be made: no handle,
    /// no weak handle (a pair partner's or a filter's), nothing the task hosts or
    /// runs holding a reference. From then on nothing is published, so a bufferevent
    /// run only by its callbacks costs no memory or work for handles.
    pub(super) fn detach_if_unobserved(&mut self) {
        if self.inner.core.in_use() || self.stopping() {
            return;
        }
        let Some(remote) = &self.remote else {
            return;
        };
        let unreferenced = Arc::strong_count(remote) == 1 && Arc::weak_count(remote) == 0;
        // The counts are relaxed loads: the fence orders them before the handle count,
        // so a handle made from the last weak handle before it went is seen.
        std::sync::atomic::fence(Ordering::Acquire);
        // Commands still queued (from a handle made and dropped again since) are
        // applied first: dropping the mailbox now would drop them unapplied.
        if unreferenced && !remote.mailbox.has_handles() && !remote.mailbox.has_queued() {
            tracing::trace!("no handle left: state no longer published");
            self.remote = None;
        }
    }

    /// Publishes how the bufferevent ended; `transport` goes to `into_inner`'s caller.
    /// `beneath` is what the transport still held unsent (a filter's underlying
    /// bufferevents), counted in `Closed::unsent` with the output.
    pub(crate) fn finish(&mut self, transport: Option<T>, beneath: usize) {
        self.report_end(transport, beneath);
        // Reported: nothing is left for `Drop` to report. (The membership's drop
        // tells the listener, as the side's own drop would have.)
        self.remote = None;
        self.member = None;
    }

    /// The task stopped before this bufferevent ended: its runtime shut down, or a
    /// filter or transport panicked. No callback can run any more, so the end is
    /// reported to handles and the listener only: `closed()` gives `ERROR` and `error`,
    /// queued writes and the output count as unsent, and closures still queued are
    /// refused.
    pub(crate) fn stop_abruptly(&mut self, error: io::Error) {
        self.inner.core.record_events(Events::ERROR);
        self.rare().last_error = Some(Arc::new(error));
        self.finish(None, 0);
    }

    fn report_end(&mut self, transport: Option<T>, beneath: usize) {
        self.tally(&mut WakeClock::default());
        // A reader may still take what was handed over, not what is left in the input.
        self.publish();
        // Writes still queued were accepted and will never be sent: they count as
        // unsent, and no longer as in flight.
        let dropped = self.remote.as_ref().map_or(0, |r| {
            let dropped = r.mailbox.close();
            r.shared.applied(dropped);
            dropped
        });
        let unsent = self.inner.buffers.output_len() + beneath + dropped;
        match self.rare.as_mut().and_then(|r| r.give_back.take()) {
            Some(reply) => {
                // The caller may have stopped waiting; the transport then closes.
                drop(reply.send(transport));
            }
            None => drop(transport), // closes it
        }
        tracing::debug!(events = ?self.inner.core.last_events(), unsent, "bufferevent finished");
        if self.inner.core.close_timed_out() {
            let error = io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the close did not finish in time; {unsent} bytes unsent"),
            );
            self.rare().last_error = Some(Arc::new(error));
        }
        let error = self.rare.as_ref().and_then(|r| r.last_error.clone());
        if let Some(member) = &self.member {
            let failed = self.inner.core.last_events().contains(Events::ERROR);
            member.ended(unsent > 0 || failed || self.inner.core.close_timed_out());
        }
        let Some(shared) = self.shared() else {
            return;
        };
        if let Some(member) = &self.member {
            shared.counters.copy_from(&member.counters);
        }
        shared.connected.store(false, Ordering::Release);
        shared.clear_relative();
        shared.set_closed(Closed {
            events: self.inner.core.last_events(),
            error,
            unsent,
        });
    }
}

/// Stores `value` if it differs; whether it did.
fn store(cell: &AtomicUsize, value: usize) -> bool {
    cell.load(Ordering::Acquire) != value && {
        cell.store(value, Ordering::Release);
        true
    }
}

/// Stores `value` if it differs; whether it did.
fn flag(cell: &AtomicBool, value: bool) -> bool {
    cell.load(Ordering::Acquire) != value && {
        cell.store(value, Ordering::Release);
        true
    }
}

impl<T: Send + 'static, S: Send + 'static> Drop for Side<T, S> {
    /// A side dropped before it finished belongs to a task that stopped without
    /// ending it (its runtime shut down, or it hosted this side under an engine that
    /// panicked): its handles and its listener still hear of the end.
    fn drop(&mut self) {
        if self.remote.is_some() || self.member.is_some() {
            // Debug, not error: a runtime shutting down with connections open is
            // ordinary (a panic that caused it was logged where it was caught).
            tracing::debug!("bufferevent stopped with its task");
            self.stop_abruptly(io::Error::other(
                "the bufferevent's task stopped before the bufferevent ended: its runtime \
                 shut down, or a filter or transport on that task panicked",
            ));
        }
    }
}
