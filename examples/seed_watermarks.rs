//! Ports the watermark example of libevent's "Bufferevents: concepts and basics"
//! chapter (section "Manipulating callbacks, watermarks, and enabled operations"): a
//! `struct info` with a name and a `total_drained` counter, a read callback that only
//! runs once at least 128 bytes are buffered (read low watermark) and drains them, and
//! an event callback that prints the totals when the peer closes.
//!
//! ```text
//! cargo run --example seed_watermarks
//! ```
//!
//! It needs no arguments and no setup: it makes a loopback connection on
//! `127.0.0.1:0`, wraps one end as "buffer 1" (the chapter's `setup_bufferevent`), and
//! plays the peer on the other: 100 bytes (below the watermark: no read callback, they
//! wait in the input), 100 more (the input reaches 128: the callback drains it), then
//! 50 bytes and a close (too few for the callback: the event callback reports them as
//! left over). It exits non-zero unless the totals add up that way.

use std::error::Error;
use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_bufferevent::bufferevent::{BufferEvent, Context, Direction, Events, Watermarks};

type BoxError = Box<dyn Error + Send + Sync>;

/// The read low watermark of the chapter.
const LOW: usize = 128;

/// The chapter's `struct info`: the bufferevent's state, owned by its task and shared
/// by its callbacks, so no `malloc`, `Arc` or lock is needed.
struct Info {
    name: &'static str,
    total_drained: usize,
    /// Not in the C, which only prints: where the event callback sends the totals so
    /// that `run` can check them.
    finished: Option<oneshot::Sender<Totals>>,
}

/// What the event callback printed.
#[derive(Debug)]
struct Totals {
    drained: usize,
    left: usize,
    events: Events,
}

/// The chapter's `read_callback`: drain whatever is buffered and count it. With a low
/// watermark of 128 it only runs when at least 128 bytes are there.
fn read_callback(ctx: &mut Context<'_, Info>) {
    let len = ctx.input().len();
    if len > 0 {
        ctx.state().total_drained += len;
        ctx.input().drain(len);
        println!("Drained {len} bytes from {}", ctx.state().name);
    }
}

/// The chapter's `event_callback`: report EOF and errors, then free the bufferevent.
fn event_callback(ctx: &mut Context<'_, Info>, events: Events, error: Option<&io::Error>) {
    let mut finished = false;
    let len = ctx.input().len();
    let inf = ctx.state();
    if events.contains(Events::EOF) {
        println!(
            "Got a close from {}.  We drained {} bytes from it, and have {len} left.",
            inf.name, inf.total_drained
        );
        finished = true;
    }
    if events.contains(Events::ERROR) {
        // libevent leaves the reason in errno; here the callback receives it.
        let reason = error.map_or_else(|| "unknown error".to_owned(), ToString::to_string);
        println!("Got an error from {}: {reason}", inf.name);
        finished = true;
    }
    if finished {
        if let Some(tx) = inf.finished.take() {
            let _ = tx.send(Totals {
                drained: inf.total_drained,
                left: len,
                events,
            });
        }
        // `free(ctx); bufferevent_free(bev);`: the state goes with the bufferevent.
        ctx.free();
    }
}

/// The chapter's `setup_bufferevent`, given the connected socket it leaves to the
/// reader ("Here we should set up the bufferevent and make sure it gets connected").
fn setup_bufferevent(
    stream: TcpStream,
    finished: oneshot::Sender<Totals>,
) -> io::Result<BufferEvent<TcpStream, Info>> {
    let info1 = Info {
        name: "buffer 1",
        total_drained: 0,
        finished: Some(finished),
    };
    BufferEvent::builder_with_state(info1)
        // Trigger the read callback only whenever there is at least 128 bytes of data
        // in the buffer. A high watermark of 0 means unlimited.
        .read_watermarks(Watermarks::new(LOW, 0))
        .on_read(read_callback)
        .on_event(event_callback)
        // Start reading.
        .enable(Direction::READ)
        .tcp(stream)
}

/// Polls the total the read callback drained until it is at least `n`.
async fn drained_at_least(bev: &BufferEvent<TcpStream, Info>, n: usize) -> io::Result<usize> {
    loop {
        let total = bev.with(|ctx| ctx.state().total_drained).await?;
        if total >= n {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs the example.
async fn run() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (peer, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr()?),
        listener.accept()
    );
    let (mut peer, (stream, _)) = (peer?, accepted?);
    let (finished, totals) = oneshot::channel();
    let b1 = setup_bufferevent(stream, finished)?;

    // 100 bytes: below the low watermark, so they stay in the input, undrained.
    peer.write_all(&[b'a'; 100]).await?;
    b1.readable(100).await;
    let drained = b1.with(|ctx| ctx.state().total_drained).await?;
    println!(
        "peer sent 100 bytes: {} buffered, {drained} drained (below the watermark of {LOW})",
        b1.input_len()
    );
    assert_eq!(drained, 0, "no read callback below the low watermark");

    // 100 more: the input reaches the watermark and the callback drains it. (Had the
    // kernel split these bytes, the callback would have run at 128 and left the rest.)
    peer.write_all(&[b'b'; 100]).await?;
    let drained = drained_at_least(&b1, LOW).await?;
    println!("peer sent 100 more: {drained} drained so far");

    // 50 bytes and a close: not enough for the read callback; EOF reports them.
    peer.write_all(&[b'c'; 50]).await?;
    drop(peer);
    let totals = totals.await?;
    let closed = b1.closed().await;

    assert!(totals.events.contains(Events::READING | Events::EOF));
    assert_eq!(
        totals.drained + totals.left,
        250,
        "every byte is accounted for"
    );
    assert!(totals.drained >= LOW, "the read callback ran: {totals:?}");
    // At least the last 50 bytes are left, and never a watermark's worth.
    assert!(
        (50..LOW).contains(&totals.left),
        "the leftover is below the watermark: {totals:?}"
    );
    assert_eq!(closed.unsent, 0);
    println!("seed_watermarks: OK ({totals:?})");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
