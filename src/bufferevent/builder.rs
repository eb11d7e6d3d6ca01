//! [`Builder`]: typed settings for a new bufferevent, with stated defaults.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tracing::Instrument;

use super::buffers::Buffers;
use super::context::{Callbacks, Context, Inner};
use super::core::ratelim::RateLimit;
use super::core::{self, Core};
use super::engine::{Engine, Side};
use super::events::{Direction, Events, Watermarks};
use super::handle::BufferEvent;
use super::info::TransportInfo;
use super::mailbox::Remote;
use super::membership::Membership;
use super::shared::{Settings, Shared};
use super::transport::Transport;
use super::transport::stream::StreamLink;

/// The default of `max_single_read` and `max_single_write`, as libevent's.
pub const DEFAULT_MAX_SINGLE_IO: usize = core::DEFAULT_MAX_SINGLE_IO;

/// Settings for a new [`BufferEvent`] (`bufferevent_socket_new` plus the calls made
/// right after it).
///
/// Setters take and return the builder by value, because it owns the callbacks and the
/// user state; a terminal method ([`tcp`](Self::tcp), [`stream`](Self::stream),
/// [`unconnected`](Self::unconnected)) spawns the bufferevent's task.
///
/// | setting | default |
/// |---|---|
/// | enabled directions | WRITE only |
/// | read and write watermarks | 0, 0 |
/// | read and write timeouts | none |
/// | `max_single_read`, `max_single_write` | 16 KiB |
/// | deferred callbacks | off |
/// | connect timeout | none |
/// | close timeout | 30 s |
/// | rate limit | none |
/// | `partner_end_is_eof` (pairs, filters) | off |
/// | `close_underlying` (filters) | on |
/// | runtime | the current one |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Watermarks};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let stream = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
/// let bev = BufferEvent::builder()
///     .enable(Direction::READ)
///     .read_watermarks(Watermarks::new(4, 1 << 20))
///     .timeouts(Some(Duration::from_secs(30)), None)
///     .on_read(|ctx| {
///         let line = ctx.input().take_all();
///         ctx.output().add_bytes(line);
///     })
///     .tcp(stream)?;
/// assert!(bev.enabled().contains(Direction::READ));
/// # Ok(()) }
/// ```
pub struct Builder<S = ()> {
    /// What the core starts from; libevent's defaults unless set.
    settings: core::Settings,
    connect_timeout: Option<Duration>,
    rate_limit: Option<RateLimit>,
    runtime: Option<Handle>,
    pub(crate) close_underlying: bool,
    state: S,
    callbacks: Callbacks<S>,
    /// Set by a listener for the bufferevents it accepts.
    pub(crate) membership: Option<Arc<Membership>>,
}

impl<S: Send + 'static> Builder<S> {
    pub(crate) fn new(state: S) -> Self {
        Self {
            // The core's defaults are libevent's; the builder starts from them.
            settings: core::Settings::default(),
            connect_timeout: None,
            rate_limit: None,
            runtime: None,
            close_underlying: true,
            state,
            callbacks: Callbacks::default(),
            membership: None,
        }
    }

    /// Gives the bufferevent `state` for its callbacks, keeping every setting made
    /// so far: how a [`Listener`](crate::listener::Listener)'s template, which
    /// receives a `Builder<()>`, gives each connection its own state.
    ///
    /// # Panics
    ///
    /// If a callback was set: callbacks take the state's type, so set the state first.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::BufferEvent;
    ///
    /// let builder = BufferEvent::builder().with_state(0u64).on_read(|ctx| {
    ///     let n = ctx.input().take_all().len();
    ///     *ctx.state() += n as u64;
    /// });
    /// # drop(builder);
    /// ```
    pub fn with_state<S2: Send + 'static>(self, state: S2) -> Builder<S2> {
        let c = &self.callbacks;
        assert!(
            c.read.is_none() && c.write.is_none() && c.event.is_none(),
            "Builder::with_state after a callback was set: set the state first"
        );
        Builder {
            settings: self.settings,
            connect_timeout: self.connect_timeout,
            rate_limit: self.rate_limit,
            runtime: self.runtime,
            close_underlying: self.close_underlying,
            state,
            callbacks: Callbacks::default(),
            membership: self.membership,
        }
    }

    /// Enables these directions from the start, in addition to WRITE.
    #[doc(alias = "bufferevent_enable")]
    pub fn enable(mut self, dirs: Direction) -> Self {
        self.settings.enabled |= dirs;
        self
    }

    /// Disables these directions from the start (WRITE is on by default).
    #[doc(alias = "bufferevent_disable")]
    pub fn disable(mut self, dirs: Direction) -> Self {
        self.settings.enabled = self.settings.enabled.without(dirs);
        self
    }

    /// Read watermarks: the read callback runs once `low` bytes are buffered; reading
    /// pauses at `high` (0 = unlimited). Default 0, 0.
    pub fn read_watermarks(mut self, wm: Watermarks) -> Self {
        self.settings.read_wm = wm;
        self
    }

    /// Write watermarks: the write callback runs once the output drains to `low`; async
    /// writers wait while it is above `high` (0 = unlimited). Default 0, 0.
    pub fn write_watermarks(mut self, wm: Watermarks) -> Self {
        self.settings.write_wm = wm;
        self
    }

    /// Read and write timeouts; `None` or zero means none (the default).
    pub fn timeouts(mut self, read: Option<Duration>, write: Option<Duration>) -> Self {
        self.settings.read_timeout = read;
        self.settings.write_timeout = write;
        self
    }

    /// The most bytes one read asks the transport for
    /// (`bufferevent_set_max_single_read`). Default 16 KiB; 0, or 4 GiB or more,
    /// means the default.
    #[doc(alias = "bufferevent_get_max_single_read")]
    pub fn max_single_read(mut self, n: usize) -> Self {
        self.settings.max_single_read = n;
        self
    }

    /// The most bytes one write hands the transport
    /// (`bufferevent_set_max_single_write`). Default 16 KiB; 0, or 4 GiB or more,
    /// means the default.
    #[doc(alias = "bufferevent_get_max_single_write")]
    pub fn max_single_write(mut self, n: usize) -> Self {
        self.settings.max_single_write = n;
        self
    }

    /// `BEV_OPT_DEFER_CALLBACKS`: coalesce callbacks per wake-up of the task (one read,
    /// one write and one OR-ed event call, in the order CONNECTED, read, write, event)
    /// instead of running them right after the I/O step that caused them. Default off.
    pub fn defer_callbacks(mut self, defer: bool) -> Self {
        self.settings.defer_callbacks = defer;
        self
    }

    /// How long a connect started by [`connect`](Self::connect) or
    /// [`BufferEvent::connect`] may take before it fails with `ERROR | TIMEOUT` (beyond
    /// libevent, where only the OS gives up). Default: none. For
    /// [`BufferEvent::connect_hostname`] it covers the lookup and the connects after
    /// it; expiring during the lookup, it is the lookup's timeout (`ERROR`, and
    /// `dns_error` says `Timeout`).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout).filter(|t| !t.is_zero());
        self
    }

    /// How long a graceful close ([`BufferEvent::close`], [`Context::close`]) may take
    /// before the bufferevent is freed with what is left unsent; `None` waits for
    /// ever, as libevent would (but a filter whose handles are all dropped, which
    /// closes by itself, still takes at most 30 s); zero frees after 1 ms; more than
    /// `u32::MAX` milliseconds (about 49 days) counts as that. Default 30 s: long
    /// enough for a healthy peer to take what is queued over a slow link, short enough
    /// that a peer that stopped reading cannot hold the connection for long. A close
    /// already under way keeps its deadline.
    pub fn close_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.close_timeout = timeout;
        self
    }

    /// A rate limit of its own from the start (`bufferevent_set_rate_limit`; see
    /// [`BufferEvent::set_rate_limit`]). Default: none.
    #[doc(alias = "bufferevent_set_rate_limit")]
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// The runtime whose threads run the bufferevent's task (libevent's event base).
    /// Default: the runtime of the caller. A filter runs on its underlying's runtime
    /// instead, and a pair's second element on the first's.
    #[doc(alias = "bufferevent_get_base")]
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// For a pair element or a filter: whether this bufferevent hears `READING | EOF`
    /// when its partner (or underlying bufferevent) ends. Default off, as in libevent,
    /// where the survivor of a freed partner hears nothing (libevent issue #93) and its
    /// `partner()` just becomes `None`. (A partner that closes sends its end of the
    /// stream first, a `Finished` flush, so its survivor hears `READING | EOF` either
    /// way, B-76.) Handles learn of the end either way (D-P1). No effect on stream
    /// bufferevents.
    pub fn partner_end_is_eof(mut self, eof: bool) -> Self {
        self.settings.partner_end_is_eof = eof;
        self
    }

    /// For a filter: whether ending it frees the underlying bufferevent too
    /// (libevent's `BEV_OPT_CLOSE_ON_FREE` on a filter). Default `true`: the filter
    /// took the underlying's handle and owns it. With `false`, the underlying runs on
    /// alone once the filter ends. No effect on other bufferevents.
    pub fn close_underlying(mut self, close: bool) -> Self {
        self.close_underlying = close;
        self
    }

    /// The read callback.
    pub fn on_read(mut self, f: impl FnMut(&mut Context<'_, S>) + Send + 'static) -> Self {
        self.callbacks.read = Some(Box::new(f));
        self
    }

    /// The write callback.
    pub fn on_write(mut self, f: impl FnMut(&mut Context<'_, S>) + Send + 'static) -> Self {
        self.callbacks.write = Some(Box::new(f));
        self
    }

    /// The event callback.
    pub fn on_event(
        mut self,
        f: impl FnMut(&mut Context<'_, S>, Events, Option<&io::Error>) + Send + 'static,
    ) -> Self {
        self.callbacks.event = Some(Box::new(f));
        self
    }

    /// Wraps a connected `TcpStream`; its file descriptor and addresses are kept for
    /// [`BufferEvent::fd`], [`BufferEvent::local_addr`] and [`BufferEvent::peer_addr`].
    ///
    /// # Errors
    ///
    /// The OS's error (as [`io::Error`]) from setting `TCP_NODELAY`
    /// (`setsockopt(2)`); the stream is dropped and no bufferevent is made.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    #[doc(alias = "bufferevent_socket_new")]
    pub fn tcp(self, stream: TcpStream) -> io::Result<BufferEvent<TcpStream, S>> {
        stream.set_nodelay(true)?;
        let info = TransportInfo::of_tcp(&stream);
        Ok(self.spawn(Some(stream), info))
    }

    /// Wraps any connected stream.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    #[doc(alias = "bufferevent_socket_new")]
    pub fn stream<T>(self, stream: T) -> BufferEvent<T, S>
    where
        T: Transport,
    {
        self.spawn(Some(stream), TransportInfo::default())
    }

    /// As [`tcp`](Self::tcp), for a bufferevent that no handle will ever drive: it
    /// runs on its callbacks alone, as a libevent server's bufferevent whose pointer
    /// only its callbacks keep. With no handle to serve it allocates no shared state
    /// and publishes nothing, from the start (a bufferevent whose handles are all
    /// dropped gets there after its first pass). A [`Listener`](crate::listener::Listener)
    /// starts its connections this way unless a `started` callback wants their handles.
    ///
    /// Without callbacks there is nothing to run: the bufferevent sends nothing, reads
    /// nothing, and ends at once.
    ///
    /// # Errors
    ///
    /// As [`tcp`](Self::tcp): the OS's error from setting `TCP_NODELAY`.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// use tokio::net::{TcpListener, TcpStream};
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Direction};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let mut client = TcpStream::connect(listener.local_addr()?).await?;
    /// let (accepted, _) = listener.accept().await?;
    /// BufferEvent::builder()
    ///     .enable(Direction::READ)
    ///     .on_read(|ctx| {
    ///         let (mut input, mut output) = ctx.io();
    ///         output.append_input(&mut input);
    ///     })
    ///     .tcp_detached(accepted)?;
    /// client.write_all(b"echo").await?;
    /// let mut back = [0; 4];
    /// client.read_exact(&mut back).await?;
    /// assert_eq!(&back, b"echo");
    /// # Ok(()) }
    /// ```
    pub fn tcp_detached(self, stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        self.spawn_detached(stream);
        Ok(())
    }

    /// As [`stream`](Self::stream), for a bufferevent that no handle will ever drive;
    /// see [`tcp_detached`](Self::tcp_detached).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    pub fn stream_detached<T: Transport>(self, stream: T) {
        self.spawn_detached(stream);
    }

    fn spawn_detached<T: Transport>(self, stream: T) {
        let runtime = self.runtime.clone().unwrap_or_else(Handle::current);
        let side = self.into_detached_side();
        let run = Engine::new(StreamLink::new(Some(stream)), side).run();
        spawn_in_span(&runtime, run, tracing::debug_span!("bufferevent"));
    }

    /// Creates a bufferevent and starts connecting it to `addr`
    /// (`bufferevent_socket_new` with fd `-1`, then `bufferevent_socket_connect`).
    ///
    /// Data may be written at once; it is sent after the connect, in order. Success
    /// delivers `CONNECTED` to the event callback; a failure that happens later
    /// (refused, unreachable, timed out) delivers `ERROR` with the error.
    ///
    /// # Errors
    ///
    /// Returned at once, with no callback, as for [`BufferEvent::connect`]: the OS's
    /// error (as [`io::Error`]) from creating the socket (`socket(2)`) or setting
    /// `TCP_NODELAY` on it (`setsockopt(2)`). The bufferevent made for it ends then.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::BufferEvent;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let bev = BufferEvent::builder().connect(listener.local_addr()?)?;
    /// bev.write_now(&b"queued before the connect completes"[..])?;
    /// bev.connected().await?;
    /// # Ok(()) }
    /// ```
    #[doc(alias = "bufferevent_socket_connect")]
    pub fn connect(self, addr: SocketAddr) -> io::Result<BufferEvent<TcpStream, S>> {
        let bev = self.unconnected::<TcpStream>();
        bev.connect(addr)?;
        Ok(bev)
    }

    /// Creates a bufferevent with no transport yet (libevent's fd `-1`): writes
    /// queue, timers run, and [`BufferEvent::set_transport`] gives it one later.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    #[doc(alias = "bufferevent_socket_new")]
    pub fn unconnected<T>(self) -> BufferEvent<T, S>
    where
        T: Transport,
    {
        self.spawn(None, TransportInfo::default())
    }

    fn spawn<T>(self, transport: Option<T>, info: TransportInfo) -> BufferEvent<T, S>
    where
        T: Transport,
    {
        let (side, bev) = self.assemble(transport.is_some(), info);
        let run = Engine::new(StreamLink::new(transport), side).run();
        let span = tracing::debug_span!("bufferevent", peer = ?info.peer);
        spawn_in_span(&bev.runtime, run, span);
        bev
    }

    /// Builds a bufferevent's state and its first handle; the caller spawns its task.
    pub(crate) fn assemble<T>(
        self,
        connected: bool,
        info: TransportInfo,
    ) -> (Side<T, S>, BufferEvent<T, S>)
    where
        T: Send + 'static,
    {
        let runtime = self.runtime.clone().unwrap_or_else(Handle::current);
        let connect_timeout = self.connect_timeout;
        let (inner, membership) = self.into_inner();
        // Visible to handles at once, before the task first runs.
        let shared = Shared::new(&Settings::of(&inner.core));
        shared.connected.store(connected, Ordering::Release);
        shared.set_info(info);
        shared.set_connect_timeout(connect_timeout);
        if let Some(member) = &membership {
            let _ = shared.member.set(Arc::downgrade(member));
        }
        let remote = Remote::new(shared);
        let mut side = Side::new(inner, Arc::clone(&remote));
        side.member = membership;
        let bev = BufferEvent { remote, runtime };
        (side, bev)
    }

    /// A bufferevent's state with no handle and none to come (see
    /// [`tcp_detached`](Self::tcp_detached)).
    fn into_detached_side<T: Send + 'static>(self) -> Side<T, S> {
        let (inner, membership) = self.into_inner();
        Side::detached(inner, membership)
    }

    /// The task's part of what this builder configured, and the listener's membership.
    fn into_inner(self) -> (Inner<S>, Option<Arc<Membership>>) {
        let mut core = Core::new(self.settings);
        if self.rate_limit.is_some() {
            core.set_rate_limit(self.rate_limit);
        }
        let inner = Inner {
            buffers: Buffers::default(),
            core,
            state: self.state,
            callbacks: self.callbacks,
        };
        (inner, self.membership)
    }
}

impl BufferEvent {
    /// A [`Builder`] for a bufferevent without user state.
    #[doc(alias = "bufferevent_socket_new")]
    pub fn builder() -> Builder<()> {
        Builder::new(())
    }

    /// A [`Builder`] for a bufferevent whose callbacks share `state`, owned by its task.
    #[doc(alias = "bufferevent_socket_new")]
    pub fn builder_with_state<S: Send + 'static>(state: S) -> Builder<S> {
        Builder::new(state)
    }
}

impl<S> fmt::Debug for Builder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("enabled", &self.settings.enabled)
            .field("read_wm", &self.settings.read_wm)
            .field("write_wm", &self.settings.write_wm)
            .field("read_timeout", &self.settings.read_timeout)
            .field("write_timeout", &self.settings.write_timeout)
            .field("max_single_read", &self.settings.max_single_read)
            .field("max_single_write", &self.settings.max_single_write)
            .field("defer_callbacks", &self.settings.defer_callbacks)
            .field("callbacks", &self.callbacks)
            .finish_non_exhaustive()
    }
}

/// Spawns a bufferevent's task, in `span` only when a subscriber wants it: a disabled
/// span would still take room in every task.
fn spawn_in_span<F>(runtime: &Handle, run: F, span: tracing::Span)
where
    F: Future<Output = ()> + Send + 'static,
{
    if span.is_disabled() {
        runtime.spawn(run);
    } else {
        runtime.spawn(run.instrument(span));
    }
}
