//! Listeners (libevent's `evconnlistener`): accept connections and make each one a
//! bufferevent, with back-off on resource errors, a connection limit, and graceful
//! shutdown.
//!
//! ```
//! use tokio_bufferevent::bufferevent::{Direction, Events};
//! use tokio_bufferevent::listener::Listener;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // An echo server: every connection is a bufferevent made by the template.
//! let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), |builder, _peer| {
//!     Some(
//!         builder
//!             .enable(Direction::READ)
//!             .on_read(|ctx| {
//!                 let (mut input, mut output) = ctx.io();
//!                 output.append_input(&mut input);
//!             })
//!             .on_event(|ctx, events, _| {
//!                 if events.intersects(Events::EOF | Events::ERROR) {
//!                     ctx.close();
//!                 }
//!             }),
//!     )
//! })?;
//! println!("listening on {}", listener.local_addr());
//! # let report = listener.shutdown(std::time::Duration::from_secs(1)).await;
//! # assert_eq!(report.counts.accepted, 0);
//! # Ok(()) }
//! ```

mod accept;
mod backoff;

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use self::accept::Accept;
use self::backoff::{AcceptFailure, Backoff};
use crate::bufferevent::engine::dispatch::panic_error;
use crate::bufferevent::membership::{EndSink, Membership};
use crate::bufferevent::{BufferEvent, Builder};

/// The listen backlog unless [`ListenerBuilder::backlog`] says otherwise. Tokio's and
/// the standard library's 128 overflows under bursts of connects.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Makes the bufferevent of each accepted connection: receives a fresh [`Builder`] and
/// the peer's address, and returns the builder configured, or `None` to refuse the
/// connection (it is closed at once).
pub type Template<A, S> =
    Box<dyn FnMut(Builder, &<A as Accept>::Addr) -> Option<Builder<S>> + Send>;

/// Runs on the accept task with the handle of each bufferevent the listener started
/// (see [`ListenerBuilder::serve_then`]).
pub type Started<A, S> = Box<dyn FnMut(BufferEvent<<A as Accept>::Stream, S>) + Send>;

/// What an accept error callback receives: the error, and how long the listener
/// waits before accepting again (zero for an error of one connection).
pub type ErrorCallback = Box<dyn FnMut(&io::Error, Duration) + Send>;

/// A listener's counts, as [`Listener::counts`] reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerCounts {
    /// Connections accepted, including those the template then refused or that
    /// could not be set up (accept errors are not accepted connections: see
    /// `failed`).
    pub accepted: u64,
    /// Bufferevents of this listener that have not ended.
    pub live: usize,
    /// Connections the template refused.
    pub refused: u64,
    /// Connections that failed: an accept error of one connection, a bufferevent
    /// that could not be set up, or a template that panicked.
    pub failed: u64,
}

/// A listener's counts and the sums of its live connections' [`Stats`](crate::bufferevent::Stats), as
/// [`Listener::stats`] reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Accepted, live, refused and failed connections.
    pub counts: ListenerCounts,
    /// Bytes read by the live connections.
    pub bytes_read: u64,
    /// Bytes written by the live connections.
    pub bytes_written: u64,
    /// What the live connections' inputs hold now.
    pub input_len: usize,
    /// What the live connections' outputs hold now.
    pub output_len: usize,
}

/// How a [`Listener::shutdown`] went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// The counts once every connection ended.
    pub counts: ListenerCounts,
    /// Connections that sent everything queued and closed within the deadline.
    pub closed: usize,
    /// Connections freed at the deadline with output unsent, or ended by an error.
    pub cut: usize,
}

/// Options of a [`Listener`] (`evconnlistener_new`'s flags and backlog), set with
/// `&mut self` setters and used by the `bind_*` and [`serve`](Self::serve) methods.
///
/// # Examples
///
/// ```
/// use tokio_bufferevent::listener::Listener;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = Listener::builder()
///     .backlog(4096)
///     .max_connections(10_000)
///     .on_error(|error, pause| eprintln!("accept: {error}; retrying in {pause:?}"))
///     .bind_tcp("127.0.0.1:0".parse().unwrap(), |builder, _peer| Some(builder))?;
/// assert_eq!(listener.max_connections(), Some(10_000));
/// # Ok(()) }
/// ```
pub struct ListenerBuilder {
    backlog: u32,
    reuse_port: bool,
    max_connections: Option<usize>,
    enabled: bool,
    runtime: Option<Handle>,
    on_error: Option<ErrorCallback>,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        Self {
            backlog: DEFAULT_BACKLOG,
            reuse_port: false,
            max_connections: None,
            enabled: true,
            runtime: None,
            on_error: None,
        }
    }
}

impl fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerBuilder")
            .field("backlog", &self.backlog)
            .field("reuse_port", &self.reuse_port)
            .field("max_connections", &self.max_connections)
            .field("enabled", &self.enabled)
            .field("on_error", &self.on_error.is_some())
            .finish_non_exhaustive()
    }
}

impl ListenerBuilder {
    /// The listen backlog for the `bind_*` methods. Default: [`DEFAULT_BACKLOG`]
    /// (1024; the kernel caps it at `net.core.somaxconn`).
    pub fn backlog(&mut self, backlog: u32) -> &mut Self {
        self.backlog = backlog;
        self
    }

    /// Sets `SO_REUSEPORT` on TCP sockets [`bind_tcp`](Self::bind_tcp) makes, so that
    /// several listeners (one per runtime, for thread-per-core servers) share a port.
    /// Default: off. `SO_REUSEADDR` is always set (`LEV_OPT_REUSEABLE`).
    pub fn reuse_port(&mut self, reuse: bool) -> &mut Self {
        self.reuse_port = reuse;
        self
    }

    /// Live connections at most: at the limit the listener stops accepting (new
    /// connections wait in the backlog) and resumes once one ends. Default: no limit.
    pub fn max_connections(&mut self, max: usize) -> &mut Self {
        self.max_connections = Some(max);
        self
    }

    /// Whether the listener accepts from the start (`LEV_OPT_DISABLED` is `false`).
    /// Default: `true`.
    pub fn enabled(&mut self, enabled: bool) -> &mut Self {
        self.enabled = enabled;
        self
    }

    /// The runtime that runs the accept loop and, unless the template says otherwise,
    /// the connections. Default: the runtime of the caller.
    pub fn runtime(&mut self, runtime: Handle) -> &mut Self {
        self.runtime = Some(runtime);
        self
    }

    /// Called on the accept task for every accept error
    /// (`evconnlistener_set_error_cb`), with the pause before the next accept. Errors
    /// are also logged through `tracing` (`warn` for those that pause the listener).
    /// Default: none.
    pub fn on_error(&mut self, f: impl FnMut(&io::Error, Duration) + Send + 'static) -> &mut Self {
        self.on_error = Some(Box::new(f));
        self
    }

    /// Binds a TCP listener on `addr` (IPv4 or IPv6) with `SO_REUSEADDR` and the
    /// [`backlog`](Self::backlog), and starts accepting (`evconnlistener_new_bind`).
    ///
    /// # Errors
    ///
    /// The errors of `socket(2)`, `setsockopt(2)`, `bind(2)` and `listen(2)`, as
    /// `io::Error` (`AddrInUse` for a port in use); with
    /// [`reuse_port`](Self::reuse_port) on a platform without `SO_REUSEPORT`,
    /// `Unsupported`.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    #[doc(alias = "evconnlistener_new_bind")]
    pub fn bind_tcp<S, F>(
        &mut self,
        addr: SocketAddr,
        template: F,
    ) -> io::Result<Listener<TcpListener, S>>
    where
        S: Send + 'static,
        F: FnMut(Builder, &SocketAddr) -> Option<Builder<S>> + Send + 'static,
    {
        let listener = self.in_runtime(|| accept::bind_tcp(addr, self.backlog, self.reuse_port))?;
        self.serve(listener, template)
    }

    /// Binds a Unix domain socket listener at `path` and starts accepting. The
    /// backlog is the standard library's; to choose it, bind the socket yourself and
    /// pass it to [`serve`](Self::serve).
    ///
    /// # Errors
    ///
    /// The errors of `bind(2)` and `listen(2)`, as `io::Error` (`AddrInUse` when
    /// `path` exists).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    #[cfg(unix)]
    pub fn bind_unix<S, F>(
        &mut self,
        path: impl AsRef<std::path::Path>,
        template: F,
    ) -> io::Result<Listener<tokio::net::UnixListener, S>>
    where
        S: Send + 'static,
        F: FnMut(Builder, &tokio::net::unix::SocketAddr) -> Option<Builder<S>> + Send + 'static,
    {
        let listener = self.in_runtime(|| tokio::net::UnixListener::bind(path))?;
        self.serve(listener, template)
    }

    /// Serves a listening socket made elsewhere (`evconnlistener_new` on an existing
    /// descriptor): a Tokio `TcpListener` or `UnixListener`, or one made from a
    /// standard library listener with `from_std` (set it non-blocking first).
    ///
    /// The builder's `on_error`, if any, moves into the listener.
    ///
    /// # Errors
    ///
    /// Reading the listener's local address fails (`getsockname(2)`).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::listener::Listener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// std_listener.set_nonblocking(true)?;
    /// let socket = tokio::net::TcpListener::from_std(std_listener)?;
    /// let listener = Listener::builder().serve(socket, |builder, _peer| Some(builder))?;
    /// assert!(listener.is_enabled());
    /// # Ok(()) }
    /// ```
    #[doc(alias = "evconnlistener_new")]
    pub fn serve<A, S, F>(&mut self, acceptor: A, template: F) -> io::Result<Listener<A, S>>
    where
        A: Accept,
        S: Send + 'static,
        F: FnMut(Builder, &A::Addr) -> Option<Builder<S>> + Send + 'static,
    {
        self.start(acceptor, Box::new(template), None)
    }

    /// As [`serve`](Self::serve), and runs `started` with a handle to each bufferevent
    /// once it is running: where a proxy connects the upstream side and starts a
    /// [`pipe`](crate::bufferevent::pipe). It runs on the accept task, so it should
    /// spawn anything long.
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::bufferevent::{BufferEvent, pipe};
    /// use tokio_bufferevent::listener::Listener;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # let upstream: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    /// // A TCP proxy.
    /// let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let proxy = Listener::builder().serve_then(
    ///     socket,
    ///     |builder, _peer| Some(builder),
    ///     move |client| {
    ///         let Ok(server) = BufferEvent::builder().connect(upstream) else { return };
    ///         tokio::spawn(async move { pipe(&client, &server).await });
    ///     },
    /// )?;
    /// # drop(proxy);
    /// # Ok(()) }
    /// ```
    pub fn serve_then<A, S, F, G>(
        &mut self,
        acceptor: A,
        template: F,
        started: G,
    ) -> io::Result<Listener<A, S>>
    where
        A: Accept,
        S: Send + 'static,
        F: FnMut(Builder, &A::Addr) -> Option<Builder<S>> + Send + 'static,
        G: FnMut(BufferEvent<A::Stream, S>) + Send + 'static,
    {
        self.start(acceptor, Box::new(template), Some(Box::new(started)))
    }

    /// As [`bind_tcp`](Self::bind_tcp), with [`serve_then`](Self::serve_then)'s
    /// `started`.
    ///
    /// # Errors
    ///
    /// As [`bind_tcp`](Self::bind_tcp).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime when no [`runtime`](Self::runtime) was given.
    pub fn bind_tcp_then<S, F, G>(
        &mut self,
        addr: SocketAddr,
        template: F,
        started: G,
    ) -> io::Result<Listener<TcpListener, S>>
    where
        S: Send + 'static,
        F: FnMut(Builder, &SocketAddr) -> Option<Builder<S>> + Send + 'static,
        G: FnMut(BufferEvent<TcpStream, S>) + Send + 'static,
    {
        let listener = self.in_runtime(|| accept::bind_tcp(addr, self.backlog, self.reuse_port))?;
        self.serve_then(listener, template, started)
    }

    fn start<A: Accept, S: Send + 'static>(
        &mut self,
        acceptor: A,
        template: Template<A, S>,
        started: Option<Started<A, S>>,
    ) -> io::Result<Listener<A, S>> {
        let runtime = self.runtime.clone().unwrap_or_else(Handle::current);
        let shared = Arc::new(Control {
            local_addr: acceptor.local_addr()?,
            enabled: AtomicBool::new(self.enabled),
            stopping: AtomicBool::new(false),
            limit: Mutex::new(self.max_connections),
            max_connections: AtomicUsize::new(self.max_connections.unwrap_or(usize::MAX)),
            live: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            changed: Notify::new(),
            connections: Mutex::new(Registry::default()),
            shutting_down: AtomicBool::new(false),
            closed: AtomicUsize::new(0),
            cut: AtomicUsize::new(0),
            _stream: std::marker::PhantomData,
        });
        let task = AcceptLoop {
            control: Arc::clone(&shared),
            acceptor,
            template,
            started,
            on_error: self.on_error.take(),
            runtime: runtime.clone(),
        };
        let accept_task = runtime.spawn(task.run());
        Ok(Listener {
            control: shared,
            accept_task: Some(accept_task),
        })
    }

    /// Runs `f` inside the runtime the listener will use: Tokio registers sockets
    /// with the runtime they are made in.
    fn in_runtime<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.runtime {
            Some(runtime) => {
                let _entered = runtime.enter();
                f()
            }
            None => f(),
        }
    }
}

/// A listener (`struct evconnlistener`): accepts connections on its own task and makes
/// each one a bufferevent with the template given at creation.
///
/// # Accept errors
///
/// An error of one connection (`ECONNABORTED`, `EPROTO`, a reset, a firewall's
/// `EPERM`) is counted as failed and the next connection accepted at once. An error
/// that says the process or system is out of resources (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`), and any error not known to be about one connection, pauses
/// accepting: 1 ms after the first, doubling up to 1 s, back to 1 ms after the next
/// success. Each is reported to the [error callback](ListenerBuilder::on_error) and
/// through `tracing`; the listener never spins.
///
/// # Across cores
///
/// On a multi-thread runtime the accept task spawns each connection's task from the
/// worker it runs on, and idle workers steal from it, so connections spread over the
/// workers. For thread-per-core servers, give each thread a current-thread runtime and
/// a listener of its own bound to the same port with
/// [`reuse_port`](ListenerBuilder::reuse_port): the kernel spreads connections over the
/// listeners, and a connection never moves between threads (`examples/echo_server.rs
/// --per-core N` does this).
///
/// # Ending
///
/// [`shutdown`](Self::shutdown) stops accepting and closes every live connection
/// within a deadline. Dropping the listener stops accepting (the socket closes once
/// the accept task sees it, at its next wake-up) and leaves live connections running.
///
/// # Memory
///
/// For each live connection the listener keeps a membership (about 200 bytes: the
/// connection's statistics and a slot for a close request) rather than a handle, so
/// a connection no handle reaches still drops the state handles would share and
/// publishes nothing: a listener's connection costs that much more than a bare
/// bufferevent, see
/// [`docs/PERFORMANCE.md`](https://github.com/tokio-bufferevent/tokio-bufferevent/blob/main/docs/PERFORMANCE.md).
#[doc(alias = "evconnlistener")]
pub struct Listener<A: Accept = TcpListener, S = ()> {
    control: Arc<Control<A, S>>,
    accept_task: Option<JoinHandle<()>>,
}

impl Listener {
    /// A [`ListenerBuilder`] with the defaults.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// Binds a TCP listener on `addr` with the defaults (`SO_REUSEADDR`, a backlog of
    /// [`DEFAULT_BACKLOG`], no connection limit) and starts accepting; see
    /// [`ListenerBuilder::bind_tcp`].
    ///
    /// # Errors
    ///
    /// As [`ListenerBuilder::bind_tcp`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn bind<S, F>(addr: SocketAddr, template: F) -> io::Result<Listener<TcpListener, S>>
    where
        S: Send + 'static,
        F: FnMut(Builder, &SocketAddr) -> Option<Builder<S>> + Send + 'static,
    {
        Self::builder().bind_tcp(addr, template)
    }
}

impl<A: Accept, S: Send + 'static> Listener<A, S> {
    /// The address the listener is bound to (`evconnlistener_get_fd` +
    /// `getsockname`).
    pub fn local_addr(&self) -> &A::Addr {
        &self.control.local_addr
    }

    /// Resumes accepting (`evconnlistener_enable`).
    #[doc(alias = "evconnlistener_enable")]
    pub fn enable(&self) {
        self.control.enabled.store(true, Ordering::SeqCst);
        self.control.changed.notify_waiters();
    }

    /// Stops accepting until [`enable`](Self::enable) (`evconnlistener_disable`): new
    /// connections wait in the backlog; live ones go on.
    #[doc(alias = "evconnlistener_disable")]
    pub fn disable(&self) {
        self.control.enabled.store(false, Ordering::SeqCst);
        self.control.changed.notify_waiters();
    }

    /// Whether accepting is enabled (it may still wait at the connection limit).
    pub fn is_enabled(&self) -> bool {
        self.control.enabled.load(Ordering::SeqCst)
    }

    /// Changes the connection limit; `None` removes it. Takes effect at once.
    pub fn set_max_connections(&self, max: Option<usize>) {
        let mut limit = self.control.limit();
        *limit = max;
        self.control
            .max_connections
            .store(max.unwrap_or(usize::MAX), Ordering::SeqCst);
        drop(limit);
        self.control.changed.notify_waiters();
    }

    /// The connection limit, if any: as last set, `Some(usize::MAX)` included.
    pub fn max_connections(&self) -> Option<usize> {
        *self.control.limit()
    }

    /// Counts of accepted, live, refused and failed connections.
    pub fn counts(&self) -> ListenerCounts {
        self.control.counts()
    }

    /// The counts, and the [`Stats`](crate::bufferevent::Stats) of the live connections summed.
    ///
    /// Takes the registry's lock once and reads each live connection's counters
    /// without a lock: linear in the number of live connections.
    pub fn stats(&self) -> ListenerStats {
        let mut stats = ListenerStats {
            counts: self.counts(),
            ..ListenerStats::default()
        };
        for member in self.control.members() {
            let one = member.counters.snapshot_as_tallied();
            stats.bytes_read += one.bytes_read;
            stats.bytes_written += one.bytes_written;
            stats.input_len += one.input_len;
            stats.output_len += one.output_len;
        }
        stats
    }

    /// Stops accepting, closes every live bufferevent of this listener (each sends
    /// what is queued, then shuts down its write side and ends), and frees those that
    /// have not finished within `deadline`. Resolves once every connection has ended,
    /// or at the latest one second after `deadline` (connections still live then are
    /// reported as cut; they are being freed). A connection already closing keeps its
    /// own deadline if that is sooner.
    ///
    /// A connection that was put under a filter after it started (a TLS filter over
    /// the accepted socket) is closed beneath the filter, so what the filter still
    /// holds is not sent: close such filters yourself first.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future leaves the listener stopped; the
    /// connections were asked to close (each bounded by `deadline`) only if it had
    /// got that far.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        self.control.stop();
        let close_at = tokio::time::Instant::now() + deadline.min(FAR_FUTURE);
        // A connection registered from now on (the accept task may still be building
        // one) asks itself to close.
        self.control.registry().close_at = Some(close_at);
        if let Some(task) = self.accept_task.take() {
            // It returns at its next wake-up, which `stop` caused; but it runs the
            // application's template and `build`, which may be slow: no longer than
            // the deadline.
            drop(tokio::time::timeout_at(close_at, task).await);
        }
        let control = &self.control;
        control.shutting_down.store(true, Ordering::SeqCst);
        for member in control.members() {
            member.request_close(close_at.saturating_duration_since(tokio::time::Instant::now()));
        }
        // Each close ends by its deadline; the margin covers the last tasks' final
        // pass on a busy machine.
        let all_ended = crate::wait::until(&control.changed, || {
            control.live.load(Ordering::SeqCst) == 0
        });
        let _ = tokio::time::timeout_at(close_at + SHUTDOWN_MARGIN, all_ended).await;
        let (closed, cut, counts) = control.ending_counts();
        ShutdownReport {
            counts,
            closed,
            // Connections still live now are being freed: cut.
            cut: cut + counts.live,
        }
    }
}

/// How long [`Listener::shutdown`] waits past its deadline for the last connections
/// to report their end.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

/// A deadline that never comes in practice, and adds to an `Instant` without overflow.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl<A: Accept, S> Drop for Listener<A, S> {
    fn drop(&mut self) {
        self.control.stop();
    }
}

impl<A: Accept, S> fmt::Debug for Listener<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.control.local_addr)
            .field("enabled", &self.control.enabled.load(Ordering::Relaxed))
            .field("counts", &self.control.counts())
            .finish_non_exhaustive()
    }
}

/// What the listener, its accept task and its connections' end hooks share.
struct Control<A: Accept, S> {
    local_addr: A::Addr,
    enabled: AtomicBool,
    stopping: AtomicBool,
    /// The limit as set, for the getter (`usize::MAX` below also stands for none).
    limit: Mutex<Option<usize>>,
    /// The limit the accept task checks, without a lock: `usize::MAX` for none.
    max_connections: AtomicUsize,
    live: AtomicUsize,
    accepted: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    /// Wakes the accept task and `shutdown`: enabled, the limit or `live` changed,
    /// or stopping.
    changed: Notify,
    connections: Mutex<Registry>,
    /// Ends from now on are counted as `closed` or `cut`.
    shutting_down: AtomicBool,
    closed: AtomicUsize,
    cut: AtomicUsize,
    _stream: std::marker::PhantomData<fn() -> S>,
}

impl<A: Accept, S> Control<A, S> {
    fn counts(&self) -> ListenerCounts {
        ListenerCounts {
            accepted: self.accepted.load(Ordering::Relaxed),
            live: self.live.load(Ordering::SeqCst),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Whether the accept task may accept now.
    fn may_accept(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
            && self.live.load(Ordering::SeqCst) < self.max_connections.load(Ordering::SeqCst)
    }

    fn limit(&self) -> std::sync::MutexGuard<'_, Option<usize>> {
        self.limit.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The memberships of the live connections.
    fn members(&self) -> Vec<Arc<Membership>> {
        self.registry()
            .slots
            .iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Closed, cut and live connections, in one consistent reading.
    fn ending_counts(&self) -> (usize, usize, ListenerCounts) {
        let _registry = self.registry();
        (
            self.closed.load(Ordering::SeqCst),
            self.cut.load(Ordering::SeqCst),
            self.counts(),
        )
    }
}

impl<A: Accept, S: Send + 'static> EndSink for Control<A, S> {
    /// A connection's task ended (its membership was dropped). Counted under the
    /// registry's lock, so that [`ending_counts`](Control::ending_counts) sees each
    /// connection once.
    fn ended(&self, slot: usize, cut: bool) {
        let mut registry = self.registry();
        drop(registry.remove(slot));
        if self.shutting_down.load(Ordering::SeqCst) {
            let tally = if cut { &self.cut } else { &self.closed };
            tally.fetch_add(1, Ordering::SeqCst);
        }
        self.live.fetch_sub(1, Ordering::SeqCst);
        drop(registry);
        self.changed.notify_waiters();
    }
}

/// The live connections' memberships, by slot; a slot is reused once its connection
/// ended. Weak: a membership lives as long as its connection's task.
#[derive(Default)]
struct Registry {
    slots: Vec<Option<Weak<Membership>>>,
    free: Vec<usize>,
    /// When every connection must have closed, once `shutdown` began: a connection
    /// registered after that asks itself to close by then.
    close_at: Option<tokio::time::Instant>,
}

impl Registry {
    fn insert(&mut self, member: Weak<Membership>) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(member);
                slot
            }
            None => {
                self.slots.push(Some(member));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) -> Option<Weak<Membership>> {
        let member = self.slots.get_mut(slot)?.take();
        if member.is_some() {
            self.free.push(slot);
        }
        member
    }
}

/// `acceptor`'s next connection. A panic in it is an accept error (logged, reported,
/// and backed off from like one), not the end of the accept task.
fn poll_acceptor<A: Accept>(
    acceptor: &A,
    cx: &mut Context<'_>,
) -> Poll<io::Result<(A::Stream, A::Addr)>> {
    catch_unwind(AssertUnwindSafe(|| acceptor.poll_accept(cx)))
        .unwrap_or_else(|panic| Poll::Ready(Err(panic_error("the listener's acceptor", &*panic))))
}

/// The accept task's state.
struct AcceptLoop<A: Accept, S> {
    control: Arc<Control<A, S>>,
    acceptor: A,
    template: Template<A, S>,
    started: Option<Started<A, S>>,
    on_error: Option<ErrorCallback>,
    runtime: Handle,
}

impl<A: Accept, S: Send + 'static> AcceptLoop<A, S> {
    async fn run(mut self) {
        let mut backoff = Backoff::default();
        // A second reference, so the notified futures do not borrow `self`.
        let control = Arc::clone(&self.control);
        loop {
            let mut changed = pin!(control.changed.notified());
            // Registered before the checks, so a change made after them wakes it.
            changed.as_mut().enable();
            if self.control.stopping.load(Ordering::SeqCst) {
                return;
            }
            if !self.control.may_accept() {
                changed.await;
                continue;
            }
            let accepted = tokio::select! {
                biased;
                () = changed.as_mut() => continue,
                accepted = poll_fn(|cx| poll_acceptor(&self.acceptor, cx)) => accepted,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff.succeed();
                    self.control.accepted.fetch_add(1, Ordering::Relaxed);
                    self.start(stream, &peer);
                }
                Err(error) => {
                    let pause = match AcceptFailure::of(&error) {
                        AcceptFailure::Connection => {
                            self.control.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%error, "accept failed for one connection");
                            Duration::ZERO
                        }
                        AcceptFailure::Resources | AcceptFailure::Other => {
                            let pause = backoff.fail();
                            tracing::warn!(%error, ?pause, "accept failed; pausing the listener");
                            pause
                        }
                    };
                    if let Some(on_error) = &mut self.on_error
                        && catch_unwind(AssertUnwindSafe(|| on_error(&error, pause))).is_err()
                    {
                        tracing::error!("the listener's error callback panicked");
                    }
                    if !pause.is_zero() {
                        let mut stopped = pin!(control.changed.notified());
                        stopped.as_mut().enable();
                        if self.control.stopping.load(Ordering::SeqCst) {
                            return;
                        }
                        // Any change (a shutdown above all) ends the pause early; the
                        // loop then checks again.
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stopped => {}
                        }
                    }
                }
            }
        }
    }

    /// Makes the bufferevent of one accepted connection.
    fn start(&mut self, stream: A::Stream, peer: &A::Addr) {
        let builder = BufferEvent::builder().runtime(self.runtime.clone());
        let template = &mut self.template;
        let configured = match catch_unwind(AssertUnwindSafe(|| template(builder, peer))) {
            Ok(Some(builder)) => builder,
            Ok(None) => {
                self.control.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?peer, "connection refused by the template");
                return;
            }
            Err(_) => {
                self.control.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    ?peer,
                    "the listener's template panicked; connection dropped"
                );
                return;
            }
        };
        let mut configured = configured;
        configured.membership = Some(self.register());
        // Without a `started` callback nobody wants the handle: start detached, with
        // no state for handles at all.
        // The acceptor's own code (a user's `Accept`) may panic too: that connection
        // fails, and the listener goes on.
        let built = catch_unwind(AssertUnwindSafe(|| match &mut self.started {
            Some(started) => A::build(configured, stream).map(|bev| {
                if catch_unwind(AssertUnwindSafe(|| started(bev))).is_err() {
                    tracing::error!(?peer, "the listener's started callback panicked");
                }
            }),
            None => A::start_detached(configured, stream),
        }));
        let started = built.unwrap_or_else(|panic| {
            Err(panic_error("setting up the accepted connection", &*panic))
        });
        match started {
            Ok(()) => {}
            Err(error) => {
                // The membership went with the builder: the connection counts as ended.
                self.control.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(?peer, %error, "could not set up an accepted connection");
            }
        }
    }

    /// A live connection from now on: its membership, which tells the listener when
    /// its task ends.
    fn register(&self) -> Arc<Membership> {
        let member = Arc::new(Membership::new());
        let mut registry = self.control.registry();
        let slot = registry.insert(Arc::downgrade(&member));
        self.control.live.fetch_add(1, Ordering::SeqCst);
        let close_at = registry.close_at;
        drop(registry);
        if let Some(at) = close_at {
            // Built while the listener shuts down: it closes as the others do.
            member.request_close(at.saturating_duration_since(tokio::time::Instant::now()));
        }
        member.report_to(Arc::clone(&self.control) as Arc<dyn EndSink>, slot);
        member
    }
}
