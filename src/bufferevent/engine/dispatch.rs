//! Running user code on the task: the callbacks the core says are due, and the
//! closures handles send. A panic in either stops there: the bufferevent ends with
//! an error that `closed()` reports, and nothing else on the thread is disturbed.

use std::any::Any;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::Side;
use crate::bufferevent::context::{Context, DataCallback, Inner};
use crate::bufferevent::core::{Callback, Due, running};
use crate::bufferevent::events::Events;
use crate::bufferevent::shared::CallbackKind;

impl<T, S> Side<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    /// Runs the callbacks that are due, once each, in the core's order.
    /// Callbacks these callbacks schedule run in a later round, so a callback that
    /// keeps triggering itself cannot monopolize the thread. Returns whether anything
    /// happened: a callback ran or an event was delivered. (A read or write that
    /// falls due with no callback to run changes nothing, and is not worth another
    /// pass.)
    pub(super) fn dispatch(&mut self) -> bool {
        if !self.inner.core.has_due() || self.inner.core.freed() {
            return false;
        }
        let mut due = self.inner.core.take_due();
        let deferred = self.inner.core.defers_callbacks();
        let mut happened = false;
        while let Some(callback) = due.pop(deferred) {
            match callback {
                Callback::Read => happened |= self.call_data(true),
                Callback::Write => happened |= self.call_data(false),
                Callback::Event(events, error) => {
                    let error = error.map(Arc::new);
                    self.record_event(events, error.clone());
                    self.call_event(events, error);
                    happened = true;
                }
            }
        }
        happened
    }

    /// The due callbacks, for a host that runs its own code in their place (a filter
    /// over this bufferevent); their events count as delivered.
    pub(super) fn take_due(&mut self) -> Due {
        let due = self.inner.core.take_due();
        let events = due.all_events();
        if !events.is_empty() {
            let error = due
                .error
                .as_ref()
                .map(crate::bufferevent::shared::copy_error);
            self.record_event(events, error);
        }
        due
    }

    /// Remembers a delivered event for `closed()`, `last_event()` and `next_event()`.
    fn record_event(&mut self, events: Events, error: Option<Arc<io::Error>>) {
        self.inner.core.record_events(events);
        if error.is_some() {
            self.rare().last_error.clone_from(&error);
        }
        if let Some(shared) = self.shared() {
            shared.record_event(events, error);
        }
    }

    /// Runs the read (`read == true`) or write callback; whether there was one to run.
    fn call_data(&mut self, read: bool) -> bool {
        if self.inner.core.freed() {
            return false;
        }
        fn slot<S>(inner: &mut Inner<S>, read: bool) -> &mut Option<DataCallback<S>> {
            if read {
                &mut inner.callbacks.read
            } else {
                &mut inner.callbacks.write
            }
        }
        let Some(mut callback) = slot(&mut self.inner, read).take() else {
            return false;
        };
        self.inner
            .core
            .callback_starts(if read { running::READ } else { running::WRITE });
        if let Some(counters) = self.counters() {
            let kind = if read {
                CallbackKind::Read
            } else {
                CallbackKind::Write
            };
            counters.callback(kind);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            callback(&mut Context {
                inner: &mut self.inner,
            })
        }));
        // A callback that replaced the callbacks is not put back over its replacement.
        if !self.inner.core.replaced_since_callback_started() {
            *slot(&mut self.inner, read) = Some(callback);
        }
        self.inner.core.callback_ends();
        if let Err(panic) = outcome {
            let name = if read {
                "the read callback"
            } else {
                "the write callback"
            };
            self.panicked(name, panic);
        }
        true
    }

    fn call_event(&mut self, events: Events, error: Option<Arc<io::Error>>) {
        if self.inner.core.freed() {
            return;
        }
        let Some(mut callback) = self.inner.callbacks.event.take() else {
            return;
        };
        self.inner.core.callback_starts(running::EVENT);
        if let Some(counters) = self.counters() {
            counters.callback(CallbackKind::Event);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            callback(
                &mut Context {
                    inner: &mut self.inner,
                },
                events,
                error.as_deref(),
            )
        }));
        if !self.inner.core.replaced_since_callback_started() {
            self.inner.callbacks.event = Some(callback);
        }
        self.inner.core.callback_ends();
        if let Err(panic) = outcome {
            self.panicked("the event callback", panic);
        }
    }

    /// Runs a closure a handle sent; a panic in it ends the bufferevent as a panicking
    /// callback does (`what` names it in the error).
    pub(super) fn run_closure<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Context<'_, S>) -> R,
    ) -> Option<R> {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            f(&mut Context {
                inner: &mut self.inner,
            })
        }));
        match outcome {
            Ok(result) => Some(result),
            Err(panic) => {
                self.panicked(what, panic);
                None
            }
        }
    }

    /// User code panicked: the panic stops here, and this bufferevent ends with an
    /// error that `closed()` reports.
    fn panicked(&mut self, what: &str, payload: Box<dyn Any + Send>) {
        let error = Arc::new(panic_error(what, &*payload));
        tracing::error!(%error, "bufferevent ends");
        self.record_event(Events::ERROR, Some(error));
        // Reset, not closed: the peer must not take this for an answered request.
        self.inner.core.abort();
    }
}

/// The error a panic of `what` ends a bufferevent with, its message kept.
pub(crate) fn panic_error(what: &str, payload: &(dyn Any + Send)) -> io::Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    io::Error::other(format!("{what} panicked: {message}"))
}
