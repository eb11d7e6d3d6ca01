//! Filters as users see them: [`Builder::filter`], [`BufferEvent::filter`] and a
//! filter's [`underlying`](BufferEvent::underlying) bufferevent. How a filter moves
//! bytes is in `transport/filter.rs`.

use super::builder::Builder;
use super::engine::Engine;
use super::handle::{BufferEvent, WeakHandle};
use super::mailbox::Command;
use super::transport::PendingFilter;
use super::transport::filter::{Filter, FilterLink, Filtered};

impl<S: Send + 'static> Builder<S> {
    /// Creates a filtering bufferevent over `underlying` (`bufferevent_filter_new`):
    /// bytes the underlying receives pass through `input` into this bufferevent's
    /// input; bytes written here pass through `output` into the underlying's output.
    ///
    /// The filter takes the underlying over: the underlying's callbacks are
    /// removed and its events are delivered to this bufferevent's event callback (an
    /// end of reading the input filter already reported is not reported again, and
    /// the input filter's own errors are reported too); both its directions are
    /// enabled, and it reads only while this
    /// bufferevent's READ is enabled and under its high watermark, so a slow reader
    /// holds the peer back. The underlying's handle keeps working, and
    /// [`underlying`](BufferEvent::underlying) returns one.
    ///
    /// Ordinary operation, as in libevent: `dst_limit` is the room under the
    /// destination's high watermark (the filter's read high watermark for input; the
    /// underlying's write high watermark for output); the output filter waits while
    /// the underlying's output is at its write high watermark and resumes once it
    /// drains to its write low watermark; data left in the underlying's input is
    /// processed as soon as this bufferevent's input drains. Beyond libevent: EOF on
    /// the underlying runs the input filter with `Finished` before the event is
    /// delivered, so a decoder emits its tail; re-enabling WRITE processes output
    /// queued meanwhile; a filter's error is reported (see [`FilterResult`](super::FilterResult)).
    ///
    /// When this bufferevent ends, the underlying is freed too unless
    /// [`close_underlying(false)`](Self::close_underlying) was set; then it runs on
    /// alone, without callbacks, reading as enabled.
    ///
    /// The filter runs in the underlying's task, on the underlying's runtime: a
    /// [`runtime`](Builder::runtime) set on this builder is not used.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Direction, PassThrough};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let (a, b) = BufferEvent::pair();
    /// b.enable(Direction::READ);
    /// let filtered = BufferEvent::filter(a, PassThrough, PassThrough);
    /// filtered.write(&b"through the filter"[..]).await?;
    /// b.readable(18).await;
    /// assert_eq!(b.read(100).await?, &b"through the filter"[..]);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "bufferevent_filter_new")]
    pub fn filter<T, U>(
        self,
        underlying: BufferEvent<T, U>,
        input: impl Filter,
        output: impl Filter,
    ) -> BufferEvent<Filtered<T, U>, S>
    where
        T: Send + 'static,
        U: Send + 'static,
    {
        let close_underlying = self.close_underlying;
        let info = underlying.shared().info();
        let connected = underlying.is_connected();
        let (side, bev) = self
            .runtime(underlying.runtime.clone())
            .assemble::<Filtered<T, U>>(connected, info);
        bev.shared()
            .set_relative(Box::new(WeakHandle::of(&underlying)));
        bev.shared().set_filtering();
        let link = FilterLink::<T, U>::new(input, output, close_underlying);
        // The filter takes the underlying's place in the underlying's task: it is
        // sent there, and whoever runs the underlying puts the filter in its stead.
        let engine = Box::new(Engine::new(link, side));
        underlying.send(Command::Wrap(PendingFilter::new(
            engine,
            bev.runtime.clone(),
        )));
        bev
    }
}

impl BufferEvent {
    /// A filtering bufferevent with default settings over `underlying`
    /// (`bufferevent_filter_new`); see [`Builder::filter`]. It runs on the
    /// underlying's runtime.
    #[doc(alias = "bufferevent_filter_new")]
    pub fn filter<T, U>(
        underlying: BufferEvent<T, U>,
        input: impl Filter,
        output: impl Filter,
    ) -> BufferEvent<Filtered<T, U>>
    where
        T: Send + 'static,
        U: Send + 'static,
    {
        Builder::new(()).filter(underlying, input, output)
    }
}

impl<T, U, S> BufferEvent<Filtered<T, U>, S>
where
    T: Send + 'static,
    U: Send + 'static,
    S: Send + 'static,
{
    /// The bufferevent this one filters (`bufferevent_get_underlying`), or `None` once
    /// either has ended.
    #[doc(alias = "bufferevent_get_underlying")]
    pub fn underlying(&self) -> Option<BufferEvent<T, U>> {
        self.shared()
            .with_relative(|r: &WeakHandle<T, U>| r.upgrade())
    }
}
