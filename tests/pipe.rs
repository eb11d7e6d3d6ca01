//! `pipe`: forwarding between two bufferevents with backpressure and half-close, over
//! real loopback sockets, pairs and filters.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_bufferevent::bufferevent::{
    BufferEvent, Direction, Events, FlushMode, PIPE_WATERMARKS, Pair, PassThrough, PipeEnd,
    PipeSide, Piped, pipe,
};

use common::{expect_within, pattern, tcp_pair};

/// An upstream that echoes each connection until EOF, then closes.
async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A proxy for one client connection to `upstream`; the pipe's outcome.
async fn proxy_one(upstream: SocketAddr) -> (TcpStream, JoinHandle<Piped>) {
    let (client, accepted) = tcp_pair().await;
    let proxy = tokio::spawn(async move {
        let front = BufferEvent::builder().tcp(accepted).unwrap();
        let back = BufferEvent::builder().connect(upstream).unwrap();
        pipe(&front, &back).await
    });
    (client, proxy)
}

/// `pipe(a, b)` on a task of its own.
fn spawn_pipe(a: &BufferEvent<Pair>, b: &BufferEvent<Pair>) -> JoinHandle<Piped> {
    let (a, b) = (a.clone(), b.clone());
    tokio::spawn(async move { pipe(&a, &b).await })
}

/// A pipe between the far elements of two pairs, shown to forward: "ping" written to
/// A's near element has reached B's (which reads). Returns A's near and far elements,
/// B's near and far elements, and the pipe's task.
async fn a_running_pipe() -> (
    BufferEvent<Pair>,
    BufferEvent<Pair>,
    BufferEvent<Pair>,
    BufferEvent<Pair>,
    JoinHandle<Piped>,
) {
    let (a_near, a_far) = BufferEvent::pair();
    let (b_near, b_far) = BufferEvent::pair();
    b_near.enable(Direction::READ);
    let piping = spawn_pipe(&a_far, &b_far);
    a_near.write(&b"ping"[..]).await.unwrap();
    assert_eq!(
        &expect_within(b_near.read_exact(4)).await.unwrap()[..],
        b"ping"
    );
    (a_near, a_far, b_near, b_far, piping)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_moves_8_mib_each_way_byte_for_byte_and_ends_on_both_eofs() {
    let upstream = echo_upstream().await;
    let (client, proxy) = proxy_one(upstream).await;
    let data = pattern(8 << 20);
    let (mut r, mut w) = client.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap(); // the EOF travels through the proxy
    });
    let mut back = Vec::new();
    expect_within(r.read_to_end(&mut back)).await.unwrap();
    writer.await.unwrap();
    assert!(back == data, "echoed bytes differ");
    let piped = expect_within(proxy).await.unwrap();
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
    assert_eq!((piped.a_to_b, piped.b_to_a), (8 << 20, 8 << 20));
}

#[tokio::test]
async fn a_half_close_keeps_the_other_direction_open() {
    // The upstream reads the whole request, then answers after the client's EOF.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        s.read_to_end(&mut request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(format!("got {} bytes", request.len()).as_bytes())
            .await
            .unwrap();
        s.shutdown().await.unwrap();
    });
    let (mut client, proxy) = proxy_one(upstream).await;
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = String::new();
    expect_within(client.read_to_string(&mut answer))
        .await
        .unwrap();
    assert_eq!(answer, "got 7 bytes");
    let piped = expect_within(proxy).await.unwrap();
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
    assert_eq!((piped.a_to_b, piped.b_to_a), (7, 11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_never_reads_bounds_the_memory_of_a_fast_sender() {
    a_fast_sender_against_a_stalled_upstream(false).await;
}

/// The same through a filter towards the upstream (as a TLS or compressing proxy
/// has): the socket beneath the filter has no watermark of its own, and the pipe's
/// still bounds what waits there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_behind_a_filter_bounds_the_memory_too() {
    a_fast_sender_against_a_stalled_upstream(true).await;
}

async fn a_fast_sender_against_a_stalled_upstream(filtered: bool) {
    // The upstream accepts and never reads.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let stalled = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    let (client_side, accepted) = tcp_pair().await;
    let front = BufferEvent::builder().tcp(accepted).unwrap();
    let socket = BufferEvent::builder().connect(upstream).unwrap();
    let (f, waiting) = (front.clone(), socket.clone());
    let through = filtered.then(|| BufferEvent::filter(socket.clone(), PassThrough, PassThrough));
    let proxy = tokio::spawn(async move {
        match through {
            Some(back) => pipe(&f, &back).await,
            None => pipe(&f, &socket).await,
        }
    });
    let (_r, mut w) = client_side.into_split();
    let sender = tokio::spawn(async move {
        let chunk = vec![1u8; 1 << 20];
        let mut sent = 0usize;
        loop {
            if w.write_all(&chunk).await.is_err() {
                return sent;
            }
            sent += chunk.len();
        }
    });
    // Let the sender fill everything that can fill (the upstream's output reaches its
    // watermark however slow the machine), then watch the proxy's buffers.
    expect_within(async {
        while waiting.output_len() <= PIPE_WATERMARKS.low {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let mut held_max = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        held_max = held_max.max(front.input_len() + waiting.output_len());
    }
    // Through a filter, up to its own output besides what waits beneath it.
    let bound = PIPE_WATERMARKS.high * if filtered { 3 } else { 1 } + 2 * front.max_single_read();
    assert!(
        held_max <= bound,
        "the proxy held {held_max} bytes, above {bound}"
    );
    assert!(!sender.is_finished(), "the sender is held back, not failed");
    sender.abort();
    proxy.abort();
    drop(stalled);
}

#[tokio::test]
async fn a_reset_upstream_fails_the_pipe_and_closes_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 5];
        s.read_exact(&mut first).await.unwrap();
        // SO_LINGER 0 (deprecated for blocking on drop; zero does not block).
        #[allow(deprecated)]
        s.set_linger(Some(Duration::ZERO)).unwrap();
        drop(s); // RST
    });
    let (mut client, proxy) = proxy_one(upstream).await;
    client.write_all(b"hello").await.unwrap();
    let piped = expect_within(proxy).await.unwrap();
    match &piped.end {
        PipeEnd::Failed { side, error, .. } => {
            assert_eq!(*side, PipeSide::B);
            assert!(error.is_some());
        }
        other => panic!("{other:?}"),
    }
    let mut rest = Vec::new();
    // The client's side was closed: EOF (or a reset, if bytes were in flight).
    let _ = expect_within(client.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_pair_element_and_a_socket() {
    let upstream = echo_upstream().await;
    let (near, far) = BufferEvent::pair();
    let back = BufferEvent::builder().connect(upstream).unwrap();
    let proxy = tokio::spawn(async move { pipe(&far, &back).await });
    near.enable(Direction::READ);
    near.write(&b"through a pair"[..]).await.unwrap();
    let echoed = expect_within(near.read_exact(14)).await.unwrap();
    assert_eq!(&echoed[..], b"through a pair");
    // A finishing flush is the far element's EOF; the upstream's EOF comes back.
    near.flush(Direction::WRITE, FlushMode::Finished);
    let rest = expect_within(near.read_to_end(1024)).await.unwrap();
    assert!(rest.is_empty());
    let piped = expect_within(proxy).await.unwrap();
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
    assert_eq!(piped.a_to_b, 14);
}

#[cfg(feature = "deflate")]
#[tokio::test]
async fn a_compressing_proxy_is_a_pipe_to_a_zlib_filter() {
    use tokio_bufferevent::filters::deflate::{Compress, Compression, Decompress};
    // client --plain--> proxy --zlib--> decompressor --plain--> the test.
    let (client, accepted) = tcp_pair().await;
    let (zipped_near, zipped_far) = tcp_pair().await;
    let front = BufferEvent::builder().tcp(accepted).unwrap();
    let compressed = BufferEvent::builder().filter(
        BufferEvent::builder().tcp(zipped_near).unwrap(),
        Decompress::new(),
        Compress::new(Compression::default()),
    );
    let proxy = tokio::spawn(async move { pipe(&front, &compressed).await });
    let reader = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(zipped_far).unwrap(),
        Decompress::new(),
        Compress::new(Compression::default()),
    );
    let data = pattern(1 << 20);
    let (mut r, mut w) = client.into_split();
    w.write_all(&data).await.unwrap();
    w.shutdown().await.unwrap();
    let got = expect_within(reader.read_to_end(4 << 20)).await.unwrap();
    assert!(got == data, "decompressed bytes differ");
    reader.close().await; // the other direction ends too
    let mut rest = Vec::new();
    expect_within(r.read_to_end(&mut rest)).await.unwrap();
    let piped = expect_within(proxy).await.unwrap();
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
    assert_eq!(piped.a_to_b, 1 << 20);
}

#[tokio::test]
async fn cancelling_the_pipe_leaves_both_sides_running_without_its_callbacks() {
    let (a_near, a_far, b_near, b_far, piping) = a_running_pipe().await;
    piping.abort();
    let _ = piping.await;
    a_near.write(&b"after"[..]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Nothing forwards any more: it waits in the far element's input.
    assert_eq!(b_near.input_len(), 0);
    assert_eq!(a_far.input_len(), 5);
    assert!(!a_far.is_closed() && !b_far.is_closed());
}

#[tokio::test]
async fn data_and_eof_that_arrived_before_the_pipe_are_passed_on() {
    let upstream = echo_upstream().await;
    let (mut client, accepted) = tcp_pair().await;
    client.write_all(b"early").await.unwrap();
    client.shutdown().await.unwrap();
    // Reading from the start: the data and the EOF are in before the pipe.
    let front = BufferEvent::builder()
        .enable(Direction::READ)
        .tcp(accepted)
        .unwrap();
    expect_within(front.readable(5)).await;
    expect_within(async {
        while front.last_event().is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(
        front.last_event().unwrap().events,
        Events::READING | Events::EOF,
        "the EOF is in before the pipe starts"
    );
    let back = BufferEvent::builder().connect(upstream).unwrap();
    let piped = tokio::spawn(async move { pipe(&front, &back).await });
    let mut echoed = Vec::new();
    expect_within(client.read_to_end(&mut echoed))
        .await
        .unwrap();
    assert_eq!(echoed, b"early");
    let piped = expect_within(piped).await.unwrap();
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
}

/// A TLS-terminating proxy: TLS from the client, plain text to the upstream.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_terminating_proxy_is_a_pipe_from_a_tls_filter() {
    use std::sync::Arc;
    use tokio_bufferevent::filters::tls::{
        self,
        rustls::{
            self, ClientConfig, RootCertStore, ServerConfig,
            pki_types::{PrivatePkcs8KeyDer, ServerName},
        },
    };
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::generate_simple_self_signed(vec!["proxy.test".to_owned()]).unwrap();
    let cert = key.cert.der().clone();
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.clone()],
            PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()).into(),
        )
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client_config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();

    let upstream = echo_upstream().await;
    let (client_socket, accepted) = tcp_pair().await;
    let (input, output) = tls::server(Arc::new(server)).unwrap();
    let front =
        BufferEvent::builder().filter(BufferEvent::builder().tcp(accepted).unwrap(), input, output);
    let back = BufferEvent::builder().connect(upstream).unwrap();
    let proxy = tokio::spawn(async move { pipe(&front, &back).await });

    let name = ServerName::try_from("proxy.test").unwrap();
    let (input, output) = tls::client(Arc::new(client_config), name).unwrap();
    let client = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(client_socket).unwrap(),
        input,
        output,
    );
    let data = pattern(2 << 20);
    client
        .write(bytes::Bytes::from(data.clone()))
        .await
        .unwrap();
    let echoed = expect_within(client.read_exact(data.len())).await.unwrap();
    assert!(echoed[..] == data[..], "echoed bytes differ");
    // close_notify from the client ends the stream both ways.
    client.flush(Direction::WRITE, FlushMode::Finished);
    let rest = expect_within(client.read_to_end(1024)).await.unwrap();
    assert!(rest.is_empty());
    let piped = expect_within(proxy).await.unwrap();
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
    assert_eq!((piped.a_to_b, piped.b_to_a), (2 << 20, 2 << 20));
}

#[tokio::test]
async fn a_destination_that_can_take_nothing_more_fails_the_pipe() {
    let (a_near, a_far) = BufferEvent::pair();
    let (_peer, stream) = tcp_pair().await;
    let b_far = BufferEvent::builder().tcp(stream).unwrap();
    // B's write side is shut (a FIN sent) before anything arrives.
    b_far.flush(Direction::WRITE, FlushMode::Finished);
    expect_within(async {
        // A probe byte is taken until the shutdown has happened.
        while b_far.write_now(&b"."[..]).is_ok() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let (a, b) = (a_far.clone(), b_far.clone());
    let piping = tokio::spawn(async move { pipe(&a, &b).await });
    a_near.write(&b"nowhere to go"[..]).await.unwrap();
    let piped = expect_within(piping).await.unwrap();
    match piped.end {
        PipeEnd::Failed { side, error, .. } => {
            assert_eq!(side, PipeSide::B);
            assert!(error.unwrap().to_string().contains("13 bytes"));
        }
        other => panic!("{other:?}"),
    }
}

/// A side that can never send what it holds (its peer reads nothing) and has no close
/// timeout of its own still lets the pipe end, after `PIPE_CLOSE_TIMEOUT`.
#[tokio::test(start_paused = true)]
async fn the_end_of_a_pipe_is_bounded_even_without_a_close_timeout() {
    use tokio_bufferevent::bufferevent::{Events, PIPE_CLOSE_TIMEOUT};
    let (_a_near, a_far) = BufferEvent::pair();
    let (_peer, stream) = tcp_pair().await; // never reads
    let b_far = BufferEvent::builder()
        .close_timeout(None)
        .tcp(stream)
        .unwrap();
    let (a, b) = (a_far.clone(), b_far.clone());
    let piping = tokio::spawn(async move { pipe(&a, &b).await });
    tokio::task::yield_now().await;
    b_far
        .write(bytes::Bytes::from(vec![5u8; 32 << 20]))
        .await
        .unwrap();
    // A fails: the pipe frees A and closes B, which cannot send all of its 32 MiB.
    a_far.trigger_event(Events::ERROR);
    let started = tokio::time::Instant::now();
    let piped = piping.await.unwrap();
    assert!(
        matches!(
            piped.end,
            PipeEnd::Failed {
                side: PipeSide::A,
                ..
            }
        ),
        "{piped:?}"
    );
    let waited = started.elapsed();
    assert!(
        PIPE_CLOSE_TIMEOUT <= waited && waited < PIPE_CLOSE_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
    assert!(b_far.closed().await.unsent > 0);
}

/// A pipe to a pair element whose partner goes ends as `Ended` for that side, with
/// the partner freed while data moves and with `partner_end_is_eof` as well; the
/// other side is closed after sending what it had.
#[tokio::test(start_paused = true)]
async fn a_pipe_to_a_pair_element_ends_when_its_partner_goes() {
    for eof in [false, true] {
        let (far, near) =
            BufferEvent::builder().pair(BufferEvent::builder().partner_end_is_eof(eof));
        let (client, x) = BufferEvent::pair();
        client.enable(Direction::READ);
        let piped = tokio::spawn({
            let (x, near) = (x.clone(), near.clone());
            async move { pipe(&x, &near).await }
        });
        far.write(&b"from far"[..]).await.unwrap();
        expect_within(client.readable(8)).await;
        far.free();
        client.write(&b"late"[..]).await.unwrap();
        let piped = expect_within(piped).await.unwrap();
        assert!(
            matches!(piped.end, PipeEnd::Ended(PipeSide::B)),
            "eof {eof}: {:?}",
            piped.end
        );
        assert_eq!(piped.b_to_a, 8);
        assert_eq!(client.read(100).await.unwrap(), &b"from far"[..]);
    }
}

/// A side whose callbacks are replaced while the pipe runs (the application takes the
/// connection back) stops the pipe, which says so instead of waiting for an EOF its
/// callbacks will never see; both sides run on.
#[tokio::test]
async fn replacing_a_side_s_callbacks_stops_the_pipe_and_says_so() {
    let (_a_near, a_far, _b_near, b_far, piping) = a_running_pipe().await;
    // (Callbacks taken back with `set_callbacks` and kept could be put back; once
    // dropped, as here, they cannot.)
    a_far.replace_callbacks(tokio_bufferevent::bufferevent::Callbacks::default());
    let piped = expect_within(piping).await.unwrap();
    assert!(
        matches!(piped.end, PipeEnd::TakenOver(PipeSide::A)),
        "{piped:?}"
    );
    assert_eq!(piped.a_to_b, 4);
    assert!(!a_far.is_closed() && !b_far.is_closed(), "both run on");
}

/// A side whose write timeout disabled WRITE before the pipe sends again: the pipe
/// enables WRITE as it enables READ, instead of queueing into it for ever.
#[tokio::test(start_paused = true)]
async fn a_side_whose_write_timed_out_before_the_pipe_sends_again() {
    let (a_near, a_far) = BufferEvent::pair();
    let (b_near, b_far) = BufferEvent::pair();
    b_far.set_timeouts(None, Some(Duration::from_secs(1)));
    b_far.write_now(&b"x"[..]).unwrap(); // b_near does not read yet: it times out
    expect_within(b_far.next_event()).await.unwrap();
    assert!(!b_far.enabled().contains(Direction::WRITE));
    b_far.set_timeouts(None, None);
    b_near.enable(Direction::READ);
    let piping = spawn_pipe(&a_far, &b_far);
    a_near.write(&b"hello"[..]).await.unwrap();
    assert_eq!(
        &expect_within(b_near.read_exact(6)).await.unwrap()[..],
        b"xhello"
    );
    a_near.flush(Direction::WRITE, FlushMode::Finished);
    b_near.flush(Direction::WRITE, FlushMode::Finished);
    let piped = expect_within(piping).await.unwrap();
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
}

/// A pipe from a bufferevent to itself is refused at once with a clear panic, before
/// anything about it changed.
#[tokio::test]
async fn a_pipe_from_a_bufferevent_to_itself_is_refused() {
    let (_near, far) = BufferEvent::pair();
    let again = far.clone();
    let refused = expect_within(tokio::spawn(async move { pipe(&far, &again).await }))
        .await
        .unwrap_err();
    let message = refused.into_panic();
    let message = message
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| message.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(message.contains("same bufferevent"), "{message}");
}

/// A pipe dropped while it held a side back for backpressure leaves that side
/// reading again, and both sides with the write watermarks they had.
#[tokio::test]
async fn cancelling_a_pipe_gives_back_reading_and_watermarks() {
    let (a_near, a_far) = BufferEvent::pair();
    let (_b_near, b_far) = BufferEvent::pair(); // never reads: b_far's output fills
    let piping = spawn_pipe(&a_far, &b_far);
    a_near.write(pattern(4 << 20)).await.unwrap();
    expect_within(async {
        while b_far.output_len() <= PIPE_WATERMARKS.high
            || a_far.enabled().contains(Direction::READ)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(b_far.watermarks(Direction::WRITE), Some(PIPE_WATERMARKS));
    piping.abort();
    let _ = piping.await;
    // Each side is given back on its own task.
    expect_within(async {
        while !a_far.enabled().contains(Direction::READ)
            || b_far.watermarks(Direction::WRITE)
                != Some(tokio_bufferevent::bufferevent::Watermarks::default())
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// The application that takes a side back keeps the callbacks it installed: the
/// pipe, stopping, takes off only its own.
#[tokio::test]
async fn a_side_taken_back_keeps_the_callbacks_it_was_given() {
    let (a_near, a_far, _b_near, _b_far, piping) = a_running_pipe().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    a_far.replace_callbacks(tokio_bufferevent::bufferevent::Callbacks {
        read: Some(Box::new(move |ctx| {
            tx.send(ctx.input().take_all()).unwrap();
        })),
        ..Default::default()
    });
    let piped = expect_within(piping).await.unwrap();
    assert!(
        matches!(piped.end, PipeEnd::TakenOver(PipeSide::A)),
        "{piped:?}"
    );
    a_near.write(&b"after"[..]).await.unwrap();
    assert_eq!(&expect_within(rx.recv()).await.unwrap()[..], b"after");
}

/// An upstream behind a filter that does not read for a while: the pipe does not
/// finish while bytes wait in the proxy, and once the upstream reads, it gets every
/// byte and the pipe finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_behind_a_filter_gets_every_byte() {
    // An upstream with a small receive buffer: most of what the proxy takes waits in
    // the proxy, beneath the filter, which takes it all (within its watermarks).
    let data = pattern(beyond_the_kernel_send_buffer());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let upstream = listener.local_addr().unwrap();
    let (go, reading) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.shutdown().await.unwrap(); // nothing to say: that direction is done at once
        reading.await.unwrap(); // reads only when told
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        got
    });
    let (client, accepted) = tcp_pair().await;
    let front = BufferEvent::builder().tcp(accepted).unwrap();
    let back = BufferEvent::builder()
        .close_timeout(Some(Duration::from_millis(300)))
        .filter(
            BufferEvent::builder().connect(upstream).unwrap(),
            PassThrough,
            PassThrough,
        );
    let piped = tokio::spawn(async move { pipe(&front, &back).await });
    let (mut from_proxy, mut to_proxy) = client.into_split();
    let sending = tokio::spawn({
        let data = data.clone();
        async move {
            to_proxy.write_all(&data).await.unwrap();
            to_proxy.shutdown().await.unwrap();
        }
    });
    // Long enough for everything the proxy may take to move beneath the filter.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if piped.is_finished() {
        panic!(
            "finished while bytes wait beneath the filter: {:?}",
            piped.await
        );
    }
    go.send(()).unwrap();
    expect_within(sending).await.unwrap();
    let got = expect_within(server).await.unwrap();
    assert!(
        got == data,
        "the upstream got {} of {} bytes",
        got.len(),
        data.len()
    );
    let piped = expect_within(piped).await.unwrap();
    assert!(matches!(piped.end, PipeEnd::Finished), "{piped:?}");
    assert_eq!(piped.a_to_b, data.len() as u64);
    let mut rest = Vec::new();
    expect_within(from_proxy.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
}

/// One MiB more than the kernel lets a TCP socket buffer for sending at most
/// (`tcp_wmem`), so that some of it waits in the proxy however far the send buffer
/// grows.
fn beyond_the_kernel_send_buffer() -> usize {
    let max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    max + (1 << 20)
}

/// A side closed through another handle while the other side still sends (a listener
/// shutting a proxied connection down during a download): the pipe stops forwarding
/// into it, so its close completes, and ends as `Ended` with the other side closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_closing_while_the_other_sends_ends_the_pipe_and_its_close_completes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let chunk = vec![5u8; 1 << 20];
        while s.write_all(&chunk).await.is_ok() {}
    });
    let (client, accepted) = tcp_pair().await;
    let front = BufferEvent::builder().tcp(accepted).unwrap();
    let back = BufferEvent::builder().connect(upstream).unwrap();
    let (f, b) = (front.clone(), back.clone());
    let piped = tokio::spawn(async move { pipe(&f, &b).await });
    let (mut from_proxy, _to_proxy) = client.into_split();
    let reading = tokio::spawn(async move {
        let mut sink = Vec::new();
        from_proxy.read_to_end(&mut sink).await.map(|_| sink.len())
    });
    // The download flows.
    expect_within(async {
        while front.stats().bytes_written < 4 << 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let closed = expect_within(front.close()).await;
    assert!(
        closed.error.is_none(),
        "completed, not timed out: {closed:?}"
    );
    let piped = expect_within(piped).await.unwrap();
    assert!(
        matches!(piped.end, PipeEnd::Ended(PipeSide::A)),
        "{piped:?}"
    );
    expect_within(back.closed()).await;
    let received = expect_within(reading)
        .await
        .unwrap()
        .expect("the client saw a clean end");
    // On two threads a forward can race the close and arrive after it completed:
    // such bytes are counted unsent, never lost without a word.
    assert_eq!(
        received as u64 + closed.unsent as u64,
        piped.b_to_a,
        "{closed:?} {piped:?}"
    );
}
