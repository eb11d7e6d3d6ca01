//! Socket bufferevents over real loopback TCP: libevent's `bufferevent` regression
//! flow, defaults, watermarks, EOF, errors, and the async interface.

mod common;

use common::pattern;
use common::{tcp_pair, within};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Watermarks};

/// libevent `bufferevent/bufferevent`: 8333 bytes from one bufferevent to another; the
/// writer's write callback sees an empty output; the reader's read callback gets all of
/// it; no event callback runs.
#[tokio::test]
async fn bufferevent() {
    let (a, b) = tcp_pair().await;
    let data = pattern(8333);
    let received = Arc::new(Mutex::new(Vec::new()));
    let events = Arc::new(AtomicUsize::new(0));
    let write_cbs = Arc::new(AtomicUsize::new(0));

    let (w, e) = (Arc::clone(&write_cbs), Arc::clone(&events));
    let writer = BufferEvent::builder()
        .on_write(move |ctx| {
            assert_eq!(ctx.output().len(), 0);
            w.fetch_add(1, Ordering::SeqCst);
        })
        .on_event(move |_, _, _| {
            e.fetch_add(1, Ordering::SeqCst);
        })
        .tcp(a)
        .unwrap();
    let (r, e) = (Arc::clone(&received), Arc::clone(&events));
    let reader = BufferEvent::builder()
        .disable(Direction::WRITE)
        .enable(Direction::READ)
        .on_read(move |ctx| {
            let chunk = ctx.input().take_all();
            r.lock().unwrap().extend_from_slice(&chunk);
        })
        .on_event(move |_, _, _| {
            e.fetch_add(1, Ordering::SeqCst);
        })
        .tcp(b)
        .unwrap();
    assert_eq!(reader.enabled(), Direction::READ);
    assert_eq!(writer.enabled(), Direction::WRITE);
    assert!(writer.fd().is_some());

    writer.write(data.clone()).await.unwrap();
    writer.drained().await;
    within(async {
        while received.lock().unwrap().len() < data.len() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("all bytes arrive");
    assert_eq!(*received.lock().unwrap(), data);
    assert!(write_cbs.load(Ordering::SeqCst) >= 1);
    assert_eq!(events.load(Ordering::SeqCst), 0);
}

/// B-1, B-2: a new bufferevent has WRITE enabled, READ disabled, watermarks 0 and no
/// timeouts.
#[tokio::test]
async fn b001_b002_defaults() {
    let (a, _b) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(a).unwrap();
    assert_eq!(bev.enabled(), Direction::WRITE);
    assert_eq!(bev.watermarks(Direction::READ), Some(Watermarks::new(0, 0)));
    assert_eq!(
        bev.watermarks(Direction::WRITE),
        Some(Watermarks::new(0, 0))
    );
    assert_eq!(
        bev.watermarks(Direction::BOTH),
        None,
        "B-24: exactly one direction"
    );
    assert_eq!(bev.timeouts(), (None, None));
    assert!(bev.is_connected());
}

/// B-17, B-19 and libevent `bufferevent_watermarks`: with read watermarks (10, 20)
/// every read callback sees 10..=20 bytes, and 65000 bytes arrive complete.
#[tokio::test]
async fn b017_b019_read_watermarks() {
    let (a, b) = tcp_pair().await;
    let total = 65_000;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let reader = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(10, 20))
        .on_read(move |ctx| {
            let n = ctx.input().len();
            let chunk = ctx.input().take_all();
            s.lock().unwrap().push((n, chunk.len()));
        })
        .tcp(b)
        .unwrap();
    let mut writer = a;
    writer.write_all(&pattern(total)).await.unwrap();
    within(async {
        loop {
            let got: usize = seen.lock().unwrap().iter().map(|(_, n)| n).sum();
            if got == total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("everything arrives");
    for &(n, _) in seen.lock().unwrap().iter() {
        assert!((10..=20).contains(&n), "read callback saw {n} bytes");
    }
    drop(reader);
}

/// B-19: the input never exceeds the high watermark through reads; reading resumes
/// when the input is drained (B-20).
#[tokio::test]
async fn b019_b020_high_watermark_pauses_and_resumes() {
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 8))
        .tcp(b)
        .unwrap();
    let mut peer = a;
    peer.write_all(&[7u8; 20]).await.unwrap();
    bev.readable(8).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(bev.input_len(), 8, "paused at the high watermark");
    assert_eq!(bev.read(3).await.unwrap().len(), 3);
    bev.readable(8).await;
    assert_eq!(bev.input_len(), 8);
    assert_eq!(bev.read(100).await.unwrap().len(), 8);
    // 3 + 8 read so far: 9 remain, of which 8 fit below the mark.
    bev.readable(8).await;
    assert_eq!(bev.read(100).await.unwrap().len(), 8);
    bev.readable(1).await;
    assert_eq!(bev.read(100).await.unwrap().len(), 1);
}

/// B-30: peer EOF disables READ and delivers READING|EOF after the data.
#[tokio::test]
async fn b030_eof_after_data() {
    let (a, b) = tcp_pair().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(move |ctx| {
            let data = ctx.input().take_all();
            l1.lock().unwrap().push(format!("read {}", data.len()));
        })
        .on_event(move |ctx, events, error| {
            assert!(error.is_none());
            assert!(!ctx.enabled().contains(Direction::READ));
            l2.lock().unwrap().push(format!("{events:?}"));
        })
        .tcp(b)
        .unwrap();
    let mut peer = a;
    peer.write_all(b"last words").await.unwrap();
    drop(peer);
    let closed_event = bev.next_event();
    let record = within(closed_event).await.unwrap().unwrap();
    assert_eq!(record.events, Events::READING | Events::EOF);
    let log = log.lock().unwrap().clone();
    assert_eq!(log.last().unwrap(), "Events(READING | EOF)");
    let bytes: usize = log
        .iter()
        .filter_map(|l| l.strip_prefix("read "))
        .map(|n| n.parse::<usize>().unwrap())
        .sum();
    assert_eq!(bytes, 10);
}

/// B-14: enable(WRITE) on a connected bufferevent with an empty output runs the write
/// callback once, so producers start (the seed's Fibonacci example relies on it).
#[tokio::test]
async fn b014_enable_write_with_empty_output_runs_write_callback_once() {
    let (a, _b) = tcp_pair().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let bev = BufferEvent::builder()
        .on_write(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        })
        .tcp(a)
        .unwrap();
    bev.enable(Direction::WRITE);
    bev.with(|_| ()).await.unwrap();
    bev.with(|_| ()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A panicking callback is contained: that bufferevent ends with an error that
/// `closed()` reports; others keep working.
#[tokio::test]
async fn panicking_callback_is_contained() {
    let (a, b) = tcp_pair().await;
    let victim = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|_| panic!("boom"))
        .tcp(b)
        .unwrap();
    let mut peer = a;
    peer.write_all(b"x").await.unwrap();
    let closed = within(victim.closed()).await.unwrap();
    assert!(closed.events.contains(Events::ERROR));
    let error = closed.error.expect("an error");
    assert!(error.to_string().contains("boom"), "{error}");
    // The runtime still serves other bufferevents.
    let (c, d) = tcp_pair().await;
    let survivor = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(d)
        .unwrap();
    let mut peer = c;
    peer.write_all(b"ok").await.unwrap();
    survivor.readable(2).await;
    assert_eq!(survivor.read(10).await.unwrap(), &b"ok"[..]);
}

/// `close().await` sends what is queued, shuts down the write side, then ends.
#[tokio::test]
async fn close_flushes_then_shuts_down() {
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(a).unwrap();
    bev.write_now(vec![1u8; 100_000]).unwrap();
    let closed = bev.close().await;
    assert_eq!(closed.unsent, 0);
    let mut peer = b;
    let mut got = Vec::new();
    peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), 100_000);
}

/// `free` discards pending output (B-55) and reports how much.
#[tokio::test]
async fn b055_free_discards_pending_output() {
    let (a, _b) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .disable(Direction::WRITE)
        .tcp(a)
        .unwrap();
    bev.write_now(&b"never sent"[..]).unwrap();
    bev.free();
    let closed = bev.closed().await;
    assert_eq!(closed.unsent, 10);
}

/// Timeouts (B-34, B-41) on the paused Tokio clock: a read timeout fires once, disables
/// READ and reports READING|TIMEOUT.
#[tokio::test(start_paused = true)]
async fn b034_b041_read_timeout_fires_once() {
    let (a, _b) = tokio::io::duplex(64);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .timeouts(Some(Duration::from_millis(150)), None)
        .on_event(move |_, events, _| l.lock().unwrap().push(events))
        .stream(a);
    let start = tokio::time::Instant::now();
    let record = bev.next_event().await.unwrap();
    assert_eq!(record.events, Events::READING | Events::TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_millis(150));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*log.lock().unwrap(), [Events::READING | Events::TIMEOUT]);
    assert!(!bev.enabled().contains(Direction::READ));
}

/// Deferred callbacks still run while a peer sends without pause: the task runs them
/// at the latest when it yields (every 32 loop passes), so with no high watermark the
/// input stays bounded by that budget instead of growing until the peer stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_callbacks_keep_up_with_a_peer_that_never_pauses() {
    const TOTAL: usize = 16 << 20;
    let (a, b) = tcp_pair().await;
    let largest = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let (l, t) = (Arc::clone(&largest), Arc::clone(&total));
    let _bev = BufferEvent::builder()
        .defer_callbacks(true)
        .enable(Direction::READ)
        .on_read(move |ctx| {
            let n = ctx.input().len();
            l.fetch_max(n, Ordering::SeqCst);
            t.fetch_add(n, Ordering::SeqCst);
            ctx.input().drain(n);
        })
        .tcp(b)
        .unwrap();
    let writer = tokio::spawn(async move {
        let mut peer = a;
        peer.write_all(&vec![9u8; TOTAL]).await.unwrap();
        peer
    });
    tokio::time::timeout(Duration::from_secs(30), async {
        while total.load(Ordering::SeqCst) < TOTAL {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("everything arrives");
    drop(writer.await.unwrap());
    let largest = largest.load(Ordering::SeqCst);
    assert!(largest <= 1 << 20, "input grew to {largest} bytes");
}

/// Awaits `f` after signalling `ready` once it has been polled (and so waits from
/// now on: `next_event` waits for an event after its first poll).
async fn registered<F: Future>(f: F, ready: tokio::sync::mpsc::UnboundedSender<()>) -> F::Output {
    tokio::pin!(f);
    let first = futures::poll!(f.as_mut());
    ready.send(()).unwrap();
    match first {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => f.await,
    }
}

/// Every readiness future supports many concurrent waiters, and a waiter that gives up
/// (its future dropped) does not disturb the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_futures_wake_every_waiter() {
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .disable(Direction::WRITE)
        .tcp(b)
        .unwrap();
    let mut waiters = tokio::task::JoinSet::new();
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..20 {
        let bev = bev.clone();
        let ready_tx = ready_tx.clone();
        waiters.spawn(async move {
            match i % 4 {
                0 => {
                    registered(bev.readable(5), ready_tx).await;
                }
                1 => {
                    registered(bev.drained(), ready_tx).await;
                }
                2 => {
                    registered(bev.next_event(), ready_tx)
                        .await
                        .expect("an event");
                }
                _ => {
                    registered(bev.closed(), ready_tx).await;
                }
            }
            i % 4
        });
    }
    drop(ready_tx);
    for _ in 0..20 {
        within(ready.recv())
            .await
            .expect("every waiter starts")
            .expect("a waiter's signal");
    }
    // One more waiter that is cancelled before anything happens.
    let impatient = bev.clone();
    let cancelled = tokio::time::timeout(Duration::from_millis(10), async move {
        impatient.readable(5).await
    })
    .await;
    assert!(cancelled.is_err());

    bev.write_now(&b"queued"[..]).unwrap(); // WRITE is off: not drained yet
    let mut peer = a;
    peer.write_all(b"12345").await.unwrap();
    bev.enable(Direction::WRITE); // drains
    drop(peer); // READING|EOF: the next event
    let mut woke = [0; 4];
    within(async {
        while woke[..3] != [5, 5, 5] {
            let kind = waiters.join_next().await.expect("waiters left").unwrap();
            woke[kind] += 1;
        }
        assert_eq!(woke[3], 0, "nothing has closed it yet");
        bev.free();
        while let Some(kind) = waiters.join_next().await {
            woke[kind.unwrap()] += 1;
        }
    })
    .await
    .expect("every waiter wakes");
    assert_eq!(woke, [5, 5, 5, 5]);
}
