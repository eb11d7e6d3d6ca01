//! Connecting by address (`bufferevent_socket_connect`): B-33, B-35, B-48..B-50 and the
//! connect timeout, over loopback only.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Watermarks};

mod common;

use common::{blackhole, refusing, within};

/// B-35, B-50: success delivers CONNECTED alone; data written before the connect goes
/// out right after it, in order; then the write callback runs.
#[tokio::test]
async fn b035_b050_connected_then_queued_data_then_write_callback() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
    let bev = BufferEvent::builder()
        .on_event(move |ctx, events, error| {
            assert!(error.is_none());
            l1.lock()
                .unwrap()
                .push(format!("{events:?} output={}", ctx.output().len()));
        })
        .on_write(move |_| l2.lock().unwrap().push("write".to_owned()))
        .connect(listener.local_addr().unwrap())
        .unwrap();
    bev.write_now(&b"first "[..]).unwrap();
    bev.write_now(&b"second"[..]).unwrap();
    let (mut peer, _) = within(listener.accept()).await.unwrap().unwrap();
    assert!(within(bev.connected()).await.unwrap().is_ok());
    let mut got = [0u8; 12];
    within(peer.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"first second");
    within(bev.drained()).await.unwrap();
    bev.with(|_| ()).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        ["Events(CONNECTED) output=12", "write"],
        "CONNECTED alone and first, the data after it, then the write callback"
    );
    assert_eq!(bev.peer_addr(), Some(listener.local_addr().unwrap()));
    assert!(bev.fd().is_some());
}

/// B-33: a refused connect delivers ERROR without a direction bit, with the OS error,
/// and leaves the enabled directions as they were; `connected()` says false.
#[tokio::test]
async fn b033_refused_connect_reports_error_without_direction() {
    let (_held, addr) = refusing(); // nothing listens there
    let seen = Arc::new(Mutex::new(None));
    let s = Arc::clone(&seen);
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_event(move |_, events, error| {
            *s.lock().unwrap() = Some((events, error.map(io::Error::kind)));
        })
        .connect(addr)
        .unwrap();
    assert!(within(bev.connected()).await.unwrap().is_err());
    bev.with(|_| ()).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        Some((Events::ERROR, Some(io::ErrorKind::ConnectionRefused)))
    );
    assert_eq!(bev.enabled(), Direction::BOTH, "enabled is unchanged");
    assert!(!bev.is_connected());
}

/// A failed connect that leaves no transport: every future waiting for input, for
/// the output to drain, or for room in it resolves with the connect's failure instead
/// of waiting for what can no longer come (written data stays queued, as libevent
/// keeps it, for a connect that follows); a new connect makes them wait again.
#[tokio::test]
async fn waiters_learn_that_the_connect_failed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_bufferevent::bufferevent::{Error, Readiness};
    let (_held, addr) = refusing();
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .write_watermarks(Watermarks::new(0, 4))
        .connect(addr)
        .unwrap();
    bev.write_now(&b"queued"[..]).unwrap();
    let refused = |r: Readiness| matches!(r, Readiness::Failed(e) if e.kind() == io::ErrorKind::ConnectionRefused);
    // Waiting before the failure, and after it.
    let (readable, drained) = tokio::join!(within(bev.readable(1)), within(bev.drained()));
    assert!(refused(readable.unwrap()));
    drained.expect("drained() resolves: the output cannot drain");
    assert_eq!(bev.output_len(), 6, "the data stays queued");
    assert!(refused(within(bev.readable(1)).await.unwrap()));
    assert!(matches!(
        within(bev.writable()).await.unwrap(),
        Err(Error::ConnectFailed(e)) if e.kind() == io::ErrorKind::ConnectionRefused
    ));
    assert!(matches!(
        within(bev.read_line(tokio_bufferevent::buffer::EolStyle::Lf, 100))
            .await
            .unwrap(),
        Err(Error::ConnectFailed(_))
    ));
    let mut io = bev.clone().into_io();
    let mut buf = [0; 8];
    let read = within(io.read(&mut buf)).await.unwrap().unwrap_err();
    assert_eq!(read.kind(), io::ErrorKind::ConnectionRefused);
    let flushed = within(io.flush()).await.unwrap().unwrap_err();
    assert_eq!(flushed.kind(), io::ErrorKind::NotConnected);
    drop(io);

    // A new connect: they wait for it, and its data goes out.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    bev.connect(listener.local_addr().unwrap()).unwrap();
    let waiting = bev.readable(1);
    let (mut peer, _) = within(listener.accept()).await.unwrap().unwrap();
    let mut got = [0; 6];
    within(peer.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"queued");
    peer.write_all(b"x").await.unwrap();
    assert_eq!(within(waiting).await.unwrap(), Readiness::Ready);
}

/// A read that began while a failed connect cut the bufferevent off, and a new
/// connect that came before its answer: the read waits for the new connect's data,
/// not an end.
#[tokio::test]
async fn a_read_begun_before_a_new_connect_waits_for_it() {
    use tokio::io::AsyncWriteExt as _;
    let (_held, addr) = refusing();
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .connect(addr)
        .unwrap();
    assert!(within(bev.connected()).await.unwrap().is_err());
    let read = bev.read_exact(4);
    tokio::pin!(read);
    assert!(futures::poll!(read.as_mut()).is_pending(), "asked the task");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    bev.connect(listener.local_addr().unwrap()).unwrap();
    let (mut peer, _) = within(listener.accept()).await.unwrap().unwrap();
    peer.write_all(b"data").await.unwrap();
    assert_eq!(within(read).await.unwrap().unwrap(), &b"data"[..]);
}

/// B-49: a connect the caller started is taken over and completes as usual.
#[tokio::test]
async fn b049_connect_with_a_connect_already_started() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    let bev = BufferEvent::builder().unconnected::<TcpStream>();
    bev.connect_with(socket.connect(listener.local_addr().unwrap()))
        .unwrap();
    let record = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::CONNECTED);
    within(listener.accept()).await.unwrap().unwrap();
}

/// The connect timeout (beyond libevent): a connect that does not complete in time
/// delivers ERROR|TIMEOUT with a clear error.
#[tokio::test]
async fn connect_timeout_reports_error_and_timeout() {
    let (_listener, _queued, addr) = blackhole().await;
    let bev = BufferEvent::builder()
        .connect_timeout(Duration::from_millis(200))
        .connect(addr)
        .unwrap();
    let record = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::ERROR | Events::TIMEOUT);
    let error = record.error.expect("the error");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert!(error.to_string().contains("timed out"), "{error}");
}

/// B-33: a connect that fails with an error of kind `TimedOut` that is not the
/// builder's connect timeout (the OS giving up on SYNs, a caller's own connect) is
/// `ERROR` alone; only the connect timeout adds `TIMEOUT` (D-C1).
#[tokio::test]
async fn only_the_connect_timeout_adds_timeout_to_the_error() {
    let bev = BufferEvent::builder().unconnected::<TcpStream>();
    bev.connect_with(async { Err(io::Error::from(io::ErrorKind::TimedOut)) })
        .unwrap();
    let record = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::ERROR);
    assert_eq!(record.error.unwrap().kind(), io::ErrorKind::TimedOut);
}

/// The error `connected()` reports keeps the OS error code of the connect's failure.
#[tokio::test]
async fn a_failed_connect_keeps_its_os_error_code() {
    let (_held, addr) = refusing();
    let bev = BufferEvent::builder().connect(addr).unwrap();
    match within(bev.connected()).await.unwrap() {
        Err(tokio_bufferevent::bufferevent::Error::ConnectFailed(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            #[cfg(target_os = "linux")]
            assert_eq!(e.raw_os_error(), Some(111), "ECONNREFUSED: {e}");
            assert!(e.raw_os_error().is_some(), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// Freeing a bufferevent while it connects: no callback afterwards and its task ends.
#[tokio::test]
async fn free_while_connecting_runs_no_callback() {
    let (_listener, _queued, addr) = blackhole().await;
    let calls = Arc::new(Mutex::new(0));
    let c = Arc::clone(&calls);
    let bev = BufferEvent::builder()
        .on_event(move |_, _, _| *c.lock().unwrap() += 1)
        .connect(addr)
        .unwrap();
    bev.write_now(&b"never sent"[..]).unwrap();
    bev.free();
    let closed = within(bev.closed()).await.unwrap();
    assert_eq!(closed.unsent, 10);
    assert_eq!(*calls.lock().unwrap(), 0);
}

/// Closing while a connect is under way, with nothing to send: the close ends at once,
/// as a close (no error, nothing unsent), without waiting for a host that never
/// answers until the close's deadline; `connected()` learns the bufferevent ended.
#[tokio::test]
async fn close_while_connecting_with_nothing_to_send_ends_at_once() {
    let (_listener, _queued, addr) = blackhole().await;
    let bev = BufferEvent::builder().connect(addr).unwrap();
    let started = std::time::Instant::now();
    let closed = within(bev.close()).await.expect("the close ends");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not at its 30 s deadline"
    );
    assert!(closed.error.is_none(), "{:?}", closed.error);
    assert_eq!(closed.unsent, 0);
    assert!(matches!(
        within(bev.connected()).await.unwrap(),
        Err(tokio_bufferevent::bufferevent::Error::Ended)
    ));
}

/// Where libevent tries only the first address, `connect_any` goes on to the next: the
/// first refuses, the second accepts.
#[tokio::test]
async fn connect_any_tries_the_next_address_after_a_refusal() {
    let (_held, refused) = refusing();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let good = listener.local_addr().unwrap();
    let bev = BufferEvent::builder().unconnected::<TcpStream>();
    bev.connect_any([refused, good]).unwrap();
    let record = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::CONNECTED);
    assert_eq!(bev.peer_addr(), Some(good));
    within(listener.accept()).await.unwrap().unwrap();
}

/// When every address refuses, the event callback gets ERROR with the last error; an
/// empty list is refused at once.
#[tokio::test]
async fn connect_any_reports_the_last_error_when_all_fail() {
    let held: Vec<_> = (0..3).map(|_| refusing()).collect();
    let dead: Vec<_> = held.iter().map(|(_, addr)| *addr).collect();
    let bev = BufferEvent::builder().unconnected::<TcpStream>();
    bev.connect_any(dead).unwrap();
    let record = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::ERROR);
    assert_eq!(
        record.error.expect("the error").kind(),
        io::ErrorKind::ConnectionRefused
    );
    let err = bev.connect_any(Vec::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// D-C3: a new connect keeps the connected transport in use until it completes, but
/// `connected()` answers that connect, not the old transport: it waits for it, and a
/// refused reconnect is an error, not a success.
#[tokio::test]
async fn connected_answers_the_connect_under_way_not_the_old_transport() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bev = BufferEvent::builder()
        .connect(listener.local_addr().unwrap())
        .unwrap();
    let _first = within(listener.accept()).await.unwrap().unwrap();
    within(bev.connected()).await.unwrap().unwrap();
    let (_held, refused) = refusing();
    bev.connect(refused).unwrap();
    match within(bev.connected()).await.unwrap() {
        Err(tokio_bufferevent::bufferevent::Error::ConnectFailed(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        }
        other => panic!("the reconnect was refused, but connected() said {other:?}"),
    }
    assert!(
        bev.is_connected(),
        "the first transport stays in use (D-C3)"
    );
    // A reconnect that succeeds is answered as such.
    bev.connect(listener.local_addr().unwrap()).unwrap();
    let _second = within(listener.accept()).await.unwrap().unwrap();
    within(bev.connected()).await.unwrap().unwrap();
}

/// B-33: after a failed connect both events are deregistered: no read or write
/// timeout follows the `ERROR`, until `enable` registers a direction again.
#[tokio::test(start_paused = true)]
async fn b033_no_timeout_follows_a_failed_connect_until_enable() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .on_event(move |_, events, _| seen.lock().unwrap().push(events))
        .unconnected::<TcpStream>();
    bev.set_timeouts(
        Some(Duration::from_millis(100)),
        Some(Duration::from_millis(100)),
    );
    bev.write_now(&b"q"[..]).unwrap();
    bev.connect_with(async { Err(io::ErrorKind::ConnectionRefused.into()) })
        .unwrap();
    within(bev.next_event()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    bev.with(|_| ()).await.unwrap();
    assert_eq!(*events.lock().unwrap(), [Events::ERROR]);
    // `enable` registers the direction again: its timeout runs.
    bev.enable(Direction::READ);
    tokio::time::sleep(Duration::from_secs(1)).await;
    bev.with(|_| ()).await.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [Events::ERROR, Events::READING | Events::TIMEOUT]
    );
}

/// A connect under way that a new transport replaces never reports; `connected()`
/// stops counting on it and resolves with the new transport, instead of waiting for
/// an outcome that can no longer come.
#[tokio::test]
async fn connected_resolves_when_a_transport_replaces_the_connect_under_way() {
    let (_listener, _queued, addr) = blackhole().await;
    // A failed connect first: its failure is not the answer either.
    let (_held, refused) = refusing();
    let bev = BufferEvent::builder().connect(refused).unwrap();
    assert!(within(bev.connected()).await.unwrap().is_err());
    bev.connect(addr).unwrap();
    // The task has the connect under way.
    within(bev.with(|_| ())).await.unwrap().unwrap();
    let connected = bev.connected();
    tokio::pin!(connected);
    assert!(
        futures::poll!(connected.as_mut()).is_pending(),
        "the connect hangs"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    bev.set_tcp(stream);
    // Woken by the new transport before the task has replaced the connect, the
    // waiter looks again at once and must wait for the connect to be withdrawn.
    assert!(futures::poll!(connected.as_mut()).is_pending());
    within(connected)
        .await
        .expect("connected() resolves once the connect is replaced")
        .unwrap();
    assert!(bev.is_connected());
}

/// A transport given after a failed connect connects the bufferevent: `connected()`
/// answers `Ok`, not the earlier failure.
#[tokio::test]
async fn a_transport_given_after_a_failed_connect_is_connected() {
    let (_held, refused) = refusing();
    let bev = BufferEvent::builder().connect(refused).unwrap();
    assert!(within(bev.connected()).await.unwrap().is_err());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    bev.set_tcp(stream);
    assert!(bev.is_connected());
    within(bev.connected())
        .await
        .unwrap()
        .expect("connected over the new transport");
    within(bev.with(|_| ())).await.unwrap().unwrap();
    within(bev.connected())
        .await
        .unwrap()
        .expect("still, once the task has the transport");
}
