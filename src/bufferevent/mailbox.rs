//! How handles reach the task: the [`Command`]s they send, and a queue of them that
//! allocates nothing until the first command and counts the handles, so the task
//! learns when the last one is gone. [`Remote`] is what handles hold: this queue and
//! the published state, in one allocation.
//!
//! A Tokio channel would allocate a block of slots for every bufferevent up front;
//! with one bufferevent per connection that is most of an idle connection's memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::context::Context as BevContext;
use super::shared::{Knob, Shared};
use super::transport::{Attach, PendingFilter};
use crate::buffer::EvBuffer;

/// A closure a handle sends to run on the task.
pub(crate) type Job<S> = Box<dyn FnOnce(&mut BevContext<'_, S>) + Send>;

/// A closure whose result goes back to the handle that sent it: it returns the
/// [`Reply`] that sends the result.
pub(crate) type Ask<S> = Box<dyn FnOnce(&mut BevContext<'_, S>) -> Reply + Send>;

/// Sends a result to a waiting handle; run once the task has published its state.
/// Returns the bytes the result took from the input if nobody took the result (the
/// caller gave up meanwhile): the task puts them back at the input's front.
pub(crate) type Reply = Box<dyn FnOnce() -> Option<Bytes> + Send>;

/// A job for the task, sent by a handle.
pub(crate) enum Command<T, S> {
    /// Run a closure with the task's context (most handle operations).
    Run(Job<S>),
    /// Change a setting the handle already shows (see `Shared::request`); once the
    /// closure ran, the task publishes the setting again.
    Set(Knob, Job<S>),
    /// Run a closure and answer with its result (`with`).
    Ask(Ask<S>),
    /// Append to the output; `in_flight` is reduced by its length when applied.
    Write(Bytes),
    /// Move a whole buffer into the output.
    WriteBuffer(EvBuffer),
    /// A new transport, now or once a connect completes.
    Attach(Attach<T>),
    /// Stop and hand the transport back.
    IntoInner(oneshot::Sender<Option<T>>),
    /// Be wrapped by a new filter: the filter takes this bufferevent's place, in its
    /// task, with this bufferevent as its underlying one.
    Wrap(PendingFilter),
}

/// What handles and the task share: the published state and the command queue, in
/// one allocation.
pub(crate) struct Remote<T, S> {
    pub(crate) shared: Shared,
    pub(crate) mailbox: Mailbox<T, S>,
}

impl<T, S> Remote<T, S> {
    /// A remote with one handle.
    pub(crate) fn new(shared: Shared) -> Arc<Self> {
        Arc::new(Self {
            shared,
            mailbox: Mailbox::new(),
        })
    }
}

pub(crate) struct Mailbox<T, S> {
    queue: Mutex<VecDeque<Command<T, S>>>,
    waker: Mutex<Option<Waker>>,
    handles: AtomicUsize,
    /// A waker is stored. It stays stored, woken by reference as often as commands
    /// come, so the task stores it once rather than once per wake-up: a task's waker
    /// stays valid for the task's whole life. (Cleared only when the engine moves to
    /// another task, and when the task ends.)
    registered: AtomicBool,
    /// Commands in the queue, so the task can look without locking.
    queued: AtomicUsize,
    /// The task has ended; commands are refused.
    closed: AtomicBool,
}

impl<T, S> Mailbox<T, S> {
    /// A mailbox with one handle.
    pub(crate) fn new() -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            waker: Mutex::new(None),
            handles: AtomicUsize::new(1),
            queued: AtomicUsize::new(0),
            registered: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues a command for the task; `false` (and the command dropped) if the task
    /// has ended.
    pub(crate) fn send(&self, command: Command<T, S>) -> bool {
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if self.closed.load(Ordering::Acquire) {
                return false;
            }
            queue.push_back(command);
            self.queued.fetch_add(1, Ordering::Release);
        }
        self.wake();
        true
    }

    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops the stored waker: the engine moved to another task, whose first poll
    /// stores its own.
    pub(crate) fn forget_waker(&self) {
        let old = {
            let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            self.registered.store(false, Ordering::Release);
            slot.take()
        };
        drop(old);
    }

    /// Whether any handle is left.
    pub(crate) fn has_handles(&self) -> bool {
        self.handles.load(Ordering::Acquire) > 0
    }

    /// A handle was dropped; the last one wakes the task so it can decide to end.
    pub(crate) fn drop_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.wake();
        }
    }

    /// Wakes the task with no command: it has something to look at in the state it
    /// shares with handles (a reader's request, see `takeout.rs`).
    pub(crate) fn nudge(&self) {
        self.wake();
    }

    fn wake(&self) {
        if let Some(waker) = &*self.waker.lock().unwrap_or_else(|e| e.into_inner()) {
            waker.wake_by_ref();
        }
    }

    /// The next command; `Ready(None)` once no handle is left and the queue is empty.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Command<T, S>>> {
        if let Some(command) = self.pop() {
            return Poll::Ready(Some(command));
        }
        if !self.registered.load(Ordering::Acquire) {
            let mut slot = self.waker.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(cx.waker().clone());
            self.registered.store(true, Ordering::Release);
        }
        // Check again: a command or the last drop may have come before the waker was
        // registered.
        if let Some(command) = self.pop() {
            return Poll::Ready(Some(command));
        }
        if self.handles.load(Ordering::Acquire) == 0 {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Whether the task's waker is stored, so that the next command wakes it.
    pub(crate) fn is_listening(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    /// Whether commands wait in the queue.
    pub(crate) fn has_queued(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0
    }

    fn pop(&self) -> Option<Command<T, S>> {
        if !self.has_queued() {
            return None;
        }
        let command = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        if command.is_some() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
        command
    }

    /// The task ended: refuse further commands and drop the queued ones (their reply
    /// channels tell the waiting handles). Returns the bytes of the writes dropped:
    /// accepted by `write_now` and never sent.
    pub(crate) fn close(&self) -> usize {
        let dropped = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut *queue)
        };
        // Nothing wakes an ended task: let go of it, which handles would otherwise
        // keep allocated for as long as they live.
        self.forget_waker();
        dropped
            .iter()
            .map(|command| match command {
                Command::Write(data) => data.len(),
                Command::WriteBuffer(buf) => buf.len(),
                _ => 0,
            })
            .sum()
    }
}
