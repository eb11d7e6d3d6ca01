//! libevent's *bufferevents* and *evbuffers*, natively on Tokio.
//!
//! A bufferevent is a connection with an input buffer and an output buffer: bytes that
//! arrive are appended to the input, bytes the application adds to the output are sent
//! as fast as the transport takes them, and callbacks fire when enough data arrived,
//! when the output drained, on timeouts, EOF and errors. This crate brings that model
//! to Tokio for applications that need buffered connections with real flow control, and
//! for programs being ported from libevent.
//!
//! # Buffers
//!
//! The foundation is [`EvBuffer`](buffer::EvBuffer), libevent's `evbuffer`: a byte
//! queue held as a chain of chunks that appends and drains cheaply, moves chunks between
//! buffers without copying, reads lines in libevent's five end-of-line styles and
//! searches across chunk boundaries.
//!
//! ```
//! use tokio_bufferevent::buffer::{EolStyle, EvBuffer};
//!
//! let mut input = EvBuffer::new();
//! input.add(b"PING\r\nPI")?;
//! assert_eq!(input.readln(EolStyle::Crlf)?.as_deref(), Some(&b"PING"[..]));
//! assert_eq!(input.readln(EolStyle::Crlf)?, None); // "PI" waits for the rest
//!
//! let mut output = EvBuffer::new();
//! let n = output.add_fmt(format_args!("PONG {}\r\n", 1))?;
//! assert_eq!(n, 8);
//! # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
//! ```
//!
//! # Bufferevents
//!
//! A [`BufferEvent`](bufferevent::BufferEvent) is one Tokio task that owns a transport
//! and an input and an output `EvBuffer`, with read, write and event callbacks, watermarks
//! and timeouts, driven from anywhere through a cloneable handle or awaited through
//! readiness futures and `Stream`/`Sink`/`AsyncRead`/`AsyncWrite` adapters. The
//! transport is a `TcpStream` (connected by address or, with the `dns` feature, by
//! hostname) or any `AsyncRead + AsyncWrite` stream; or the other element of a
//! [pair](bufferevent::BufferEvent::pair); or another bufferevent under a
//! [filter](bufferevent::BufferEvent::filter). The [`filters`] module ships zlib
//! (feature `deflate`) and TLS (feature `tls`) filters.
//!
//! A server whose connections answer each line in their read callback, and an async
//! client that writes and reads lines without any callback:
//!
//! ```
//! use tokio::net::{TcpListener, TcpStream};
//! use tokio_bufferevent::buffer::EolStyle;
//! use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! // The server: one bufferevent per connection, run by its callbacks.
//! tokio::spawn(async move {
//!     while let Ok((stream, _)) = listener.accept().await {
//!         let served = BufferEvent::builder()
//!             .enable(Direction::READ)
//!             .on_read(|ctx| {
//!                 let (mut input, mut output, ()) = ctx.parts();
//!                 while let Some(line) = input.readln(EolStyle::Lf) {
//!                     output.add(b"you said: ");
//!                     output.add_bytes(line);
//!                     output.add(b"\n");
//!                 }
//!             })
//!             .on_event(|ctx, events, _| {
//!                 if events.intersects(Events::EOF | Events::ERROR) {
//!                     ctx.close();
//!                 }
//!             })
//!             .tcp(stream);
//!         drop(served); // it runs on without a handle
//!     }
//! });
//!
//! // The client: awaits instead of callbacks.
//! let client = BufferEvent::builder()
//!     .enable(Direction::READ)
//!     .tcp(TcpStream::connect(addr).await?)?;
//! client.write(&b"hello\n"[..]).await?;
//! let answer = client.read_line(EolStyle::Lf, 1024).await?;
//! assert_eq!(answer, &b"you said: hello"[..]);
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! What each feature adds to a cold release build of the library alone, measured on
//! the project's 2-core machine (2026-12-02; the crate without features: 22 crates,
//! about 19 s):
//!
//! | feature | default | what it gives | build cost |
//! |---|---|---|---|
//! | `dns` | yes | `connect_hostname` through hickory-resolver | +92 crates, about +45 s |
//! | `deflate` | no | zlib filters on flate2 (`filters::deflate`) | +6 crates, a few seconds |
//! | `tls` | no | TLS filters on rustls with ring (`filters::tls`) | +11 crates, about +20 s (ring's C code) |
//!
//! The design, and every deliberate difference from libevent, is described in the
//! crate's `docs/` directory.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod buffer;
pub mod bufferevent;
pub mod filters;
pub mod listener;
mod wait;

/// The README's code, compiled (and, where it ends by itself, run) as doctests, so the
/// first code a user reads cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
