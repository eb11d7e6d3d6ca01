//! Input handed to a waiting reader without a round trip to the task.
//!
//! A handle that waits to read (the `AsyncRead` and `Stream` adapters) says how much
//! it wants; the task, as it publishes after a pass, moves up to that much from the
//! front of its input into the takeout and wakes the reader, which then takes it
//! under a lock. A chunk costs one wake-up of the reader, where asking the task
//! (`with`) costs a command, a wake-up of the task and a reply.
//!
//! Bytes in the takeout have left the input as far as the task is concerned (its
//! watermarks and callbacks), as if a reader had removed them; handles still count
//! them in [`input_len`](super::BufferEvent::input_len). A closure a handle runs on
//! the task (`with`, and every command but a write) first puts them back at the front
//! of the input, so it sees the input whole and in order.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

use bytes::Bytes;

use crate::buffer::EvBuffer;

#[derive(Debug, Default)]
pub(crate) struct Takeout {
    buffer: Mutex<EvBuffer>,
    /// Bytes in `buffer`, readable without the lock.
    len: AtomicUsize,
    /// How many bytes a waiting reader asked for; 0: no reader waits.
    wanted: AtomicUsize,
    /// A reader ever asked: until then the task looks for requests without a fence.
    used: AtomicBool,
}

impl Takeout {
    /// Bytes handed over and not yet taken.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EvBuffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- the reader's side ----------------------------------------------------------

    /// Asks the task for up to `max` bytes at its next publish. Returns whether the
    /// task must be woken for it: `input_len` (the task's input as last published)
    /// says bytes already wait there, and the task may not publish again by itself.
    ///
    /// Pairs with [`fill`](Self::fill): each stores before it loads, with a fence
    /// between, so either the task sees the request or the reader sees the bytes.
    ///
    /// The first request always wakes the task: a task that never saw `used` set
    /// skips the fence, and the wake-up (a lock both sides take) shows it the flag.
    pub(crate) fn want(&self, max: usize, input_len: &AtomicUsize) -> bool {
        let first = !self.used.load(Ordering::Relaxed) && !self.used.swap(true, Ordering::AcqRel);
        self.wanted.store(max.max(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        first || input_len.load(Ordering::Relaxed) > 0
    }

    /// Takes everything handed over, if anything, moving its chunks: no copy. All at
    /// once, so that what the task handed over never lingers here, counted as input,
    /// beside a refilled input. (The taker's own buffer and the input together may
    /// then hold up to twice the read high watermark, as a reader's buffer and the
    /// input always could.)
    pub(crate) fn take_everything(&self) -> Option<EvBuffer> {
        if self.len() == 0 {
            return None;
        }
        let mut buffer = self.lock();
        let all = std::mem::take(&mut *buffer);
        self.len.fetch_sub(all.len(), Ordering::AcqRel);
        (!all.is_empty()).then_some(all)
    }

    /// Puts bytes a reader took and did not use back in front of what was handed over
    /// (a dropped adapter's read-ahead): they came first, so whoever reads next, a
    /// handle's `read` here or the task once it restores the takeout, sees them first.
    pub(crate) fn give_back(&self, taken: &mut EvBuffer) {
        if taken.is_empty() {
            return;
        }
        let n = taken.len();
        let mut buffer = self.lock();
        // Never frozen: only this module and the adapters touch these buffers.
        if buffer.prepend_buffer(taken).is_ok() {
            self.len.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Takes up to `max` bytes if what was handed over answers a read of `max` from
    /// the whole input: it holds `max` bytes, or the task's input (`task_len`, as last
    /// published) is empty. `None`: ask the task.
    pub(crate) fn take_up_to(&self, max: usize, task_len: &AtomicUsize) -> Option<Bytes> {
        if self.len() == 0 {
            return None;
        }
        let mut buffer = self.lock();
        if buffer.len() < max && task_len.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.take_locked(&mut buffer, max)
    }

    /// Takes everything handed over if the task's input is empty (`task_len`):
    /// `read_buffer` of the whole input. `None`: ask the task.
    pub(crate) fn take_all(&self, task_len: &AtomicUsize) -> Option<EvBuffer> {
        if self.len() == 0 {
            return None;
        }
        if task_len.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.take_everything()
    }

    fn take_locked(&self, buffer: &mut EvBuffer, max: usize) -> Option<Bytes> {
        // Never frozen: only this module touches the buffer.
        let taken = buffer.remove_bytes(max).ok().filter(|b| !b.is_empty())?;
        self.len.fetch_sub(taken.len(), Ordering::AcqRel);
        Some(taken)
    }

    // ---- the task's side ------------------------------------------------------------

    /// Moves what a waiting reader asked for from the front of `input`, once the
    /// task has published the input's length; how many bytes moved.
    pub(crate) fn fill(&self, input: &mut EvBuffer) -> usize {
        if input.is_empty() || !self.used.load(Ordering::Relaxed) {
            return 0;
        }
        fence(Ordering::SeqCst);
        if self.wanted.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let max = self.wanted.swap(0, Ordering::AcqRel);
        let mut buffer = self.lock();
        // The input's front is frozen only inside a callback, never here.
        let moved = input.remove_buffer(&mut buffer, max).unwrap_or(0);
        self.len.fetch_add(moved, Ordering::AcqRel);
        moved
    }

    /// Puts what was handed over and not taken back at the front of `input`, and
    /// publishes the input's new length (`input_len`) before the takeout's shrinks,
    /// so a handle never sees the bytes in neither.
    pub(crate) fn restore(&self, input: &mut EvBuffer, input_len: &AtomicUsize) {
        if self.len() == 0 {
            return;
        }
        let mut buffer = self.lock();
        let n = buffer.len();
        if input.prepend_buffer(&mut buffer).is_ok() {
            input_len.store(input.len(), Ordering::Release);
            self.len.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// The reader is gone (its adapter dropped, or the input is no longer for
    /// readers): the task hands nothing over until a reader asks again.
    pub(crate) fn withdraw(&self) {
        self.wanted.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(data: &[u8]) -> EvBuffer {
        let mut buf = EvBuffer::new();
        buf.add(data).unwrap();
        buf
    }

    #[test]
    fn only_a_request_moves_bytes_and_only_as_many_as_asked() {
        let takeout = Takeout::default();
        let published = AtomicUsize::new(0);
        let mut task_input = input(b"hello world");
        assert_eq!(takeout.fill(&mut task_input), 0, "nobody asked");
        published.store(task_input.len(), Ordering::Release);
        assert!(
            takeout.want(5, &published),
            "bytes wait in the task's input"
        );
        assert_eq!(takeout.fill(&mut task_input), 5);
        assert_eq!(takeout.fill(&mut task_input), 0, "the request was answered");
        published.store(task_input.len(), Ordering::Release);
        assert_eq!(takeout.len(), 5);
        assert_eq!(
            takeout.take_up_to(10, &published),
            None,
            "the rest is in the task"
        );
        assert_eq!(takeout.take_up_to(5, &published).unwrap(), &b"hello"[..]);
        assert_eq!(takeout.len(), 0);
        assert_eq!(task_input.to_vec().unwrap(), b" world");
    }

    #[test]
    fn what_is_not_taken_goes_back_in_front_of_the_input() {
        let takeout = Takeout::default();
        let published = AtomicUsize::new(3);
        let mut task_input = input(b"abc");
        takeout.want(usize::MAX, &published);
        takeout.fill(&mut task_input);
        task_input.add(b"def").unwrap();
        takeout.restore(&mut task_input, &published);
        assert_eq!(
            published.load(Ordering::Acquire),
            6,
            "republished with the bytes put back"
        );
        assert_eq!(takeout.len(), 0);
        assert_eq!(task_input.to_vec().unwrap(), b"abcdef");
        assert!(takeout.take_everything().is_none());
    }

    #[test]
    fn a_whole_buffer_is_taken_only_when_the_task_holds_nothing() {
        let takeout = Takeout::default();
        let published = AtomicUsize::new(0);
        let mut task_input = input(b"xyz");
        takeout.want(usize::MAX, &published);
        takeout.fill(&mut task_input);
        published.store(1, Ordering::Release);
        assert!(takeout.take_all(&published).is_none());
        published.store(0, Ordering::Release);
        assert_eq!(
            takeout.take_all(&published).unwrap().to_vec().unwrap(),
            b"xyz"
        );
        assert_eq!(takeout.len(), 0);
    }
}
