//! The handle's contracts: it reads its own writes, every readiness future resolves
//! or says why it cannot, and a waiter wakes only for what it waits for.

mod common;

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::task::{ArcWake, waker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{
    BufferEvent, Direction, Error, Events, Pair, PassThrough, Readiness, Watermarks,
};

use common::{expect_within, pattern, settle_task, tcp_pair, within};

/// Every getter shows what the same handle just set, before the task has run.
#[tokio::test]
async fn a_handle_reads_its_own_writes() {
    let (ours, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(ours).unwrap();
    // No `.await` between a setter and its getter: the task has not run yet.
    bev.enable(Direction::READ);
    assert_eq!(bev.enabled(), Direction::BOTH);
    bev.disable(Direction::WRITE);
    assert_eq!(bev.enabled(), Direction::READ);
    bev.set_watermarks(Direction::READ, Watermarks::new(2, 64));
    assert_eq!(
        bev.watermarks(Direction::READ),
        Some(Watermarks::new(2, 64))
    );
    bev.set_watermarks(Direction::BOTH, Watermarks::new(1, 9));
    assert_eq!(
        bev.watermarks(Direction::WRITE),
        Some(Watermarks::new(1, 9))
    );
    let (r, w) = (Duration::from_secs(30), Duration::from_secs(40));
    bev.set_timeouts(Some(r), Some(w));
    assert_eq!(bev.timeouts(), (Some(r), Some(w)));
    bev.set_timeouts(Some(Duration::ZERO), None);
    assert_eq!(bev.timeouts(), (None, None), "zero means none");
    bev.set_max_single_read(100);
    bev.set_max_single_write(200);
    assert_eq!((bev.max_single_read(), bev.max_single_write()), (100, 200));
    bev.enable(Direction::WRITE);
    bev.write_now(&b"queued"[..]).unwrap();
    assert_eq!(bev.output_len(), 6);

    // Once the task applied everything, the getters agree with it.
    settle_task(&bev).await;
    assert_eq!(bev.enabled(), Direction::BOTH);
    assert_eq!(bev.watermarks(Direction::READ), Some(Watermarks::new(1, 9)));
    assert_eq!(bev.timeouts(), (None, None));
    assert_eq!(bev.max_single_read(), 100);
    let (read_wm, max_read) = bev
        .with(|ctx| (ctx.watermarks(Direction::READ), ctx.max_single_read()))
        .await
        .unwrap();
    assert_eq!((read_wm, max_read), (Some(Watermarks::new(1, 9)), 100));
}

/// The same from many threads at once: each handle always sees its own last change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_while_the_task_runs_on_another_thread() {
    let (ours, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(ours).unwrap();
    for i in 0..2000 {
        if i % 2 == 0 {
            bev.enable(Direction::READ);
            assert!(bev.enabled().contains(Direction::READ), "round {i}");
        } else {
            bev.disable(Direction::READ);
            assert!(!bev.enabled().contains(Direction::READ), "round {i}");
        }
        let wm = Watermarks::new(i, i + 1);
        bev.set_watermarks(Direction::READ, wm);
        assert_eq!(bev.watermarks(Direction::READ), Some(wm), "round {i}");
    }
}

/// What the task decides on its own (EOF disables READ) still reaches the handle.
#[tokio::test]
async fn the_task_s_own_changes_show_once_no_change_is_pending() {
    let (ours, peer) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(ours).unwrap();
    bev.enable(Direction::READ);
    drop(peer);
    let event = expect_within(bev.next_event()).await.unwrap();
    assert_eq!(event.events, Events::READING | Events::EOF);
    assert_eq!(bev.enabled(), Direction::WRITE);
}

/// B-97: a live bufferevent's single-read limit changes what the next reads ask for.
#[tokio::test]
async fn b097_max_single_read_changes_on_a_live_bufferevent() {
    let (ours, mut peer) = tcp_pair().await;
    let reads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reads);
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(move |ctx| {
            let chunk = ctx.input().take_all();
            seen.lock().unwrap().push(chunk.len());
        })
        .tcp(ours)
        .unwrap();
    bev.set_max_single_read(100);
    settle_task(&bev).await;
    peer.write_all(&pattern(1000)).await.unwrap();
    expect_within(async {
        while reads.lock().unwrap().iter().sum::<usize>() < 1000 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(reads.lock().unwrap().iter().all(|&n| n <= 100), "{reads:?}");
    bev.set_max_single_read(0);
    assert_eq!(bev.max_single_read(), 16384, "0 resets to the default");
}

/// `connected()` after the connect already failed resolves at once, with the error;
/// a new connect makes it wait again, for the new outcome.
#[tokio::test]
async fn connected_resolves_at_once_when_the_connect_already_failed() {
    let (_held, nobody) = common::refusing();
    let bev = BufferEvent::builder().connect(nobody).unwrap();
    let event = expect_within(bev.next_event()).await.unwrap();
    assert_eq!(event.events, Events::ERROR);
    // Awaited after the ERROR event: no waiting at all.
    match bev.connected().now_or_never() {
        Some(Err(Error::ConnectFailed(e))) => {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        }
        other => panic!("{other:?}"),
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    bev.connect(listener.local_addr().unwrap()).unwrap();
    assert!(within(bev.connected()).await.unwrap().is_ok());
}

/// The same for a filter over a socket whose connect failed.
#[tokio::test]
async fn a_filter_s_connected_resolves_at_once_after_its_underlying_failed() {
    let (_held, nobody) = common::refusing();
    let socket = BufferEvent::builder().connect(nobody).unwrap();
    let filter = BufferEvent::filter(socket, PassThrough, PassThrough);
    let event = expect_within(filter.next_event()).await.unwrap();
    assert_eq!(event.events, Events::ERROR);
    assert!(matches!(
        filter.connected().now_or_never(),
        Some(Err(Error::ConnectFailed(_)))
    ));
}

/// A filter over a socket whose connect failed: its readers learn of the failure, and
/// once a new connect is under way beneath, they wait again.
#[tokio::test]
async fn a_filter_s_readers_follow_a_new_connect_beneath() {
    use tokio_bufferevent::bufferevent::Readiness;
    let (_held, nobody) = common::refusing();
    let socket = BufferEvent::builder().connect(nobody).unwrap();
    let under = socket.clone();
    let filter =
        BufferEvent::builder()
            .enable(Direction::READ)
            .filter(socket, PassThrough, PassThrough);
    let event = expect_within(filter.next_event()).await.unwrap();
    assert_eq!(event.events, Events::ERROR);
    assert!(matches!(
        expect_within(filter.readable(1)).await,
        Readiness::Failed(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    ));
    // A connect that stays under way.
    let (_listener, _queued, hole) = common::blackhole().await;
    under.connect(hole).unwrap();
    settle_task(&under).await;
    settle_task(&filter).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), filter.readable(1))
            .await
            .is_err(),
        "waits for the new connect's data"
    );
}

/// B-50: with READ and WRITE enabled before there is a transport, a connect with
/// nothing queued gives CONNECTED and no write callback.
#[tokio::test]
async fn b050_enable_then_connect_with_nothing_queued_gives_no_write_callback() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (on_write, on_event) = (Arc::clone(&log), Arc::clone(&log));
    let bev = BufferEvent::builder()
        .on_write(move |_| on_write.lock().unwrap().push("write".to_owned()))
        .on_event(move |_, events, _| on_event.lock().unwrap().push(format!("{events:?}")))
        .unconnected::<TcpStream>();
    bev.enable(Direction::READ | Direction::WRITE);
    settle_task(&bev).await;
    bev.connect(listener.local_addr().unwrap()).unwrap();
    assert!(within(bev.connected()).await.unwrap().is_ok());
    settle_task(&bev).await;
    assert_eq!(*log.lock().unwrap(), ["Events(CONNECTED)"]);
}

/// `readable(n)` with `n` above the read high watermark resolves at once, saying so:
/// reading pauses at the mark, so `n` bytes can never be held.
#[tokio::test]
async fn readable_above_the_high_watermark_resolves_at_once() {
    let (ours, mut peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 8))
        .tcp(ours)
        .unwrap();
    assert_eq!(
        bev.readable(50).now_or_never(),
        Some(Readiness::AboveHighWatermark { high: 8 })
    );
    peer.write_all(&[7; 100]).await.unwrap();
    assert_eq!(expect_within(bev.readable(8)).await, Readiness::Ready);
    assert_eq!(bev.input_len(), 8);
}

/// `readable` says why it stopped waiting: EOF, a read error, the read timeout.
#[tokio::test]
async fn readable_says_why() {
    let (ours, peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(ours)
        .unwrap();
    drop(peer);
    assert_eq!(expect_within(bev.readable(1)).await, Readiness::Eof);

    let (ours, peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(ours)
        .unwrap();
    #[allow(deprecated)] // `set_linger` is deprecated for blocking on drop; zero does not block.
    peer.set_linger(Some(Duration::ZERO)).unwrap();
    drop(peer);
    let why = expect_within(bev.readable(1)).await;
    assert!(
        matches!(&why, Readiness::Failed(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{why:?}"
    );

    // Paused only now: the clock jumps while the runtime waits, and the cases above
    // wait for the kernel.
    let (ours, _peer) = tcp_pair().await;
    tokio::time::pause();
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .timeouts(Some(Duration::from_secs(3)), None)
        .tcp(ours)
        .unwrap();
    assert_eq!(expect_within(bev.readable(1)).await, Readiness::TimedOut);
}

/// Over the adapters, a read timeout is an `io::ErrorKind::TimedOut` error, also
/// through `Framed`, as `tokio-io-timeout` users expect.
#[tokio::test(start_paused = true)]
async fn framed_over_the_adapter_yields_timed_out() {
    use futures::StreamExt;
    use tokio_util::codec::{Framed, LinesCodec};
    let (ours, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .timeouts(Some(Duration::from_secs(3)), None)
        .tcp(ours)
        .unwrap();
    let mut framed = Framed::new(bev.into_io(), LinesCodec::new());
    match expect_within(framed.next()).await {
        Some(Err(tokio_util::codec::LinesCodecError::Io(e))) => {
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// `drained()` resolves when the output can no longer drain: the write side failed
/// with data unsent. (Before, it waited for the bufferevent to end, which a live
/// handle prevents.)
#[tokio::test]
async fn drained_resolves_when_the_write_side_fails_with_data_unsent() {
    let (ours, peer) = tokio::io::duplex(16);
    let bev = BufferEvent::builder().stream(ours);
    bev.write_now(vec![1u8; 1 << 20]).unwrap();
    settle_task(&bev).await;
    drop(peer);
    expect_within(bev.drained()).await;
    assert!(bev.output_len() > 0, "left unsent");
    assert!(matches!(bev.write_now(&b"x"[..]), Err(Error::WriteClosed)));
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl ArcWake for CountingWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A task waiting for input is not woken by output that comes and goes, nor by a
/// setting it does not depend on; it is woken by input.
#[tokio::test]
async fn a_waiter_wakes_only_for_its_own_condition() {
    let (ours, mut peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(ours)
        .unwrap();
    settle_task(&bev).await;
    let wakes = Arc::new(CountingWaker::default());
    let waker = waker(Arc::clone(&wakes));
    let mut cx = Context::from_waker(&waker);
    let mut readable = pin!(bev.readable(4));
    assert!(readable.as_mut().poll(&mut cx).is_pending());

    bev.write_now(&b"output"[..]).unwrap();
    let mut echoed = [0; 6];
    expect_within(peer.read_exact(&mut echoed)).await.unwrap();
    expect_within(bev.drained()).await;
    bev.set_timeouts(None, Some(Duration::from_secs(60)));
    settle_task(&bev).await;
    assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "output is not input");

    peer.write_all(b"ping").await.unwrap();
    expect_within(async {
        while wakes.0.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        readable.as_mut().poll(&mut cx),
        Poll::Ready(Readiness::Ready)
    );
}

/// Once the write side failed, `writable()` says so at once instead of waiting.
#[tokio::test]
async fn writable_fails_at_once_once_the_write_side_failed() {
    let (ours, peer) = tokio::io::duplex(16);
    let bev = BufferEvent::builder()
        .write_watermarks(Watermarks::new(0, 32))
        .stream(ours);
    bev.write_now(vec![1u8; 1 << 16]).unwrap();
    settle_task(&bev).await;
    drop(peer);
    expect_within(bev.drained()).await;
    assert!(matches!(
        bev.writable().now_or_never(),
        Some(Err(Error::WriteClosed))
    ));
}

/// Every readiness future resolves once the bufferevent has ended, and says so where
/// it returns a result.
#[tokio::test]
async fn every_readiness_future_resolves_once_the_bufferevent_ended() {
    let bev = BufferEvent::builder().unconnected::<TcpStream>();
    let waiting = {
        let bev = bev.clone();
        tokio::spawn(async move {
            let connected = bev.connected().await;
            let readable = bev.readable(1).await;
            bev.drained().await;
            let writable = bev.writable().await;
            (
                connected,
                readable,
                writable,
                bev.next_event().await.is_none(),
            )
        })
    };
    settle_task(&bev).await;
    bev.write_now(&b"never sent"[..]).unwrap();
    bev.free();
    let closed = expect_within(bev.closed()).await;
    assert_eq!(closed.unsent, 10);
    let (connected, readable, writable, no_event) = expect_within(waiting).await.unwrap();
    assert!(matches!(connected, Err(Error::Ended)), "{connected:?}");
    assert_eq!(readable, Readiness::Ended);
    assert!(matches!(writable, Err(Error::Ended)), "{writable:?}");
    assert!(no_event);
}

/// A handle that changes a setting while a read timeout is being delivered (here from
/// the event callback, before the task published READ off) does not hide the timeout
/// from a reader waiting in `readable`; enabling READ again does.
#[tokio::test(start_paused = true)]
async fn a_setting_changed_as_a_read_timeout_fires_keeps_the_timeout() {
    let me: Arc<Mutex<Option<BufferEvent<Pair>>>> = Arc::default();
    let handle = me.clone();
    let (a, b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .timeouts(Some(Duration::from_secs(5)), None)
            .on_event(move |_, events, _| {
                if events.contains(Events::READING | Events::TIMEOUT)
                    && let Some(bev) = handle.lock().unwrap().as_ref()
                {
                    bev.set_max_single_read(4096);
                }
            }),
    );
    *me.lock().unwrap() = Some(b.clone());
    assert_eq!(expect_within(b.readable(1)).await, Readiness::TimedOut);
    assert_eq!(b.max_single_read(), 4096);
    b.enable(Direction::READ);
    a.write_now(&b"x"[..]).unwrap();
    assert_eq!(
        expect_within(b.readable(1)).await,
        Readiness::Ready,
        "reading again"
    );
    me.lock().unwrap().take();
}

/// A write timeout (which disables WRITE with the output unsent) ends every wait for
/// the output: `drained` returns with the bytes still queued, `writable` and the
/// adapter's flush and shutdown fail with `TimedOut`. Enabling WRITE again drains.
#[tokio::test(start_paused = true)]
async fn a_write_timeout_ends_the_waits_for_the_output() {
    let (a, b) = BufferEvent::builder()
        .timeouts(None, Some(Duration::from_secs(3)))
        .write_watermarks(Watermarks::new(0, 4))
        .pair(BufferEvent::builder());
    // `b` does not read: nothing leaves `a`'s output.
    a.write_now(&b"stuck bytes"[..]).unwrap();
    expect_within(a.drained()).await;
    assert_eq!(a.output_len(), 11, "still queued");
    assert!(!a.enabled().contains(Direction::WRITE));
    assert!(matches!(
        expect_within(a.writable()).await,
        Err(Error::TimedOut)
    ));
    let mut io = a.clone().into_io();
    let flushed = expect_within(io.flush()).await.unwrap_err();
    assert_eq!(flushed.kind(), std::io::ErrorKind::TimedOut, "{flushed}");
    let shut = expect_within(io.shutdown()).await.unwrap_err();
    assert_eq!(shut.kind(), std::io::ErrorKind::TimedOut, "{shut}");
    drop(io);

    a.enable(Direction::WRITE);
    b.enable(Direction::READ);
    expect_within(a.drained()).await;
    assert_eq!(a.output_len(), 0);
    assert_eq!(b.read(100).await.unwrap(), &b"stuck bytes"[..]);
    expect_within(a.writable()).await.unwrap();
}

/// However many changes of one setting a handle queues before the task applies
/// them, handles never see an older one than the last: here a read callback, running
/// between the task's batches of commands, logs what a clone shows.
#[tokio::test]
async fn a_handle_never_shows_an_older_setting_behind_many_queued_ones() {
    use tokio_bufferevent::bufferevent::Callbacks;
    let (a, _b) = BufferEvent::pair();
    let clone = a.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    a.replace_callbacks(Callbacks {
        read: Some(Box::new(move |_| {
            log.lock().unwrap().push(clone.max_single_read())
        })),
        ..Default::default()
    });
    const LAST: usize = 70_000;
    for n in 1..=LAST {
        a.set_max_single_read(n);
        if n % 500 == 0 {
            a.trigger(Direction::READ, true);
        }
    }
    a.with(|_| ()).await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|&v| v == LAST), "saw an older value");
}

/// A buffer the bufferevent refuses (its write side is closed) keeps its bytes: the
/// caller can send them elsewhere.
#[tokio::test]
async fn a_refused_write_buffer_keeps_its_bytes() {
    let (ours, _peer) = tcp_pair().await;
    let a = BufferEvent::builder().tcp(ours).unwrap();
    a.flush(
        Direction::WRITE,
        tokio_bufferevent::bufferevent::FlushMode::Finished,
    );
    expect_within(async {
        // `writable` fails once the write side is shut down.
        while a.writable().await.is_ok() {
            settle_task(&a).await;
        }
    })
    .await;
    let mut data = tokio_bufferevent::buffer::EvBuffer::new();
    data.add(b"keep me").unwrap();
    assert!(matches!(a.write_buffer(&mut data), Err(Error::WriteClosed)));
    assert_eq!(data.to_vec().unwrap(), b"keep me");
}
