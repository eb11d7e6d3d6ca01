//! Paired bufferevents against `tokio::io::duplex`, side by side in one run, on a
//! current-thread and on a multi-thread runtime:
//!
//! ```text
//! cargo bench -p tokio-bufferevent-benches --bench pair -- [SECONDS] [REPS]
//! ```
//!
//! Four ways of driving a pair, each beside the duplex program a Tokio user would
//! write instead (a task per end, `write_all` and `read`):
//!
//! - **handle throughput**: one task writes 64 KiB chunks through the handle
//!   (`write().await`, backpressured by a 256 KiB write high watermark), another reads
//!   through [`into_io`](tokio_bufferevent::bufferevent::BufferEvent::into_io) into a
//!   64 KiB buffer. Duplex: `write_all` and `read` on a `duplex(64 KiB)`.
//! - **handle ping-pong**: a task sends 64 bytes and reads 64 back through `into_io`
//!   (`write_all`, `read_exact`); the other element echoes from its read callback.
//!   Duplex: a client task and an echoing task.
//! - **callback ping-pong**: both elements run on callbacks, the client's read
//!   callback sending the next message.
//! - **callback throughput**: the writer's write callback copies a 64 KiB chunk into
//!   the output whenever it falls to 128 KiB; the reader's read callback drains.
//!
//! `PAIR_ONLY=ping` (a substring of the test's name) and `PAIR_RUNTIME=current` (of the
//! runtime's) select, for profiling; `PAIR_CRATE_ONLY=1` skips the duplex runs. Each measurement runs `SECONDS` (default 1) of
//! wall clock; runs alternate crate,
//! duplex, crate, duplex, ...; the ratio is taken pair by pair and summarised by its
//! median.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, FlushMode, Watermarks};

#[path = "side_by_side.rs"]
mod side_by_side;
use side_by_side::{median, positional, spread};

const CHUNK: usize = 64 << 10;
const MSG: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Test {
    HandleThroughput,
    HandlePingPong,
    CallbackPingPong,
    CallbackThroughput,
}

impl Test {
    const ALL: [Test; 4] = [
        Test::HandleThroughput,
        Test::HandlePingPong,
        Test::CallbackPingPong,
        Test::CallbackThroughput,
    ];

    fn name(self) -> &'static str {
        match self {
            Test::HandleThroughput => "handle throughput (GB/s)",
            Test::HandlePingPong => "handle ping-pong 64 B (k rt/s)",
            Test::CallbackPingPong => "callback ping-pong 64 B (k rt/s)",
            Test::CallbackThroughput => "callback throughput (GB/s)",
        }
    }

    /// Issue 15's target for crate/duplex.
    fn target(self) -> f64 {
        match self {
            Test::HandleThroughput => 0.8,
            Test::HandlePingPong => 0.7,
            Test::CallbackPingPong | Test::CallbackThroughput => 1.0,
        }
    }

    fn throughput(self) -> bool {
        matches!(self, Test::HandleThroughput | Test::CallbackThroughput)
    }
}

fn main() {
    let [secs, reps] = positional([1.0, 3.0]);
    let reps = reps as usize;
    let run_for = Duration::from_secs_f64(secs);
    println!(
        "pair vs tokio::io::duplex, {secs} s per run, {reps} reps (median; ratio pair by pair)"
    );
    println!("| runtime | test | crate | duplex | crate/duplex (min–max) | target |");
    println!("|---|---|---:|---:|---:|---:|");
    for (flavor, rt) in [
        (
            "current-thread",
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ),
        (
            "multi-thread (2)",
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ),
    ] {
        let selected = |name: &str, var: &str| std::env::var(var).is_ok_and(|v| !name.contains(&v));
        if selected(flavor, "PAIR_RUNTIME") {
            continue;
        }
        for test in Test::ALL {
            if selected(test.name(), "PAIR_ONLY") {
                continue;
            }
            let mut runs = Vec::new();
            for _ in 0..reps {
                let ours = measure(&rt, test, true, run_for);
                let theirs = if std::env::var("PAIR_CRATE_ONLY").is_ok() {
                    f64::NAN
                } else {
                    measure(&rt, test, false, run_for)
                };
                runs.push((ours, theirs));
            }
            let scale = if test.throughput() { 1e-9 } else { 1e-3 };
            let ours = median(runs.iter().map(|r| r.0).collect()) * scale;
            if runs.iter().any(|r| r.1.is_nan()) {
                // `PAIR_CRATE_ONLY`: no duplex figure to compare with.
                println!(
                    "| {flavor} | {} | {ours:.2} | – | – | {:.2} |",
                    test.name(),
                    test.target()
                );
                continue;
            }
            let ratios: Vec<f64> = runs.iter().map(|(a, b)| a / b).collect();
            let (lo, hi) = spread(&ratios);
            println!(
                "| {flavor} | {} | {ours:.2} | {:.2} | {:.2} ({lo:.2}–{hi:.2}) | {:.2} |",
                test.name(),
                median(runs.iter().map(|r| r.1).collect()) * scale,
                median(ratios.clone()),
                test.target(),
            );
        }
    }
}

/// One run: bytes or round trips per second.
fn measure(rt: &Runtime, test: Test, ours: bool, run_for: Duration) -> f64 {
    rt.block_on(async move {
        match (test, ours) {
            (Test::HandleThroughput, true) => handle_throughput(run_for).await,
            (Test::HandlePingPong, true) => handle_ping_pong(run_for).await,
            (Test::CallbackPingPong, true) => callback_ping_pong(run_for).await,
            (Test::CallbackThroughput, true) => callback_throughput(run_for).await,
            (Test::HandleThroughput | Test::CallbackThroughput, false) => {
                duplex_throughput(run_for).await
            }
            (Test::HandlePingPong | Test::CallbackPingPong, false) => {
                duplex_ping_pong(run_for).await
            }
        }
    })
}

async fn handle_throughput(run_for: Duration) -> f64 {
    let (a, b) = BufferEvent::builder()
        .write_watermarks(Watermarks::new(0, 256 << 10))
        .pair(BufferEvent::builder());
    let chunk = Bytes::from(vec![7u8; CHUNK]);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        while started.elapsed() < run_for {
            a.write(chunk.clone()).await.unwrap();
        }
        a.flush(Direction::WRITE, FlushMode::Finished);
        a
    });
    let reader = tokio::spawn(read_all(b.into_io()));
    let total = reader.await.unwrap();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    writer.await.unwrap().free();
    rate
}

async fn duplex_throughput(run_for: Duration) -> f64 {
    let (mut w, r) = tokio::io::duplex(CHUNK);
    let chunk = vec![7u8; CHUNK];
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        while started.elapsed() < run_for {
            w.write_all(&chunk).await.unwrap();
        }
    });
    let reader = tokio::spawn(read_all(r));
    let total = reader.await.unwrap();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    writer.await.unwrap();
    rate
}

/// Reads into a `CHUNK` buffer until EOF; the bytes read.
async fn read_all(mut reader: impl tokio::io::AsyncRead + Unpin) -> u64 {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf).await.unwrap() {
            0 => return total,
            n => total += n as u64,
        }
    }
}

/// The echoing element of the crate's ping-pongs.
fn echoer() -> tokio_bufferevent::bufferevent::Builder {
    BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|ctx| {
            let (mut input, mut output) = ctx.io();
            input.remove_to(&mut output, usize::MAX);
        })
}

async fn handle_ping_pong(run_for: Duration) -> f64 {
    let (a, b) = BufferEvent::builder().pair(echoer());
    let client = tokio::spawn(async move {
        let mut io = a.into_io();
        let msg = [1u8; MSG];
        let mut buf = [0u8; MSG];
        let started = Instant::now();
        let mut trips = 0u64;
        while started.elapsed() < run_for {
            io.write_all(&msg).await.unwrap();
            io.read_exact(&mut buf).await.unwrap();
            trips += 1;
        }
        (
            trips as f64 / started.elapsed().as_secs_f64(),
            io.into_inner(),
        )
    });
    let (rate, a) = client.await.unwrap();
    a.free();
    b.free();
    rate
}

async fn duplex_ping_pong(run_for: Duration) -> f64 {
    let (mut c, mut s) = tokio::io::duplex(CHUNK);
    let server = tokio::spawn(async move {
        let mut buf = [0u8; CHUNK];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
            }
        }
    });
    let client = tokio::spawn(async move {
        let msg = [1u8; MSG];
        let mut buf = [0u8; MSG];
        let started = Instant::now();
        let mut trips = 0u64;
        while started.elapsed() < run_for {
            c.write_all(&msg).await.unwrap();
            c.read_exact(&mut buf).await.unwrap();
            trips += 1;
        }
        trips as f64 / started.elapsed().as_secs_f64()
    });
    let rate = client.await.unwrap();
    server.await.unwrap();
    rate
}

async fn callback_ping_pong(run_for: Duration) -> f64 {
    let trips = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&trips);
    let msg = Bytes::from_static(&[1u8; MSG]);
    let next = msg.clone();
    let (a, b) = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(move |ctx| {
            let mut input = ctx.input();
            while input.len() >= MSG {
                input.drain(MSG);
                counted.fetch_add(1, Ordering::Relaxed);
                ctx.output().add_bytes(next.clone());
                input = ctx.input();
            }
        })
        .pair(echoer());
    let started = Instant::now();
    a.write_now(msg).unwrap();
    tokio::time::sleep(run_for).await;
    let rate = trips.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    a.free();
    b.free();
    rate
}

async fn callback_throughput(run_for: Duration) -> f64 {
    let total = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&total);
    let chunk = vec![7u8; CHUNK];
    let (a, b) = BufferEvent::builder()
        .write_watermarks(Watermarks::new(128 << 10, 0))
        .on_write(move |ctx| {
            ctx.output().add(&chunk);
        })
        .pair(
            BufferEvent::builder()
                .enable(Direction::READ)
                .on_read(move |ctx| {
                    let mut input = ctx.input();
                    let n = input.len();
                    input.drain(n);
                    counted.fetch_add(n as u64, Ordering::Relaxed);
                }),
        );
    let started = Instant::now();
    // A pair's write callback runs when data moves; the first one is asked for.
    a.trigger(Direction::WRITE, true);
    tokio::time::sleep(run_for).await;
    let rate = total.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    a.free();
    b.free();
    rate
}
