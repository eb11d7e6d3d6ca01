//! The engine driven by hand, pass by pass.

use std::task::Poll;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;
use crate::bufferevent::BufferEvent;
use crate::bufferevent::events::Direction;
use crate::bufferevent::handle::WeakHandle;
use crate::bufferevent::info::TransportInfo;
use crate::bufferevent::transport::stream::StreamLink;

type Echo = Engine<StreamLink<DuplexStream>, ()>;

/// An echo engine over one end of an in-memory stream, run by hand.
fn echo_engine() -> (Echo, BufferEvent<DuplexStream>, DuplexStream) {
    let (ours, peer) = duplex(1024);
    let (side, bev) = BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(|ctx| {
            let (mut input, mut output) = ctx.io();
            output.append_input(&mut input);
        })
        .assemble(true, TransportInfo::default());
    (Engine::new(StreamLink::new(Some(ours)), side), bev, peer)
}

async fn run_passes(engine: &mut Echo) {
    std::future::poll_fn(|cx| {
        while engine.pass(cx, true) || engine.side.publish() {}
        Poll::Ready(())
    })
    .await;
}

async fn echoes(engine: &mut Echo, peer: &mut DuplexStream) {
    peer.write_all(b"ping").await.unwrap();
    run_passes(engine).await;
    let mut back = [0; 4];
    peer.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
}

#[tokio::test]
async fn the_shared_state_is_dropped_once_no_handle_can_reach_it() {
    let (mut engine, bev, mut peer) = echo_engine();
    echoes(&mut engine, &mut peer).await;
    assert!(engine.side.shared().is_some(), "a handle is alive");
    assert_eq!(bev.input_len(), 0, "published while a handle exists");
    drop(bev);
    run_passes(&mut engine).await;
    assert!(engine.side.shared().is_none(), "no handle can read it");
    // It goes on serving its peer, publishing nothing.
    echoes(&mut engine, &mut peer).await;
    assert!(!engine.is_over());
}

/// An idle connection that no handle can reach holds no buffers: the task that goes
/// idle with both drained gives them back, and the next message takes a pair again
/// (the same one, from the thread's spares). While a handle exists the pair stays,
/// for the handle's next call.
#[tokio::test]
async fn an_idle_echo_holds_no_buffers() {
    let (mut engine, bev, mut peer) = echo_engine();
    let mut echo_and_idle = async |engine: &mut Echo| {
        peer.write_all(b"ping").await.unwrap();
        std::future::poll_fn(|cx| {
            assert!(engine.poll_run(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        let mut back = [0; 4];
        peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
    };
    echo_and_idle(&mut engine).await;
    assert!(
        engine.side.inner.buffers.are_held(),
        "a handle may need them"
    );
    drop(bev);
    for _ in 0..2 {
        echo_and_idle(&mut engine).await;
        assert!(engine.side.shared().is_none());
        assert!(
            !engine.side.inner.buffers.are_held(),
            "idle, yet holding buffers"
        );
    }
}

/// A `with` whose caller gave up before the answer: once no handle is left, the
/// answer (here the last handle of another bufferevent) is dropped, not kept for
/// the rest of the bufferevent's life.
#[tokio::test]
async fn an_answer_nobody_waits_for_is_dropped_when_the_state_goes() {
    let (mut engine, bev, _peer) = echo_engine();
    let (stream, _other_peer) = duplex(64);
    let other = BufferEvent::builder().stream(stream);
    let other_alive = WeakHandle::of(&other);
    {
        let ask = bev.with(move |_| other);
        let mut ask = std::pin::pin!(ask);
        // One poll sends the closure; then the caller gives up.
        std::future::poll_fn(|cx| {
            assert!(ask.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
    }
    drop(bev);
    run_passes(&mut engine).await;
    assert!(engine.side.shared().is_none());
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while other_alive.upgrade().is_some() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the other bufferevent ends once its last handle is dropped");
}

#[tokio::test]
async fn a_weak_handle_keeps_the_shared_state() {
    let (mut engine, bev, mut peer) = echo_engine();
    let weak = WeakHandle::of(&bev);
    drop(bev);
    run_passes(&mut engine).await;
    assert!(engine.side.shared().is_some(), "a weak handle may upgrade");
    let again = weak.upgrade().expect("still running");
    echoes(&mut engine, &mut peer).await;
    run_passes(&mut engine).await;
    assert_eq!(again.output_len(), 0);
    drop((again, weak));
    run_passes(&mut engine).await;
    assert!(engine.side.shared().is_none());
}

/// With one task per connection, the task's future is most of an idle
/// connection's memory. Tokio's task cell is 80 bytes of header and trailer, 24 of
/// core and the future, aligned to 128 bytes: a future of at most 280 bytes keeps a
/// TCP bufferevent's task in 384 bytes (measured: 1183 bytes per idle connection
/// with a future of 408 bytes in 512, 1074 with 248 in 384; see
/// `docs/PERFORMANCE.md`). The buffers are out of line for this (`buffers.rs`). A
/// field added to the engine should make room elsewhere, or change this figure
/// knowingly. A word of user state (the echo server's is a `bool`) must fit too.
/// (Figures for Tokio 1.54 built without `--cfg tokio_unstable`, which adds 8 bytes
/// to the cell's core.)
#[test]
fn a_tcp_bufferevent_task_stays_small() {
    let size = size_of::<Run<StreamLink<tokio::net::TcpStream>, u64>>();
    assert!(size <= 280, "the task future grew to {size} bytes");
}

/// Every bufferevent allocates its handles' shared state at first, and a server's
/// connections drop it once no handle is left; its size class still shows in idle
/// memory per connection (see `docs/PERFORMANCE.md`). Parts only some users need are
/// boxed on first use (`Shared::extra`, `Shared::polled`). (560 since the setters'
/// pending counts became `u32`: a `u16` saturated after 65,535 queued changes of one
/// setting, and handles then saw older values. A listener's connections, detached,
/// never allocate it.)
#[test]
fn the_state_handles_share_stays_small() {
    let size = size_of::<Remote<tokio::net::TcpStream, ()>>();
    assert!(
        size <= 560,
        "the handles' shared state grew to {size} bytes"
    );
}

/// A read helper cancelled after the task took its line for it, before the answer
/// went out, then called again at once (a `select!` loop on a multi-thread runtime,
/// where the task runs both calls in one wake-up): the second call gets the line the
/// first one took, not the line after it.
#[tokio::test]
async fn a_line_taken_for_a_cancelled_read_comes_first_for_the_next() {
    use crate::buffer::EolStyle;
    let (ours, mut peer) = duplex(1024);
    let (side, bev) = BufferEvent::builder()
        .enable(Direction::READ)
        .assemble(true, TransportInfo::default());
    let mut engine: Echo = Engine::new(StreamLink::new(Some(ours)), side);
    peer.write_all(b"one\ntwo\n").await.unwrap();
    run_passes(&mut engine).await;
    assert_eq!(bev.input_len(), 8);
    let second = std::future::poll_fn(|cx| {
        {
            let first = bev.read_line(EolStyle::Lf, 100);
            let mut first = std::pin::pin!(first);
            assert!(first.as_mut().poll(cx).is_pending(), "the call is sent");
            // The task takes "one" for it; the answer waits for the publish.
            engine.pass(cx, true);
        } // cancelled
        let mut second = Box::pin(bev.read_line(EolStyle::Lf, 100));
        assert!(second.as_mut().poll(cx).is_pending(), "the call is sent");
        while engine.pass(cx, true) || engine.side.publish() {}
        Poll::Ready(second)
    })
    .await;
    assert_eq!(second.await.unwrap(), &b"one"[..]);
    assert_eq!(bev.input_len(), 4, "\"two\\n\" is left");
}

/// The same when nothing follows but an adapter waiting to read: what the task
/// hands the adapter as it publishes came after the line going back, so the adapter
/// reads the line first.
#[tokio::test]
async fn a_line_taken_for_a_cancelled_read_comes_before_what_an_adapter_was_handed() {
    use crate::buffer::EolStyle;
    use tokio::io::AsyncRead;
    let (ours, mut peer) = duplex(1024);
    let (side, bev) = BufferEvent::builder()
        .enable(Direction::READ)
        .assemble(true, TransportInfo::default());
    let mut engine: Echo = Engine::new(StreamLink::new(Some(ours)), side);
    let mut io = bev.clone().into_io();
    peer.write_all(b"one\ntwo\n").await.unwrap();
    run_passes(&mut engine).await;
    let first_byte = std::future::poll_fn(|cx| {
        let mut byte = [0u8; 1];
        {
            let first = bev.read_line(EolStyle::Lf, 100);
            let mut first = std::pin::pin!(first);
            assert!(first.as_mut().poll(cx).is_pending(), "the call is sent");
            // The task takes "one" for it; the answer waits for the publish.
            engine.pass(cx, true);
        } // cancelled
        // An adapter asks for input: the publish hands it what is there, then finds
        // the answer nobody takes.
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        assert!(Pin::new(&mut io).poll_read(cx, &mut buf).is_pending());
        engine.side.publish();
        assert_eq!(
            engine.side.shared().unwrap().polled().takeout.len(),
            8,
            "the line went back before the hand-over, which then took it all"
        );
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut byte);
            if let Poll::Ready(read) = Pin::new(&mut io).poll_read(cx, &mut buf) {
                read.unwrap();
                assert_eq!(buf.filled().len(), 1);
                break;
            }
            while engine.pass(cx, true) || engine.side.publish() {}
        }
        Poll::Ready(byte[0])
    })
    .await;
    assert_eq!(first_byte, b'o', "\"one\" comes first");
}

/// An adapter dropped while it holds bytes it read ahead, and while later input was
/// handed over on a request still standing (a request is made again by a poll that
/// raced the hand-over): a read through the handle gets the adapter's bytes first.
#[tokio::test]
async fn an_adapter_s_bytes_come_before_later_input_handed_over() {
    use tokio::io::AsyncReadExt as _;
    let (a, b) = BufferEvent::pair();
    let mut io = b.clone().into_io();
    a.write(&b"abc"[..]).await.unwrap();
    let mut first = [0u8; 1];
    io.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"a", "\"bc\" is read ahead, in the adapter");
    // The request standing again, as after that race: the next input is handed over.
    let shared = b.shared();
    shared.polled().takeout.want(usize::MAX, &shared.input_len);
    a.write(&b"def"[..]).await.unwrap();
    // (Not `with`: a command puts what was handed over back in the input.)
    for _ in 0..100 {
        if shared.polled().takeout.len() == 3 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(shared.polled().takeout.len(), 3, "\"def\" was handed over");
    drop(io);
    assert_eq!(b.read(10).await.unwrap(), &b"bcdef"[..]);
}

/// A handle made again from a weak one after every handle had gone, which queues
/// more commands than a pass applies and is dropped at once: every command is
/// applied, none dropped with the state handles shared.
#[tokio::test]
async fn commands_queued_by_the_last_handle_are_all_applied() {
    let (mut engine, bev, mut peer) = echo_engine();
    let weak = WeakHandle::of(&bev);
    drop(bev);
    run_passes(&mut engine).await;
    let again = weak.upgrade().expect("still running");
    for _ in 0..200 {
        again.write_now(&b"x"[..]).unwrap();
    }
    drop((again, weak));
    run_passes(&mut engine).await;
    assert!(engine.side.shared().is_none(), "no handle can read it");
    let mut got = vec![0u8; 200];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        peer.read_exact(&mut got),
    )
    .await
    .expect("every write reaches the peer")
    .unwrap();
}
