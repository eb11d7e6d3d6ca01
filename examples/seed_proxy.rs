//! Ports `read_callback_proxy` from libevent's "Bufferevents: concepts and basics"
//! chapter (section "Manipulating data in a bufferevent"): the read callback of a
//! simple proxy, which moves everything one connection (`bev`) read into the output of
//! the other (`inf->other_bev`) with `bufferevent_read_buffer`, "copying as little as
//! possible".
//!
//! ```text
//! cargo run --example seed_proxy
//! ```
//!
//! The chapter shows only that one call. A proxy built on it alone buffers without
//! bound when one side sends faster than the other receives, so this port adds the
//! backpressure of libevent's own `sample/le-proxy.c`: when the other side's output
//! reaches [`MAX_OUTPUT`], stop reading and give the other side a write low watermark
//! of half that; its write callback, run once it has drained that far, resumes
//! reading. An event callback passes EOF and errors on as le-proxy's does.
//!
//! It needs no arguments and no setup: it starts an echo server and the proxy in
//! front of it on `127.0.0.1:0`, then sends 8 MiB through the proxy while reading the
//! echo back. The server reads nothing until the proxy has had to stop reading once,
//! so the backpressure path runs every time. It exits non-zero unless every byte comes
//! back in order, the proxy paused and resumed as often, and its buffered output
//! stayed near [`MAX_OUTPUT`].

use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::buffer::EvBuffer;
use tokio_bufferevent::bufferevent::{
    BufferEvent, Context, DEFAULT_MAX_SINGLE_IO, Direction, Events, FlushMode, Watermarks,
};

type BoxError = Box<dyn Error + Send + Sync>;

/// Stop reading from one side while the other has this much left to send.
const MAX_OUTPUT: usize = 64 * 1024;
/// What the client sends through the proxy (and gets back from the echo server).
const TOTAL: usize = 8 << 20;

/// One side of the proxy.
type ProxyBev = BufferEvent<TcpStream, ProxyInfo>;

/// The chapter's `struct proxy_info`, plus counters shared by both sides.
struct ProxyInfo {
    /// The other side; `None` until both exist, and after this side's EOF.
    other_bev: Option<ProxyBev>,
    stats: Arc<Stats>,
}

/// What the proxy did, for the printout and the checks.
#[derive(Debug, Default)]
struct Stats {
    pauses: AtomicUsize,
    resumes: AtomicUsize,
    /// The most the other side had queued, as seen right after a move.
    peak_queued: AtomicUsize,
}

/// The chapter's `read_callback_proxy`, with le-proxy's backpressure.
fn read_callback_proxy(ctx: &mut Context<'_, ProxyInfo>) {
    // `bufferevent_read_buffer(bev, bufferevent_get_output(inf->other_bev))`. A
    // callback only reaches its own buffers; the other side's output is reached through
    // its handle, which moves the chunks to the other task without copying a byte.
    let mut data = EvBuffer::new();
    let _ = ctx.input().remove_into(&mut data);
    let inf = ctx.state();
    let Some(other) = &inf.other_bev else {
        return; // no other side (any more): the data is dropped, as le-proxy does
    };
    if other.write_buffer(&mut data).is_err() {
        return; // the other side has ended
    }
    // Its output, counting what is still on the way to it.
    let queued = other.output_len();
    inf.stats.peak_queued.fetch_max(queued, Ordering::Relaxed);
    if queued >= MAX_OUTPUT {
        // We're giving the other side data faster than it can pass it on. Stop reading
        // here until it has drained to MAX_OUTPUT / 2: its write callback then runs
        // (`drained_write_callback`). The trigger makes it run even if the other side
        // drained that far before it got the new watermark; both requests reach the
        // other task after the data, in order.
        other.set_watermarks(
            Direction::WRITE,
            Watermarks::new(MAX_OUTPUT / 2, MAX_OUTPUT),
        );
        other.trigger(Direction::WRITE, false);
        inf.stats.pauses.fetch_add(1, Ordering::Relaxed);
        ctx.disable(Direction::READ);
    }
}

/// le-proxy's `drained_writecb`: this side's output is down to the low watermark, so
/// the other side, which stopped reading for our sake, may read again.
fn drained_write_callback(ctx: &mut Context<'_, ProxyInfo>) {
    // Only a side that choked the other has a low watermark (le-proxy swaps the write
    // callback in and out instead; here the watermark says whether it is "in").
    if ctx.watermarks(Direction::WRITE).unwrap_or_default().low == 0 {
        return;
    }
    ctx.set_watermarks(Direction::WRITE, Watermarks::new(0, 0));
    let inf = ctx.state();
    if let Some(other) = &inf.other_bev {
        other.enable(Direction::READ);
        inf.stats.resumes.fetch_add(1, Ordering::Relaxed);
    }
}

/// le-proxy's `eventcb`: on EOF or an error, pass on what is left, let the other side
/// send everything it has and then shut down its write side, and free this side.
fn event_callback(ctx: &mut Context<'_, ProxyInfo>, events: Events, error: Option<&io::Error>) {
    if !events.intersects(Events::EOF | Events::ERROR) {
        return;
    }
    match error {
        Some(e) => println!("proxy: {events:?}: {e}"),
        None => println!("proxy: {events:?}"),
    }
    let mut rest = EvBuffer::new();
    let _ = ctx.input().remove_into(&mut rest);
    if let Some(other) = ctx.state().other_bev.take() {
        let _ = other.write_buffer(&mut rest);
        other.flush(Direction::WRITE, FlushMode::Finished);
    }
    // Like le-proxy, this discards what this side still had to send to its peer.
    ctx.free();
}

/// One side of the proxy, without its partner yet (and so not reading yet).
fn proxy_side(stream: TcpStream, stats: &Arc<Stats>) -> io::Result<ProxyBev> {
    BufferEvent::builder_with_state(ProxyInfo {
        other_bev: None,
        stats: Arc::clone(stats),
    })
    .on_read(read_callback_proxy)
    .on_write(drained_write_callback)
    .on_event(event_callback)
    .tcp(stream)
}

/// Accepts one client and connects it to `server` through two bufferevents.
async fn proxy(
    listener: TcpListener,
    server: SocketAddr,
    stats: Arc<Stats>,
) -> io::Result<(ProxyBev, ProxyBev)> {
    let (client, _) = listener.accept().await?;
    let a = proxy_side(client, &stats)?;
    let b = proxy_side(TcpStream::connect(server).await?, &stats)?;
    // Introduce them to each other, then start reading: before this, nothing read
    // could have been passed on.
    for (this, other) in [(&a, &b), (&b, &a)] {
        let other = other.clone();
        this.with(move |ctx| {
            ctx.state().other_bev = Some(other);
            ctx.enable(Direction::READ);
        })
        .await?;
    }
    Ok((a, b))
}

/// An echo server that starts reading only once the proxy has paused.
async fn slow_echo(listener: TcpListener, stats: Arc<Stats>) -> io::Result<u64> {
    let (stream, _) = listener.accept().await?;
    while stats.pauses.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut r, mut w) = stream.into_split();
    let echoed = tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await?;
    Ok(echoed)
}

/// Runs the example.
async fn run() -> Result<(), BoxError> {
    let stats = Arc::new(Stats::default());
    let server_listener = TcpListener::bind("127.0.0.1:0").await?;
    let server_addr = server_listener.local_addr()?;
    let server = tokio::spawn(slow_echo(server_listener, Arc::clone(&stats)));
    let proxy_listener = TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = proxy_listener.local_addr()?;
    let proxy = tokio::spawn(proxy(proxy_listener, server_addr, Arc::clone(&stats)));

    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let (mut from_proxy, mut to_proxy) = TcpStream::connect(proxy_addr).await?.into_split();
    let (a, b) = proxy.await??;
    let sent = data.clone();
    let writer = tokio::spawn(async move { to_proxy.write_all(&sent).await.map(|()| to_proxy) });
    let mut echoed = vec![0; TOTAL];
    from_proxy.read_exact(&mut echoed).await?;
    let to_proxy = writer.await??;
    // Everything came back: close the connection. The proxy passes the EOF on, the
    // server sees it and closes too, and the proxy's other side ends on that EOF.
    drop((from_proxy, to_proxy));
    let echoed_by_server = server.await??;
    let (closed_a, closed_b) = (a.closed().await, b.closed().await);

    let pauses = stats.pauses.load(Ordering::Relaxed);
    let resumes = stats.resumes.load(Ordering::Relaxed);
    let peak = stats.peak_queued.load(Ordering::Relaxed);
    println!(
        "{TOTAL} bytes there and back; the proxy paused {pauses} times, resumed {resumes} \
         times, and queued at most {peak} bytes for one side (limit {MAX_OUTPUT})"
    );
    assert!(echoed == data, "every byte came back, in order");
    assert_eq!(echoed_by_server, TOTAL as u64);
    assert!(pauses >= 1, "the slow server made the proxy pause");
    assert_eq!(resumes, pauses, "every pause ended");
    // Buffering stays near the limit, not near TOTAL. A side stops reading as soon as
    // a move takes the other past the limit, and `output_len()` counts the bytes still
    // on their way to the other task, so it never undercounts (see
    // `output_len_never_undercounts` in tests/examples.rs): the limit is exceeded by
    // less than one read (16 KiB). The bound below leaves a wide margin.
    assert!(
        peak < 2 * MAX_OUTPUT + 2 * DEFAULT_MAX_SINGLE_IO,
        "peak {peak}"
    );
    assert!(closed_a.events.contains(Events::EOF), "{closed_a:?}");
    assert!(closed_b.events.contains(Events::EOF), "{closed_b:?}");
    println!("seed_proxy: OK");
    Ok(())
}

/// Runs [`run`], failing after 60 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(60), run()).await?
}
