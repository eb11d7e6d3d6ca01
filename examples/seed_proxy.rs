//! The proxy of libevent's "Bufferevents: concepts and basics" chapter (section
//! "Manipulating data in a bufferevent"), whose read callback `read_callback_proxy`
//! moves everything one connection read into the output of the other with
//! `bufferevent_read_buffer`, "copying as little as possible".
//!
//! ```text
//! cargo run --example seed_proxy
//! ```
//!
//! Here the proxy is a [`Listener`] whose connections are each forwarded to an
//! upstream by [`pipe`]: the chapter's read callback in both directions, without
//! copying, plus what a proxy built on that one call lacks and libevent's own
//! `sample/le-proxy.c` adds by hand: backpressure (reading from one side stops while
//! the other has more than [`MAX_OUTPUT`] to send, and resumes once it has drained to
//! half of that), and EOF passed on as a shut-down write side once everything before
//! it is sent. (`tests/le_proxy.rs` keeps a literal port of le-proxy's callbacks.)
//!
//! It needs no arguments and no setup: it starts an echo server and the proxy in
//! front of it on `127.0.0.1:0`, then sends 8 MiB through the proxy while reading the
//! echo back. The server reads nothing until the proxy has had to stop reading, so
//! the backpressure path runs every time. It exits non-zero unless every byte comes
//! back in order, the proxy's buffered output stayed near [`MAX_OUTPUT`], and the
//! pipe finished cleanly both ways.

use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_bufferevent::bufferevent::{
    BufferEvent, DEFAULT_MAX_SINGLE_IO, PipeEnd, Piped, Watermarks, pipe,
};
use tokio_bufferevent::listener::Listener;

type BoxError = Box<dyn Error + Send + Sync>;

/// Stop reading from one side while the other has this much left to send.
const MAX_OUTPUT: usize = 64 * 1024;
/// What the client sends through the proxy (and gets back from the echo server).
const TOTAL: usize = 8 << 20;

/// The proxy's upstream side, once a client is connected, and the pipe's outcome.
#[derive(Default)]
struct Proxied {
    upstream: Mutex<Option<BufferEvent>>,
    piped: Mutex<Option<oneshot::Receiver<Piped>>>,
}

/// A proxy on `127.0.0.1:0` to `server`.
fn proxy(server: SocketAddr, proxied: Arc<Proxied>) -> io::Result<Listener> {
    let watermarks = Watermarks::new(MAX_OUTPUT / 2, MAX_OUTPUT);
    Listener::builder().bind_tcp_then(
        "127.0.0.1:0".parse().unwrap(),
        // The client's side: its output, too, stops the upstream's reading when full.
        move |builder, _peer| Some(builder.write_watermarks(watermarks)),
        move |client| {
            let upstream = match BufferEvent::builder()
                .write_watermarks(watermarks)
                .connect(server)
            {
                Ok(upstream) => upstream,
                Err(e) => {
                    eprintln!("proxy: connect {server}: {e}");
                    client.free();
                    return;
                }
            };
            *proxied.upstream.lock().unwrap() = Some(upstream.clone());
            let (done, piped) = oneshot::channel();
            *proxied.piped.lock().unwrap() = Some(piped);
            tokio::spawn(async move {
                let _ = done.send(pipe(&client, &upstream).await);
            });
        },
    )
}

/// The most the upstream side's output has held so far.
fn peak_queued_upstream(proxied: &Proxied) -> usize {
    let upstream = proxied.upstream.lock().unwrap();
    upstream.as_ref().map_or(0, |u| u.stats().peak_output)
}

/// An echo server that starts reading only once the proxy had to stop reading.
async fn slow_echo(listener: TcpListener, proxied: Arc<Proxied>) -> io::Result<u64> {
    let (stream, _) = listener.accept().await?;
    while peak_queued_upstream(&proxied) < MAX_OUTPUT {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut r, mut w) = stream.into_split();
    let echoed = tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await?;
    Ok(echoed)
}

/// Runs the example.
async fn run() -> Result<(), BoxError> {
    let proxied = Arc::new(Proxied::default());
    let server_listener = TcpListener::bind("127.0.0.1:0").await?;
    let server_addr = server_listener.local_addr()?;
    let server = tokio::spawn(slow_echo(server_listener, Arc::clone(&proxied)));
    let listener = proxy(server_addr, Arc::clone(&proxied))?;

    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let (mut from_proxy, mut to_proxy) = TcpStream::connect(*listener.local_addr())
        .await?
        .into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        to_proxy.write_all(&sent).await?;
        // The EOF travels through the proxy to the server, whose EOF comes back.
        to_proxy.shutdown().await
    });
    let mut echoed = Vec::with_capacity(TOTAL);
    from_proxy.read_to_end(&mut echoed).await?;
    writer.await??;
    let echoed_by_server = server.await??;
    let piped = proxied
        .piped
        .lock()
        .unwrap()
        .take()
        .ok_or("no pipe started")?;
    let piped = piped.await?;
    let upstream = proxied
        .upstream
        .lock()
        .unwrap()
        .take()
        .ok_or("no upstream")?;
    let peak = upstream.stats().peak_output;
    println!(
        "{TOTAL} bytes there and back through {} connection; the upstream side queued \
         at most {peak} bytes (limit {MAX_OUTPUT}); the pipe moved {} + {} bytes and \
         ended {:?}",
        listener.counts().accepted,
        piped.a_to_b,
        piped.b_to_a,
        piped.end,
    );
    assert!(echoed == data, "every byte came back, in order");
    assert_eq!(echoed_by_server, TOTAL as u64);
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
    assert_eq!((piped.a_to_b, piped.b_to_a), (TOTAL as u64, TOTAL as u64));
    // The slow server made the proxy fill up to its limit and stop, not buffer 8 MiB:
    // a side stops reading as soon as a move takes the other past the limit, which
    // it exceeds by less than one read.
    assert!(
        peak >= MAX_OUTPUT,
        "the proxy filled up to its limit: {peak}"
    );
    assert!(
        peak < 2 * MAX_OUTPUT + 2 * DEFAULT_MAX_SINGLE_IO,
        "peak {peak}"
    );
    println!("seed_proxy: OK");
    Ok(())
}

/// Runs [`run`], failing after 60 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(60), run()).await?
}
