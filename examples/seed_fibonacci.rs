//! Ports `write_callback_fibonacci` from libevent's "Bufferevents: concepts and basics"
//! chapter (section "Manipulating data in a bufferevent"): a producer whose write
//! callback formats Fibonacci numbers into a temporary evbuffer until it holds 1 KiB,
//! then moves it into the output with `bufferevent_write_buffer`; once that data is
//! drained, the write callback runs again and adds more.
//!
//! ```text
//! cargo run --example seed_fibonacci
//! ```
//!
//! It needs no arguments and no setup: it makes a loopback connection on
//! `127.0.0.1:0`, runs the producer on one end and reads everything on the other. The
//! C produces forever (and its 64-bit `unsigned long` silently wraps from the 93rd
//! number on); this port stops after [`NUMBERS`] numbers, all of which fit a `u128`,
//! then closes the bufferevent gracefully. It exits non-zero unless the reader got
//! exactly the expected digits, in several refills.

use std::error::Error;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_bufferevent::buffer::EvBuffer;
use tokio_bufferevent::bufferevent::{BufferEvent, Context, Direction, Watermarks};

type BoxError = Box<dyn Error + Send + Sync>;

/// How many numbers to produce: F(2) to F(186), every Fibonacci number from 1 up that
/// fits a `u128`.
const NUMBERS: usize = 185;
/// The size of one refill, as in the C.
const BATCH: usize = 1024;
/// Refill once the output has drained to half a batch rather than to empty, so the
/// socket has the next batch before it runs dry.
const WRITE_LOW: usize = BATCH / 2;

/// The chapter's `struct count`, plus what this port needs to stop and to report.
struct Count {
    last_fib: [u128; 2],
    /// Numbers still to produce.
    left: usize,
    /// Write callbacks that added a batch.
    refills: usize,
    /// Sent to `run` when the producer stops.
    done: Option<oneshot::Sender<usize>>,
}

/// The chapter's `write_callback_fibonacci`.
fn write_callback_fibonacci(ctx: &mut Context<'_, Count>) {
    // Here's a callback that adds some Fibonacci numbers to the output buffer. It stops
    // once we have added 1k of data; once this data is drained, we'll add more.
    let c = ctx.state();
    if c.left == 0 {
        return; // not in the C: all produced, and the bufferevent is closing
    }
    let mut tmp = EvBuffer::new();
    while tmp.len() < BATCH && c.left > 0 {
        let next = c.last_fib[0]
            .checked_add(c.last_fib[1])
            .expect("NUMBERS keeps every number within u128");
        c.last_fib = [c.last_fib[1], next];
        c.left -= 1;
        // `evbuffer_add_printf(tmp, "%lu", next)`: no separator, as in the C.
        let _ = tmp.add_fmt(format_args!("{next}"));
    }
    c.refills += 1;
    let finished = c.left == 0;
    // Now we add the whole contents of tmp to the output, moving its chunks rather
    // than copying them; tmp is left empty and dropped (`evbuffer_free(tmp)`).
    let _ = ctx.output().add_buffer(&mut tmp);
    if finished {
        // Not in the C, which produces forever: that was the last batch. `close`
        // sends what is queued, then shuts down the write side (the reader sees EOF)
        // and frees. (`free` would discard the unsent output.)
        if let Some(done) = ctx.state().done.take() {
            let _ = done.send(ctx.state().refills);
        }
        ctx.close();
    }
}

/// The same digits computed directly, and how many batches of at least [`BATCH`]
/// bytes (the last one shorter) the write callback should cut them into.
fn expected() -> (String, usize) {
    let (mut a, mut b) = (0u128, 1u128);
    let (mut digits, mut batches, mut batch) = (String::new(), 0, 0);
    for _ in 0..NUMBERS {
        (a, b) = (b, a + b);
        let number = b.to_string();
        if batch == 0 {
            batches += 1;
        }
        batch += number.len();
        if batch >= BATCH {
            batch = 0;
        }
        digits.push_str(&number);
    }
    (digits, batches)
}

/// Runs the example.
async fn run() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (reader, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr()?),
        listener.accept()
    );
    let (mut reader, (stream, _)) = (reader?, accepted?);

    let (done, refills) = oneshot::channel();
    let count = Count {
        last_fib: [0, 1],
        left: NUMBERS,
        refills: 0,
        done: Some(done),
    };
    let bev = BufferEvent::builder_with_state(count)
        .write_watermarks(Watermarks::new(WRITE_LOW, 0))
        .on_write(write_callback_fibonacci)
        .tcp(stream)?;
    // A new bufferevent has nothing to write, so nothing calls the write callback yet.
    // Enabling WRITE on a connected socket with an empty output runs it once (B-14):
    // that is what starts a producer like this one.
    bev.enable(Direction::WRITE);

    let mut received = String::new();
    reader.read_to_string(&mut received).await?;
    let refills = refills.await?;
    let closed = bev.closed().await;

    println!("received {} digits in {refills} refills:", received.len());
    println!("{}...", &received[..received.len().min(72)]);
    let (digits, batches) = expected();
    assert_eq!(received, digits, "exactly the Fibonacci digits, in order");
    assert!(batches >= 3, "enough data for several refills");
    assert_eq!(refills, batches, "one write callback per batch");
    assert_eq!(closed.unsent, 0, "closed only once everything was sent");
    println!("seed_fibonacci: OK");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
