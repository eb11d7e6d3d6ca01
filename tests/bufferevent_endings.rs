//! How connections end: a close is bounded in time and stops reading at once; a
//! panicking callback resets the connection; a paused bufferevent notices its peer
//! hanging up; the adapters push back. Real loopback peers throughout.

mod common;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_bufferevent::bufferevent::{
    ADAPTER_HIGH_WATERMARK, BufferEvent, Direction, Events, Watermarks,
};

use common::{expect_within, pattern, settle_task, tcp_pair, within};

/// A peer that keeps sending (and reading) for as long as the connection lasts.
fn flooding_peer(peer: TcpStream) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut reader, mut writer) = peer.into_split();
        let drain = tokio::spawn(async move {
            let mut sink = vec![0; 64 * 1024];
            while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let chunk = vec![b'x'; 16 * 1024];
        while writer.write_all(&chunk).await.is_ok() {}
        drain.abort();
    })
}

/// `close()` while the peer keeps sending: reading stops at once (nothing more is read
/// from the socket), what is queued goes out, and the close finishes without waiting
/// for the peer to stop; with an echoing read callback and without one.
#[tokio::test]
async fn close_stops_reading_at_once_while_the_peer_keeps_sending() {
    for echo in [true, false] {
        let (ours, peer) = tcp_pair().await;
        let flood = flooding_peer(peer);
        let read = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&read);
        let bev = BufferEvent::builder()
            .enable(Direction::READ)
            .on_read(move |ctx| {
                let data = ctx.input().take_all();
                counted.fetch_add(data.len(), Ordering::SeqCst);
                if echo {
                    ctx.output().add_bytes(data);
                }
            })
            .tcp(ours)
            .unwrap();
        // Let the flood run for a moment.
        expect_within(async {
            while read.load(Ordering::SeqCst) < 256 * 1024 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        // Close, and note how much had been read at that moment, in one step.
        let at_close = Arc::new(AtomicUsize::new(0));
        let noted = Arc::clone(&at_close);
        let counted = Arc::clone(&read);
        bev.with(move |ctx| {
            noted.store(counted.load(Ordering::SeqCst), Ordering::SeqCst);
            ctx.close();
        })
        .await
        .unwrap();
        let closed = within(bev.closed())
            .await
            .expect("the close finished while the peer was still sending");
        assert!(closed.error.is_none(), "echo={echo}: {:?}", closed.error);
        assert_eq!(closed.unsent, 0, "echo={echo}");
        assert_eq!(
            read.load(Ordering::SeqCst),
            at_close.load(Ordering::SeqCst),
            "echo={echo}: read after close()"
        );
        flood.abort();
    }
}

/// Nothing more is read once the close is asked for: the read callback sees no byte
/// that arrived afterwards.
#[tokio::test]
async fn nothing_is_read_after_close() {
    let (ours, mut peer) = tcp_pair().await;
    let read = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&read);
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(move |ctx| {
            counted.fetch_add(ctx.input().take_all().len(), Ordering::SeqCst);
        })
        .tcp(ours)
        .unwrap();
    peer.write_all(b"before").await.unwrap();
    expect_within(async {
        while read.load(Ordering::SeqCst) < 6 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The peer's later bytes sit in the socket, unread, while it drains a large
    // output (larger than the socket buffers, so the close waits for the peer).
    bev.write_now(pattern(16 << 20)).unwrap();
    let closing = {
        let bev = bev.clone();
        tokio::spawn(async move { bev.close().await })
    };
    settle_task(&bev).await;
    assert!(!bev.enabled().contains(Direction::READ), "READ off at once");
    peer.write_all(b"after the close").await.unwrap();
    let mut echoed = vec![0; 16 << 20];
    expect_within(peer.read_exact(&mut echoed)).await.unwrap();
    // The close discarded the peer's late bytes, so it ended with a FIN, not a reset.
    let mut rest = Vec::new();
    expect_within(peer.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    let closed = expect_within(closing).await.unwrap();
    assert_eq!(closed.unsent, 0);
    assert_eq!(read.load(Ordering::SeqCst), 6, "nothing read after close()");
}

/// A peer that never reads, with 8 MiB queued: the close ends at its deadline and says
/// how much was left. On paused time, so the deadline costs no real time.
#[tokio::test(start_paused = true)]
async fn a_peer_that_never_reads_cannot_hold_close() {
    let (ours, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(ours).unwrap();
    bev.write_now(pattern(8 << 20)).unwrap();
    let started = tokio::time::Instant::now();
    let closed = bev.close_within(Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        closed.unsent > 0 && closed.unsent < 8 << 20,
        "{}",
        closed.unsent
    );
    assert_eq!(
        closed.error.as_ref().map(|e| e.kind()),
        Some(io::ErrorKind::TimedOut)
    );
}

/// Without a per-call deadline, the builder's applies: 30 s by default.
#[tokio::test(start_paused = true)]
async fn the_default_close_deadline_is_thirty_seconds() {
    let (ours, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(ours).unwrap();
    bev.write_now(pattern(8 << 20)).unwrap();
    let started = tokio::time::Instant::now();
    let closed = bev.close().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(30) && took < Duration::from_secs(31),
        "{took:?}"
    );
    assert!(closed.unsent > 0);

    let (ours, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .close_timeout(Some(Duration::from_secs(2)))
        .tcp(ours)
        .unwrap();
    bev.write_now(pattern(8 << 20)).unwrap();
    let started = tokio::time::Instant::now();
    bev.close().await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A connection whose callback panicked is reset, so the peer can tell it from an
/// answered request.
#[tokio::test]
async fn a_panicking_callback_resets_the_connection() {
    let (ours, mut peer) = tcp_pair().await;
    let _bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|_| panic!("bad request"))
        .tcp(ours)
        .unwrap();
    peer.write_all(b"request").await.unwrap();
    let mut buf = [0; 16];
    let outcome = expect_within(peer.read(&mut buf)).await;
    match outcome {
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("read {n} bytes: the peer took a panic for an answer"),
    }
}

#[allow(deprecated)] // `set_linger` is deprecated for blocking on drop; zero does not block.
fn reset(stream: TcpStream) {
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// A bufferevent paused at its read high watermark notices its peer's reset at once,
/// and reports it without touching the input it holds.
#[tokio::test]
async fn a_reset_while_paused_at_the_high_watermark_is_reported() {
    let (ours, mut peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 64 * 1024))
        .tcp(ours)
        .unwrap();
    peer.write_all(&pattern(256 * 1024)).await.unwrap();
    expect_within(bev.readable(64 * 1024)).await;
    settle_task(&bev).await;
    assert_eq!(bev.input_len(), 64 * 1024, "paused at the mark");
    reset(peer);
    let event = expect_within(bev.next_event()).await.unwrap();
    assert_eq!(event.events, Events::READING | Events::ERROR);
    assert_eq!(event.error.unwrap().kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(bev.input_len(), 64 * 1024, "the input is kept");
    assert_eq!(bev.read(usize::MAX).await.unwrap(), pattern(64 * 1024));
}

/// With READ disabled while holding input, a FIN with nothing left unread is reported
/// as `READING | EOF`; the input stays.
#[tokio::test]
async fn a_fin_while_reading_is_disabled_is_reported() {
    let (ours, mut peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(ours)
        .unwrap();
    peer.write_all(b"held").await.unwrap();
    expect_within(bev.readable(4)).await;
    bev.disable(Direction::READ);
    settle_task(&bev).await;
    peer.shutdown().await.unwrap();
    let event = expect_within(bev.next_event()).await.unwrap();
    assert_eq!(event.events, Events::READING | Events::EOF);
    assert_eq!(bev.read(100).await.unwrap(), &b"held"[..]);
}

/// A FIN that follows data still in the socket is not reported while paused: that
/// data, then the EOF, come once reading resumes (reporting the EOF first would lose
/// the data).
#[tokio::test]
async fn a_fin_after_unread_data_waits_for_the_data() {
    let (ours, mut peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 4))
        .tcp(ours)
        .unwrap();
    peer.write_all(b"12345678").await.unwrap();
    peer.shutdown().await.unwrap();
    expect_within(bev.readable(4)).await;
    settle_task(&bev).await;
    assert!(bev.last_event().is_none(), "no EOF while data is unread");
    assert_eq!(bev.read(4).await.unwrap(), &b"1234"[..]);
    expect_within(bev.readable(4)).await;
    assert_eq!(bev.read(4).await.unwrap(), &b"5678"[..]);
    let event = expect_within(async {
        loop {
            if let Some(event) = bev.last_event() {
                return event;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(event.events, Events::READING | Events::EOF);
}

/// The adapters push back by default: a consumer that reads slowly keeps the input at
/// the adapter's high watermark, however fast the peer sends.
#[tokio::test]
async fn a_slow_consumer_of_the_adapter_bounds_memory() {
    let (ours, peer) = tcp_pair().await;
    let flood = flooding_peer(peer);
    let bev = BufferEvent::builder().tcp(ours).unwrap();
    let watch = bev.clone();
    let mut io = bev.into_io();
    let mut most = 0;
    let mut received = 0;
    while received < 8 << 20 {
        let chunk = expect_within(io.next()).await.unwrap().unwrap();
        received += chunk.len();
        most = most.max(watch.input_len());
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    assert!(most <= ADAPTER_HIGH_WATERMARK, "input grew to {most}");
    assert_eq!(
        watch.watermarks(Direction::READ).unwrap().high,
        ADAPTER_HIGH_WATERMARK
    );
    assert_eq!(
        watch.watermarks(Direction::WRITE).unwrap().high,
        ADAPTER_HIGH_WATERMARK
    );
    drop(io);
    watch.free();
    flood.abort();
}

/// A filter that panics ends its task: every bufferevent that task ran (the filter,
/// its underlying pair element, and that element's partner) reports the end with an
/// error instead of leaving their handles waiting forever.
#[tokio::test(start_paused = true)]
async fn a_panicking_filter_ends_every_bufferevent_of_its_task_with_an_error() {
    use tokio_bufferevent::bufferevent::{FilterResult, FlushMode, Input, Output, PassThrough};
    let (a, b) = BufferEvent::pair();
    let output = |_: &mut Input<'_>,
                  _: &mut Output<'_>,
                  _: Option<usize>,
                  _: FlushMode|
     -> io::Result<FilterResult> { panic!("the filter's bug") };
    let filter = BufferEvent::filter(a, PassThrough, output);
    filter.write_now(&b"x"[..]).unwrap();
    let closed = expect_within(filter.closed()).await;
    assert!(closed.events.contains(Events::ERROR), "{closed:?}");
    let error = closed.error.expect("the panic is the error");
    assert!(
        error.to_string().contains("the filter's bug"),
        "the panic's message is kept: {error}"
    );
    assert!(
        expect_within(filter.with(|_| ())).await.is_err(),
        "later closures are refused, not left waiting"
    );
    let partner = expect_within(b.closed()).await;
    assert!(partner.events.contains(Events::ERROR), "{partner:?}");
    assert!(expect_within(b.with(|_| ())).await.is_err());
}

/// A bufferevent whose runtime shuts down ends with an error its handles on other
/// runtimes see: `closed()` resolves, closures are refused.
#[test]
fn a_bufferevent_whose_runtime_shuts_down_reports_the_end() {
    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = other.block_on(async {
        BufferEvent::builder()
            .runtime(doomed.handle().clone())
            .pair(BufferEvent::builder())
    });
    a.write_now(&b"never sent"[..]).unwrap();
    drop(doomed);
    other.block_on(async {
        for bev in [&a, &b] {
            let closed = expect_within(bev.closed()).await;
            assert!(closed.events.contains(Events::ERROR), "{closed:?}");
            assert!(closed.error.is_some());
            assert!(expect_within(bev.with(|_| ())).await.is_err());
        }
        assert_eq!(
            a.closed().await.unsent,
            10,
            "the queued write was never sent"
        );
    });
}

/// A builder reading on a callback that keeps a clone of `guard`: the guard's count
/// tells whether the bufferevent still exists.
fn holding(guard: &Arc<()>) -> tokio_bufferevent::bufferevent::Builder {
    let held = Arc::clone(guard);
    BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(move |_| {
            let _ = &held;
        })
}

/// Lets the tasks run, then checks that only the test holds `guard`: every
/// bufferevent made by [`holding`] ended and dropped its callbacks.
async fn assert_released(guard: &Arc<()>, what: &str) {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        Arc::strong_count(guard),
        1,
        "{what}: ended, callbacks dropped"
    );
}

/// A pair element left to its callbacks (no handle) ends once its partner is freed:
/// nothing can reach it any more (D-B12), and its callbacks are dropped.
#[tokio::test(start_paused = true)]
async fn a_pair_element_without_handles_ends_when_its_partner_is_freed() {
    let guard = Arc::new(());
    let (a, b) = BufferEvent::builder().pair(holding(&guard));
    drop(b);
    settle_task(&a).await;
    assert_eq!(Arc::strong_count(&guard), 2, "b runs on its callbacks");
    a.free();
    expect_within(a.closed()).await;
    assert_released(&guard, "b").await;
}

/// The same with a handle to the element brought back (through `partner()`) after
/// its last one went: dropping that handle again, once the partner is gone, ends it.
#[tokio::test(start_paused = true)]
async fn a_pair_element_whose_handle_came_back_ends_when_it_goes_again() {
    let guard = Arc::new(());
    let (a, b) = BufferEvent::builder().pair(holding(&guard));
    drop(b);
    settle_task(&a).await;
    let back = a.partner().expect("b still runs");
    a.free();
    expect_within(a.closed()).await;
    settle_task(&back).await;
    assert_eq!(Arc::strong_count(&guard), 2, "b runs on, with a handle");
    drop(back);
    assert_released(&guard, "b").await;
}

/// A pair whose two elements both lost their handles, with callbacks on both and
/// nothing in flight, ends: nothing can ever reach either element again, so keeping
/// each for the other's sake (D-B12) would keep their task for ever.
#[tokio::test(start_paused = true)]
async fn a_pair_no_handle_can_reach_ends() {
    for a_first in [true, false] {
        let guard = Arc::new(());
        let (a, b) = holding(&guard).pair(holding(&guard));
        a.write(&b"x"[..]).await.unwrap();
        settle_task(&a).await;
        assert_eq!(Arc::strong_count(&guard), 3);
        if a_first {
            drop(a);
            drop(b);
        } else {
            drop(b);
            drop(a);
        }
        assert_released(&guard, &format!("a first {a_first}: both")).await;
    }
}

/// A pair whose handles all go while a message is in flight delivers it first: the
/// read callback the message made due runs (and an echo's answer comes back) before
/// the pair ends.
#[tokio::test(start_paused = true)]
async fn a_pair_without_handles_delivers_what_is_in_flight_before_it_ends() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (a, b) = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(move |ctx| {
            let data = ctx.input().take_all();
            let _ = tx.send(data);
        })
        .pair(common::echoing());
    a.write_now(&b"ping"[..]).unwrap();
    b.write_now(&b"x"[..]).unwrap();
    drop(a);
    drop(b);
    let mut got = Vec::new();
    while let Some(data) = expect_within(rx.recv()).await {
        got.extend_from_slice(&data);
    }
    assert_eq!(got, b"xping", "b's own write, then the echo of a's");
}

/// A filter that leaves its underlying bufferevent open (`close_underlying(false)`)
/// lets it go when freed; with no handle and no callback left, the underlying then
/// ends at once (D-B12) and closes its stream.
#[tokio::test(start_paused = true)]
async fn an_underlying_let_go_without_handles_ends_at_once() {
    use tokio_bufferevent::bufferevent::PassThrough;
    let (mut peer, stream) = tokio::io::duplex(64);
    let underlying = BufferEvent::builder().stream(stream);
    let filter =
        BufferEvent::builder()
            .close_underlying(false)
            .filter(underlying, PassThrough, PassThrough);
    settle_task(&filter).await;
    filter.free();
    expect_within(filter.closed()).await;
    let mut buf = [0u8; 8];
    assert_eq!(
        expect_within(peer.read(&mut buf)).await.unwrap(),
        0,
        "the stream closed"
    );
}
