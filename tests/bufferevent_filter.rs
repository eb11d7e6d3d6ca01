//! Filtering bufferevents: ports of libevent's `bufferevent_filters*`,
//! `bufferevent_filter_data_stuck`, `bufferevent_socket_filter_inactive` and
//! `bufferevent_timeout_filter` tests, and the behaviours B-36 and B-83..B-93 with the
//! crate's divergences (see `docs/DIVERGENCES.md`).

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_bufferevent::bufferevent::{
    BufferEvent, Direction, Events, FilterResult, Filtered, FlushMode, Input, Output, Pair,
    PassThrough, Watermarks,
};

use common::{pattern, settle, tcp_pair, within};

/// Prefixes every byte with `x` (libevent's `bufferevent_output_filter`).
fn add_x(
    src: &mut Input<'_>,
    dst: &mut Output<'_>,
    _: Option<usize>,
    _: FlushMode,
) -> io::Result<FilterResult> {
    let data = src.take_all();
    let mut out = Vec::with_capacity(data.len() * 2);
    for &b in data.iter() {
        out.extend_from_slice(&[b'x', b]);
    }
    dst.add(&out);
    Ok(FilterResult::Ok)
}

/// Strips the `x` before every byte (libevent's `bufferevent_input_filter`).
fn strip_x(
    src: &mut Input<'_>,
    dst: &mut Output<'_>,
    _: Option<usize>,
    _: FlushMode,
) -> io::Result<FilterResult> {
    let n = src.len() / 2 * 2;
    if n == 0 {
        return Ok(FilterResult::NeedMore);
    }
    let data = src.remove_bytes(n);
    for pair in data.chunks(2) {
        if pair[0] != b'x' {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no x"));
        }
        dst.add(&pair[1..]);
    }
    Ok(FilterResult::Ok)
}

fn counted(
    calls: &Arc<Mutex<usize>>,
    mut f: impl FnMut(
        &mut Input<'_>,
        &mut Output<'_>,
        Option<usize>,
        FlushMode,
    ) -> io::Result<FilterResult>
    + Send
    + 'static,
) -> impl FnMut(&mut Input<'_>, &mut Output<'_>, Option<usize>, FlushMode) -> io::Result<FilterResult>
+ Send
+ 'static {
    let calls = calls.clone();
    move |s, d, l, m| {
        *calls.lock().unwrap() += 1;
        f(s, d, l, m)
    }
}

/// `bufferevent_filters`: 8333 bytes cross a socket through an `x`-adding output
/// filter and an `x`-stripping input filter; `underlying()` and the descriptor are
/// the socket's; the output filter runs exactly once for one write.
#[tokio::test]
async fn bufferevent_filters() {
    let (s1, s2) = tcp_pair().await;
    let sender = BufferEvent::builder().tcp(s1).unwrap();
    let receiver = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(s2)
        .unwrap();
    let fd = sender.fd();
    let out_calls = Arc::new(Mutex::new(0));
    let sender = BufferEvent::filter(sender, PassThrough, counted(&out_calls, add_x));
    let receiver =
        BufferEvent::builder()
            .enable(Direction::READ)
            .filter(receiver, strip_x, PassThrough);
    assert_eq!(sender.fd(), fd, "B-93: the descriptor is forwarded");
    assert_eq!(sender.underlying().unwrap().fd(), fd);
    sender.write(pattern(8333)).await.unwrap();
    timeout(Duration::from_secs(20), receiver.readable(8333))
        .await
        .unwrap();
    assert_eq!(receiver.read(usize::MAX).await.unwrap(), pattern(8333));
    assert_eq!(*out_calls.lock().unwrap(), 1);
    assert!(receiver.last_event().is_none(), "no event");
}

/// `bufferevent_pair_filters`: the same over a pair.
#[tokio::test(start_paused = true)]
async fn bufferevent_pair_filters() {
    let (a, b) = BufferEvent::pair();
    let sender = BufferEvent::filter(a, PassThrough, add_x);
    let receiver = BufferEvent::builder()
        .enable(Direction::READ)
        .filter(b, strip_x, PassThrough);
    sender.write(pattern(8333)).await.unwrap();
    receiver.readable(8333).await;
    assert_eq!(receiver.read(usize::MAX).await.unwrap(), pattern(8333));
    assert!(sender.underlying().is_some());
    assert_eq!(sender.fd(), None);
}

/// Filters stack: a filter over a filter over a socket adds two layers of `x`.
#[tokio::test]
async fn filters_stack() {
    let (s1, s2) = tcp_pair().await;
    let inner = BufferEvent::filter(BufferEvent::builder().tcp(s1).unwrap(), PassThrough, add_x);
    let outer = BufferEvent::filter(inner, PassThrough, add_x);
    let receiver = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().enable(Direction::READ).filter(
            BufferEvent::builder().tcp(s2).unwrap(),
            strip_x,
            PassThrough,
        ),
        strip_x,
        PassThrough,
    );
    outer.write(&b"stacked"[..]).await.unwrap();
    timeout(Duration::from_secs(20), receiver.readable(7))
        .await
        .unwrap();
    assert_eq!(receiver.read(100).await.unwrap(), &b"stacked"[..]);
    assert!(outer.underlying().unwrap().underlying().is_some());
}

/// `bufferevent_pair_filters_disable`: a write to the filter from inside its own
/// output filter does not re-enter the filter, and the follow-up call's `Error` is reported
/// as `WRITING | ERROR` (libevent ignores it: a divergence).
#[tokio::test(start_paused = true)]
async fn bufferevent_pair_filters_disable() {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    let me: Arc<Mutex<Option<BufferEvent<_>>>> = Arc::new(Mutex::new(None));
    let calls = Arc::new(Mutex::new(0));
    let (me2, calls2) = (me.clone(), calls.clone());
    let output =
        move |src: &mut Input<'_>, dst: &mut Output<'_>, _: Option<usize>, _: FlushMode| {
            let mut n = calls2.lock().unwrap();
            *n += 1;
            if *n == 1 {
                let bev: &Option<BufferEvent<_>> = &me2.lock().unwrap();
                bev.as_ref().unwrap().write_now(&b"more"[..]).unwrap();
                dst.append_input(src);
                Ok(FilterResult::Ok)
            } else {
                Err(io::Error::new(io::ErrorKind::InvalidData, "refused"))
            }
        };
    let filter = BufferEvent::filter(a, PassThrough, output);
    *me.lock().unwrap() = Some(filter.clone());
    filter.write(&b"first"[..]).await.unwrap();
    let event = timeout(Duration::from_secs(5), filter.next_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.events, Events::WRITING | Events::ERROR);
    assert_eq!(event.error.unwrap().to_string(), "refused");
    assert_eq!(
        *calls.lock().unwrap(),
        2,
        "called once per write, never nested"
    );
    assert_eq!(b.read(100).await.unwrap(), &b"first"[..]);
    assert_eq!(
        filter.output_len(),
        4,
        "the refused bytes stay in the output"
    );
    me.lock().unwrap().take();
}

/// `bufferevent_filter_data_stuck` (libevent issue #362): a pair with read high
/// watermarks of 4096, an input filter that adds a 20-byte header once and a filter
/// high watermark of 4096: a 4096-byte payload yields 4116 bytes, none stranded in
/// the underlying's input.
#[tokio::test(start_paused = true)]
async fn bufferevent_filter_data_stuck() {
    let (a, b) = BufferEvent::builder()
        .read_watermarks(Watermarks::new(0, 4096))
        .defer_callbacks(true)
        .pair(
            BufferEvent::builder()
                .enable(Direction::READ)
                .read_watermarks(Watermarks::new(0, 4096))
                .defer_callbacks(true),
        );
    let mut header_sent = false;
    let input =
        move |src: &mut Input<'_>, dst: &mut Output<'_>, limit: Option<usize>, _: FlushMode| {
            if !header_sent {
                dst.add(&[b'h'; 20]);
                header_sent = true;
            }
            let n = limit.unwrap_or(usize::MAX).min(src.len());
            src.remove_to(dst, n);
            Ok(FilterResult::Ok)
        };
    let total = Arc::new(Mutex::new(0));
    let t = total.clone();
    let reader = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 4096))
        .on_read(move |ctx| {
            let n = ctx.input().take_all().len();
            *t.lock().unwrap() += n;
        })
        .filter(b, input, PassThrough);
    a.write(vec![b'p'; 4096]).await.unwrap();
    sleep(Duration::from_millis(100)).await;
    assert_eq!(*total.lock().unwrap(), 4116);
    assert_eq!(reader.underlying().unwrap().input_len(), 0);
}

/// `bufferevent_socket_filter_inactive`: a filter over a bufferevent with no socket
/// can be created and freed, filter first, then the underlying.
#[tokio::test(start_paused = true)]
async fn bufferevent_socket_filter_inactive() {
    let base = BufferEvent::builder().unconnected::<TcpStream>();
    let keep = base.clone();
    let filter =
        BufferEvent::builder()
            .close_underlying(false)
            .filter(base, PassThrough, PassThrough);
    settle().await;
    filter.free();
    filter.closed().await;
    settle().await;
    assert!(!keep.is_closed(), "released, not freed");
    keep.free();
    keep.closed().await;
}

/// `bufferevent_timeout_filter` and `_filter_pair` with the crate's divergence
/// (B-46): a write timeout is armed only while there is something to write, so an
/// idle filter never gets `WRITING | TIMEOUT`. Output the filter holds back does time
/// out, and the read timeout fires as libevent's does. `first` and `second` are the
/// bufferevents the two filters go over; the clock must be paused.
async fn filter_timeouts<T, U>(first: BufferEvent<T>, second: BufferEvent<U>)
where
    T: Send + 'static,
    U: Send + 'static,
{
    let start = Instant::now();
    let hold = |_: &mut Input<'_>, _: &mut Output<'_>, _: Option<usize>, _: FlushMode| {
        Ok(FilterResult::NeedMore)
    };
    let bev1 = BufferEvent::builder()
        .enable(Direction::READ)
        .timeouts(
            Some(Duration::from_millis(150)),
            Some(Duration::from_millis(100)),
        )
        .filter(first, PassThrough, hold);
    let bev2 = BufferEvent::builder()
        .timeouts(None, Some(Duration::from_millis(200)))
        .filter(second, PassThrough, PassThrough);
    bev1.write_now(&b"1234567"[..]).unwrap();
    let first = bev1.next_event().await.unwrap();
    assert_eq!(first.events, Events::WRITING | Events::TIMEOUT);
    // Tokio's timer has millisecond ticks: a paused clock started mid-tick fires at
    // the next one.
    let ms = |d: Duration| d.as_millis();
    assert!(
        (100..=101).contains(&ms(start.elapsed())),
        "{:?}",
        start.elapsed()
    );
    let second = bev1.next_event().await.unwrap();
    assert_eq!(second.events, Events::READING | Events::TIMEOUT);
    assert!(
        (150..=151).contains(&ms(start.elapsed())),
        "{:?}",
        start.elapsed()
    );
    sleep(Duration::from_millis(200)).await;
    assert!(
        bev2.last_event().is_none(),
        "the idle filter never times out"
    );
}

/// `bufferevent_timeout_filter`: filters over sockets.
#[tokio::test]
async fn bufferevent_timeout_filter() {
    let (s1, _peer1) = tcp_pair().await;
    let (s2, _peer2) = tcp_pair().await;
    let first = BufferEvent::builder().tcp(s1).unwrap();
    let second = BufferEvent::builder().tcp(s2).unwrap();
    tokio::time::pause();
    filter_timeouts(first, second).await;
}

/// `bufferevent_timeout_filter_pair`: filters over pair elements.
#[tokio::test(start_paused = true)]
async fn bufferevent_timeout_filter_pair() {
    let (a, b) = BufferEvent::pair();
    let (c, d) = BufferEvent::pair();
    filter_timeouts(a, c).await;
    drop((b, d));
}

/// B-84: creating a filter enables both directions of the underlying, and the
/// underlying reads only while the filter's READ is enabled: a peer that floods a
/// filter with READ off fills nothing.
#[tokio::test]
async fn filter_with_read_disabled_holds_the_peer_back() {
    let (s1, mut peer) = tcp_pair().await;
    let base = BufferEvent::builder()
        .disable(Direction::BOTH)
        .tcp(s1)
        .unwrap();
    let base_handle = base.clone();
    let filter = BufferEvent::filter(base, PassThrough, PassThrough);
    let flood = tokio::spawn(async move {
        let chunk = vec![0u8; 64 * 1024];
        let mut sent = 0usize;
        while sent < 64 << 20 {
            match timeout(Duration::from_millis(500), peer.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
        (sent, peer)
    });
    let (sent, _peer) = flood.await.unwrap();
    assert!(sent < 64 << 20, "the peer was held back");
    assert_eq!(base_handle.enabled(), Direction::BOTH, "B-84: both enabled");
    assert_eq!(base_handle.input_len(), 0, "nothing was read");
    assert_eq!(filter.input_len(), 0);
    filter.enable(Direction::READ);
    assert_eq!(
        within(filter.readable(1)).await.unwrap(),
        tokio_bufferevent::bufferevent::Readiness::Ready
    );
    assert!(filter.input_len() > 0, "the data flows");
}

/// D-F5: a reader that drains a filter slowly, with a small read high watermark, does
/// not let the underlying (with no watermark of its own) read on each time: what it
/// holds stays near the filter's watermark plus one read, however much the peer sends.
#[tokio::test]
async fn a_slow_reader_bounds_what_the_underlying_holds() {
    const HIGH: usize = 100;
    let (s1, mut peer) = tcp_pair().await;
    let filter = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, HIGH))
        .filter(
            BufferEvent::builder().tcp(s1).unwrap(),
            PassThrough,
            PassThrough,
        );
    let base = filter.underlying().expect("the underlying");
    let flood = tokio::spawn(async move {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..128 {
            if peer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut most = 0;
    for _ in 0..400 {
        let ready = within(filter.readable(1)).await.unwrap();
        assert_eq!(ready, tokio_bufferevent::bufferevent::Readiness::Ready);
        assert!(filter.input_len() <= HIGH);
        filter.read(usize::MAX).await.unwrap();
        most = most.max(base.input_len());
    }
    assert!(most <= HIGH + 16 * 1024, "the underlying held {most} bytes");
    flood.abort();
}

/// An end beneath that comes while the underlying holds less than its own read low
/// watermark (B-90: the filter is not called below it) is not held back: the last
/// bytes and the EOF arrive (the end waits only for room in a filter with a read high
/// watermark).
#[tokio::test]
async fn an_end_below_the_underlying_s_low_watermark_arrives() {
    let (s1, mut peer) = tcp_pair().await;
    let base = BufferEvent::builder()
        .read_watermarks(Watermarks::new(8, 0))
        .tcp(s1)
        .unwrap();
    let filter = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 4096))
        .filter(base, PassThrough, PassThrough);
    peer.write_all(b"abc").await.unwrap();
    peer.shutdown().await.unwrap();
    let record = within(filter.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::READING | Events::EOF);
    assert_eq!(filter.read(100).await.unwrap(), &b"abc"[..]);
}

/// The pair partner beneath a filter goes away while more than the filter's read high
/// watermark still waits beneath: a reader gets every byte before the end, as the
/// filter passes it on at the watermark's pace.
#[tokio::test]
async fn a_partner_gone_beneath_loses_nothing_that_waits_there() {
    use tokio::io::AsyncReadExt as _;
    let (a, b) = BufferEvent::pair();
    let filter = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 16))
        .filter(a, PassThrough, PassThrough);
    let data = pattern(1000);
    b.write(data.clone()).await.unwrap();
    drop(b);
    let mut got = Vec::new();
    within(filter.into_io().read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(got, data);
}

/// A filter whose reader turned READ off still hears an end beneath at once (as a
/// paused socket does), even with data waiting there for room under its read high
/// watermark: the end is not held for a reader that may never come back.
#[tokio::test]
async fn a_filter_with_read_off_hears_an_end_beneath() {
    use tokio_bufferevent::bufferevent::Readiness;
    let (s1, mut peer) = tcp_pair().await;
    let filter = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 16))
        .filter(
            BufferEvent::builder().tcp(s1).unwrap(),
            PassThrough,
            PassThrough,
        );
    let base = filter.underlying().expect("the underlying");
    peer.write_all(&pattern(1000)).await.unwrap();
    assert_eq!(within(filter.readable(16)).await.unwrap(), Readiness::Ready);
    within(async {
        while base.input_len() == 0 {
            settle().await;
        }
    })
    .await
    .expect("the rest waits beneath");
    filter.disable(Direction::READ);
    peer.shutdown().await.unwrap();
    let record = within(filter.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::READING | Events::EOF);
}

/// A filter that answers `Ok` without moving anything is not called again until
/// something changes, in either direction (it used to be called in a loop, and its
/// task never went idle).
#[tokio::test]
async fn a_filter_that_moves_nothing_is_not_called_in_a_loop() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let (c_in, c_out) = (calls.clone(), calls.clone());
    let idle_in = move |_: &mut Input<'_>, _: &mut Output<'_>, _: Option<usize>, _: FlushMode| {
        c_in.fetch_add(1, Ordering::Relaxed);
        Ok(FilterResult::Ok)
    };
    let idle_out = move |_: &mut Input<'_>, _: &mut Output<'_>, _: Option<usize>, _: FlushMode| {
        c_out.fetch_add(1, Ordering::Relaxed);
        Ok(FilterResult::Ok)
    };
    let (a, b) = BufferEvent::pair();
    let filtered = BufferEvent::builder()
        .enable(Direction::READ)
        .filter(a, idle_in, idle_out);
    b.write(&b"in"[..]).await.unwrap();
    filtered.write(&b"out"[..]).await.unwrap();
    // Real time: a filter called in a loop would be called many thousands of times.
    sleep(Duration::from_millis(200)).await;
    let n = calls.load(Ordering::Relaxed);
    assert!(n < 50, "called {n} times");
    assert_eq!(filtered.input_len(), 0);
    assert_eq!(filtered.output_len(), 3);
}

/// The underlying's write side shut down through its own handle: the filter's write
/// side is closed too, so a write fails and `drained()` resolves, instead of the bytes
/// vanishing into an output nothing sends.
#[tokio::test]
async fn a_shutdown_beneath_closes_the_filter_s_write_side() {
    let (s1, mut peer) = tcp_pair().await;
    let filter = BufferEvent::filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        PassThrough,
        PassThrough,
    );
    let base = filter.underlying().expect("the underlying");
    base.flush(Direction::WRITE, FlushMode::Finished);
    let mut rest = Vec::new();
    within(peer.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty());
    filter.write_now(&b"lost"[..]).ok();
    within(filter.drained())
        .await
        .expect("drained() says it cannot drain");
    assert!(matches!(
        within(filter.write(&b"x"[..])).await.unwrap(),
        Err(tokio_bufferevent::bufferevent::Error::WriteClosed)
    ));
}

/// A filter that panics over TCP resets the connection, as a panicking callback does
/// (D-B11): the peer cannot take the cut for a complete answer.
#[tokio::test]
async fn a_panicking_filter_resets_its_tcp_connection() {
    let (s1, mut peer) = tcp_pair().await;
    let panicking = |_: &mut Input<'_>,
                     _: &mut Output<'_>,
                     _: Option<usize>,
                     _: FlushMode|
     -> io::Result<FilterResult> { panic!("a bug in the output filter") };
    let filter = BufferEvent::filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        PassThrough,
        panicking,
    );
    filter.write_now(&b"x"[..]).unwrap();
    let mut buf = [0u8; 8];
    let read = within(peer.read(&mut buf)).await.unwrap();
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(io::ErrorKind::ConnectionReset),
        "a reset, not a clean end"
    );
}

/// B-86: `dst_limit` is the room under the underlying's write high watermark for
/// output, and under the filter's read high watermark for input.
#[tokio::test(start_paused = true)]
async fn dst_limits() {
    let (a, b) = BufferEvent::builder()
        .write_watermarks(Watermarks::new(0, 10))
        .pair(BufferEvent::builder());
    let limits = Arc::new(Mutex::new(Vec::new()));
    let l = limits.clone();
    let output =
        move |src: &mut Input<'_>, dst: &mut Output<'_>, limit: Option<usize>, _: FlushMode| {
            l.lock().unwrap().push(limit);
            dst.append_input(src);
            Ok(FilterResult::Ok)
        };
    let filter = BufferEvent::filter(a, PassThrough, output);
    filter.write(&b"1234"[..]).await.unwrap();
    settle().await;
    filter.write(&b"567"[..]).await.unwrap();
    settle().await;
    assert_eq!(*limits.lock().unwrap(), [Some(10), Some(6)]);

    let (c, d) = BufferEvent::pair();
    let in_limits = Arc::new(Mutex::new(Vec::new()));
    let l = in_limits.clone();
    let input =
        move |src: &mut Input<'_>, dst: &mut Output<'_>, limit: Option<usize>, _: FlushMode| {
            l.lock().unwrap().push(limit);
            dst.append_input(src);
            Ok(FilterResult::Ok)
        };
    let reader = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 5))
        .filter(d, input, PassThrough);
    c.write(&b"ab"[..]).await.unwrap();
    settle().await;
    assert_eq!(*in_limits.lock().unwrap(), [Some(5)]);
    assert_eq!(reader.input_len(), 2);
    drop(b);
}

/// B-87: the output filter is not called while the underlying's output is at its
/// write high watermark, and resumes once it drains to its write low watermark.
#[tokio::test(start_paused = true)]
async fn output_throttled_until_the_underlying_drains() {
    let (a, b) = BufferEvent::builder()
        .write_watermarks(Watermarks::new(2, 4))
        .pair(BufferEvent::builder());
    let calls = Arc::new(Mutex::new(0));
    let filter = BufferEvent::filter(a, PassThrough, counted(&calls, PassThrough.into_fn()));
    filter.write(&b"abcdef"[..]).await.unwrap();
    settle().await;
    assert_eq!(*calls.lock().unwrap(), 1);
    assert_eq!(
        filter.output_len(),
        2,
        "4 bytes passed, at the high watermark"
    );
    filter.write(&b"gh"[..]).await.unwrap();
    settle().await;
    assert_eq!(*calls.lock().unwrap(), 1, "throttled");
    b.enable(Direction::READ);
    b.readable(8).await;
    assert_eq!(b.read(100).await.unwrap(), &b"abcdefgh"[..]);
    assert_eq!(filter.output_len(), 0);
}

/// B-36 and the EOF divergence: EOF on the underlying first runs the input filter
/// with `Finished`, then reaches the filter's event callback unchanged.
#[tokio::test]
async fn eof_runs_the_input_filter_finished_then_forwards() {
    let (s1, s2) = tcp_pair().await;
    let modes = Arc::new(Mutex::new(Vec::new()));
    let m = modes.clone();
    let input =
        move |src: &mut Input<'_>, dst: &mut Output<'_>, _: Option<usize>, mode: FlushMode| {
            m.lock().unwrap().push(mode);
            dst.append_input(src);
            if mode == FlushMode::Finished {
                dst.add(b"<tail>");
            }
            Ok(FilterResult::Ok)
        };
    let filter = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        input,
        PassThrough,
    );
    let mut peer = s2;
    peer.write_all(b"data").await.unwrap();
    peer.shutdown().await.unwrap();
    let event = within(filter.next_event()).await.unwrap().unwrap();
    assert_eq!(event.events, Events::READING | Events::EOF);
    assert_eq!(filter.read(100).await.unwrap(), &b"data<tail>"[..]);
    assert_eq!(modes.lock().unwrap().last(), Some(&FlushMode::Finished));
    assert!(
        filter.enabled().contains(Direction::READ),
        "B-36: enabled unchanged"
    );
}

/// Divergence from B-88: re-enabling WRITE processes output queued while it was off.
#[tokio::test(start_paused = true)]
async fn reenabling_write_processes_queued_output() {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    let filter =
        BufferEvent::builder()
            .disable(Direction::WRITE)
            .filter(a, PassThrough, PassThrough);
    filter.write_now(&b"queued"[..]).unwrap();
    settle().await;
    assert_eq!(b.input_len(), 0);
    filter.enable(Direction::WRITE);
    b.readable(6).await;
    assert_eq!(b.read(100).await.unwrap(), &b"queued"[..]);
}

/// B-77: a filter flush runs the filter at least once in the flush's mode, even with
/// an empty source, then flushes the underlying: `Finished` over a socket shuts its
/// write side down once the trailer is sent.
#[tokio::test]
async fn flush_finished_writes_the_trailer_then_shuts_down() {
    let (s1, mut peer) = tcp_pair().await;
    let output = |src: &mut Input<'_>, dst: &mut Output<'_>, _: Option<usize>, mode: FlushMode| {
        dst.append_input(src);
        if mode == FlushMode::Finished {
            dst.add(b"<trailer>");
        }
        Ok(FilterResult::Ok)
    };
    let filter = BufferEvent::filter(BufferEvent::builder().tcp(s1).unwrap(), PassThrough, output);
    filter.write(&b"body"[..]).await.unwrap();
    filter.flush(Direction::WRITE, FlushMode::Finished);
    let mut got = Vec::new();
    within(peer.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"body<trailer>");
    assert!(!filter.is_closed());
}

/// `close().await` runs the output filter with `Finished`, sends everything, shuts
/// the socket down and ends both bufferevents.
#[tokio::test]
async fn close_finishes_the_filter_then_the_socket() {
    let (s1, mut peer) = tcp_pair().await;
    let output = |src: &mut Input<'_>, dst: &mut Output<'_>, _: Option<usize>, mode: FlushMode| {
        dst.append_input(src);
        if mode == FlushMode::Finished {
            dst.add(b".");
        }
        Ok(FilterResult::Ok)
    };
    let base = BufferEvent::builder().tcp(s1).unwrap();
    let base_handle = base.clone();
    let filter = BufferEvent::filter(base, PassThrough, output);
    filter.write(Bytes::from_static(b"bye")).await.unwrap();
    let closed = within(filter.close()).await.unwrap();
    assert_eq!(closed.unsent, 0);
    let mut got = Vec::new();
    peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"bye.");
    within(base_handle.closed()).await.unwrap();
}

/// B-92: freeing a filter frees the underlying by default; with
/// `close_underlying(false)` the underlying runs on alone, without callbacks, both
/// directions enabled.
#[tokio::test(start_paused = true)]
async fn free_with_and_without_closing_the_underlying() {
    let (a, b) = BufferEvent::pair();
    let a_handle = a.clone();
    let filter = BufferEvent::filter(a, PassThrough, PassThrough);
    settle().await;
    filter.free();
    filter.closed().await;
    a_handle.closed().await;

    let (a, b2) = BufferEvent::pair();
    let a_handle = a.clone();
    let filter = BufferEvent::builder()
        .close_underlying(false)
        .enable(Direction::READ)
        .filter(a, PassThrough, PassThrough);
    settle().await;
    filter.free();
    filter.closed().await;
    settle().await;
    assert!(!a_handle.is_closed());
    assert_eq!(a_handle.enabled(), Direction::BOTH);
    b2.write(&b"still there"[..]).await.unwrap();
    a_handle.readable(11).await;
    assert_eq!(a_handle.read(100).await.unwrap(), &b"still there"[..]);
    drop(b);
}

/// A filter whose underlying is freed through the underlying's own handle hears
/// nothing by default, and `READING | EOF` with `partner_end_is_eof`.
#[tokio::test(start_paused = true)]
async fn underlying_freed_from_its_own_handle() {
    // By default: no event at all.
    let (a, _b) = BufferEvent::pair();
    let a_handle = a.clone();
    let quiet = BufferEvent::filter(a, PassThrough, PassThrough);
    settle().await;
    a_handle.free();
    settle().await;
    assert!(quiet.underlying().is_none(), "the underlying is gone");
    assert!(quiet.last_event().is_none(), "{:?}", quiet.last_event());

    let (a, b) = BufferEvent::pair();
    let a_handle = a.clone();
    let filter =
        BufferEvent::builder()
            .partner_end_is_eof(true)
            .filter(a, PassThrough, PassThrough);
    settle().await;
    a_handle.free();
    let event = filter.next_event().await.unwrap();
    assert_eq!(event.events, Events::READING | Events::EOF);
    assert!(filter.underlying().is_none());
    // The pair's other element now runs on a task of its own, and still answers.
    b.write_now(&b"queued"[..]).unwrap();
    settle().await;
    assert_eq!(b.output_len(), 6);
    assert_eq!(b.close().await.unsent, 6);
}

/// An input filter's `Error` is delivered as `READING | ERROR` with the filter's
/// error, and nothing panics (libevent ignores it: a divergence).
#[tokio::test]
async fn input_filter_error_is_reported() {
    let (s1, mut peer) = tcp_pair().await;
    let filter = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        strip_x,
        PassThrough,
    );
    peer.write_all(b"ab").await.unwrap();
    let event = within(filter.next_event()).await.unwrap().unwrap();
    assert_eq!(event.events, Events::READING | Events::ERROR);
    assert_eq!(event.error.unwrap().kind(), io::ErrorKind::InvalidData);
}

trait IntoFn {
    fn into_fn(
        self,
    ) -> impl FnMut(
        &mut Input<'_>,
        &mut Output<'_>,
        Option<usize>,
        FlushMode,
    ) -> io::Result<FilterResult>
    + Send
    + 'static;
}

impl IntoFn for PassThrough {
    fn into_fn(
        mut self,
    ) -> impl FnMut(
        &mut Input<'_>,
        &mut Output<'_>,
        Option<usize>,
        FlushMode,
    ) -> io::Result<FilterResult>
    + Send
    + 'static {
        use tokio_bufferevent::bufferevent::Filter;
        move |s, d, l, m| self.filter(s, d, l, m)
    }
}

/// B-84: the underlying's own callbacks are removed when the filter takes it over;
/// its data goes to the filter instead.
#[tokio::test(start_paused = true)]
async fn the_underlyings_callbacks_are_replaced() {
    let (a, b) = BufferEvent::pair();
    let called = Arc::new(Mutex::new(0));
    let c = called.clone();
    let old_callbacks = b
        .set_callbacks(tokio_bufferevent::bufferevent::Callbacks {
            read: Some(Box::new(move |_| *c.lock().unwrap() += 1)),
            write: None,
            event: None,
        })
        .await
        .unwrap();
    assert!(old_callbacks.read.is_none());
    let filter = BufferEvent::builder()
        .enable(Direction::READ)
        .filter(b, PassThrough, PassThrough);
    a.write(&b"to the filter"[..]).await.unwrap();
    filter.readable(13).await;
    assert_eq!(filter.read(100).await.unwrap(), &b"to the filter"[..]);
    assert_eq!(*called.lock().unwrap(), 0);
}

/// B-36: a filter over a bufferevent that connects hears `CONNECTED`, and its
/// `connected()` resolves; a failed connect reaches it as `ERROR`.
#[tokio::test]
async fn connect_events_are_forwarded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = BufferEvent::builder()
        .connect(listener.local_addr().unwrap())
        .unwrap();
    let filter = BufferEvent::filter(socket, PassThrough, PassThrough);
    assert!(within(filter.connected()).await.unwrap().is_ok());
    assert_eq!(filter.peer_addr(), Some(listener.local_addr().unwrap()));

    let (_held, closed_port) = common::refusing();
    let socket = BufferEvent::builder().connect(closed_port).unwrap();
    let filter = BufferEvent::filter(socket, PassThrough, PassThrough);
    assert!(within(filter.connected()).await.unwrap().is_err());
    let event = filter.last_event().unwrap();
    assert_eq!(event.events, Events::ERROR);
}

/// One filter per bufferevent: a second filter over an already filtered one reports
/// `ERROR` and leaves the first working.
#[tokio::test(start_paused = true)]
async fn a_second_filter_over_the_same_underlying_is_refused() {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    let a_again = a.clone();
    let first = BufferEvent::filter(a, PassThrough, PassThrough);
    settle().await;
    let second = BufferEvent::filter(a_again, PassThrough, PassThrough);
    let event = second.next_event().await.unwrap();
    assert_eq!(event.events, Events::ERROR);
    assert!(
        event
            .error
            .unwrap()
            .to_string()
            .contains("already has a filter")
    );
    first.write(&b"first still works"[..]).await.unwrap();
    b.readable(17).await;
    assert_eq!(b.read(100).await.unwrap(), &b"first still works"[..]);
}

/// `bufferevent_filters_disable`: as `bufferevent_pair_filters_disable`, over a
/// socket.
#[tokio::test]
async fn bufferevent_filters_disable() {
    let (s1, s2) = tcp_pair().await;
    let receiver = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(s2)
        .unwrap();
    let calls = Arc::new(Mutex::new(0));
    let calls2 = calls.clone();
    let output =
        move |src: &mut Input<'_>, dst: &mut Output<'_>, _: Option<usize>, _: FlushMode| {
            let mut n = calls2.lock().unwrap();
            *n += 1;
            if *n == 1 {
                dst.append_input(src);
                Ok(FilterResult::Ok)
            } else {
                Err(io::Error::new(io::ErrorKind::InvalidData, "refused"))
            }
        };
    let filter = BufferEvent::filter(BufferEvent::builder().tcp(s1).unwrap(), PassThrough, output);
    filter.write(&b"first"[..]).await.unwrap();
    within(receiver.readable(5)).await.unwrap();
    filter.write(&b"second"[..]).await.unwrap();
    let event = within(filter.next_event()).await.unwrap().unwrap();
    assert_eq!(event.events, Events::WRITING | Events::ERROR);
    assert_eq!(*calls.lock().unwrap(), 2);
    assert_eq!(receiver.read(100).await.unwrap(), &b"first"[..]);
}

/// No leaked tasks: pairs, filters over them and stacked filters over sockets all
/// end once freed or closed, and the runtime's alive-task count returns to where it
/// was; so does a pair whose handles are all dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaked_tasks() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    for _ in 0..20 {
        let (a, b) = BufferEvent::pair();
        let fa = BufferEvent::filter(a, PassThrough, add_x);
        let fb = BufferEvent::builder()
            .enable(Direction::READ)
            .filter(b, strip_x, PassThrough);
        fa.write(&b"data"[..]).await.unwrap();
        fb.readable(4).await;
        fa.close().await;
        fb.free();
        fb.closed().await;

        let (s1, s2) = tcp_pair().await;
        let stacked = BufferEvent::filter(
            BufferEvent::filter(
                BufferEvent::builder().tcp(s1).unwrap(),
                PassThrough,
                PassThrough,
            ),
            PassThrough,
            PassThrough,
        );
        stacked.write(&b"x"[..]).await.unwrap();
        stacked.close().await;
        drop(s2);

        let (c, d) = BufferEvent::pair();
        drop((c, d));
    }
    let mut alive = metrics.num_alive_tasks();
    for _ in 0..200 {
        if alive <= baseline {
            break;
        }
        sleep(Duration::from_millis(10)).await;
        alive = metrics.num_alive_tasks();
    }
    assert_eq!(alive, baseline, "every bufferevent task ended");
}

/// A pair whose second element is under a filter that releases it
/// (`close_underlying(false)`), and "filtered " sent through the filter and arrived
/// at the first element.
async fn a_releasing_filter_over_a_pair() -> (BufferEvent<Pair>, BufferEvent<Filtered<Pair>>) {
    let (a, b) = BufferEvent::pair();
    a.enable(Direction::READ);
    let filter = BufferEvent::builder()
        .close_underlying(false)
        .filter(b, PassThrough, PassThrough);
    filter.write(&b"filtered "[..]).await.unwrap();
    within(a.readable(9)).await.unwrap();
    (a, filter)
}

/// A filter released with `close_underlying(false)` gives its underlying back to the
/// pair it belongs to: the element is still paired and data flows again.
#[tokio::test(start_paused = true)]
async fn released_pair_element_stays_paired() {
    let (a, filter) = a_releasing_filter_over_a_pair().await;
    let raw = filter.underlying().unwrap();
    // `free`, not `close`: closing would send `Finished` down to the pair, whose
    // partner would then hear EOF.
    filter.free();
    filter.closed().await;
    settle().await;
    assert!(raw.partner().is_some(), "still paired");
    raw.write(&b"raw"[..]).await.unwrap();
    a.readable(12).await;
    assert_eq!(a.read(100).await.unwrap(), &b"filtered raw"[..]);
}

/// A filter whose handles are all dropped with data still queued sends it before it
/// ends (and frees the socket under it): nothing written is lost.
#[tokio::test]
async fn dropping_the_last_handle_sends_what_is_queued() {
    let (s1, mut peer) = tcp_pair().await;
    let filter = BufferEvent::filter(BufferEvent::builder().tcp(s1).unwrap(), PassThrough, add_x);
    filter.write(&b"bye"[..]).await.unwrap();
    drop(filter);
    let mut got = Vec::new();
    within(peer.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"xbxyxe");
}

/// A filter sees only a removal view of its source and an addition view of its
/// destination, so it cannot freeze or otherwise strand what is written: every write
/// is queued (and sent, or reported with an error), or refused with an error.
#[tokio::test(start_paused = true)]
async fn a_write_is_queued_or_refused_never_lost() {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    let calls = Arc::new(Mutex::new(0));
    let seen = calls.clone();
    let output =
        move |src: &mut Input<'_>, dst: &mut Output<'_>, _: Option<usize>, _: FlushMode| {
            *seen.lock().unwrap() += 1;
            if src.len() > 4 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "too long"));
            }
            dst.append_input(src);
            Ok(FilterResult::Ok)
        };
    let filter = BufferEvent::filter(a, PassThrough, output);
    filter.write(&b"ok"[..]).await.unwrap();
    within(b.readable(2)).await.unwrap();
    assert_eq!(b.read(10).await.unwrap(), &b"ok"[..]);

    // Queued, then refused by the filter: reported, not dropped in silence.
    filter.write_now(&b"too long"[..]).unwrap();
    let event = within(filter.next_event()).await.unwrap().unwrap();
    assert_eq!(event.events, Events::WRITING | Events::ERROR);
    assert_eq!(event.error.unwrap().kind(), io::ErrorKind::InvalidData);
    assert_eq!(filter.output_len(), 8, "still there, for closed() to count");
    // Now refused at the call.
    let err = filter.write_now(&b"later"[..]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    assert_eq!(filter.close().await.unsent, 8);
}

/// A `Normal` flush of a disabled direction runs no filter, as in libevent's
/// `be_filter_flush`; with the direction enabled it runs the filter at least once.
#[tokio::test(start_paused = true)]
async fn a_normal_flush_of_a_disabled_direction_runs_no_filter() {
    let (a, _b) = BufferEvent::pair();
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let input = move |src: &mut Input<'_>, dst: &mut Output<'_>, _: Option<usize>, _: FlushMode| {
        *counted.lock().unwrap() += 1;
        dst.append_input(src);
        Ok(FilterResult::Ok)
    };
    let filter = BufferEvent::filter(a, input, PassThrough);
    filter.disable(Direction::READ);
    filter.flush(Direction::READ, FlushMode::Normal);
    settle().await;
    assert_eq!(*calls.lock().unwrap(), 0, "READ is disabled");
    filter.enable(Direction::READ);
    filter.flush(Direction::READ, FlushMode::Normal);
    settle().await;
    assert_eq!(*calls.lock().unwrap(), 1, "enabled: one forced call (B-77)");
}

/// A filter made after its underlying bufferevent connected, or failed to, answers
/// `connected()` as the underlying would; an orphaned filter (its underlying had
/// ended) answers `Ended`: nothing can connect it.
#[tokio::test]
async fn a_filter_made_after_the_connect_knows_how_it_went() {
    use tokio_bufferevent::bufferevent::Error;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = BufferEvent::builder()
        .connect(listener.local_addr().unwrap())
        .unwrap();
    within(socket.connected()).await.unwrap().unwrap();
    let filter = BufferEvent::filter(socket, PassThrough, PassThrough);
    within(filter.connected()).await.unwrap().unwrap();
    assert!(filter.is_connected());

    let (_held, closed_port) = common::refusing();
    let socket = BufferEvent::builder().connect(closed_port).unwrap();
    assert!(within(socket.connected()).await.unwrap().is_err());
    let filter = BufferEvent::filter(socket, PassThrough, PassThrough);
    assert!(matches!(
        within(filter.connected()).await.unwrap(),
        Err(Error::ConnectFailed(_))
    ));

    let (a, _b) = BufferEvent::pair();
    a.close().await;
    let orphan = BufferEvent::filter(a, PassThrough, PassThrough);
    assert!(matches!(
        within(orphan.connected()).await.unwrap(),
        Err(Error::Ended)
    ));
}

/// A filter that releases its underlying (`close_underlying(false)`) and loses its
/// last handle leaves the underlying untouched, as `free` does: no `Finished` reaches
/// the pair beneath, whose partner hears no EOF and still gets what comes next.
#[tokio::test]
async fn dropping_a_releasing_filter_leaves_its_underlying_untouched() {
    let (a, filter) = a_releasing_filter_over_a_pair().await;
    let raw = filter.underlying().unwrap();
    drop(filter);
    within(async {
        while raw.partner().is_none() || raw.with(|_| ()).await.is_err() {
            settle().await;
        }
    })
    .await
    .unwrap();
    settle().await;
    raw.write(&b"raw"[..]).await.unwrap();
    assert_eq!(
        within(a.readable(12)).await.unwrap(),
        tokio_bufferevent::bufferevent::Readiness::Ready
    );
    assert_eq!(a.read(100).await.unwrap(), &b"filtered raw"[..]);
}

/// A filter over a pair element whose partner is gone, and whose last handle goes,
/// ends at once: its stream cannot be finished (nothing beyond can take it), so it
/// does not wait out a close timeout first.
#[tokio::test(start_paused = true)]
async fn dropping_a_stranded_filter_ends_it_at_once() {
    let (a, b) = BufferEvent::pair();
    let filter = BufferEvent::filter(b, PassThrough, PassThrough);
    let beneath = filter.underlying().unwrap();
    drop(a);
    settle().await;
    let started = Instant::now();
    drop(filter);
    within(beneath.closed()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "ended after {:?}",
        started.elapsed()
    );
}

/// Closing a filter stacked on a filter over a socket sends everything through both
/// to the peer before the socket goes: the lower filter's output is not dropped for
/// finishing a pass later than the upper one's.
#[tokio::test]
async fn closing_a_stack_of_filters_sends_everything() {
    for round in 0..20 {
        let (s1, mut peer) = tcp_pair().await;
        let lower =
            BufferEvent::filter(BufferEvent::builder().tcp(s1).unwrap(), PassThrough, add_x);
        let upper = BufferEvent::filter(lower, PassThrough, add_x);
        upper.write_now(&b"ab"[..]).unwrap();
        let closed = within(upper.close()).await.unwrap();
        assert_eq!(closed.unsent, 0, "round {round}: {closed:?}");
        let mut got = Vec::new();
        within(peer.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, b"xxxaxxxb", "round {round}");
    }
}

/// A transport given to the underlying bufferevent after the filter was put over it
/// (`set_tcp` on the underlying's handle) connects the filter too: `connected()`
/// resolves, the filter shows the new socket's addresses, and data flows.
#[tokio::test]
async fn a_transport_set_beneath_a_filter_connects_the_filter() {
    let underlying = BufferEvent::builder().unconnected::<TcpStream>();
    let filter = BufferEvent::filter(underlying.clone(), PassThrough, PassThrough);
    within(filter.with(|_| ())).await.unwrap().unwrap();
    assert!(!filter.is_connected());
    let (a, mut b) = tcp_pair().await;
    let peer = a.peer_addr().unwrap();
    underlying.set_tcp(a);
    within(filter.connected())
        .await
        .expect("the filter's connected() resolves")
        .unwrap();
    assert!(filter.is_connected());
    assert_eq!(filter.peer_addr(), Some(peer));
    within(filter.write(&b"through"[..]))
        .await
        .unwrap()
        .unwrap();
    let mut got = [0; 7];
    within(b.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"through");
}

/// A filter whose underlying's peer finished reopens with the transport given to the
/// underlying afterwards: reading goes on over the new socket.
#[tokio::test]
async fn a_filter_reads_again_over_a_transport_set_beneath_after_an_end() {
    let (a, peer) = tcp_pair().await;
    let underlying = BufferEvent::builder().tcp(a).unwrap();
    let filter = BufferEvent::builder().enable(Direction::READ).filter(
        underlying.clone(),
        PassThrough,
        PassThrough,
    );
    drop(peer);
    assert_eq!(
        within(filter.readable(1)).await.unwrap(),
        tokio_bufferevent::bufferevent::Readiness::Eof
    );
    let (a, mut peer) = tcp_pair().await;
    underlying.set_tcp(a);
    // The filter learns of it on its task (it was set through the underlying's handle).
    within(filter.with(|_| ())).await.unwrap().unwrap();
    peer.write_all(b"again").await.unwrap();
    assert_eq!(
        within(filter.readable(5)).await.unwrap(),
        tokio_bufferevent::bufferevent::Readiness::Ready
    );
    assert_eq!(filter.read(5).await.unwrap(), &b"again"[..]);
    within(filter.write(&b"back"[..])).await.unwrap().unwrap();
    let mut got = [0; 4];
    within(peer.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"back");
}

/// A close under way when a new transport is set beneath the filter finishes over
/// the new transport: what is queued goes out there, then the end, and the close
/// completes instead of running into its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_under_way_finishes_over_a_transport_set_beneath() {
    let (a, _stalled_peer) = tcp_pair().await; // never reads
    let underlying = BufferEvent::builder().tcp(a).unwrap();
    let filter = BufferEvent::filter(underlying.clone(), PassThrough, PassThrough);
    let data = pattern(8 << 20);
    filter.write_now(data.clone()).unwrap();
    let closing = tokio::spawn({
        let filter = filter.clone();
        async move { filter.close().await }
    });
    // The close is under way, the output stuck behind a peer that does not read.
    within(async {
        while underlying.output_len() == 0 {
            sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    within(filter.with(|_| ())).await.unwrap().ok();
    let (b, mut peer) = tcp_pair().await;
    underlying.set_tcp(b);
    let mut got = Vec::new();
    within(peer.read_to_end(&mut got))
        .await
        .expect("the new peer sees the end")
        .unwrap();
    assert!(
        !got.is_empty() && data.ends_with(&got),
        "the rest, in order"
    );
    let closed = within(closing).await.expect("the close completes").unwrap();
    assert_eq!(closed.unsent, 0, "{closed:?}");
    assert!(closed.error.is_none(), "{closed:?}");
}

/// A writer into a filter over a socket whose peer does not read is held back by the
/// filter's write high watermark, though the socket beneath has none: the bytes
/// waiting in the filter and beneath it stay bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_into_a_filter_is_held_back_by_a_peer_that_does_not_read() {
    const HIGH: usize = 64 << 10;
    let (a, _peer) = tcp_pair().await; // never reads
    let underlying = BufferEvent::builder().tcp(a).unwrap();
    let filter = BufferEvent::builder()
        .write_watermarks(Watermarks::new(0, HIGH))
        .filter(underlying.clone(), PassThrough, PassThrough);
    let chunk = vec![7u8; 16 << 10];
    let mut written = 0usize;
    // Writes until one waits: the writer is held back.
    while written < 256 << 20 {
        match timeout(Duration::from_millis(500), filter.write(chunk.clone())).await {
            Ok(result) => {
                result.unwrap();
                written += chunk.len();
            }
            Err(_) => break,
        }
    }
    let held = filter.output_len() + underlying.output_len();
    assert!(
        held <= 4 * HIGH,
        "{held} bytes wait in the filter and beneath it ({written} written)"
    );
}
