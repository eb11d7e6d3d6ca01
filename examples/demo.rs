//! The crate's main job, end to end, with no arguments and no setup:
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! An echo server and many clients on loopback, all bufferevents. The server is the
//! anchors' echo server (`examples/echo_server.rs`): callbacks only, input moved to
//! output without copying, reading paused while the output is full. The clients use
//! the async side of the same type: each plays ping-pong with small messages, then
//! streams a bulk payload and checks every byte that comes back. Progress is printed
//! while it runs, and a summary of bytes, round trips and events at the end.

#[allow(dead_code)]
#[path = "echo_server.rs"]
mod echo_server;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events};

const CLIENTS: usize = 200;
const PINGS_PER_CLIENT: usize = 200;
const PING: &[u8] = b"ping: 64 bytes of a small request, echoed back by the server....\n";
const BULK_PER_CLIENT: usize = 1 << 20;

#[derive(Debug, Default)]
struct Stats {
    round_trips: AtomicU64,
    bytes_echoed: AtomicU64,
    eof_events: AtomicU64,
    error_events: AtomicU64,
    clients_done: AtomicU64,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Bounded: a demo that stalls says so instead of hanging its caller (CI too).
    match tokio::time::timeout(Duration::from_secs(120), run()).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("demo failed: not done within 120 s");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let listener = echo_server::listen("127.0.0.1", 0)?;
    let addr = *listener.local_addr();
    println!(
        "echo server on {addr}; {CLIENTS} clients x ({PINGS_PER_CLIENT} ping-pongs + {} KiB bulk)",
        BULK_PER_CLIENT >> 10
    );

    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let progress = tokio::spawn(report_progress(Arc::clone(&stats), started));
    let mut clients = tokio::task::JoinSet::new();
    for id in 0..CLIENTS {
        let stats = Arc::clone(&stats);
        clients.spawn(async move { client(id, addr, stats).await });
    }
    while let Some(joined) = clients.join_next().await {
        joined?.map_err(|e| e.to_string())?;
    }
    progress.abort();
    let elapsed = started.elapsed().as_secs_f64();

    let bytes = stats.bytes_echoed.load(Ordering::Relaxed);
    let trips = stats.round_trips.load(Ordering::Relaxed);
    println!("summary:");
    println!("  connections accepted  {}", listener.counts().accepted);
    println!(
        "  round trips           {trips} ({:.0}/s)",
        trips as f64 / elapsed
    );
    println!(
        "  bytes echoed          {bytes} ({:.1} MB/s)",
        bytes as f64 / elapsed / 1e6
    );
    println!(
        "  events                {} EOF, {} ERROR",
        stats.eof_events.load(Ordering::Relaxed),
        stats.error_events.load(Ordering::Relaxed)
    );
    println!("  elapsed               {elapsed:.2} s");
    let expected_bytes = (CLIENTS * (PINGS_PER_CLIENT * PING.len() + BULK_PER_CLIENT)) as u64;
    if bytes != expected_bytes || stats.eof_events.load(Ordering::Relaxed) != CLIENTS as u64 {
        return Err(format!("expected {expected_bytes} bytes and {CLIENTS} EOFs").into());
    }
    println!("all {CLIENTS} clients got every byte back");
    Ok(())
}

/// One client: ping-pong, then a bulk transfer, then a clean close.
async fn client(
    id: usize,
    addr: std::net::SocketAddr,
    stats: Arc<Stats>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(TcpStream::connect(addr).await?)?;
    for _ in 0..PINGS_PER_CLIENT {
        bev.write(PING).await?;
        bev.readable(PING.len()).await;
        let echo = bev.read(PING.len()).await?;
        if echo != PING {
            return Err(format!("client {id}: bad echo").into());
        }
        stats.round_trips.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes_echoed
            .fetch_add(PING.len() as u64, Ordering::Relaxed);
    }

    // Bulk: send everything, then half-close; the server echoes and closes after us.
    let payload: Vec<u8> = (0..BULK_PER_CLIENT).map(|i| (i * 31 + id) as u8).collect();
    let expected = payload.clone();
    bev.write(payload).await?;
    bev.flush(
        Direction::WRITE,
        tokio_bufferevent::bufferevent::FlushMode::Finished,
    );
    let mut received = Vec::with_capacity(BULK_PER_CLIENT);
    loop {
        bev.readable(1).await;
        let chunk = bev.read(usize::MAX).await?;
        if chunk.is_empty() && bev.input_len() == 0 {
            break; // reading ended: EOF or error
        }
        stats
            .bytes_echoed
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        received.extend_from_slice(&chunk);
    }
    if received != expected {
        return Err(format!("client {id}: bulk echo differs").into());
    }
    let closed = bev.close().await;
    if closed.events.contains(Events::EOF) {
        stats.eof_events.fetch_add(1, Ordering::Relaxed);
    }
    if closed.events.contains(Events::ERROR) {
        stats.error_events.fetch_add(1, Ordering::Relaxed);
    }
    stats.clients_done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

async fn report_progress(stats: Arc<Stats>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.tick().await;
    loop {
        tick.tick().await;
        println!(
            "  {:>5.2}s  {:>6} round trips  {:>7.1} MB echoed  {:>3}/{CLIENTS} clients done",
            started.elapsed().as_secs_f64(),
            stats.round_trips.load(Ordering::Relaxed),
            stats.bytes_echoed.load(Ordering::Relaxed) as f64 / 1e6,
            stats.clients_done.load(Ordering::Relaxed),
        );
    }
}
