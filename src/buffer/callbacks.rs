//! Buffer callbacks: functions told how the length changed (`evbuffer_add_cb`).

use super::{EvBuffer, EvBufferError};

/// What changed since callbacks last ran (`struct evbuffer_cb_info`).
///
/// Every callback of one invocation receives the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallbackInfo {
    /// The buffer's length when callbacks last ran (or when the first callback was
    /// added).
    pub orig_size: usize,
    /// Bytes added since then.
    pub n_added: usize,
    /// Bytes removed since then.
    pub n_deleted: usize,
}

/// Identifies a callback added with [`EvBuffer::add_cb`] (`struct evbuffer_cb_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type Callback = Box<dyn FnMut(&mut EvBuffer, &CallbackInfo) + Send>;

struct Entry {
    id: CallbackId,
    enabled: bool,
    /// `None` while the callback is running.
    callback: Option<Callback>,
}

/// A buffer's callbacks and the change counters they report.
pub(super) struct Callbacks {
    /// In order of registration; they run newest first.
    entries: Vec<Entry>,
    next_id: u64,
    orig_size: usize,
    n_added: usize,
    n_deleted: usize,
    deferred: bool,
    running: bool,
}

impl Callbacks {
    pub(super) fn count(&self) -> usize {
        self.entries.len()
    }

    fn position(&self, id: CallbackId) -> Option<usize> {
        self.entries.iter().position(|e| e.id == id)
    }
}

impl EvBuffer {
    /// Adds a callback that runs whenever the buffer's length changes
    /// (`evbuffer_add_cb`), and returns its id. New callbacks start enabled.
    ///
    /// Callbacks run right after each operation that changed the length (never for
    /// operations that changed nothing), newest callback first, each with the same
    /// [`CallbackInfo`]: the length at the previous invocation and the bytes added and
    /// removed since. The counters restart at every invocation, also for disabled
    /// callbacks.
    ///
    /// A callback receives the buffer and may modify it, add callbacks, and remove or
    /// disable any callback, itself included. Changes it makes are reported in a new
    /// round of callbacks once the current round is over, rather than by re-entering
    /// the callbacks from inside the one running, so no chain of callbacks can grow the
    /// stack. With [`defer_callbacks`](Self::defer_callbacks) they run only when
    /// [`run_deferred_callbacks`](Self::run_deferred_callbacks) is called.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&log);
    /// let mut buf = EvBuffer::new();
    /// buf.add_cb(move |_, info| {
    ///     seen.lock().unwrap().push((info.orig_size, info.n_added, info.n_deleted))
    /// });
    /// buf.add(b"hello")?;
    /// buf.drain(2)?;
    /// assert_eq!(*log.lock().unwrap(), [(0, 5, 0), (5, 0, 2)]);
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_add_cb")]
    pub fn add_cb<F>(&mut self, callback: F) -> CallbackId
    where
        F: FnMut(&mut EvBuffer, &CallbackInfo) + Send + 'static,
    {
        let cbs = self.callbacks_mut();
        let id = CallbackId(cbs.next_id);
        cbs.next_id += 1;
        cbs.entries.push(Entry {
            id,
            enabled: true,
            callback: Some(Box::new(callback)),
        });
        id
    }

    /// Removes a callback (`evbuffer_remove_cb_entry`). A callback may remove itself
    /// while it runs.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::CallbackNotFound`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if no callback has this id.
    #[doc(alias = "evbuffer_remove_cb")]
    #[doc(alias = "evbuffer_remove_cb_entry")]
    pub fn remove_cb(&mut self, id: CallbackId) -> Result<(), EvBufferError> {
        let cbs = self
            .callbacks
            .as_mut()
            .ok_or(EvBufferError::CallbackNotFound)?;
        let at = cbs.position(id).ok_or(EvBufferError::CallbackNotFound)?;
        cbs.entries.remove(at);
        Ok(())
    }

    /// Enables or disables a callback (`evbuffer_cb_set_flags` /
    /// `evbuffer_cb_clear_flags` with `EVBUFFER_CB_ENABLED`). A disabled callback
    /// misses the changes made while it was disabled.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::CallbackNotFound`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) if no callback has this id.
    #[doc(alias = "evbuffer_cb_clear_flags")]
    #[doc(alias = "evbuffer_cb_set_flags")]
    pub fn set_cb_enabled(&mut self, id: CallbackId, enabled: bool) -> Result<(), EvBufferError> {
        let cbs = self
            .callbacks
            .as_mut()
            .ok_or(EvBufferError::CallbackNotFound)?;
        let at = cbs.position(id).ok_or(EvBufferError::CallbackNotFound)?;
        cbs.entries[at].enabled = enabled;
        Ok(())
    }

    /// Removes every callback: the effect of libevent's obsolete
    /// `evbuffer_setcb(buf, NULL, NULL)`.
    #[doc(alias = "evbuffer_setcb")]
    pub fn clear_callbacks(&mut self) {
        if let Some(cbs) = self.callbacks.as_mut() {
            cbs.entries.clear();
        }
    }

    /// Chooses whether callbacks run right after each change (the default) or only
    /// when [`run_deferred_callbacks`](Self::run_deferred_callbacks) is called, with the
    /// counters accumulated across all changes since the last run
    /// (`evbuffer_defer_callbacks`). Changes made while no callback is registered are
    /// not reported to callbacks added later, as in libevent.
    #[doc(alias = "evbuffer_defer_callbacks")]
    pub fn defer_callbacks(&mut self, deferred: bool) {
        self.callbacks_mut().deferred = deferred;
    }

    /// The callback table, created on first use so that buffers without callbacks pay
    /// for none.
    fn callbacks_mut(&mut self) -> &mut Callbacks {
        let len = self.len;
        self.callbacks.get_or_insert_with(|| {
            Box::new(Callbacks {
                entries: Vec::new(),
                next_id: 0,
                orig_size: len,
                n_added: 0,
                n_deleted: 0,
                deferred: false,
                running: false,
            })
        })
    }

    /// Runs the callbacks now if the length changed since they last ran. Use it with
    /// [`defer_callbacks`](Self::defer_callbacks); without deferral there is never
    /// anything pending.
    pub fn run_deferred_callbacks(&mut self) {
        self.run_callbacks();
    }

    /// Records a modification: makes positions stale and reports the change.
    #[inline]
    pub(super) fn changed(&mut self, added: usize, deleted: usize) {
        self.generation += 1;
        if let Some(cbs) = self.callbacks.as_deref_mut() {
            if cbs.entries.is_empty() {
                // As libevent: with no callback, nothing accumulates for a later one.
                cbs.orig_size = self.len;
                cbs.n_added = 0;
                cbs.n_deleted = 0;
                return;
            }
            cbs.n_added += added;
            cbs.n_deleted += deleted;
            if !cbs.deferred && !cbs.running {
                self.run_callbacks();
            }
        }
    }

    /// Runs rounds of callbacks until a round makes no further change.
    fn run_callbacks(&mut self) {
        loop {
            let len = self.len;
            let Some(cbs) = self.callbacks.as_deref_mut() else {
                return;
            };
            if cbs.running || (cbs.n_added == 0 && cbs.n_deleted == 0) {
                return;
            }
            let info = CallbackInfo {
                orig_size: cbs.orig_size,
                n_added: cbs.n_added,
                n_deleted: cbs.n_deleted,
            };
            cbs.orig_size = len;
            cbs.n_added = 0;
            cbs.n_deleted = 0;
            cbs.running = true;
            let round: Vec<CallbackId> = cbs
                .entries
                .iter()
                .rev()
                .filter(|e| e.enabled)
                .map(|e| e.id)
                .collect();
            for id in round {
                let Some(mut callback) = self.take_callback(id) else {
                    continue; // removed or disabled by an earlier callback of this round
                };
                callback(self, &info);
                if let Some(cbs) = self.callbacks.as_deref_mut()
                    && let Some(at) = cbs.position(id)
                {
                    cbs.entries[at].callback = Some(callback);
                }
            }
            if let Some(cbs) = self.callbacks.as_deref_mut() {
                cbs.running = false;
            }
        }
    }

    fn take_callback(&mut self, id: CallbackId) -> Option<Callback> {
        let cbs = self.callbacks.as_deref_mut()?;
        let at = cbs.position(id)?;
        let entry = &mut cbs.entries[at];
        if entry.enabled {
            entry.callback.take()
        } else {
            None
        }
    }
}
