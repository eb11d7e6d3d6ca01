//! `BufferEvent::into_io()` over real loopback TCP: `Stream`/`Sink` of `Bytes` under
//! `tokio_util::codec::Framed`, `AsyncRead`/`AsyncWrite` under `tokio::io` helpers, and
//! `Sink` backpressure from the write high watermark.

mod common;

use common::pattern;
use common::tcp_pair;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::time::{sleep, timeout};
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Watermarks};
use tokio_util::codec::{Framed, LinesCodec};

/// Lines of varied lengths, up to a few KiB.
fn lines(n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag} {i}: {}", "x".repeat((i * 37) % 3000)))
        .collect()
}

const T: Duration = Duration::from_secs(20);

// ---- Framed<BufferEventIo, LinesCodec> --------------------------------------------------

/// Lines both ways at once between a `Framed` bufferevent and a `Framed` plain
/// `TcpStream`; the peer closes its side and the bufferevent's stream ends with `None`;
/// then the bufferevent closes its sink and the peer's stream ends with `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_lines_both_ways_then_eof_each_way() {
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(a).unwrap();
    let handle = bev.clone();
    let (mut bev_tx, mut bev_rx) = Framed::new(bev.into_io(), LinesCodec::new()).split();
    let (mut peer_tx, mut peer_rx) = Framed::new(b, LinesCodec::new()).split();
    let to_peer = lines(2000, "to peer");
    let to_bev = lines(2000, "to bev");

    let sending_from_bev = async {
        for line in &to_peer {
            bev_tx.feed(line.clone()).await?;
        }
        bev_tx.flush().await
    };
    let sending_from_peer = async {
        for line in &to_bev {
            peer_tx.feed(line.clone()).await?;
        }
        peer_tx.flush().await
    };
    let receiving_at_peer = async {
        let mut got = Vec::new();
        while got.len() < to_peer.len() {
            got.push(peer_rx.next().await.expect("a line").unwrap());
        }
        got
    };
    let receiving_at_bev = async {
        let mut got = Vec::new();
        while got.len() < to_bev.len() {
            got.push(bev_rx.next().await.expect("a line").unwrap());
        }
        got
    };
    let (sent_bev, sent_peer, at_peer, at_bev) = timeout(T, async {
        tokio::join!(
            sending_from_bev,
            sending_from_peer,
            receiving_at_peer,
            receiving_at_bev
        )
    })
    .await
    .expect("4000 lines within 20 s");
    sent_bev.unwrap();
    sent_peer.unwrap();
    assert_eq!(at_peer, to_peer);
    assert_eq!(at_bev, to_bev);

    // The peer closes: the bufferevent's stream ends.
    peer_tx.send("last from peer".to_owned()).await.unwrap();
    peer_tx.close().await.unwrap();
    let last = timeout(T, bev_rx.next()).await.unwrap();
    assert_eq!(last.transpose().unwrap().as_deref(), Some("last from peer"));
    let end = timeout(T, bev_rx.next()).await.expect("the stream ends");
    assert!(end.is_none(), "None after the peer's EOF, got {end:?}");
    assert!(!handle.is_closed(), "the write side still works");

    // The bufferevent closes its sink: the peer's stream ends.
    bev_tx.send("last from bev".to_owned()).await.unwrap();
    timeout(T, bev_tx.close())
        .await
        .expect("close finishes")
        .unwrap();
    let last = timeout(T, peer_rx.next()).await.unwrap();
    assert_eq!(last.transpose().unwrap().as_deref(), Some("last from bev"));
    let end = timeout(T, peer_rx.next()).await.expect("the peer sees EOF");
    assert!(
        end.is_none(),
        "None after the bufferevent's close, got {end:?}"
    );
}

/// `Framed` bufferevents at both ends of a TCP connection: lines each way, then each
/// side's close ends the other side's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_bufferevent_to_bufferevent() {
    let (a, b) = tcp_pair().await;
    let mut left = Framed::new(
        BufferEvent::builder().tcp(a).unwrap().into_io(),
        LinesCodec::new(),
    );
    let mut right = Framed::new(
        BufferEvent::builder().tcp(b).unwrap().into_io(),
        LinesCodec::new(),
    );
    timeout(T, async {
        for i in 0..100 {
            left.send(format!("ping {i}")).await.unwrap();
            let got = right.next().await.expect("a line").unwrap();
            assert_eq!(got, format!("ping {i}"));
            right.send(format!("pong {i}")).await.unwrap();
            let got = left.next().await.expect("a line").unwrap();
            assert_eq!(got, format!("pong {i}"));
        }
    })
    .await
    .expect("100 round trips");

    timeout(T, SinkExt::<String>::close(&mut left))
        .await
        .unwrap()
        .unwrap();
    let end = timeout(T, right.next()).await.expect("right sees EOF");
    assert!(end.is_none(), "{end:?}");
    // Half-closed: right can still talk to left.
    right.send("after your EOF".to_owned()).await.unwrap();
    let got = timeout(T, left.next()).await.unwrap();
    assert_eq!(got.transpose().unwrap().as_deref(), Some("after your EOF"));
    timeout(T, SinkExt::<String>::close(&mut right))
        .await
        .unwrap()
        .unwrap();
    let end = timeout(T, left.next()).await.expect("left sees EOF");
    assert!(end.is_none(), "{end:?}");
}

// ---- AsyncRead / AsyncWrite ----------------------------------------------------------------

/// `write_all` then `shutdown()`: the peer reads every byte, then EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_all_then_shutdown_peer_sees_everything_then_eof() {
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(a).unwrap();
    let handle = bev.clone();
    let mut io = bev.into_io();
    let data = pattern(4 << 20);
    let reader = tokio::spawn(async move {
        let mut peer = b;
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.map(|_| got)
    });
    timeout(T, async {
        io.write_all(&data).await?;
        io.shutdown().await
    })
    .await
    .expect("write and shutdown within 20 s")
    .unwrap();
    assert_eq!(handle.output_len(), 0, "shutdown flushed first");
    let got = timeout(T, reader)
        .await
        .expect("the peer sees EOF")
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes arrive in order");
}

/// Once `shutdown()` has completed, a write fails (as on a `TcpStream`) instead of
/// being accepted into an output that is never sent, and `flush()` does not wait
/// forever for that output to drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_after_shutdown_is_an_error() {
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(a).unwrap();
    let handle = bev.clone();
    let mut io = bev.into_io();
    assert_eq!(write_then_shut_down(&mut io, b).await, b"before");

    let outcome = timeout(T, io.write(b"after")).await.unwrap();
    let queued = handle.output_len();
    let flushed = timeout(Duration::from_secs(5), AsyncWriteExt::flush(&mut io)).await;
    assert!(
        outcome.is_err(),
        "write after shutdown returned {outcome:?}; {queued} bytes now wait in an output \
         that is never sent"
    );
    assert!(
        flushed.is_ok(),
        "flush() after a write after shutdown still pending 5 s later"
    );
}

/// Writes `before` through `io`, shuts it down (within `T`), and returns all that
/// `peer` read up to the end of the stream.
async fn write_then_shut_down<Tr, S>(
    io: &mut tokio_bufferevent::bufferevent::BufferEventIo<Tr, S>,
    mut peer: tokio::net::TcpStream,
) -> Vec<u8>
where
    Tr: Send + 'static,
    S: Send + 'static,
{
    io.write_all(b"before").await.unwrap();
    timeout(T, io.shutdown())
        .await
        .expect("the shutdown completes")
        .unwrap();
    let mut got = Vec::new();
    timeout(T, peer.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    got
}

/// A peer that resets the connection makes the stream yield the read error
/// (`ConnectionReset`), not a clean end, so a codec cannot mistake a truncated
/// transfer for a complete one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_yields_the_read_error_after_a_peer_reset() {
    let (a, b) = tcp_pair().await;
    let mut io = BufferEvent::builder().tcp(a).unwrap().into_io();
    let mut peer = b;
    peer.write_all(b"hello").await.unwrap();
    let first = timeout(T, io.next())
        .await
        .unwrap()
        .expect("a chunk")
        .unwrap();
    assert_eq!(first, &b"hello"[..]);
    // SO_LINGER 0: close() sends RST (deprecated only because a non-zero linger
    // blocks the thread).
    #[allow(deprecated)]
    peer.set_linger(Some(Duration::ZERO)).unwrap();
    drop(peer);
    expect_reset(&mut io).await;
}

/// As above, but the application writes after the reset and that write fails too
/// before the stream is polled: the stream still yields the read error, not a clean
/// end (the later WRITING|ERROR event does not hide the READING|ERROR one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_yields_the_read_error_even_after_a_later_write_error() {
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(a).unwrap();
    let handle = bev.clone();
    let mut io = bev.into_io();
    let mut peer = b;
    peer.write_all(b"hello").await.unwrap();
    let first = timeout(T, io.next())
        .await
        .unwrap()
        .expect("a chunk")
        .unwrap();
    assert_eq!(first, &b"hello"[..]);

    let read_error = handle.next_event();
    tokio::pin!(read_error);
    let _ = futures::poll!(read_error.as_mut()); // from now on
    #[allow(deprecated)]
    peer.set_linger(Some(Duration::ZERO)).unwrap();
    drop(peer);
    let record = timeout(T, read_error).await.unwrap().expect("an event");
    assert_eq!(record.events, Events::READING | Events::ERROR);

    let write_error = handle.next_event();
    tokio::pin!(write_error);
    let _ = futures::poll!(write_error.as_mut());
    handle.write_now(&b"reply"[..]).unwrap();
    let record = timeout(T, write_error).await.unwrap().expect("an event");
    assert_eq!(record.events, Events::WRITING | Events::ERROR);

    expect_reset(&mut io).await;
}

/// `read_to_end` on the bufferevent returns every byte the peer sent, and ends at the
/// peer's EOF; `read` then keeps returning 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_to_end_until_peer_eof() {
    let (a, b) = tcp_pair().await;
    let mut io = BufferEvent::builder().tcp(a).unwrap().into_io();
    let data = pattern(3 << 20);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        let mut peer = b;
        peer.write_all(&sent).await?;
        peer.shutdown().await?;
        Ok::<_, io::Error>(peer)
    });
    let mut got = Vec::new();
    let n = timeout(T, io.read_to_end(&mut got))
        .await
        .expect("EOF within 20 s")
        .unwrap();
    assert_eq!(n, data.len());
    assert!(got == data, "the bytes arrive in order");
    let mut more = [0u8; 16];
    assert_eq!(timeout(T, io.read(&mut more)).await.unwrap().unwrap(), 0);
    let _peer = writer.await.unwrap().unwrap();
}

/// `tokio::io::copy` from a bufferevent's reading half to its writing half is an echo
/// server: 4 MiB go through and back, then the shutdown reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_io_copy_echoes_through_a_bufferevent() {
    let (a, b) = tcp_pair().await;
    let io = BufferEvent::builder().tcp(a).unwrap().into_io();
    let server = tokio::spawn(async move {
        let (mut reader, mut writer) = tokio::io::split(io);
        let n = tokio::io::copy(&mut reader, &mut writer).await?;
        writer.shutdown().await?;
        Ok::<_, io::Error>(n)
    });
    let data = pattern(4 << 20);
    let (mut rd, mut wr) = b.into_split();
    let sending = async {
        wr.write_all(&data).await?;
        wr.shutdown().await
    };
    let receiving = async {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.map(|_| got)
    };
    let (sent, got) = timeout(T, async { tokio::join!(sending, receiving) })
        .await
        .expect("the echo completes within 20 s");
    sent.unwrap();
    let got = got.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the echo is exact");
    let copied = timeout(T, server).await.unwrap().unwrap().unwrap();
    assert_eq!(copied, data.len() as u64);
}

// ---- Sink backpressure -------------------------------------------------------------------

/// With a 64 KiB write high watermark and writing disabled (so nothing drains),
/// `poll_ready` is ready while the output is at most 64 KiB and pending once it is
/// above: exactly five 16 KiB chunks go in. It stays pending until writing is enabled
/// and the output drains to the mark; then everything reaches the peer in order.
///
/// On a current-thread runtime, so the task never runs while this test checks the
/// lengths (see `output_len_counts_writes_the_task_is_applying` in
/// `bufferevent_reliability.rs` for what a concurrent check can see).
#[tokio::test(flavor = "current_thread")]
async fn sink_poll_ready_waits_while_output_above_high_watermark() {
    const HIGH: usize = 64 << 10;
    const CHUNK: usize = 16 << 10;
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .disable(Direction::WRITE)
        .write_watermarks(Watermarks::new(0, HIGH))
        .tcp(a)
        .unwrap();
    let handle = bev.clone();
    let mut io = bev.into_io();
    let data = Bytes::from(pattern(8 * CHUNK));
    let chunk = |i: usize| data.slice(i * CHUNK..(i + 1) * CHUNK);

    let mut accepted = 0;
    loop {
        let ready = poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_ready(cx))).await;
        match ready {
            Poll::Ready(outcome) => {
                outcome.unwrap();
                assert!(handle.output_len() <= HIGH, "ready above the high mark");
                Pin::new(&mut io).start_send(chunk(accepted)).unwrap();
                accepted += 1;
                assert!(accepted <= 8, "poll_ready never pushed back");
            }
            Poll::Pending => break,
        }
    }
    assert_eq!(accepted, 5, "0, 16, 32, 48 and 64 KiB are at most the mark");
    assert_eq!(handle.output_len(), 5 * CHUNK);

    // Still pending once the task has applied the writes: nothing can drain.
    handle.with(|_| ()).await.unwrap();
    assert_eq!(handle.output_len(), 5 * CHUNK);
    let ready = poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_ready(cx))).await;
    assert!(
        ready.is_pending(),
        "ready with 80 KiB queued above a 64 KiB mark"
    );

    handle.enable(Direction::WRITE);
    timeout(T, poll_fn(|cx| Pin::new(&mut io).poll_ready(cx)))
        .await
        .expect("ready once writing drains the output")
        .unwrap();
    assert!(handle.output_len() <= HIGH);
    Pin::new(&mut io).start_send(chunk(5)).unwrap();
    timeout(T, SinkExt::<Bytes>::flush(&mut io))
        .await
        .expect("flushed")
        .unwrap();
    assert_eq!(handle.output_len(), 0);

    let mut peer = b;
    let mut got = vec![0u8; 6 * CHUNK];
    timeout(T, peer.read_exact(&mut got))
        .await
        .expect("everything arrives")
        .unwrap();
    assert!(got == data[..6 * CHUNK], "in order, nothing lost");
}

/// Against a real TCP peer that does not read at first, a writer pushing 32 MiB through
/// the `Sink` with a 64 KiB write high watermark gets `Pending` from `poll_ready` once
/// the socket buffers are full, and is never let in while the output is above the
/// mark: the output never exceeds mark + one chunk. When the peer reads, everything
/// arrives in order, then EOF after `close()`. Current-thread, as above.
#[tokio::test(flavor = "current_thread")]
async fn sink_backpressure_against_a_slow_tcp_reader() {
    const HIGH: usize = 64 << 10;
    // A multiple of 251, so every chunk continues the pattern.
    const CHUNK: usize = 251 * 64;
    const CHUNKS: usize = 2048;
    const TOTAL: usize = CHUNK * CHUNKS;
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .write_watermarks(Watermarks::new(0, HIGH))
        .tcp(a)
        .unwrap();
    let handle = bev.clone();
    let mut io = bev.into_io();
    let chunk = Bytes::from(pattern(CHUNK));
    let waits = Arc::new(AtomicUsize::new(0));

    let w = Arc::clone(&waits);
    let h = handle.clone();
    let writer = tokio::spawn(async move {
        let mut max_at_ready = 0;
        for _ in 0..CHUNKS {
            poll_fn(|cx| {
                let ready = Pin::new(&mut io).poll_ready(cx);
                if ready.is_pending() {
                    w.fetch_add(1, Ordering::SeqCst);
                }
                ready
            })
            .await?;
            // Only this writer adds: the output can only have shrunk since.
            max_at_ready = h.output_len().max(max_at_ready);
            Pin::new(&mut io).start_send(chunk.clone())?;
        }
        SinkExt::<Bytes>::close(&mut io).await?;
        Ok::<_, io::Error>(max_at_ready)
    });

    // The peer reads nothing until the writer has been held back.
    let mut max_output = 0;
    timeout(T, async {
        while waits.load(Ordering::SeqCst) == 0 && !writer.is_finished() {
            max_output = handle.output_len().max(max_output);
            sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the writer is held back or done within 20 s");
    assert!(
        waits.load(Ordering::SeqCst) > 0,
        "32 MiB went into an unread socket without poll_ready ever waiting"
    );
    assert!(
        max_output <= HIGH + CHUNK,
        "output reached {max_output} bytes with a {HIGH}-byte high mark"
    );

    let mut peer = b;
    let mut buf = vec![0u8; 256 << 10];
    let expected = pattern(buf.len() + 251);
    let mut received = 0;
    let ok = timeout(Duration::from_secs(60), async {
        loop {
            let n = peer.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            let at = received % 251;
            assert!(
                buf[..n] == expected[at..at + n],
                "wrong bytes after {received}"
            );
            received += n;
            max_output = handle.output_len().max(max_output);
        }
    })
    .await;
    assert!(ok.is_ok(), "stalled after {received} of {TOTAL} bytes");
    assert_eq!(received, TOTAL);
    let max_at_ready = writer.await.unwrap().unwrap();
    assert!(
        max_at_ready <= HIGH,
        "poll_ready was ready with {max_at_ready} bytes queued"
    );
    assert!(
        max_output <= HIGH + CHUNK,
        "output reached {max_output} bytes with a {HIGH}-byte high mark"
    );
}

/// The stream's next item is the peer's reset, as an error.
async fn expect_reset<Tr, S>(io: &mut tokio_bufferevent::bufferevent::BufferEventIo<Tr, S>)
where
    Tr: tokio_bufferevent::bufferevent::Transport,
    S: Send + 'static,
{
    let item = timeout(T, io.next())
        .await
        .expect("an item after the reset");
    match item {
        Some(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        other => panic!("expected the reset as an error, got {other:?}"),
    }
}

/// Waits until the bufferevent's input, as handles see it, holds `n` bytes.
async fn input_reaches<T: Send + 'static, S: Send + 'static>(bev: &BufferEvent<T, S>, n: usize) {
    timeout(T, async {
        while bev.input_len() < n {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the input filled");
}

/// Starts a read on the adapter and cancels it once it waits: the task then hands the
/// next input over to a reader that is gone.
async fn abandon_a_read<T: Send + 'static>(bev: &BufferEvent<T>) {
    let mut io = bev.clone().into_io();
    let mut buf = [0u8; 64];
    tokio::select! {
        biased;
        read = io.read(&mut buf) => panic!("nothing was sent yet, but read {read:?}"),
        () = sleep(Duration::from_millis(20)) => {}
    }
}

/// Input handed over to an adapter whose read was cancelled stays input: a handle's
/// line reader sees it whole and in order, before what came after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_handed_to_a_cancelled_reader_goes_back_to_the_input() {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    abandon_a_read(&b).await;
    a.write(&b"first\nsec"[..]).await.unwrap();
    input_reaches(&b, 9).await;
    a.write(&b"ond\n"[..]).await.unwrap();
    input_reaches(&b, 13).await;
    let eol = tokio_bufferevent::buffer::EolStyle::Lf;
    assert_eq!(b.read_line(eol, 100).await.unwrap(), &b"first"[..]);
    assert_eq!(b.read_line(eol, 100).await.unwrap(), &b"second"[..]);
    assert_eq!(b.input_len(), 0);
}

/// `read` takes from what was handed over when that answers it, and asks the task
/// for the rest otherwise: either way the bytes come in order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_takes_handed_over_input_in_order() {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    abandon_a_read(&b).await;
    a.write(&b"hello world"[..]).await.unwrap();
    input_reaches(&b, 11).await;
    assert_eq!(b.read(5).await.unwrap(), &b"hello"[..]);
    a.write(&b"!"[..]).await.unwrap();
    input_reaches(&b, 7).await;
    assert_eq!(b.read(100).await.unwrap(), &b" world!"[..]);
    assert_eq!(b.read(100).await.unwrap(), &b""[..]);
}

/// The `AsyncRead` side pushes back as the `Stream` side does: a consumer that reads
/// slowly through a small buffer keeps the input (as handles count it) at the
/// adapter's high watermark, however fast the peer sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_async_reader_keeps_the_input_at_the_watermark() {
    let (ours, mut peer) = tcp_pair().await;
    let flood = tokio::spawn(async move {
        let chunk = vec![7u8; 64 << 10];
        while peer.write_all(&chunk).await.is_ok() {}
    });
    let bev = BufferEvent::builder().tcp(ours).unwrap();
    let watch = bev.clone();
    let mut io = bev.into_io();
    let mut buf = vec![0u8; 4096];
    let (mut received, mut most) = (0, 0);
    while received < 4 << 20 {
        received += timeout(T, io.read(&mut buf)).await.unwrap().unwrap();
        most = most.max(watch.input_len());
        if received % (256 << 10) < 4096 {
            sleep(Duration::from_millis(1)).await;
        }
    }
    let high = tokio_bufferevent::bufferevent::ADAPTER_HIGH_WATERMARK;
    assert!(most <= high, "the input grew to {most}, above {high}");
    drop(io);
    watch.free();
    flood.abort();
}

/// The last input and the end come in that order, however the reader's looks fall
/// between the task publishing the end and handing the input over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_input_comes_before_the_end_every_time() {
    for round in 0..200usize {
        let (a, b) = BufferEvent::builder().pair(
            BufferEvent::builder()
                .enable(Direction::READ)
                .partner_end_is_eof(true),
        );
        let mut io = b.into_io();
        let n = 1 + round % 97;
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            timeout(T, io.read_to_end(&mut got)).await.unwrap().unwrap();
            got.len()
        });
        tokio::task::yield_now().await;
        a.write_now(vec![round as u8; n]).unwrap();
        a.flush(
            Direction::WRITE,
            tokio_bufferevent::bufferevent::FlushMode::Finished,
        );
        assert_eq!(reading.await.unwrap(), n, "round {round}");
    }
}

/// A dropped adapter stops taking input: what it was handed and never took goes back,
/// and a read callback set afterwards sees all of it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_adapter_leaves_the_input_to_callbacks() {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    abandon_a_read(&b).await; // asks for input, then drops the adapter
    a.write(&b"one "[..]).await.unwrap();
    input_reaches(&b, 4).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    b.replace_callbacks(tokio_bufferevent::bufferevent::Callbacks {
        read: Some(Box::new(move |ctx| {
            let mut input = ctx.input();
            let n = input.len();
            tx.send(input.remove_bytes(n)).unwrap();
        })),
        ..Default::default()
    });
    a.write(&b"two"[..]).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 7 {
        got.extend_from_slice(&timeout(T, rx.recv()).await.unwrap().unwrap());
    }
    assert_eq!(got, b"one two");
}

/// Two adapters reading the same bufferevent from two tasks: every byte reaches one
/// of them exactly once, and neither waits forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_adapters_on_one_bufferevent_share_the_input() {
    let (a, b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .partner_end_is_eof(true),
    );
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let mut io = b.clone().into_io();
            tokio::spawn(async move {
                let mut got = Vec::new();
                timeout(T, io.read_to_end(&mut got)).await.unwrap().unwrap();
                got
            })
        })
        .collect();
    drop(b);
    let data = pattern(1 << 20);
    a.write(data.clone()).await.unwrap();
    a.flush(
        Direction::WRITE,
        tokio_bufferevent::bufferevent::FlushMode::Finished,
    );
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await.unwrap());
    }
    assert_eq!(all.len(), data.len());
    // Each byte once: none lost, none duplicated (the order across the two is free).
    let mut expected = data;
    all.sort_unstable();
    expected.sort_unstable();
    assert!(all == expected, "some bytes were lost or duplicated");
}

/// What an adapter took from the input and did not return yet is input again once
/// the adapter is gone: a read through the handle gets it first, then what came after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_an_adapter_took_and_did_not_return_go_back_to_the_input() {
    let (a, b) = BufferEvent::pair();
    let mut io = b.into_io();
    a.write(&b"hello world"[..]).await.unwrap();
    let mut first = [0u8; 5];
    timeout(T, io.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first, b"hello");
    let b = io.into_inner();
    a.write(&b"!"[..]).await.unwrap();
    input_reaches(&b, 7).await;
    assert_eq!(
        timeout(T, b.read_exact(7)).await.unwrap().unwrap(),
        &b" world!"[..]
    );
}

/// `shutdown` on a pair element's adapter completes once the end of the stream is
/// out, as on a socket: the partner reads everything, then EOF, and later writes are
/// refused instead of piling up for a partner that no longer reads.
#[tokio::test(start_paused = true)]
async fn shutdown_over_a_pair_completes_and_later_writes_are_refused() {
    let (a, b) = BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ));
    let mut io = a.into_io();
    io.write_all(b"x").await.unwrap();
    timeout(T, io.shutdown()).await.unwrap().unwrap();
    let mut got = Vec::new();
    timeout(T, b.into_io().read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"x");
    let refused = io.write(b"y").await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::BrokenPipe);
}

/// Dropping one adapter while another waits to read does not leave the other
/// waiting: the request it withdrew was the other's too, and the other asks again.
#[tokio::test(flavor = "current_thread")]
async fn dropping_one_adapter_does_not_strand_another_that_waits() {
    let (a, b) = BufferEvent::pair();
    let io1 = b.clone().into_io();
    let mut io2 = b.clone().into_io();
    a.write(&b"hello"[..]).await.unwrap();
    input_reaches(&b, 5).await;
    let woken = Arc::new(AtomicBool::new(false));
    let waker = futures::task::waker(Arc::new(Flag(Arc::clone(&woken))));
    let mut buf = [0u8; 8];
    let mut read_buf = tokio::io::ReadBuf::new(&mut buf);
    let polled = tokio::io::AsyncRead::poll_read(
        Pin::new(&mut io2),
        &mut std::task::Context::from_waker(&waker),
        &mut read_buf,
    );
    assert!(
        polled.is_pending(),
        "the task has not handed anything over yet"
    );
    drop(io1);
    timeout(T, async {
        while !woken.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the waiting adapter is woken");
    let mut got = [0u8; 5];
    timeout(T, io2.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"hello");
}

/// A waker that sets a flag.
struct Flag(Arc<AtomicBool>);

impl futures::task::ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

/// Flushing the adapter of a filter that has ended with nothing unsent succeeds, as
/// on any other bufferevent: there is nothing left to flush.
#[tokio::test]
async fn flushing_an_ended_filter_with_nothing_unsent_succeeds() {
    let (a, _b) = BufferEvent::pair();
    let filter = BufferEvent::filter(
        a,
        tokio_bufferevent::bufferevent::PassThrough,
        tokio_bufferevent::bufferevent::PassThrough,
    );
    let mut io = filter.clone().into_io();
    timeout(T, filter.close()).await.unwrap();
    timeout(T, AsyncWriteExt::flush(&mut io))
        .await
        .unwrap()
        .unwrap();
}

/// `shutdown()` over a filter completes once the filter has passed everything on
/// and the socket beneath has shut down its write side; the peer reads it all, then
/// EOF, and a later write is refused as on a `TcpStream`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_over_a_filter_completes_and_later_writes_are_refused() {
    let (a, b) = tcp_pair().await;
    let filter = BufferEvent::filter(
        BufferEvent::builder().tcp(a).unwrap(),
        tokio_bufferevent::bufferevent::PassThrough,
        tokio_bufferevent::bufferevent::PassThrough,
    );
    let mut io = filter.clone().into_io();
    assert_eq!(write_then_shut_down(&mut io, b).await, b"before");
    let refused = timeout(T, io.write(b"after")).await.unwrap();
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(io::ErrorKind::BrokenPipe),
        "a write after shutdown is refused"
    );
    assert_eq!(filter.output_len(), 0, "nothing was queued to be lost");
}

/// A filter whose write side was finished (`flush(WRITE, Finished)`, what an
/// adapter's `shutdown` does) and whose handles are then dropped lets its socket go
/// gently, as a close does: input the peer sent that nobody read is discarded first,
/// so the kernel sends no reset that would destroy what the peer has yet to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_filter_dropped_ends_its_socket_without_a_reset() {
    use tokio_bufferevent::bufferevent::{Error, FlushMode, PassThrough};
    let (a, b) = tcp_pair().await;
    let filter = BufferEvent::filter(
        BufferEvent::builder().tcp(a).unwrap(),
        PassThrough,
        PassThrough,
    );
    let mut peer = b;
    // Never read: READ stays off on the filter, so it stays in the kernel.
    peer.write_all(b"unread").await.unwrap();
    filter.write(&b"bye"[..]).await.unwrap();
    filter.flush(Direction::WRITE, FlushMode::Finished);
    timeout(T, async {
        loop {
            match filter.writable().await {
                Ok(()) => sleep(Duration::from_millis(1)).await,
                Err(e) => break assert!(matches!(e, Error::WriteClosed), "{e:?}"),
            }
        }
    })
    .await
    .expect("the write side finishes");
    let underlying = filter.underlying().unwrap();
    drop(filter);
    timeout(T, underlying.closed()).await.unwrap();
    // A reset would have torn the peer's end down (it no longer has a peer); a
    // gentle end leaves it half closed until it closes too.
    sleep(Duration::from_millis(20)).await;
    assert!(
        peer.peer_addr().is_ok(),
        "the connection was reset: {:?}",
        peer.peer_addr()
    );
    let mut got = Vec::new();
    let end = timeout(T, peer.read_to_end(&mut got)).await.unwrap();
    assert!(end.is_ok(), "the peer saw {end:?}, not a clean end");
    assert_eq!(got, b"bye");
}
