//! [`BufferEvent`]: a connection with an input and an output buffer, driven by one
//! Tokio task, with libevent's callbacks, watermarks and timeouts.
//!
//! Each bufferevent is a task that owns its transport (a `TcpStream` or any
//! `AsyncRead + AsyncWrite` stream) and two [`EvBuffer`]s. Bytes that arrive go to the
//! input; bytes added to the output are sent as fast as the transport takes them.
//! Callbacks run on the task, with exclusive access to both buffers and a user state
//! value, when the input reaches the read low watermark, when the output drains to the
//! write low watermark, and on events (EOF, errors, timeouts, connect). The
//! [`BufferEvent`] handle is a cloneable remote control usable from any thread, with
//! readiness futures for code that prefers `async` to callbacks.
//!
//! # Examples
//!
//! An echo server's connection, entirely in callbacks:
//!
//! ```
//! use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     let (stream, _) = listener.accept().await?;
//!     BufferEvent::builder()
//!         .enable(Direction::READ)
//!         .on_read(|ctx| {
//!             let (mut input, mut output) = ctx.io();
//!             output.append_input(&mut input);
//!         })
//!         .on_event(|ctx, events, _error| {
//!             if events.intersects(Events::EOF | Events::ERROR) {
//!                 ctx.free();
//!             }
//!         })
//!         .tcp(stream)?;
//!     Ok::<_, std::io::Error>(())
//! });
//!
//! let client = BufferEvent::builder()
//!     .enable(Direction::READ)
//!     .tcp(tokio::net::TcpStream::connect(addr).await?)?;
//! client.write(&b"hello"[..]).await?;
//! client.readable(5).await;
//! assert_eq!(client.read(100).await?, &b"hello"[..]);
//! # Ok(()) }
//! ```
//!
//! # Connecting
//!
//! A bufferevent can start without a transport and connect later, by address
//! ([`Builder::connect`], [`BufferEvent::connect`]), to the first of several addresses
//! that accepts ([`BufferEvent::connect_any`]), by hostname through a shared
//! `Resolver` (`BufferEvent::connect_hostname`, feature `dns`), or by taking over a
//! connect the caller started ([`BufferEvent::connect_with`]). Writes made meanwhile
//! are sent once connected; the event callback hears `CONNECTED` or `ERROR`.
//!
//! ```
//! use tokio::net::{TcpSocket, TcpStream};
//! use tokio_bufferevent::bufferevent::BufferEvent;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//!
//! let by_address = BufferEvent::builder().connect(addr)?;
//! let any_of = BufferEvent::builder().unconnected::<TcpStream>();
//! any_of.connect_any([addr])?;
//! let started = BufferEvent::builder().unconnected::<TcpStream>();
//! started.connect_with(TcpSocket::new_v4()?.connect(addr))?;
//! # #[cfg(feature = "dns")]
//! # {
//! use tokio_bufferevent::bufferevent::Family;
//! let by_name = BufferEvent::builder().unconnected::<TcpStream>();
//! by_name.connect_hostname(None, Family::Inet, "127.0.0.1", addr.port())?;
//! assert!(by_name.connected().await);
//! # }
//! for bev in [by_address, any_of, started] {
//!     assert!(bev.connected().await);
//! }
//! # Ok(()) }
//! ```
//!
//! # Pairs and filters
//!
//! [`BufferEvent::pair`] creates two bufferevents joined in memory (a test double, or
//! two halves of a program), and [`BufferEvent::filter`] puts a bufferevent on top of
//! another one, transforming bytes each way with a [`Filter`]: compression, TLS (see
//! the crate's `filters` module), or a protocol's framing. Both run in the same task
//! as the bufferevents they join, so bytes move between buffers without copying.
//!
//! ```
//! use tokio_bufferevent::buffer::EvBuffer;
//! use tokio_bufferevent::bufferevent::{
//!     BufferEvent, Direction, FilterResult, FlushMode, PassThrough,
//! };
//!
//! /// An output filter that reverses each write.
//! fn reverse(src: &mut EvBuffer, dst: &mut EvBuffer, _: Option<usize>, _: FlushMode)
//!     -> FilterResult
//! {
//!     let mut data = src.to_vec().unwrap_or_default();
//!     let _ = src.drain(data.len());
//!     data.reverse();
//!     let _ = dst.add(&data);
//!     FilterResult::Ok
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let (a, b) = BufferEvent::pair();
//! b.enable(Direction::READ);
//! let reverser = BufferEvent::filter(a, PassThrough, reverse);
//! reverser.write(&b"stressed"[..]).await?;
//! b.readable(8).await;
//! assert_eq!(b.read(100).await?, &b"desserts"[..]);
//! # Ok(()) }
//! ```
//!
//! Differences from libevent are listed in `docs/DIVERGENCES.md`; pairs and filters
//! are described in `docs/pairs-and-filters.md`.

mod adapters;
mod builder;
mod connect;
mod context;
mod core;
#[cfg(feature = "dns")]
mod dns;
mod engine;
mod events;
mod filter;
mod mailbox;
mod pair;
mod shared;
mod stream;
mod timeouts;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use self::engine::Command;
use crate::buffer::EvBuffer;

pub use self::adapters::BufferEventIo;
pub use self::builder::{Builder, DEFAULT_MAX_SINGLE_IO};
pub use self::context::{Callbacks, Context, DataCallback, EventCallback, Input, Output};
#[cfg(feature = "dns")]
pub use self::dns::{DnsError, DnsErrorKind, Family, Resolver};
pub use self::events::{Direction, Events, FlushMode, Watermarks};
pub use self::filter::{Filter, FilterResult, Filtered, PassThrough};
pub use self::pair::Pair;
pub use self::shared::{Closed, EventRecord};

/// What a bufferevent can run over: any byte stream a Tokio task can own.
///
/// Implemented for every `AsyncRead + AsyncWrite + Send + Unpin + 'static` type:
/// `TcpStream`, `UnixStream`, `tokio::io::DuplexStream`, TLS streams, ...
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A handle to a bufferevent (`struct bufferevent *`): cheap to clone, `Send + Sync`,
/// usable from any thread.
///
/// Every operation is a message to the bufferevent's task, applied in order; the
/// facts handles poll often (buffer lengths, enabled directions, connected, closed)
/// are published by the task and read without a round trip. Dropping every handle
/// does not stop a bufferevent that still has callbacks and a peer to serve; it ends
/// when it is freed or closed, or when no handle is left and nothing more can happen
/// (the peer finished and the output is sent, or it has no callbacks and nothing left
/// to send).
///
/// Memory: a handle shares one allocation with its bufferevent (about 340 bytes: the
/// published facts and the command queue). Once no handle is left, nor any handle
/// that a pair partner or a filter could hand out, the bufferevent drops it and
/// publishes nothing more, so a server that keeps no handles (as libevent servers keep
/// only the callbacks' context) pays for the task alone: about 1.1 KiB per idle TCP
/// connection, see `docs/PERFORMANCE.md`.
///
/// Operations on a bufferevent that has ended do nothing; the async ones report it
/// with an error of kind [`io::ErrorKind::NotConnected`].
pub struct BufferEvent<T = TcpStream, S = ()> {
    remote: Arc<shared::Remote<T, S>>,
    runtime: Handle,
}

impl<T, S> Clone for BufferEvent<T, S> {
    fn clone(&self) -> Self {
        self.remote.mailbox.add_handle();
        Self {
            remote: Arc::clone(&self.remote),
            runtime: self.runtime.clone(),
        }
    }
}

impl<T, S> Drop for BufferEvent<T, S> {
    fn drop(&mut self) {
        self.remote.mailbox.drop_handle();
    }
}

impl<T, S> BufferEvent<T, S> {
    fn shared(&self) -> &shared::Shared {
        &self.remote.shared
    }
}

impl BufferEvent {
    /// A [`Builder`] for a bufferevent without user state.
    pub fn builder() -> Builder<()> {
        Builder::new(())
    }

    /// A [`Builder`] for a bufferevent whose callbacks share `state`, owned by its task.
    pub fn builder_with_state<S: Send + 'static>(state: S) -> Builder<S> {
        Builder::new(state)
    }
}

/// A handle that does not keep its bufferevent alive: what a pair element keeps of
/// its partner, and a filter of its underlying bufferevent.
struct WeakHandle<T, S> {
    remote: std::sync::Weak<shared::Remote<T, S>>,
    runtime: Handle,
}

impl<T, S> WeakHandle<T, S> {
    fn of(bev: &BufferEvent<T, S>) -> Self {
        Self {
            remote: Arc::downgrade(&bev.remote),
            runtime: bev.runtime.clone(),
        }
    }

    /// A handle, unless the bufferevent has ended.
    fn upgrade(&self) -> Option<BufferEvent<T, S>> {
        let remote = self.remote.upgrade()?;
        if remote.shared.is_closed() {
            return None;
        }
        remote.mailbox.add_handle();
        Some(BufferEvent {
            remote,
            runtime: self.runtime.clone(),
        })
    }
}

fn ended() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the bufferevent has ended")
}

impl<T, S> BufferEvent<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    fn send(&self, command: Command<T, S>) -> bool {
        self.remote.mailbox.send(command)
    }

    /// Refuses writes once the write side is shut down or failed: they could never
    /// be sent.
    fn check_writable(&self) -> io::Result<()> {
        if self.shared().is_closed() {
            Err(ended())
        } else if self.shared().write_closed.load(Ordering::Acquire) {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the bufferevent's write side is closed",
            ))
        } else {
            Ok(())
        }
    }

    fn run(&self, f: impl FnOnce(&mut Context<'_, S>) + Send + 'static) {
        self.send(Command::Run(Box::new(f)));
    }

    // ---- settings ----------------------------------------------------------------

    /// Enables directions (`bufferevent_enable`). Enabling WRITE with an empty output
    /// yields one write callback (B-14); enabling restarts the direction's timeout.
    pub fn enable(&self, dirs: Direction) {
        self.run(move |ctx| ctx.enable(dirs));
    }

    /// Disables directions (`bufferevent_disable`).
    pub fn disable(&self, dirs: Direction) {
        self.run(move |ctx| ctx.disable(dirs));
    }

    /// The enabled directions as last published by the task (`bufferevent_get_enabled`).
    /// A direction paused by a watermark still counts as enabled.
    pub fn enabled(&self) -> Direction {
        Direction::from_bits_truncate(self.shared().enabled.load(Ordering::Acquire))
    }

    /// Sets the watermarks of one or both directions (`bufferevent_setwatermark`).
    pub fn set_watermarks(&self, dirs: Direction, wm: Watermarks) {
        self.run(move |ctx| ctx.set_watermarks(dirs, wm));
    }

    /// The watermarks of `dir`, or `None` unless `dir` is exactly one direction
    /// (`bufferevent_getwatermark`, B-24). As last published by the task.
    pub fn watermarks(&self, dir: Direction) -> Option<Watermarks> {
        let s = self.shared().settings();
        if dir == Direction::READ {
            Some(s.read_wm)
        } else if dir == Direction::WRITE {
            Some(s.write_wm)
        } else {
            None
        }
    }

    /// Sets the read and write timeouts (`bufferevent_set_timeouts`); `None` or zero
    /// means none.
    pub fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) {
        self.run(move |ctx| ctx.set_timeouts(read, write));
    }

    /// The read and write timeouts, as last published by the task.
    pub fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        let s = self.shared().settings();
        (s.read_timeout, s.write_timeout)
    }

    /// Replaces the callbacks and returns the previous ones (`bufferevent_setcb`;
    /// the returned set is `bufferevent_getcb`).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// If cancelled, the callbacks may or may not have been replaced.
    pub async fn set_callbacks(&self, callbacks: Callbacks<S>) -> io::Result<Callbacks<S>> {
        self.with(move |ctx| ctx.set_callbacks(callbacks)).await
    }

    // ---- data ------------------------------------------------------------------

    /// Queues `data` for sending without waiting (`bufferevent_write`). Never blocks,
    /// whatever the watermarks say.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::BrokenPipe`] if the write side was shut down or failed;
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    pub fn write_now(&self, data: impl Into<Bytes>) -> io::Result<()> {
        let data = data.into();
        if data.is_empty() {
            return Ok(()); // B-28
        }
        self.check_writable()?;
        self.shared()
            .in_flight
            .fetch_add(data.len(), Ordering::AcqRel);
        let n = data.len();
        if self.send(Command::Write(data)) {
            Ok(())
        } else {
            self.shared().in_flight.fetch_sub(n, Ordering::AcqRel);
            Err(ended())
        }
    }

    /// Queues `data` for sending, first waiting while the output is above the write
    /// high watermark when one is set: backpressure for async writers.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if cancelled while waiting, nothing was queued.
    pub async fn write(&self, data: impl Into<Bytes>) -> io::Result<()> {
        let data = data.into();
        self.writable().await?;
        self.write_now(data)
    }

    /// Waits until the output is at or below the write high watermark (immediately
    /// when none is set).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn writable(&self) -> io::Result<()> {
        let ok = self
            .shared()
            .wait_until(|s| {
                let high = s.write_high.load(Ordering::Acquire);
                high == 0 || s.output_total() <= high || s.write_closed.load(Ordering::Acquire)
            })
            .await;
        if !ok || self.shared().is_closed() {
            return Err(ended());
        }
        self.check_writable()
    }

    /// Moves all of `buf` to the output without copying (`bufferevent_write_buffer`);
    /// `buf` is left empty.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended (`buf` is left
    /// empty all the same).
    pub fn write_buffer(&self, buf: &mut EvBuffer) -> io::Result<()> {
        let moved = std::mem::take(buf);
        let n = moved.len();
        if n == 0 {
            return Ok(());
        }
        self.check_writable()?;
        self.shared().in_flight.fetch_add(n, Ordering::AcqRel);
        if self.send(Command::WriteBuffer(moved)) {
            Ok(())
        } else {
            self.shared().in_flight.fetch_sub(n, Ordering::AcqRel);
            Err(ended())
        }
    }

    /// Removes up to `max` bytes from the input (`bufferevent_read`); empty when the
    /// input is empty.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if cancelled after the task removed the bytes, they are lost.
    pub async fn read(&self, max: usize) -> io::Result<Bytes> {
        self.with(move |ctx| ctx.input().remove_bytes(max)).await
    }

    /// Moves the whole input into a new buffer without copying
    /// (`bufferevent_read_buffer`).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`read`](Self::read).
    pub async fn read_buffer(&self) -> io::Result<EvBuffer> {
        self.with(|ctx| {
            let mut out = EvBuffer::new();
            let _ = ctx.input().remove_into(&mut out);
            out
        })
        .await
    }

    /// Bytes in the input, as last published by the task.
    pub fn input_len(&self) -> usize {
        self.shared().input_len.load(Ordering::Acquire)
    }

    /// Bytes waiting to be sent, including writes the task has not applied yet.
    pub fn output_len(&self) -> usize {
        self.shared().output_total()
    }

    // ---- control -------------------------------------------------------------------

    /// Runs `f` on the task with the bufferevent's [`Context`] and returns its result:
    /// an atomic batch of operations (libevent's `bufferevent_lock`/`unlock`). No
    /// callback or I/O runs in between.
    ///
    /// A panic in `f` is contained like a panicking callback: the bufferevent ends
    /// with an error.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    ///
    /// # Cancel safety
    ///
    /// If cancelled, `f` may or may not run.
    pub async fn with<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Context<'_, S>) -> R + Send + 'static,
    ) -> io::Result<R> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Ask(Box::new(move |ctx| {
            let out = f(ctx);
            Box::new(move || {
                let _ = tx.send(out);
            })
        })));
        rx.await.map_err(|_| ended())
    }

    /// Flushes (`bufferevent_flush`); what that means depends on the kind of
    /// bufferevent, see [`Context::flush`].
    pub fn flush(&self, dirs: Direction, mode: FlushMode) {
        self.run(move |ctx| ctx.flush(dirs, mode));
    }

    /// Runs the read and/or write callback as if data had arrived or drained
    /// (`bufferevent_trigger`), honouring the watermarks unless `ignore_watermarks`.
    pub fn trigger(&self, dirs: Direction, ignore_watermarks: bool) {
        self.run(move |ctx| ctx.trigger(dirs, ignore_watermarks));
    }

    /// Delivers `events` to the event callback (`bufferevent_trigger_event`).
    pub fn trigger_event(&self, events: Events) {
        self.run(move |ctx| ctx.trigger_event(events));
    }

    /// Frees the bufferevent (`bufferevent_free`): no callback runs afterwards,
    /// pending output is discarded (B-55), and the transport is closed by the task.
    /// Use [`close`](Self::close) to send the output first.
    pub fn free(&self) {
        self.run(|ctx| ctx.free());
    }

    /// Sends what is queued, shuts down the write side, then frees: the graceful end.
    /// Resolves with how the bufferevent ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the close goes on without the caller.
    pub async fn close(&self) -> Closed {
        self.run(|ctx| ctx.close());
        self.closed().await
    }

    /// The runtime the task runs on (`bufferevent_get_base`).
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// Whether the bufferevent has a connected transport (false before a connect
    /// completes and after the bufferevent ended).
    pub fn is_connected(&self) -> bool {
        self.shared().connected.load(Ordering::Acquire)
    }

    /// Whether the bufferevent has ended.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    // ---- readiness ---------------------------------------------------------------

    /// Waits until the input holds at least `n` bytes. Resolves early if no more data
    /// can arrive (EOF, error, end); check [`input_len`](Self::input_len).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: waiting consumes nothing. Any number of tasks may wait at once.
    pub async fn readable(&self, n: usize) {
        self.shared()
            .wait_until(|s| {
                s.input_len.load(Ordering::Acquire) >= n || s.read_closed.load(Ordering::Acquire)
            })
            .await;
    }

    /// Waits until the output is at or below the write low watermark (empty with the
    /// default of 0), or the bufferevent ended.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Any number of tasks may wait at once.
    pub async fn drained(&self) {
        self.shared()
            .wait_until(|s| s.output_total() <= s.write_low.load(Ordering::Acquire))
            .await;
    }

    /// Waits until the bufferevent has a connected transport; `false` if a connect
    /// attempt failed or the bufferevent ended first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Any number of tasks may wait at once.
    pub async fn connected(&self) -> bool {
        let failures = self.shared().connect_failures.load(Ordering::Acquire);
        let failed = |s: &shared::Shared| s.connect_failures.load(Ordering::Acquire) != failures;
        self.shared()
            .wait_until(|s| s.connected.load(Ordering::Acquire) || failed(s))
            .await;
        self.shared().connected.load(Ordering::Acquire)
    }

    /// Waits until the bufferevent has ended and says how.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Any number of tasks may wait at once.
    pub async fn closed(&self) -> Closed {
        self.shared().wait_until(|s| s.is_closed()).await;
        self.shared().closed().unwrap_or(Closed {
            events: Events::empty(),
            error: None,
            unsent: 0,
        })
    }

    /// The most recent event delivered to the event callback, if any, without
    /// waiting.
    pub fn last_event(&self) -> Option<EventRecord> {
        self.shared().last_event()
    }

    /// The socket's file descriptor (`bufferevent_getfd`), or `None` without a
    /// socket (a pair, a stream that is not a `TcpStream`). A filter reports its
    /// underlying bufferevent's (B-93).
    #[cfg(unix)]
    pub fn fd(&self) -> Option<std::os::fd::RawFd> {
        self.shared().info().fd
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared().info().local
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.shared().info().peer
    }

    /// Waits for the next event delivered after the call; `None` if the bufferevent
    /// ended without one.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. Any number of tasks may wait at once; each sees the event.
    pub async fn next_event(&self) -> Option<EventRecord> {
        let seen = self.shared().event_seq();
        let got = self.shared().wait_until(|s| s.event_seq() != seen).await;
        if got {
            self.shared().last_event()
        } else {
            None
        }
    }
}

impl<T, S> BufferEvent<T, S>
where
    T: Transport,
    S: Send + 'static,
{
    /// Stops the bufferevent and returns its transport, or `None` if it has none or
    /// has already ended. Pending output is not sent.
    ///
    /// # Cancel safety
    ///
    /// If cancelled, the transport is dropped (closed).
    pub async fn into_inner(self) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        if !self.send(Command::IntoInner(tx)) {
            return None;
        }
        rx.await.ok().flatten()
    }

    /// The bufferevent under this one (`bufferevent_get_underlying`): always `None`,
    /// since a stream bufferevent sits directly on its transport, as libevent's socket
    /// bufferevent returns `NULL`. The item type is uninhabited; a filtering
    /// bufferevent's `underlying()` (on [`BufferEvent<Filtered<T, U>, S>`](Filtered))
    /// returns the handle of the bufferevent it filters.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::net::{TcpListener, TcpStream};
    /// use tokio_bufferevent::bufferevent::BufferEvent;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = TcpListener::bind("127.0.0.1:0").await?;
    /// let stream = TcpStream::connect(listener.local_addr()?).await?;
    /// let bev = BufferEvent::builder().tcp(stream)?;
    /// assert!(bev.underlying().is_none());
    /// # Ok(()) }
    /// ```
    pub fn underlying(&self) -> Option<std::convert::Infallible> {
        None
    }

    /// Gives the bufferevent a (new) transport (`bufferevent_setfd`); the previous one
    /// is closed. Reading and writing resume as enabled.
    pub fn set_transport(&self, transport: T) {
        self.shared().set_info(shared::TransportInfo::default());
        self.send(Command::SetTransport(transport));
    }
}

impl<S> BufferEvent<TcpStream, S>
where
    S: Send + 'static,
{
    /// Starts connecting to `addr` (`bufferevent_socket_connect`); the previous
    /// transport, if any, is closed when the new one is installed.
    ///
    /// Returns at once. Writes made before the connect completes are sent after it, in
    /// order. Success delivers `CONNECTED` alone, then the queued data goes out, then
    /// the write callback runs if the output drained (B-50); a later failure delivers
    /// `ERROR` (plus `TIMEOUT` when the builder's connect timeout expired) with the
    /// error and no direction bit, leaving the enabled directions as they were (B-33).
    ///
    /// # Errors
    ///
    /// An immediate failure, such as a socket that cannot be created; no callback runs
    /// then (B-48). [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.connect_with(connect::start(addr)?)
    }

    /// Connects to the first of `addrs` that accepts, trying them one after another
    /// (libevent tries only the first address of a lookup). Addresses of both families
    /// are tried alternately, starting with the family of the first, as RFC 8305
    /// (Happy Eyeballs) orders them; the attempts are not staggered in parallel. If all
    /// fail, the event callback gets `ERROR` with the last error. The builder's connect
    /// timeout covers all the attempts together. Otherwise as
    /// [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `addrs` is empty (no callback runs);
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::net::TcpStream;
    /// use tokio_bufferevent::bufferevent::BufferEvent;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    /// let bev = BufferEvent::builder().unconnected::<TcpStream>();
    /// bev.connect_any([nobody, listener.local_addr()?])?; // the first refuses
    /// assert!(bev.connected().await);
    /// assert_eq!(bev.peer_addr(), Some(listener.local_addr()?));
    /// # Ok(()) }
    /// ```
    pub fn connect_any(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> io::Result<()> {
        let addrs = connect::interleave_families(addrs.into_iter().collect());
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to connect to",
            ));
        }
        self.connect_with(connect::first_that_accepts(addrs))
    }

    /// Resolves `host` and connects to its addresses
    /// (`bufferevent_socket_connect_hostname`).
    ///
    /// Address literals (`127.0.0.1`, `::1`, `[::1]`) skip DNS. Otherwise `resolver`
    /// (or, with `None`, a process-wide one built from the system configuration on a
    /// blocking thread) looks the name up without blocking; reading and writing wait
    /// meanwhile, and data written goes out after the connect (B-53). The addresses
    /// are tried in turn as in [`connect_any`](Self::connect_any), where libevent tries
    /// only the first. A failed lookup delivers `ERROR` with the error, and
    /// [`dns_error`](Self::dns_error) says what went wrong.
    ///
    /// # Errors
    ///
    /// Returned at once, with no callback (B-53): port 0, an empty host, or a literal
    /// of the wrong family ([`io::ErrorKind::InvalidInput`]); a socket that cannot be
    /// created; [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::net::TcpStream;
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Family, Resolver};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let port = listener.local_addr()?.port();
    /// let bev = BufferEvent::builder().unconnected::<TcpStream>();
    /// // A literal needs no lookup; a name would go to `resolver`.
    /// let resolver = Resolver::with_name_servers(
    ///     &["127.0.0.1:53".parse().unwrap()],
    ///     Duration::from_secs(2),
    /// )?;
    /// bev.connect_hostname(Some(&resolver), Family::Unspec, "127.0.0.1", port)?;
    /// assert!(bev.connected().await);
    /// assert!(bev.dns_error().is_none());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "dns")]
    pub fn connect_hostname(
        &self,
        resolver: Option<&Resolver>,
        family: Family,
        host: &str,
        port: u16,
    ) -> io::Result<()> {
        let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()));
        if port == 0 {
            return invalid("port must be in 1..=65535");
        }
        if host.is_empty() {
            return invalid("empty host name");
        }
        self.shared().set_dns_error(None);
        if let Some(ip) = dns::literal(host) {
            let admitted = match family {
                Family::Inet => ip.is_ipv4(),
                Family::Inet6 => ip.is_ipv6(),
                Family::Unspec => true,
            };
            if !admitted {
                return invalid("the address literal is not of the family asked for");
            }
            return self.connect(SocketAddr::new(ip, port));
        }
        let resolver = resolver.cloned();
        // Weak: the future waits in this bufferevent's own mailbox.
        let remote = Arc::downgrade(&self.remote);
        let host = host.to_owned();
        self.connect_with(async move {
            let looked_up = match resolver {
                Some(resolver) => resolver.lookup(&host, family, port).await,
                None => match Resolver::global().await {
                    Ok(resolver) => resolver.lookup(&host, family, port).await,
                    Err(e) => Err(e),
                },
            };
            match looked_up {
                Ok(addrs) => {
                    tracing::debug!(%host, ?addrs, "resolved");
                    connect::first_that_accepts(connect::interleave_families(addrs)).await
                }
                Err(e) => {
                    let error = e.to_io_error();
                    if let Some(remote) = remote.upgrade() {
                        remote.shared.set_dns_error(Some(e));
                    }
                    Err(error)
                }
            }
        })
    }

    /// Why the last hostname lookup failed (`bufferevent_socket_get_dns_error`);
    /// `None` while none has failed since the last
    /// [`connect_hostname`](Self::connect_hostname).
    #[cfg(feature = "dns")]
    pub fn dns_error(&self) -> Option<DnsError> {
        self.shared().dns_error()
    }

    /// Takes over a connect the caller already started (`bufferevent_socket_connect`
    /// with an fd that is connecting and a null address, B-49): `connecting` is, for
    /// example, `TcpSocket::connect`'s future. Events as for [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotConnected`] if the bufferevent has ended.
    pub fn connect_with<F>(&self, connecting: F) -> io::Result<()>
    where
        F: Future<Output = io::Result<TcpStream>> + Send + 'static,
    {
        let timeout = self.shared().connect_timeout();
        let connecting = async move {
            let stream = match timeout {
                None => connecting.await?,
                Some(limit) => tokio::time::timeout(limit, connecting)
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("connect timed out after {limit:?}"),
                        )
                    })??,
            };
            let info = shared::TransportInfo::of_tcp(&stream);
            Ok((stream, info))
        };
        if self.send(Command::Connect(Box::pin(connecting))) {
            Ok(())
        } else {
            Err(ended())
        }
    }

    /// Gives the bufferevent a connected `TcpStream` (`bufferevent_setfd`), keeping
    /// its descriptor and addresses for [`fd`](Self::fd) and friends.
    pub fn set_tcp(&self, stream: TcpStream) {
        let info = shared::TransportInfo::of_tcp(&stream);
        let _ = stream.set_nodelay(true);
        self.remote.mailbox.send(Command::SetTransport(stream));
        self.shared().set_info(info);
    }
}

impl<T, S> fmt::Debug for BufferEvent<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferEvent")
            .field("input", &self.shared().input_len.load(Ordering::Relaxed))
            .field("output", &self.shared().output_total())
            .field(
                "enabled",
                &Direction::from_bits_truncate(self.shared().enabled.load(Ordering::Relaxed)),
            )
            .field("closed", &self.shared().is_closed())
            .finish()
    }
}
