//! Pairs as users see them: [`Builder::pair`], [`BufferEvent::pair`] and a pair
//! element's [`partner`](BufferEvent::partner). How two elements move bytes is in
//! `transport/pair.rs`.

use tracing::Instrument;

use super::builder::Builder;
use super::engine::Engine;
use super::handle::{BufferEvent, WeakHandle};
use super::info::TransportInfo;
use super::transport::pair::{Pair, PairBack, PairLink};

impl<S: Send + 'static> Builder<S> {
    /// Creates a pair of connected bufferevents (`bufferevent_pair_new`): this
    /// builder's settings for the first, `other`'s for the second.
    ///
    /// Data written to one appears in the other's input without any socket, moving
    /// chunks, never copying bytes. A transfer happens when the writer's WRITE and
    /// the reader's READ are enabled; the reader's read high watermark caps it at the
    /// exact byte, and the rest waits in the writer's output until the reader drains.
    /// Callbacks are always deferred. Flushing with `Flush` or
    /// `Finished` moves everything at once, and `Finished` delivers `EOF` to the
    /// partner. Timeouts are plain timers; a write timeout is armed only
    /// while there is something to send (a divergence, see [`docs/DIVERGENCES.md`](https://github.com/tokio-bufferevent/tokio-bufferevent/blob/main/docs/DIVERGENCES.md)).
    ///
    /// When one element ends, the other's [`partner`](BufferEvent::partner) becomes
    /// `None` and data it writes stays in its output; it hears `READING | EOF` only
    /// if built with [`partner_end_is_eof`](Builder::partner_end_is_eof).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Builder::runtime) was given. Both
    /// elements run on this builder's runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Direction};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let (a, b) = BufferEvent::builder()
    ///     .pair(BufferEvent::builder().enable(Direction::READ));
    /// a.write(&b"ping"[..]).await?;
    /// b.readable(4).await;
    /// assert_eq!(b.read(10).await?, &b"ping"[..]);
    /// assert!(a.partner().is_some());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "bufferevent_pair_new")]
    pub fn pair(self, other: Builder<S>) -> (BufferEvent<Pair, S>, BufferEvent<Pair, S>) {
        // Pairs always defer their callbacks (libevent forces BEV_OPT_DEFER_CALLBACKS).
        let (first, a) = self
            .defer_callbacks(true)
            .assemble::<Pair>(true, TransportInfo::default());
        let other = other.runtime(a.runtime.clone()).defer_callbacks(true);
        let (second, b) = other.assemble::<Pair>(true, TransportInfo::default());
        a.shared().set_relative(Box::new(WeakHandle::of(&b)));
        b.shared().set_relative(Box::new(WeakHandle::of(&a)));
        let hosted = Engine::new(PairBack::new(), second);
        let link = PairLink::new(Box::new(hosted));
        let span = tracing::debug_span!("bufferevent_pair");
        a.runtime
            .spawn(Engine::new(link, first).run().instrument(span));
        (a, b)
    }
}

impl BufferEvent {
    /// A pair of connected bufferevents with default settings
    /// (`bufferevent_pair_new`); see [`Builder::pair`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    #[doc(alias = "bufferevent_pair_new")]
    pub fn pair() -> (BufferEvent<Pair>, BufferEvent<Pair>) {
        Builder::new(()).pair(Builder::new(()))
    }
}

impl<S: Send + 'static> BufferEvent<Pair, S> {
    /// The bufferevent under this one (`bufferevent_get_underlying`): always `None`,
    /// as for libevent's pairs; the item type is uninhabited. A pair element's
    /// counterpart is its [`partner`](Self::partner).
    #[doc(alias = "bufferevent_get_underlying")]
    pub fn underlying(&self) -> Option<std::convert::Infallible> {
        None
    }

    /// The other element of the pair (`bufferevent_pair_get_partner`), or `None` once
    /// it has ended.
    #[doc(alias = "bufferevent_pair_get_partner")]
    pub fn partner(&self) -> Option<BufferEvent<Pair, S>> {
        self.shared()
            .with_relative(|r: &WeakHandle<Pair, S>| r.upgrade())
    }
}
