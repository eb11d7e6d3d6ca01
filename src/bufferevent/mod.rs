//! [`BufferEvent`]: a connection with an input and an output buffer, driven by one
//! Tokio task, with libevent's callbacks, watermarks and timeouts.
//!
//! Each bufferevent is a task that owns its transport (a `TcpStream` or any
//! `AsyncRead + AsyncWrite` stream) and two [`EvBuffer`](crate::buffer::EvBuffer)s. Bytes that arrive go to the
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
//! by_name.connected().await?;
//! # }
//! for bev in [by_address, any_of, started] {
//!     bev.connected().await?;
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
//! use tokio_bufferevent::bufferevent::{
//!     BufferEvent, Direction, FilterResult, FlushMode, Input, Output, PassThrough,
//! };
//!
//! /// An output filter that reverses each write.
//! fn reverse(src: &mut Input<'_>, dst: &mut Output<'_>, _: Option<usize>, _: FlushMode)
//!     -> std::io::Result<FilterResult>
//! {
//!     let mut data = src.take_all().to_vec();
//!     data.reverse();
//!     dst.add(&data);
//!     Ok(FilterResult::Ok)
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
//! Differences from libevent are listed in [`docs/DIVERGENCES.md`][divergences]; pairs
//! and filters are described in [`docs/pairs-and-filters.md`][pairs-and-filters].
//!
//! [divergences]: https://github.com/tokio-bufferevent/tokio-bufferevent/blob/main/docs/DIVERGENCES.md
//! [pairs-and-filters]: https://github.com/tokio-bufferevent/tokio-bufferevent/blob/main/docs/pairs-and-filters.md

mod adapters;
mod buffers;
mod builder;
mod connect;
mod context;
mod core;
#[cfg(feature = "dns")]
mod dns;
pub(crate) mod engine;
mod error;
mod events;
mod filter;
mod handle;
mod info;
mod mailbox;
pub(crate) mod membership;
mod pair;
mod pipe;
mod ratelim;
mod read;
mod shared;
mod takeout;
mod transport;

pub use self::adapters::{ADAPTER_HIGH_WATERMARK, BufferEventIo};
pub use self::builder::{Builder, DEFAULT_MAX_SINGLE_IO};
pub use self::context::{Callbacks, Context, DataCallback, EventCallback, Input, Output};
pub use self::core::ratelim::{RATE_LIMIT_MAX, RateLimit, RateLimitError};
#[cfg(feature = "dns")]
pub use self::dns::{DnsError, DnsErrorKind, Family, Resolver};
pub use self::error::Error;
pub use self::events::{Direction, Events, FlushMode, Readiness, Watermarks};
pub use self::handle::BufferEvent;
pub use self::pipe::{PIPE_CLOSE_TIMEOUT, PIPE_WATERMARKS, PipeEnd, PipeSide, Piped, pipe};
pub use self::ratelim::RateLimitGroup;
pub use self::shared::{Closed, EventRecord, Stats};
pub use self::transport::Transport;
pub use self::transport::filter::{Filter, FilterResult, Filtered, PassThrough};
pub use self::transport::pair::Pair;
