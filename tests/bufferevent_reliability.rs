//! Socket bufferevents under stress over real loopback TCP: a flood against a read high
//! watermark (bounded input, bounded memory, nothing lost), a peer that resets in the
//! middle of a large transfer (an error event with the OS error, and the unsent data
//! reported), no task outliving its bufferevent, and 10,000 concurrent connections.
//! Also what handles see while the task is busy: lengths and readiness that lag
//! behind the task's operations.
//!
//! Each test takes [`SERIAL`] first: they are heavy (hundreds of MiB through loopback,
//! tens of thousands of sockets) and the flood test measures the whole process's
//! resident memory, which a concurrent test would disturb.

mod common;

use common::pattern;
use common::{tcp_pair, within};

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Watermarks};

/// Serializes the tests of this file (see the module documentation).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The process's resident set size in bytes (`VmRSS` of `/proc/self/status`), or
/// `None` where there is no such file.
fn vm_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Polls every few milliseconds, for at most 10 s, until `ok` holds; returns whether it
/// did.
async fn eventually(mut ok: impl FnMut() -> bool) -> bool {
    within(async {
        while !ok() {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits (at most 10 s) until the runtime has no more alive tasks than `baseline`, and
/// asserts it.
async fn assert_tasks_return_to(baseline: usize, what: &str) {
    let back = eventually(|| alive_tasks() <= baseline).await;
    assert!(
        back,
        "{what}: {} tasks alive 10 s later, {baseline} expected",
        alive_tasks()
    );
    assert_eq!(alive_tasks(), baseline, "{what}");
}

// ---- flood -----------------------------------------------------------------------------

/// A peer sends 256 MiB as fast as it can to a bufferevent with a 64 KiB read high
/// watermark whose application drains only 4 KiB every 20 ms for a second, then as fast
/// as it can. The input never exceeds 64 KiB (as seen by the read callback and by
/// `input_len`), the peer is held back by TCP (it cannot finish during the slow phase),
/// the process's resident memory grows by less than 64 MiB, and every byte arrives, in
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_with_read_high_watermark_stays_bounded() {
    let _serial = SERIAL.lock().await;
    const TOTAL: usize = 256 << 20;
    const HIGH: usize = 64 << 10;
    const MEMORY_BOUND: usize = 64 << 20;
    // A multiple of 251, so every write starts the pattern over at the right place.
    const BLOCK: usize = 251 * 256;

    let (peer, local) = tcp_pair().await;
    let max_in_callback = Arc::new(AtomicUsize::new(0));
    let read_callbacks = Arc::new(AtomicUsize::new(0));
    let events = Arc::new(Mutex::new(Vec::new()));
    let (m, c, e) = (
        Arc::clone(&max_in_callback),
        Arc::clone(&read_callbacks),
        Arc::clone(&events),
    );
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, HIGH))
        .on_read(move |ctx| {
            // Observes only: the application drains through the handle.
            m.fetch_max(ctx.input().len(), Ordering::SeqCst);
            c.fetch_add(1, Ordering::SeqCst);
        })
        .on_event(move |_, events, _| e.lock().unwrap().push(events))
        .tcp(local)
        .unwrap();

    let block = pattern(BLOCK);
    let expected = pattern(HIGH + 251);
    let rss_before = vm_rss();
    let mut rss_max = rss_before;
    let sample_rss = |max: &mut Option<usize>| {
        if let (Some(now), Some(m)) = (vm_rss(), max.as_mut()) {
            *m = (*m).max(now);
        }
    };

    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let mut peer = peer;
        let mut sent = 0;
        while sent < TOTAL {
            let n = BLOCK.min(TOTAL - sent);
            peer.write_all(&block[..n]).await?;
            sent += n;
        }
        peer.shutdown().await?;
        Ok::<_, io::Error>(peer)
    });

    let mut received = 0usize;
    let check = |chunk: &[u8], received: &mut usize| {
        let at = *received % 251;
        assert!(chunk.len() <= HIGH, "a read returned {} bytes", chunk.len());
        assert!(
            chunk == &expected[at..at + chunk.len()],
            "wrong bytes at offset {received}"
        );
        *received += chunk.len();
    };

    // Slow phase: 4 KiB every 20 ms for one second.
    let slow_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < slow_until {
        sleep(Duration::from_millis(20)).await;
        let len = bev.input_len();
        assert!(
            len <= HIGH,
            "input holds {len} bytes, above the high watermark"
        );
        let chunk = bev.read(4096).await.unwrap();
        check(&chunk, &mut received);
        sample_rss(&mut rss_max);
    }
    assert!(
        !writer.is_finished(),
        "the peer could not have sent 256 MiB while the application read {received} bytes"
    );
    assert_eq!(
        max_in_callback.load(Ordering::SeqCst),
        HIGH,
        "reading fills the input up to the high watermark, never past it"
    );

    // Fast phase: drain everything as it comes.
    let mut reads = 0usize;
    let mut empty_reads = 0usize;
    while received < TOTAL {
        timeout(Duration::from_secs(20), bev.readable(1))
            .await
            .unwrap_or_else(|_| panic!("no data for 20 s after {received} bytes"));
        let len = bev.input_len();
        assert!(
            len <= HIGH,
            "input holds {len} bytes, above the high watermark"
        );
        // EOF is delivered only once every byte before it is in the input, so a read
        // issued after it sees the rest.
        let ended = events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.intersects(Events::EOF | Events::ERROR));
        let chunk = bev.read(usize::MAX).await.unwrap();
        if chunk.is_empty() {
            // `readable` can resolve on a stale input length right after a `read`
            // (see `readable_after_read_waits_for_new_data`); an empty input after
            // EOF or an error, before the end, would be lost data.
            assert!(
                !ended,
                "reading ended after only {received} of {TOTAL} bytes; events: {:?}",
                events.lock().unwrap()
            );
            empty_reads += 1;
            tokio::task::yield_now().await;
            continue;
        }
        check(&chunk, &mut received);
        reads += 1;
        if reads.is_multiple_of(256) {
            sample_rss(&mut rss_max);
        }
    }
    let flood_time = started.elapsed();
    sample_rss(&mut rss_max);
    let _peer = within(writer)
        .await
        .expect("the peer finishes once everything is read")
        .unwrap()
        .unwrap();

    // Then EOF, and not one byte more.
    assert!(
        eventually(|| events
            .lock()
            .unwrap()
            .contains(&(Events::READING | Events::EOF)))
        .await,
        "READING|EOF after the last byte; events: {:?}",
        events.lock().unwrap()
    );
    assert_eq!(bev.read(usize::MAX).await.unwrap().len(), 0);
    assert_eq!(received, TOTAL);
    assert_eq!(bev.input_len(), 0);
    let max_seen = max_in_callback.load(Ordering::SeqCst);
    assert!(max_seen <= HIGH, "the read callback saw {max_seen} bytes");
    assert_eq!(
        *events.lock().unwrap(),
        [Events::READING | Events::EOF],
        "no error, no second event"
    );

    match (rss_before, rss_max) {
        (Some(before), Some(max)) => {
            let growth = max.saturating_sub(before);
            eprintln!(
                "flood: {TOTAL} bytes in {flood_time:?}, {} read callbacks, {reads} reads \
                 ({empty_reads} empty), VmRSS {} KiB before, {} KiB at most (growth {} KiB)",
                read_callbacks.load(Ordering::SeqCst),
                before / 1024,
                max / 1024,
                growth / 1024
            );
            assert!(
                growth < MEMORY_BOUND,
                "resident memory grew by {growth} bytes during a 256 MiB flood"
            );
        }
        _ => eprintln!("flood: no /proc/self/status here; memory not measured"),
    }
    bev.free();
    within(bev.closed())
        .await
        .expect("free ends the bufferevent");
}

/// After `read()` has emptied the input, `readable(1)` waits for new data ("waits until
/// the input holds at least n bytes"; only EOF, an error or the end resolve it early)
/// and `input_len()` says 0, so a `readable`/`read` loop never gets an empty read
/// before EOF.
///
/// Made deterministic: a first closure holds the task for 200 ms while a `read` and a
/// second, 1 s closure queue up behind it, so the task applies the `read` and then
/// runs the slow closure before it gets to publish anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readable_after_read_waits_for_new_data() {
    let _serial = SERIAL.lock().await;
    let (a, b) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(b)
        .unwrap();
    let mut peer = a;
    peer.write_all(&[7u8; 100]).await.unwrap();
    within(bev.readable(100)).await.unwrap();
    assert_eq!(bev.input_len(), 100);

    let gate = bev.with(|_| std::thread::sleep(Duration::from_millis(200)));
    let read = bev.read(usize::MAX);
    let slow = bev.with(|_| std::thread::sleep(Duration::from_secs(1)));
    tokio::pin!(gate, read, slow);
    // Send the three commands, in this order.
    let _ = futures::poll!(gate.as_mut());
    let _ = futures::poll!(read.as_mut());
    let _ = futures::poll!(slow.as_mut());
    let data = within(read).await.unwrap().unwrap();
    assert_eq!(data.len(), 100);

    let stale = bev.input_len();
    let spurious = timeout(Duration::from_millis(300), bev.readable(1))
        .await
        .is_ok();
    within(slow).await.unwrap().unwrap();
    gate.await.unwrap();
    assert_eq!(stale, 0, "input_len() after read() emptied the input");
    assert!(
        !spurious,
        "readable(1) resolved although the input is empty and the peer is open"
    );
    assert_eq!(bev.read(usize::MAX).await.unwrap().len(), 0);
}

/// While the task moves a handle's write into its output, `output_len()` still counts
/// it, so `drained()` (and `writable()`, `flush()`) cannot resolve while those bytes
/// wait to be sent.
///
/// Made deterministic: writing is disabled, so nothing ever drains; a first closure
/// holds the task for 200 ms while a 16 KiB write and a second, 1 s closure queue up
/// behind it; the test looks while the task is in the second closure, after it applied
/// the write and before it published anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_len_counts_writes_the_task_is_applying() {
    let _serial = SERIAL.lock().await;
    const N: usize = 16 << 10;
    let (a, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .disable(Direction::WRITE)
        .tcp(a)
        .unwrap();
    let in_slow_closure = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&in_slow_closure);

    let gate = bev.with(|_| std::thread::sleep(Duration::from_millis(200)));
    let slow = bev.with(move |ctx| {
        flag.store(true, Ordering::SeqCst);
        assert_eq!(ctx.output().len(), N, "the write was applied first");
        std::thread::sleep(Duration::from_secs(1));
    });
    tokio::pin!(gate, slow);
    let _ = futures::poll!(gate.as_mut());
    bev.write_now(vec![1u8; N]).unwrap();
    let _ = futures::poll!(slow.as_mut());
    assert_eq!(bev.output_len(), N, "counted as soon as written");
    assert!(
        eventually(|| in_slow_closure.load(Ordering::SeqCst)).await,
        "the task reaches the second closure"
    );

    let seen = bev.output_len();
    let drained_early = timeout(Duration::from_millis(300), bev.drained())
        .await
        .is_ok();
    within(slow).await.unwrap().unwrap();
    gate.await.unwrap();
    assert_eq!(seen, N, "output_len() while the task applies the write");
    assert!(
        !drained_early,
        "drained() resolved with {N} bytes queued and writing disabled"
    );
    assert_eq!(bev.output_len(), N);
}

// ---- peer reset ------------------------------------------------------------------------

/// The bufferevent queues 64 MiB for a peer that reads 64 KiB and then resets the
/// connection (`SO_LINGER` 0, then close). The event callback gets ERROR with a
/// direction bit and the OS error itself; what was not sent stays in the output, and
/// `close()` reports it as unsent instead of dropping it silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_reset_mid_transfer_reports_error_and_unsent_data() {
    let _serial = SERIAL.lock().await;
    const TOTAL: usize = 64 << 20;
    const PEER_READS: usize = 64 << 10;

    let (local, peer) = tcp_pair().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bev = BufferEvent::builder()
        .on_event(move |ctx, events, error| {
            let error = error.map(|e| (e.kind(), e.raw_os_error(), e.to_string()));
            let _ = tx.send((events, error, ctx.output().len()));
        })
        .tcp(local)
        .unwrap();
    let data = Bytes::from(pattern(TOTAL));
    bev.write_now(data).unwrap();

    let mut peer = peer;
    let mut got = vec![0u8; PEER_READS];
    within(peer.read_exact(&mut got))
        .await
        .expect("the first bytes arrive")
        .unwrap();
    assert_eq!(got, pattern(PEER_READS));
    // SO_LINGER 0 makes close() send RST: `set_linger` is deprecated only because a
    // non-zero linger blocks the thread in close(); a zero one does not.
    #[allow(deprecated)]
    peer.set_linger(Some(Duration::ZERO)).unwrap();
    drop(peer);

    let (events, error, unsent_at_event) = within(rx.recv())
        .await
        .expect("an event within 10 s of the reset")
        .expect("the event callback ran");
    assert!(events.contains(Events::ERROR), "{events:?}");
    assert!(
        events.intersects(Events::READING | Events::WRITING),
        "the event names a direction: {events:?}"
    );
    let (kind, raw, message) = error.expect("the event callback receives the OS error");
    assert!(
        raw.is_some(),
        "an OS error (errno), not a made-up one: {message}"
    );
    assert!(
        matches!(
            kind,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        "{kind:?}: {message}"
    );
    assert!(
        unsent_at_event > 0,
        "64 MiB cannot all fit in socket buffers"
    );
    assert!(
        unsent_at_event <= TOTAL - PEER_READS,
        "what the peer read was sent: {unsent_at_event} unsent"
    );
    assert_eq!(bev.output_len(), unsent_at_event, "the handle sees it too");
    assert_eq!(
        bev.with(|ctx| ctx.output().len()).await.unwrap(),
        unsent_at_event,
        "nothing is sent after the error"
    );

    let closed = within(bev.close())
        .await
        .expect("close() after a write error ends at once");
    assert_eq!(closed.unsent, unsent_at_event, "{closed:?}");
    assert!(closed.events.contains(Events::ERROR), "{closed:?}");
    let error = closed.error.expect("closed() reports the error");
    assert_eq!(error.kind(), kind);
    assert!(rx.try_recv().is_err(), "exactly one event");
    eprintln!(
        "reset: {events:?} ({message}), {} of {TOTAL} bytes unsent",
        closed.unsent
    );
}

// ---- tasks ------------------------------------------------------------------------------

/// Every way a bufferevent ends also ends its task: `free()`, `close().await`, the
/// peer's EOF once every handle is dropped (with callbacks installed whose event
/// callback does nothing), and a dropped handle with no callbacks once the output is
/// sent. The runtime's alive-task count returns to its baseline each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_leaked_tasks_after_free_close_or_peer_eof() {
    let _serial = SERIAL.lock().await;
    let baseline = alive_tasks();

    // (a) free()
    let (a, _peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|ctx| drop(ctx.input().take_all()))
        .on_event(|_, _, _| {})
        .tcp(a)
        .unwrap();
    assert_eq!(alive_tasks(), baseline + 1, "one task per bufferevent");
    bev.write_now(&b"discarded"[..]).unwrap();
    bev.free();
    let closed = within(bev.closed()).await.unwrap();
    assert!(closed.error.is_none());
    drop(bev);
    assert_tasks_return_to(baseline, "after free()").await;

    // (b) close().await
    let (a, peer) = tcp_pair().await;
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|ctx| drop(ctx.input().take_all()))
        .on_event(|_, _, _| {})
        .tcp(a)
        .unwrap();
    bev.write_now(pattern(100_000)).unwrap();
    let closed = within(bev.close()).await.unwrap();
    assert_eq!(closed.unsent, 0);
    drop(bev);
    let mut peer = peer;
    let mut got = Vec::new();
    within(peer.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, pattern(100_000), "close() sent everything, then EOF");
    assert_tasks_return_to(baseline, "after close().await").await;

    // (c) peer EOF, callbacks installed, event callback does nothing, no handle left.
    let (a, peer) = tcp_pair().await;
    let eofs = Arc::new(AtomicUsize::new(0));
    let e = Arc::clone(&eofs);
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|ctx| drop(ctx.input().take_all()))
        .on_event(move |_, events, _| {
            if events.contains(Events::EOF) {
                e.fetch_add(1, Ordering::SeqCst);
            }
        })
        .tcp(a)
        .unwrap();
    drop(bev);
    let mut peer = peer;
    peer.write_all(b"some last words").await.unwrap();
    drop(peer);
    assert_tasks_return_to(baseline, "after the peer's EOF with every handle dropped").await;
    assert_eq!(
        eofs.load(Ordering::SeqCst),
        1,
        "the EOF was delivered first"
    );

    // (d) no callbacks, handle dropped with output queued: sent, then closed.
    let (a, peer) = tcp_pair().await;
    let bev = BufferEvent::builder().tcp(a).unwrap();
    bev.write_now(pattern(1 << 20)).unwrap();
    drop(bev);
    let mut peer = peer;
    let mut got = Vec::new();
    within(peer.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(
        got,
        pattern(1 << 20),
        "a dropped handle does not lose queued output"
    );
    assert_tasks_return_to(baseline, "after a handle-less bufferevent sent its output").await;
}

/// Dropping every handle of a bufferevent with callbacks does not stop it while it
/// still serves its peer: an echo bufferevent whose handle is dropped at once keeps
/// echoing, and ends (its task too) only at the peer's EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_handles_do_not_stop_a_serving_bufferevent() {
    let _serial = SERIAL.lock().await;
    let baseline = alive_tasks();
    let (a, peer) = tcp_pair().await;
    let echo = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|ctx| {
            let (mut input, mut output) = ctx.io();
            output.append_input(&mut input);
        })
        .on_event(|_, _, _| {})
        .tcp(a)
        .unwrap();
    drop(echo);

    let mut peer = peer;
    for round in 0..20 {
        // Give the task every chance to notice that no handle is left.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let message = format!("round {round}: {}", "x".repeat(round * 1000));
        peer.write_all(message.as_bytes()).await.unwrap();
        let mut back = vec![0u8; message.len()];
        within(peer.read_exact(&mut back))
            .await
            .unwrap_or_else(|_| panic!("no echo in round {round}"))
            .unwrap();
        assert_eq!(back, message.as_bytes());
        assert_eq!(alive_tasks(), baseline + 1, "the echo task is alive");
    }
    peer.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(peer.read_to_end(&mut rest))
        .await
        .expect("the echo bufferevent closes after the peer's EOF")
        .unwrap();
    assert!(rest.is_empty());
    assert_tasks_return_to(baseline, "after the echo peer's EOF").await;
}

// ---- 10,000 connections ------------------------------------------------------------------

const CONNECTIONS: usize = 10_000;
/// Concurrent connection attempts.
const CONNECTING_AT_ONCE: usize = 500;
/// File descriptors for the runtime, the harness and the listener, beyond the sockets.
const FD_SLACK: u64 = 256;
/// Set in the child process that runs the server half when one process may not hold
/// both halves' sockets.
const CHILD_ENV: &str = "TOKIO_BUFFEREVENT_ECHO_SERVER_CHILD";

#[derive(Debug, Default)]
struct ServerStats {
    accepted: AtomicUsize,
    live: AtomicUsize,
    max_live: AtomicUsize,
    echoed: AtomicUsize,
    ended: AtomicUsize,
    errors: AtomicUsize,
}

impl ServerStats {
    fn line(&self) -> String {
        format!(
            "ECHO_STATS accepted={} max_live={} echoed={} ended={} errors={} live={}",
            self.accepted.load(Ordering::SeqCst),
            self.max_live.load(Ordering::SeqCst),
            self.echoed.load(Ordering::SeqCst),
            self.ended.load(Ordering::SeqCst),
            self.errors.load(Ordering::SeqCst),
            self.live.load(Ordering::SeqCst),
        )
    }
}

/// Accepts forever; every connection gets an echo bufferevent driven by callbacks alone
/// (its handle is dropped at once) that frees itself at EOF or error.
async fn echo_server(listener: TcpListener, stats: Arc<ServerStats>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept failed: {e}");
                stats.errors.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        let live = stats.live.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_live.fetch_max(live, Ordering::SeqCst);
        let (s1, s2) = (Arc::clone(&stats), Arc::clone(&stats));
        let bev = BufferEvent::builder()
            .enable(Direction::READ)
            .on_read(move |ctx| {
                let (mut input, mut output) = ctx.io();
                s1.echoed.fetch_add(input.len(), Ordering::SeqCst);
                output.append_input(&mut input);
            })
            .on_event(move |ctx, events, _| {
                if events.intersects(Events::EOF | Events::ERROR) {
                    if events.contains(Events::ERROR) {
                        s2.errors.fetch_add(1, Ordering::SeqCst);
                    }
                    s2.live.fetch_sub(1, Ordering::SeqCst);
                    s2.ended.fetch_add(1, Ordering::SeqCst);
                    ctx.free();
                }
            })
            .tcp(stream);
        if let Err(e) = bev {
            eprintln!("bufferevent for an accepted connection: {e}");
            stats.errors.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The soft and hard `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
fn nofile_limits() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |s: &str| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    };
    Some((parse(fields.next()?)?, parse(fields.next()?)?))
}

/// Raises the soft `RLIMIT_NOFILE` towards `wanted` (never past the hard limit) with
/// util-linux's `prlimit` on this process: no `unsafe` code. Returns the soft limit in
/// effect afterwards.
fn raise_nofile_soft_limit(wanted: u64) -> u64 {
    let Some((soft, hard)) = nofile_limits() else {
        return 0;
    };
    let target = wanted.min(hard);
    if target > soft {
        let outcome = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={target}:"))
            .status();
        if !matches!(outcome, Ok(status) if status.success()) {
            eprintln!("could not raise RLIMIT_NOFILE with prlimit: {outcome:?}");
        }
    }
    nofile_limits().map_or(soft, |(soft, _)| soft)
}

/// Where the echo server of `ten_thousand_concurrent_bufferevents` runs.
enum EchoServer {
    /// On this runtime.
    InProcess {
        addr: SocketAddr,
        task: tokio::task::JoinHandle<()>,
        stats: Arc<ServerStats>,
    },
    /// In a child process running `echo_server_child_process`.
    Child {
        addr: SocketAddr,
        child: Box<tokio::process::Child>,
        lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    },
}

impl EchoServer {
    async fn in_process() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ServerStats::default());
        let task = tokio::spawn(echo_server(listener, Arc::clone(&stats)));
        Self::InProcess { addr, task, stats }
    }

    async fn child() -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut child = tokio::process::Command::new(exe)
            .args([
                "echo_server_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the server process");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // The harness may print "test <name> ... " on the same line first.
                if let Some(at) = line.find("ECHO_PORT=") {
                    return line[at + "ECHO_PORT=".len()..]
                        .trim()
                        .parse::<u16>()
                        .unwrap();
                }
            }
            panic!("the server process ended without a port");
        })
        .await
        .expect("the server process starts");
        Self::Child {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: Box::new(child),
            lines,
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::InProcess { addr, .. } | Self::Child { addr, .. } => *addr,
        }
    }

    /// Waits until every server connection ended, stops the server and returns its
    /// statistics line.
    async fn finish(self, connections: usize) -> String {
        match self {
            Self::InProcess { task, stats, .. } => {
                let all_ended =
                    timeout(Duration::from_secs(30), wait_all_ended(&stats, connections)).await;
                task.abort();
                let _ = task.await;
                if all_ended.is_err() {
                    eprintln!("server connections still open after 30 s");
                }
                stats.line()
            }
            Self::Child {
                mut child,
                mut lines,
                ..
            } => {
                drop(child.stdin.take()); // tells the child to finish
                let stats = timeout(Duration::from_secs(60), async {
                    while let Some(line) = lines.next_line().await.unwrap() {
                        if let Some(at) = line.find("ECHO_STATS ") {
                            return line[at..].to_owned();
                        }
                    }
                    panic!("the server process ended without statistics");
                })
                .await
                .expect("the server process reports");
                let status = timeout(Duration::from_secs(30), child.wait())
                    .await
                    .expect("the server process exits")
                    .unwrap();
                assert!(status.success(), "server process: {status}");
                stats
            }
        }
    }
}

async fn wait_all_ended(stats: &ServerStats, connections: usize) {
    while stats.ended.load(Ordering::SeqCst) < connections {
        sleep(Duration::from_millis(5)).await;
    }
}

fn stat(line: &str, key: &str) -> usize {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap()
}

/// 10,000 loopback connections at once: an accept loop gives each an echo bufferevent
/// driven by callbacks; each of 10,000 client bufferevents sends a line and gets it
/// back; all are open together; then every client closes, every server bufferevent
/// ends at the EOF, and no task is left.
///
/// Both halves need 20,000 sockets. When `RLIMIT_NOFILE` (raised towards that with
/// `prlimit` if it is lower) does not allow them in one process, the server half runs
/// in a child process (this test binary again, running `echo_server_child_process`),
/// still 10,000 connections; with too few descriptors even for that, the test says so
/// and skips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_bufferevents() {
    let _serial = SERIAL.lock().await;
    let baseline = alive_tasks();
    let n = CONNECTIONS;
    let soft = raise_nofile_soft_limit(2 * n as u64 + FD_SLACK);
    let server = if soft >= 2 * n as u64 + FD_SLACK {
        EchoServer::in_process().await
    } else if soft >= n as u64 + FD_SLACK {
        eprintln!(
            "RLIMIT_NOFILE {soft} < {}: the server half runs in a child process",
            2 * n as u64 + FD_SLACK
        );
        EchoServer::child().await
    } else {
        eprintln!(
            "SKIPPED ten_thousand_concurrent_bufferevents: RLIMIT_NOFILE is {soft}, \
             {} descriptors per process are needed",
            n as u64 + FD_SLACK
        );
        return;
    };
    let addr = server.addr();
    let in_process = matches!(server, EchoServer::InProcess { .. });
    let started = Instant::now();

    let clients = timeout(Duration::from_secs(60), async {
        let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
        let mut tasks = JoinSet::new();
        for i in 0..n {
            let permit = Arc::clone(&connecting).acquire_owned().await.unwrap();
            tasks.spawn(async move {
                let stream = TcpStream::connect(addr).await?;
                let bev = BufferEvent::builder().enable(Direction::READ).tcp(stream)?;
                let message = format!("hello from client {i:05}\n");
                bev.write_now(message.clone())?;
                bev.readable(message.len()).await;
                let echoed = bev.read(usize::MAX).await?;
                assert_eq!(echoed, message.as_bytes(), "client {i}");
                drop(permit);
                Ok::<_, io::Error>(bev)
            });
        }
        let mut clients = Vec::with_capacity(n);
        while let Some(outcome) = tasks.join_next().await {
            clients.push(outcome.unwrap().expect("connect and echo"));
        }
        clients
    })
    .await
    .expect("10,000 connections echo within 60 s");
    let echoed_in = started.elapsed();
    assert_eq!(clients.len(), n);
    assert!(
        clients.iter().all(|c| c.is_connected() && !c.is_closed()),
        "all open at once"
    );
    // The client tasks above may count as alive for a moment after they were joined.
    let expected = baseline + n + if in_process { n + 1 } else { 0 };
    eventually(|| alive_tasks() <= expected).await;
    assert_eq!(
        alive_tasks(),
        expected,
        "one task per bufferevent (and the accept loop)"
    );

    let closing = timeout(Duration::from_secs(60), async {
        let mut tasks = JoinSet::new();
        for bev in clients {
            tasks.spawn(async move { bev.close().await });
        }
        let mut unsent = 0;
        while let Some(closed) = tasks.join_next().await {
            let closed = closed.unwrap();
            assert!(closed.error.is_none(), "{closed:?}");
            unsent += closed.unsent;
        }
        unsent
    })
    .await
    .expect("10,000 closes within 60 s");
    assert_eq!(closing, 0);

    let stats = server.finish(n).await;
    let total = started.elapsed();
    eprintln!("{n} connections: echoed in {echoed_in:?}, all closed in {total:?}; {stats}");
    let message_bytes: usize = (0..n)
        .map(|i| format!("hello from client {i:05}\n").len())
        .sum();
    assert_eq!(stat(&stats, "accepted"), n, "{stats}");
    assert_eq!(stat(&stats, "max_live"), n, "all open at once: {stats}");
    assert_eq!(stat(&stats, "echoed"), message_bytes, "{stats}");
    assert_eq!(
        stat(&stats, "ended"),
        n,
        "every server side saw EOF: {stats}"
    );
    assert_eq!(stat(&stats, "errors"), 0, "{stats}");
    assert_eq!(stat(&stats, "live"), 0, "{stats}");
    if !in_process {
        assert_eq!(stat(&stats, "tasks_left"), 0, "server process: {stats}");
    }
    assert_tasks_return_to(baseline, "after 10,000 connections closed").await;
}

/// Not a test on its own: the server half of `ten_thousand_concurrent_bufferevents`
/// when it runs in a child process (this binary, with `CHILD_ENV` set). Does nothing
/// otherwise.
///
/// Prints `ECHO_PORT=<port>`, serves until its stdin closes, waits (at most 30 s) until
/// every connection ended and every task is gone, and prints the `ECHO_STATS` line.
#[test]
fn echo_server_child_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("ECHO_PORT={}", listener.local_addr().unwrap().port());
        let stats = Arc::new(ServerStats::default());
        let server = tokio::spawn(echo_server(listener, Arc::clone(&stats)));
        let mut ignored = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut ignored).await;
        let accepted = stats.accepted.load(Ordering::SeqCst);
        let _ = timeout(Duration::from_secs(30), wait_all_ended(&stats, accepted)).await;
        server.abort();
        let _ = server.await;
        let _ = timeout(Duration::from_secs(30), async {
            while alive_tasks() > 0 {
                sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        println!("{} tasks_left={}", stats.line(), alive_tasks());
    });
}
