//! Paired bufferevents: ports of libevent's `bufferevent_pair*` tests from
//! `test/regress_bufferevent.c`, and the behaviours B-45 and B-73..B-82.
//!
//! Tests run with Tokio's clock paused: `settle()` sleeps, and a paused clock only
//! advances once every task is idle, so it returns when the pair has nothing left to
//! do.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, sleep};
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, FlushMode, Pair, Watermarks};

use common::{pattern, settle, within};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// `bufferevent_pair`: 8333 bytes cross; the writer's write callback sees an empty
/// output, the reader gets everything, no event fires, partners point at each other,
/// and freeing one leaves the other without a partner.
#[tokio::test(start_paused = true)]
async fn bufferevent_pair() {
    let events = log();
    let got = Arc::new(Mutex::new(Vec::new()));
    let (e1, e2, sink) = (events.clone(), events.clone(), got.clone());
    let (writer, reader) = BufferEvent::builder()
        .on_write(|ctx| assert!(ctx.output().is_empty()))
        .on_event(move |_, ev, _| e1.lock().unwrap().push(format!("{ev:?}")))
        .pair(
            BufferEvent::builder()
                .enable(Direction::READ)
                .on_read(move |ctx| {
                    let data = ctx.input().take_all();
                    sink.lock().unwrap().extend_from_slice(&data);
                })
                .on_event(move |_, ev, _| e2.lock().unwrap().push(format!("{ev:?}"))),
        );
    writer.disable(Direction::READ);
    assert_eq!(writer.fd(), None, "a pair has no descriptor (getfd -1)");
    writer.write(pattern(8333)).await.unwrap();
    settle().await;
    assert_eq!(*got.lock().unwrap(), pattern(8333));
    assert!(entries(&events).is_empty(), "no event callback");
    assert_eq!(writer.enabled(), Direction::WRITE);
    assert_eq!(reader.enabled(), Direction::BOTH);

    let partner = writer.partner().expect("a partner");
    assert!(partner.partner().is_some());
    drop(partner);
    reader.free();
    settle().await;
    assert!(
        writer.partner().is_none(),
        "get_partner is NULL after the free"
    );
    assert!(
        entries(&events).is_empty(),
        "B-81: the survivor hears nothing"
    );
}

/// Flushing with `mode` changes nothing about delivery and raises no event.
async fn flush_changes_nothing(mode: FlushMode) {
    let (a, b) = BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ));
    a.write(&b"hello"[..]).await.unwrap();
    a.flush(Direction::BOTH, mode);
    settle().await;
    assert_eq!(b.read(100).await.unwrap(), &b"hello"[..], "{mode:?}");
    assert!(b.last_event().is_none(), "{mode:?}: no event");
    assert!(a.last_event().is_none(), "{mode:?}: no event");
}

/// `bufferevent_pair_flush_normal`: `Normal` is a no-op (B-73).
#[tokio::test(start_paused = true)]
async fn bufferevent_pair_flush_normal() {
    flush_changes_nothing(FlushMode::Normal).await;
}

/// `bufferevent_pair_flush_flush`: `Flush` delivers, with no event.
#[tokio::test(start_paused = true)]
async fn bufferevent_pair_flush_flush() {
    flush_changes_nothing(FlushMode::Flush).await;
}

/// `bufferevent_pair_release_lock`: freeing the two elements one after the other,
/// from other threads, is safe, and both end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bufferevent_pair_release_lock() {
    for _ in 0..100 {
        let (a, b) = BufferEvent::pair();
        let (a2, b2) = (a.clone(), b.clone());
        std::thread::spawn(move || a2.free()).join().unwrap();
        std::thread::spawn(move || b2.free()).join().unwrap();
        within(async {
            a.closed().await;
            b.closed().await;
        })
        .await
        .expect("both ended");
    }
}

/// B-74: a `Flush` moves everything across, regardless of watermarks and of the
/// enabled directions of either side.
#[tokio::test(start_paused = true)]
async fn flush_moves_everything_ignoring_watermarks_and_enabled() {
    let (a, b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .disable(Direction::BOTH)
            .read_watermarks(Watermarks::new(0, 3)),
    );
    a.write(&b"0123456789"[..]).await.unwrap();
    settle().await;
    assert_eq!(b.input_len(), 0, "B-78: READ is disabled, the data waits");
    assert_eq!(a.output_len(), 10);
    a.flush(Direction::WRITE, FlushMode::Flush);
    settle().await;
    assert_eq!(b.input_len(), 10);
    assert_eq!(a.output_len(), 0);

    // EV_READ pulls the partner's output.
    b.write_now(&b"back"[..]).unwrap();
    a.disable(Direction::READ);
    settle().await;
    assert_eq!(a.input_len(), 0);
    a.flush(Direction::READ, FlushMode::Flush);
    settle().await;
    assert_eq!(a.read(100).await.unwrap(), &b"back"[..]);
}

/// `bufferevent_pair_flush_finished`: the partner's read callback, then its event
/// callback with `READING | EOF`, then the writer's write callback (B-75, B-76).
#[tokio::test(start_paused = true)]
async fn bufferevent_pair_flush_finished() {
    let order = log();
    let (o1, o2, o3) = (order.clone(), order.clone(), order.clone());
    let (a, _b) = BufferEvent::builder()
        .on_write(move |_| o1.lock().unwrap().push("writer write".into()))
        .pair(
            BufferEvent::builder()
                .enable(Direction::READ)
                .on_read(move |ctx| {
                    ctx.input().take_all();
                    o2.lock().unwrap().push("partner read".into());
                })
                .on_event(move |_, ev, _| o3.lock().unwrap().push(format!("partner {ev:?}"))),
        );
    settle().await;
    a.flush(Direction::WRITE, FlushMode::Finished);
    settle().await;
    assert_eq!(
        entries(&order),
        [
            "partner read",
            &format!("partner {:?}", Events::READING | Events::EOF),
            "writer write"
        ]
    );
}

/// `bufferevent_pair_flush`: after `flush(WRITE, Finished)` the partner's event
/// callback gets exactly `READING | EOF`; flushing READ gives `WRITING | EOF`.
#[tokio::test(start_paused = true)]
async fn bufferevent_pair_flush() {
    let (a, b) = BufferEvent::pair();
    a.flush(Direction::WRITE, FlushMode::Finished);
    let event = b.next_event().await.unwrap();
    assert_eq!(event.events, Events::READING | Events::EOF);

    let (a, b) = BufferEvent::pair();
    a.flush(Direction::READ, FlushMode::Finished);
    let event = b.next_event().await.unwrap();
    assert_eq!(event.events, Events::WRITING | Events::EOF);
}

/// `bufferevent_pair_watermarks`: read watermarks (10, 20) make every read callback
/// see 10..=20 bytes; write watermarks (100, 2000) give write callbacks only at or
/// below 100 bytes; all 65000 bytes arrive (B-80).
#[tokio::test(start_paused = true)]
async fn bufferevent_pair_watermarks() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let writes = Arc::new(Mutex::new(Vec::new()));
    let (s, w) = (seen.clone(), writes.clone());
    let (a, b) = BufferEvent::builder_with_state(Vec::<u8>::new())
        .write_watermarks(Watermarks::new(100, 2000))
        .on_write(move |ctx| w.lock().unwrap().push(ctx.output().len()))
        .pair(
            BufferEvent::builder_with_state(Vec::new())
                .enable(Direction::READ)
                .read_watermarks(Watermarks::new(10, 20))
                .on_read(move |ctx| {
                    let n = ctx.input().len();
                    let data = ctx.input().take_all();
                    ctx.state().extend_from_slice(&data);
                    s.lock().unwrap().push(n);
                }),
        );
    assert_eq!(a.watermarks(Direction::READ), Some(Watermarks::new(0, 0)));
    a.write(pattern(65000)).await.unwrap();
    let received = loop {
        settle().await;
        let got = b.with(|ctx| ctx.state().len()).await.unwrap();
        if got == 65000 {
            break b.with(|ctx| std::mem::take(ctx.state())).await.unwrap();
        }
    };
    assert_eq!(received, pattern(65000));
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|&n| (10..=20).contains(&n)), "{seen:?}");
    let writes = writes.lock().unwrap();
    assert!(!writes.is_empty());
    assert!(writes.iter().all(|&n| n <= 100), "{writes:?}");
}

/// B-80: the reader's high watermark caps a transfer at the exact byte; draining
/// below it resumes the transfer with no new write.
#[tokio::test(start_paused = true)]
async fn high_watermark_caps_transfer_at_the_byte() {
    let (a, b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .read_watermarks(Watermarks::new(0, 7)),
    );
    a.write(&b"abcdefghijkl"[..]).await.unwrap();
    settle().await;
    assert_eq!(b.input_len(), 7);
    assert_eq!(a.output_len(), 5, "the rest waits in the writer's output");
    assert_eq!(b.read(3).await.unwrap(), &b"abc"[..]);
    settle().await;
    assert_eq!(b.input_len(), 7);
    assert_eq!(a.output_len(), 2);
    assert_eq!(b.read(100).await.unwrap(), &b"defghij"[..]);
    settle().await;
    assert_eq!(b.read(100).await.unwrap(), &b"kl"[..]);
}

/// B-78, B-79: data waits while the writer's WRITE or the reader's READ is off;
/// enabling either moves it.
#[tokio::test(start_paused = true)]
async fn enabling_pulls_and_pushes_pending_data() {
    let (a, b) = BufferEvent::builder()
        .disable(Direction::WRITE)
        .pair(BufferEvent::builder());
    a.write_now(&b"one"[..]).unwrap();
    settle().await;
    assert_eq!((a.output_len(), b.input_len()), (3, 0));
    a.enable(Direction::WRITE); // still waits: the reader's READ is off
    settle().await;
    assert_eq!((a.output_len(), b.input_len()), (3, 0));
    b.enable(Direction::READ); // pulls
    settle().await;
    assert_eq!((a.output_len(), b.input_len()), (0, 3));
    a.disable(Direction::WRITE);
    a.write_now(&b"two"[..]).unwrap();
    settle().await;
    assert_eq!(a.output_len(), 3);
    a.enable(Direction::WRITE); // pushes
    settle().await;
    assert_eq!(b.read(100).await.unwrap(), &b"onetwo"[..]);
}

/// Transfers move chunks: the bytes the reader gets are the very bytes written.
#[tokio::test(start_paused = true)]
async fn transfers_move_chunks_without_copying() {
    let (a, b) = BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ));
    let data = Bytes::from(vec![7u8; 100_000]);
    let address = data.as_ptr();
    a.write(data).await.unwrap();
    b.readable(100_000).await;
    let got = b.read(usize::MAX).await.unwrap();
    assert_eq!(got.len(), 100_000);
    assert_eq!(got.as_ptr(), address, "the same memory, moved not copied");
}

/// B-81: freeing one element loses its output, the survivor's later writes stay in
/// its output, and data already moved stays readable. With `partner_end_is_eof`, the
/// survivor hears `READING | EOF` instead of nothing.
#[tokio::test(start_paused = true)]
async fn freeing_one_element() {
    for eof in [false, true] {
        let (a, b) = BufferEvent::builder()
            .enable(Direction::READ)
            .partner_end_is_eof(eof)
            .pair(BufferEvent::builder().enable(Direction::READ));
        b.write(&b"moved"[..]).await.unwrap();
        settle().await;
        b.disable(Direction::WRITE);
        b.write_now(&b"lost"[..]).unwrap();
        b.free();
        let closed = b.closed().await;
        assert_eq!(closed.unsent, 4, "the freed element's output is lost");
        settle().await;
        assert!(a.partner().is_none());
        assert_eq!(a.read(100).await.unwrap(), &b"moved"[..]);
        if eof {
            let closed_read = a.last_event().expect("an event");
            assert_eq!(closed_read.events, Events::READING | Events::EOF);
        } else {
            assert!(a.last_event().is_none(), "libevent: no event");
            a.write_now(&b"stays"[..]).unwrap();
            settle().await;
            assert_eq!(a.output_len(), 5, "writes accumulate");
        }
    }
}

/// Freeing the first element (the one whose task hosts the pair) leaves the second
/// running, and with `partner_end_is_eof` it hears EOF.
#[tokio::test(start_paused = true)]
async fn freeing_the_first_element_keeps_the_second() {
    let (a, b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .partner_end_is_eof(true),
    );
    a.write(&b"last words"[..]).await.unwrap();
    settle().await;
    a.close().await;
    assert!(b.partner().is_none());
    let event = b.last_event().expect("EOF");
    assert_eq!(event.events, Events::READING | Events::EOF);
    assert_eq!(b.read(100).await.unwrap(), &b"last words"[..]);
    b.write_now(&b"x"[..]).unwrap();
    settle().await;
    assert_eq!(b.output_len(), 1);
    assert!(!b.is_closed());
}

/// `bufferevent_timeout_pair` with our divergence (B-45, B-47): bev1 (read 150 ms,
/// write 100 ms, 7 bytes queued that bev2 will not read) times out once each way;
/// bev2 (READ off, write 200 ms, nothing queued) never times out; no read or write
/// callbacks run.
#[tokio::test(start_paused = true)]
async fn bufferevent_timeout_pair() {
    let events = log();
    let calls = log();
    let start = Instant::now();
    let (e1, e2, c1, c2, c3, c4) = (
        events.clone(),
        events.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
    );
    let (bev1, _bev2) = BufferEvent::builder()
        .enable(Direction::READ)
        .timeouts(
            Some(Duration::from_millis(150)),
            Some(Duration::from_millis(100)),
        )
        .on_read(move |_| c1.lock().unwrap().push("read1".into()))
        .on_write(move |_| c2.lock().unwrap().push("write1".into()))
        .on_event(move |_, ev, _| {
            e1.lock()
                .unwrap()
                .push(format!("bev1 {ev:?} at {:?}", start.elapsed()))
        })
        .pair(
            BufferEvent::builder()
                .disable(Direction::READ)
                .timeouts(None, Some(Duration::from_millis(200)))
                .on_read(move |_| c3.lock().unwrap().push("read2".into()))
                .on_write(move |_| c4.lock().unwrap().push("write2".into()))
                .on_event(move |_, ev, _| {
                    e2.lock()
                        .unwrap()
                        .push(format!("bev2 {ev:?} at {:?}", start.elapsed()))
                }),
        );
    bev1.write_now(&b"1234567"[..]).unwrap();
    sleep(Duration::from_millis(350)).await;
    assert_eq!(
        entries(&events),
        [
            format!(
                "bev1 {:?} at {:?}",
                Events::WRITING | Events::TIMEOUT,
                Duration::from_millis(100)
            ),
            format!(
                "bev1 {:?} at {:?}",
                Events::READING | Events::TIMEOUT,
                Duration::from_millis(150)
            ),
        ]
    );
    assert!(entries(&calls).is_empty());
}

/// B-82 and the partner's handle: a pair element reports no addresses, and its
/// handle can be cloned and used from another task.
#[tokio::test(start_paused = true)]
async fn pair_has_no_addresses_and_handles_work_from_other_tasks() {
    let (a, b): (BufferEvent<Pair>, BufferEvent<Pair>) = BufferEvent::pair();
    assert_eq!(a.peer_addr(), None);
    assert_eq!(a.local_addr(), None);
    b.enable(Direction::READ);
    let writer = a.clone();
    tokio::spawn(async move { writer.write(&b"from elsewhere"[..]).await.unwrap() })
        .await
        .unwrap();
    b.readable(14).await;
    assert_eq!(b.read(100).await.unwrap(), &b"from elsewhere"[..]);
}

/// No stack growth however long the chain: 1,000 pairs, each element's read
/// callback forwarding into the next pair, carry data end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_chained_pairs() {
    const PAIRS: usize = 1000;
    let mut firsts = Vec::new();
    let mut seconds = Vec::new();
    for _ in 0..PAIRS {
        let (a, b) = BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ));
        firsts.push(a);
        seconds.push(b);
    }
    // The second element of pair i forwards what it reads into the first of pair i+1.
    for i in 0..PAIRS - 1 {
        let next = firsts[i + 1].clone();
        seconds[i]
            .set_callbacks(tokio_bufferevent::bufferevent::Callbacks {
                read: Some(Box::new(move |ctx| {
                    let data = ctx.input().take_all();
                    let _ = next.write_now(data);
                })),
                write: None,
                event: None,
            })
            .await
            .unwrap();
    }
    let payload = pattern(64 * 1024);
    firsts[0].write(payload.clone()).await.unwrap();
    let last = seconds.last().unwrap();
    tokio::time::timeout(Duration::from_secs(60), last.readable(payload.len()))
        .await
        .expect("the data crossed all pairs");
    assert_eq!(last.read(usize::MAX).await.unwrap(), payload);
}

/// Data and a `Finished` flush sent together reach the partner as one read callback,
/// then the EOF: the data does not go ahead of the flush that carries the rest and
/// leave a second, empty read callback behind it.
#[tokio::test(start_paused = true)]
async fn data_and_a_finished_flush_sent_together_give_one_read_then_eof() {
    let order = log();
    let (o1, o2) = (order.clone(), order.clone());
    let (a, _b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .on_read(move |ctx| {
                let n = ctx.input().take_all().len();
                o1.lock().unwrap().push(format!("read {n}"));
            })
            .on_event(move |_, ev, _| o2.lock().unwrap().push(format!("event {ev:?}"))),
    );
    settle().await;
    a.write_now(&b"last words"[..]).unwrap();
    a.flush(Direction::WRITE, FlushMode::Finished);
    settle().await;
    assert_eq!(
        entries(&order),
        [
            "read 10".to_string(),
            format!("event {:?}", Events::READING | Events::EOF)
        ]
    );
}

/// Data written as the partner's last handle goes, when the partner has no callbacks
/// and so ends: the data stays in the writer's output rather than vanish into the
/// ending partner's input.
#[tokio::test(start_paused = true)]
async fn data_written_as_the_partner_ends_stays_in_the_output() {
    let (a, b) = BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ));
    settle().await;
    drop(b);
    a.write_now(&b"hello"[..]).unwrap();
    settle().await;
    assert!(a.partner().is_none(), "the partner ended");
    assert_eq!(a.output_len(), 5);
    assert_eq!(a.stats().bytes_written, 0);
}

/// A closing element with no close timeout ends once its partner has taken the rest
/// of its output.
#[tokio::test(start_paused = true)]
async fn a_closing_element_ends_once_its_partner_takes_the_rest() {
    let (a, b) = BufferEvent::builder().pair(BufferEvent::builder().close_timeout(None));
    a.disable(Direction::READ);
    b.write_now(pattern(100)).unwrap();
    settle().await;
    assert_eq!(b.output_len(), 100, "held while the partner does not read");
    // Both commands reach the task in one wake-up.
    a.enable(Direction::READ);
    let closed = within(b.close()).await.expect("the close completes");
    assert_eq!(closed.unsent, 0);
    assert_eq!(a.input_len(), 100);
    assert!(a.partner().is_none(), "the partner ended");
}

/// An element with no handle and no callback left ends once its partner takes the
/// rest of its output, in the wake-up that moved it.
#[tokio::test(start_paused = true)]
async fn an_unobserved_element_ends_once_its_partner_takes_the_rest() {
    let (a, b) = BufferEvent::builder().pair(BufferEvent::builder());
    a.disable(Direction::READ);
    b.write_now(pattern(100)).unwrap();
    drop(b);
    settle().await;
    assert!(a.partner().is_some(), "the partner waits to send the rest");
    a.enable(Direction::READ);
    settle().await;
    assert_eq!(a.input_len(), 100);
    assert!(a.partner().is_none(), "the partner ended");
}

/// Both elements on callbacks, each answering the other: every answer goes out,
/// however the pass that wrote it ends.
#[tokio::test(start_paused = true)]
async fn callbacks_on_both_elements_keep_a_conversation_going() {
    let trips = Arc::new(Mutex::new(0usize));
    let counted = trips.clone();
    let (a, b) = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(move |ctx| {
            let answers = ctx.input().take_all().len() / 4;
            let mut trips = counted.lock().unwrap();
            *trips += answers;
            if *trips < 100 {
                ctx.output().add(b"ping");
            }
        })
        .pair(common::echoing());
    a.write_now(&b"ping"[..]).unwrap();
    settle().await;
    assert_eq!(*trips.lock().unwrap(), 100);
    assert_eq!((a.output_len(), b.output_len()), (0, 0));
}

/// A timeout a callback sets in a pass that moved data is armed all the same.
#[tokio::test(start_paused = true)]
async fn a_timeout_a_callback_sets_fires() {
    let events = log();
    let seen = events.clone();
    let (a, _b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .on_read(|ctx| {
                ctx.input().take_all();
                ctx.set_timeouts(Some(Duration::from_secs(1)), None);
            })
            .on_event(move |_, ev, _| seen.lock().unwrap().push(format!("{ev:?}"))),
    );
    a.write_now(&b"hi"[..]).unwrap();
    sleep(Duration::from_secs(3)).await;
    assert_eq!(entries(&events), ["Events(READING | TIMEOUT)"]);
}

/// A flush a callback asks for in a pass that moved data is carried out all the
/// same.
#[tokio::test(start_paused = true)]
async fn a_flush_a_callback_asks_for_is_carried_out() {
    let events = log();
    let seen = events.clone();
    let (_a, b) = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|ctx| {
            ctx.input().take_all();
            ctx.flush(Direction::WRITE, FlushMode::Finished);
        })
        .pair(
            BufferEvent::builder()
                .enable(Direction::READ)
                .on_event(move |_, ev, _| seen.lock().unwrap().push(format!("{ev:?}"))),
        );
    b.write_now(&b"hi"[..]).unwrap();
    settle().await;
    assert_eq!(entries(&events), ["Events(READING | EOF)"]);
}

/// More commands than a pass applies, sent at once: the rest are applied in the
/// passes that follow, with no other wake-up.
#[tokio::test(start_paused = true)]
async fn a_burst_of_commands_is_applied_in_full() {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let (a, _b) =
        BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ).on_read(
            move |ctx| {
                let data = ctx.input().take_all();
                sink.lock().unwrap().extend_from_slice(&data);
            },
        ));
    let data = pattern(300);
    for byte in data.chunks(1) {
        a.write_now(byte.to_vec()).unwrap();
    }
    settle().await;
    assert_eq!(*got.lock().unwrap(), data);
}

/// Data that arrived while no read callback was set does not call a read callback
/// set afterwards (libevent marks nothing pending for a missing callback); the next
/// data does.
#[tokio::test(start_paused = true)]
async fn a_read_callback_set_later_runs_for_new_data_only() {
    let (a, b) = BufferEvent::builder()
        .enable(Direction::READ)
        .pair(BufferEvent::builder());
    b.write_now(&b"early"[..]).unwrap();
    settle().await;
    assert_eq!(a.input_len(), 5);
    let calls = log();
    let seen = calls.clone();
    within(a.set_callbacks(tokio_bufferevent::bufferevent::Callbacks {
        read: Some(Box::new(move |ctx| {
            let data = ctx.input().take_all();
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&data).into_owned());
        })),
        write: None,
        event: None,
    }))
    .await
    .unwrap()
    .unwrap();
    settle().await;
    assert!(
        entries(&calls).is_empty(),
        "no call for data that came before"
    );
    b.write_now(&b" late"[..]).unwrap();
    settle().await;
    assert_eq!(entries(&calls), ["early late"]);
}

/// Commands sent from other threads while the task runs, in bursts larger than one
/// pass applies: none is left waiting for a wake-up that does not come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_commands_from_other_threads_are_applied_in_full() {
    const BYTES: usize = 4000;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let mut done_tx = Some(done_tx);
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let (a, _b) =
        BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ).on_read(
            move |ctx| {
                let data = ctx.input().take_all();
                let mut got = sink.lock().unwrap();
                got.extend_from_slice(&data);
                if got.len() == BYTES {
                    let _ = done_tx.take().map(|tx| tx.send(()));
                }
            },
        ));
    let data = pattern(BYTES);
    let writers: Vec<_> = data
        .chunks(BYTES / 4)
        .map(|quarter| {
            let (a, quarter) = (a.clone(), quarter.to_vec());
            tokio::spawn(async move {
                for burst in quarter.chunks(100) {
                    for byte in burst.chunks(1) {
                        a.write_now(byte.to_vec()).unwrap();
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    within(done_rx).await.expect("every byte arrives").unwrap();
    let mut got = got.lock().unwrap().clone();
    got.sort_unstable();
    let mut want = data;
    want.sort_unstable();
    assert_eq!(got, want, "every byte, once (writers interleave)");
}

/// A write accepted while a free was already on its way is never sent: `closed()`
/// counts it as unsent.
#[tokio::test(start_paused = true)]
async fn a_write_queued_behind_a_free_counts_as_unsent() {
    let (a, _b) = BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ));
    a.write_now(&b"sent"[..]).unwrap();
    settle().await;
    a.free();
    a.write_now(&b"lost"[..])
        .expect("accepted: the task has not ended yet");
    let closed = within(a.closed()).await.expect("the free completes");
    assert_eq!(closed.unsent, 4);
    assert_eq!(a.output_len(), 4, "still counted, never sent");
}

/// B-81 keeps the survivor's event callback silent, but its handles' waits still
/// end (D-P1): reads answer EOF after what had arrived, the output it can no longer
/// send ends `drained`, and the adapter's flush fails with `BrokenPipe`.
#[tokio::test(start_paused = true)]
async fn the_survivor_s_waits_end_when_its_partner_is_freed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_bufferevent::bufferevent::{Error, Readiness};
    let (a, b) = BufferEvent::builder().pair(BufferEvent::builder().enable(Direction::READ));
    a.write(&b"last"[..]).await.unwrap();
    let reading = tokio::spawn({
        let b = b.clone();
        async move { b.read_exact(10).await }
    });
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.readable(10).await }
    });
    settle().await;
    a.free();
    assert!(matches!(
        within(reading).await.unwrap().unwrap(),
        Err(Error::Eof)
    ));
    assert_eq!(within(waiting).await.unwrap().unwrap(), Readiness::Eof);
    assert!(b.last_event().is_none(), "the event callback heard nothing");
    assert_eq!(b.read(100).await.unwrap(), &b"last"[..]);

    b.write_now(&b"stays"[..]).unwrap();
    within(b.drained()).await.unwrap();
    assert_eq!(b.output_len(), 5, "writes accumulate (B-81)");
    let mut io = b.clone().into_io();
    let mut buf = [0u8; 8];
    assert_eq!(within(io.read(&mut buf)).await.unwrap().unwrap(), 0, "EOF");
    let flushed = within(io.flush()).await.unwrap().unwrap_err();
    assert_eq!(flushed.kind(), std::io::ErrorKind::BrokenPipe, "{flushed}");
}

/// A filter left without an underlying bufferevent (it had ended) cannot read or
/// send: its waits end instead of waiting for ever.
#[tokio::test(start_paused = true)]
async fn an_orphaned_filter_s_waits_end() {
    use tokio_bufferevent::bufferevent::{PassThrough, Readiness};
    let (a, _b) = BufferEvent::pair();
    a.close().await;
    let filter = BufferEvent::filter(a, PassThrough, PassThrough);
    assert_eq!(within(filter.readable(1)).await.unwrap(), Readiness::Eof);
    filter.write_now(&b"x"[..]).unwrap();
    within(filter.drained()).await.unwrap();
    assert_eq!(filter.output_len(), 1);
}

/// The second element, left to its callbacks, still hears the `EOF` its partner's end
/// queued before it ends on its own (D-P1, D-B12).
#[tokio::test(start_paused = true)]
async fn an_element_left_to_its_callbacks_hears_its_partner_s_end() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let record = heard.clone();
    let (a, b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .partner_end_is_eof(true)
            .on_event(move |_, events, _| record.lock().unwrap().push(events)),
    );
    drop(b);
    settle().await;
    a.free();
    within(a.closed()).await.unwrap();
    settle().await;
    assert_eq!(*heard.lock().unwrap(), [Events::READING | Events::EOF]);
    assert_eq!(Arc::strong_count(&heard), 1, "and it ended");
}

/// A filter over a pair element is stranded with it: once the partner is gone its
/// reads answer EOF and its output waits end, also through a second filter.
#[tokio::test(start_paused = true)]
async fn a_filter_over_a_stranded_element_is_stranded_too() {
    use tokio_bufferevent::bufferevent::{PassThrough, Readiness};
    let (a, b) = BufferEvent::pair();
    let filter = BufferEvent::filter(b, PassThrough, PassThrough);
    let waiting = filter.readable(1);
    a.free();
    within(a.closed()).await.unwrap();
    assert_eq!(within(waiting).await.unwrap(), Readiness::Eof);
    filter.write_now(&b"x"[..]).unwrap();
    within(filter.drained()).await.unwrap();

    let (a, b) = BufferEvent::pair();
    let inner = BufferEvent::filter(b, PassThrough, PassThrough);
    let outer = BufferEvent::filter(inner, PassThrough, PassThrough);
    let waiting = outer.readable(1);
    a.free();
    within(a.closed()).await.unwrap();
    assert_eq!(within(waiting).await.unwrap(), Readiness::Eof, "two layers");
}

/// The other way round: the second element ends beneath a filter that outlives it
/// (the filter still has handles). The first element hears of it as if the element
/// had ended on its own: stranded (reads answer EOF, output waits end), `EOF` when it
/// asked for it, and a close that completes at once.
#[tokio::test(start_paused = true)]
async fn an_element_whose_partner_ends_beneath_a_filter_is_stranded() {
    use tokio_bufferevent::bufferevent::{PassThrough, Readiness};
    let (a, b) = BufferEvent::builder()
        .enable(Direction::READ)
        .partner_end_is_eof(true)
        .pair(BufferEvent::builder());
    let keep = b.clone();
    let _filter = BufferEvent::filter(b, PassThrough, PassThrough);
    settle().await;
    keep.free();
    assert_eq!(within(a.readable(1)).await.unwrap(), Readiness::Eof);
    assert_eq!(
        a.last_event().map(|e| e.events),
        Some(Events::READING | Events::EOF)
    );
    a.write_now(&b"x"[..]).unwrap();
    within(a.drained()).await.unwrap();
    let closed = within(a.close_within(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(closed.error.is_none(), "{closed:?}");
}
