//! Ports the first example of libevent's "Bufferevents: concepts and basics" chapter
//! (section "Launching connections on socket-based bufferevents"): a bufferevent
//! created without a socket (`bufferevent_socket_new(base, -1, ...)`) whose event
//! callback reports `BEV_EVENT_CONNECTED` or `BEV_EVENT_ERROR` for a connect attempt.
//!
//! ```text
//! cargo run --example seed_connect
//! ```
//!
//! It needs no arguments and no setup: instead of the chapter's 127.0.0.1:8080 it
//! starts its own server on `127.0.0.1:0`, connects to it (CONNECTED: the event
//! callback then starts writing, and the server prints what it received), and then
//! connects to a port nobody listens on (ERROR). It exits non-zero unless both
//! outcomes are the expected ones.
//!
//! `BufferEvent::connect` is libevent's `bufferevent_socket_connect`: it returns at
//! once and reports the outcome to the event callback, with the error itself on
//! failure.
//!
//! The chapter's note on what happens without `bufferevent_socket_connect` (the
//! connection is then reported as a write) is ported in `seed_connect_yourself`.

use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_bufferevent::bufferevent::{BufferEvent, Context, Events};

type BoxError = Box<dyn Error + Send + Sync>;

/// What the event callback saw, sent to `run` (the C example only has comments there).
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Connected,
    Error,
}

/// The callback argument (`void *ptr` in the C): where to report.
struct Info {
    report: mpsc::UnboundedSender<Outcome>,
}

/// The chapter's `eventcb`.
fn eventcb(ctx: &mut Context<'_, Info>, events: Events, error: Option<&io::Error>) {
    if events.contains(Events::CONNECTED) {
        // We're connected. Ordinarily we'd do something here, like start reading or
        // writing: so we write. The output may be filled at any time; it is sent once
        // the bufferevent has a connected socket.
        println!("eventcb: {events:?}: connected, sending a greeting");
        ctx.output().add(b"hello from the connect example\n");
        let _ = ctx.state().report.send(Outcome::Connected);
    } else if events.contains(Events::ERROR) {
        // An error occurred while connecting; the callback gets the error itself.
        let reason = error.map_or_else(|| "unknown".to_owned(), ToString::to_string);
        println!("eventcb: {events:?}: an error occurred while connecting: {reason}");
        let _ = ctx.state().report.send(Outcome::Error);
    }
}

/// The chapter's `main_loop`, for one address: a socket-less bufferevent with only an
/// event callback, then a connect. Returns what the event callback reported.
async fn main_loop(addr: SocketAddr) -> Result<(BufferEvent<TcpStream, Info>, Outcome), BoxError> {
    let (report, mut outcomes) = mpsc::unbounded_channel();
    // `bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)`: no socket yet. The
    // bufferevent owns whatever socket it gets and closes it when freed.
    let bev = BufferEvent::builder_with_state(Info { report })
        // `bufferevent_setcb(bev, NULL, NULL, eventcb, NULL)`: only an event callback.
        .on_event(eventcb)
        .unconnected::<TcpStream>();
    println!("connecting to {addr}");
    // `bufferevent_socket_connect(bev, addr)`: returns at once; the outcome arrives
    // at the event callback.
    bev.connect(addr)?;
    // `event_base_dispatch(base)`: the bufferevent's task runs by itself; we only wait
    // for the callback's report.
    let outcome = outcomes
        .recv()
        .await
        .ok_or("the event callback never reported")?;
    Ok((bev, outcome))
}

/// Runs the example: one connect that succeeds, one that fails.
async fn run() -> Result<(), BoxError> {
    // The server the chapter assumes on 127.0.0.1:8080, on a free port instead.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await?;
        let mut greeting = String::new();
        stream.read_to_string(&mut greeting).await?;
        println!("server: {peer} sent {greeting:?}");
        Ok::<_, io::Error>(greeting)
    });

    let (bev, outcome) = main_loop(addr).await?;
    assert_eq!(
        outcome,
        Outcome::Connected,
        "connecting to a listening server"
    );
    assert!(bev.is_connected());
    assert_eq!(bev.peer_addr(), Some(addr));
    // Send the greeting the event callback queued, shut down the write side, free.
    let closed = bev.close().await;
    assert_eq!(closed.unsent, 0, "the greeting was sent");
    let greeting = server.await??;
    assert_eq!(greeting, "hello from the connect example\n");

    // A port nobody listens on: bound, not listening, and held while we connect, so
    // nothing else can take it meanwhile.
    let held = tokio::net::TcpSocket::new_v4()?;
    held.bind("127.0.0.1:0".parse().unwrap())?;
    let refused = held.local_addr()?;
    let (bev, outcome) = main_loop(refused).await?;
    assert_eq!(outcome, Outcome::Error, "connecting to a closed port");
    assert!(!bev.is_connected());
    bev.free();
    println!("seed_connect: OK");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
