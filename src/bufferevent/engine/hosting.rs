//! Engines run inside another engine's task: a pair's second element, and a
//! filter's underlying bufferevent. The transports see them through the object-safe
//! [`Hosted`] and [`Wrapper`] contracts, implemented here.

use std::io;
use std::sync::atomic::Ordering;
use std::task::Context as TaskContext;

use super::Engine;
use crate::bufferevent::context::Callbacks;
use crate::bufferevent::core::{Due, suspend};
use crate::bufferevent::events::Events;
use crate::bufferevent::info::TransportInfo;
use crate::bufferevent::shared::{Shared, WakeClock};
use crate::bufferevent::transport::filter::FilterLink;
use crate::bufferevent::transport::{Ended, Hosted, Hosting, Io, Link, Wrapper};

impl<L, S> Hosted for Engine<L, S>
where
    L: Link,
    S: Send + 'static,
{
    fn poll_pass(&mut self, cx: &mut TaskContext<'_>, dispatch: bool) -> bool {
        // The host's passes are this engine's wake-ups: what `poll_run` does once per
        // wake-up is done here on each, but for the statistics' tally, which the host
        // does for all its engines as its own wake-up ends (one clock reading).
        self.side.poll_membership(cx);
        if self.pass(cx, dispatch) {
            return true;
        }
        // Quiet, as at the end of `poll_run`'s wake-up: publish, and unless that
        // lifted a watermark pause (another pass), give back memory.
        if self.side.publish() {
            return true;
        }
        self.side.release_idle_memory(self.link.streaming(), true);
        false
    }

    fn io(&mut self) -> Io<'_> {
        self.side.io()
    }

    fn take_due(&mut self) -> Due {
        self.side.take_due()
    }

    fn is_done(&self) -> bool {
        self.is_over()
    }

    fn stranded(&self) -> bool {
        self.link.stranded()
    }

    fn info(&self) -> TransportInfo {
        self.side.shared().map(Shared::info).unwrap_or_default()
    }

    fn take_new_transport(&mut self) -> bool {
        self.link.take_new_transport()
    }

    fn unsent(&mut self) -> usize {
        self.side.inner.buffers.output_len() + self.link.unsent()
    }

    fn unreachable(&self) -> bool {
        self.side.unreachable() && self.link.beyond_unreachable(true)
    }

    fn write_finished(&mut self) -> bool {
        self.side.io().write_finished() && self.link.is_idle()
    }

    fn end_into(self: Box<Self>) -> Ended {
        (*self).end()
    }

    fn pair_io(&mut self) -> Option<Io<'_>> {
        let own = self.side.io();
        self.link.hosted()?.pair_io(own)
    }

    fn partner_gone(&mut self) {
        if let Some(hosted) = self.link.hosted() {
            hosted.partner_gone(&mut self.side.io());
        }
    }

    fn take_wrap(&mut self) -> Option<Box<dyn Wrapper>> {
        self.side.rare.as_mut().and_then(|r| r.wrap.take())
    }

    fn forget_wakers(&mut self) {
        Engine::forget_wakers(self);
    }

    fn publish(&mut self) {
        Engine::publish_all(self);
    }

    fn tally(&mut self, clock: &mut WakeClock) {
        Engine::tally_all(self, clock);
    }

    fn takes_input_early(&mut self) -> bool {
        // Its handles' commands were sent first, and the last handle's going may end
        // it with the input unread: its pass comes first then.
        self.side.no_news() && self.link.hosted().is_some_and(|h| h.lets_input_in_early())
    }

    fn settled(&mut self) -> bool {
        // An ending is found by a pass, as is anything left to do.
        !self.is_over() && Engine::settled(self)
    }

    fn settle(&mut self) -> bool {
        self.side.forget_uncalled_due();
        if self.side.publish() || self.settle_hosted() {
            return true;
        }
        self.side.release_idle_memory(self.link.streaming(), true);
        false
    }

    fn run_alone(self: Box<Self>) -> Hosting {
        Box::pin((*self).resume())
    }

    fn release(&mut self) {
        self.side.inner.core.set_in_use(false);
        self.side.inner.core.unsuspend_read(suspend::FILTER);
        if let Some(shared) = self.side.shared() {
            shared.changed();
        }
    }

    fn take_over(&mut self) {
        let side = &mut self.side;
        side.inner.core.set_in_use(true);
        side.inner.callbacks = Callbacks::default();
        side.inner.core.callbacks_replaced();
        side.inner.core.taken_over();
    }
}

impl<T, U, S> Wrapper for Engine<FilterLink<T, U>, S>
where
    T: Send + 'static,
    U: Send + 'static,
    S: Send + 'static,
{
    fn set_underlying(&mut self, mut underlying: Box<dyn Hosted>) {
        // What the underlying's connects came to before the filter took it over: the
        // filter hears only the events that come after.
        let (connected, failure, unattached) =
            underlying.io().shared.map_or((false, None, false), |s| {
                let connected = s.connected.load(Ordering::Acquire);
                (
                    connected,
                    s.connect_outcome().flatten(),
                    s.unconnected().is_some(),
                )
            });
        let info = self.link.set_underlying(underlying);
        if let Some(shared) = self.side.shared() {
            shared.set_info(info);
            if connected {
                if !shared.connected.load(Ordering::Acquire) {
                    shared.connect_succeeded();
                }
            } else if let Some(error) = failure {
                shared.connect_failed(Some(&*error), unattached);
            }
        }
    }

    fn orphan(&mut self) {
        let error = io::Error::new(
            io::ErrorKind::NotConnected,
            "the underlying bufferevent ended, or already has a filter",
        );
        self.side.inner.core.event(Events::ERROR, Some(error));
        if let Some(shared) = self.side.shared() {
            shared.clear_relative();
            shared.strand();
        }
    }
}
