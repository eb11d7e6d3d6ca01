//! The TLS filters (feature `tls`): handshakes over sockets and pairs with
//! certificates made by rcgen at test time, handshake failures, and closing.
#![cfg(feature = "tls")]

mod common;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, EventRecord, Events, Filtered, Pair};
use tokio_bufferevent::filters::tls;
use tokio_bufferevent::filters::tls::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName},
};

use common::{pattern, tcp_pair, within};

type Tls = BufferEvent<Filtered<TcpStream>>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `names`, and the server configuration using it.
fn server_config(names: &[&str]) -> (CertificateDer<'static>, Arc<ServerConfig>) {
    let key =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = key.cert.der().clone();
    let private = PrivatePkcs8KeyDer::from(key.signing_key.serialize_der());
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], private.into())
        .unwrap();
    (cert, Arc::new(config))
}

fn client_config(trusted: Option<CertificateDer<'static>>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    if let Some(cert) = trusted {
        roots.add(cert).unwrap();
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS client and server over a loopback socket.
async fn connect(client: Arc<ClientConfig>, name: &str, server: Arc<ServerConfig>) -> (Tls, Tls) {
    let (s1, s2) = tcp_pair().await;
    let (input, output) =
        tls::client(client, ServerName::try_from(name.to_owned()).unwrap()).unwrap();
    let client = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        input,
        output,
    );
    let (input, output) = tls::server(server).unwrap();
    let server = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s2).unwrap(),
        input,
        output,
    );
    (client, server)
}

/// A TLS client and server over a pair (the filter works over any bufferevent).
fn over_pair(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
) -> (BufferEvent<Filtered<Pair>>, BufferEvent<Filtered<Pair>>) {
    let (a, b) = BufferEvent::pair();
    let (input, output) = tls::client(client, ServerName::try_from("localhost").unwrap()).unwrap();
    let client = BufferEvent::builder()
        .enable(Direction::READ)
        .filter(a, input, output);
    let (input, output) = tls::server(server).unwrap();
    let server = BufferEvent::builder()
        .enable(Direction::READ)
        .filter(b, input, output);
    (client, server)
}

async fn first_event(bev: &Tls) -> EventRecord {
    for _ in 0..100 {
        if let Some(event) = bev.last_event() {
            return event;
        }
        let _ = timeout(Duration::from_millis(100), bev.next_event()).await;
    }
    panic!("no event within 10 s");
}

async fn receive(bev: &Tls, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let readiness = timeout(Duration::from_secs(30), bev.readable(1))
            .await
            .expect("data");
        assert_eq!(
            readiness,
            tokio_bufferevent::bufferevent::Readiness::Ready,
            "ended after {} of {n} bytes",
            got.len()
        );
        got.extend_from_slice(&bev.read(usize::MAX).await.unwrap());
    }
    got
}

/// A handshake over a socket, then 1 MiB each way, byte-identical.
#[tokio::test]
async fn handshake_and_data_both_ways() {
    let (cert, server) = server_config(&["localhost"]);
    let (client, server) = connect(client_config(Some(cert)), "localhost", server).await;
    let data = pattern(1 << 20);
    client.write(data.clone()).await.unwrap();
    assert_eq!(receive(&server, data.len()).await, data);
    server.write(data.clone()).await.unwrap();
    assert_eq!(receive(&client, data.len()).await, data);
    assert!(client.last_event().is_none(), "no error");
    assert!(server.last_event().is_none(), "no error");
}

/// TLS over a pair: the filter works over any bufferevent.
#[tokio::test]
async fn over_a_pair() {
    let (cert, server_cfg) = server_config(&["localhost"]);
    let (client, server) = over_pair(client_config(Some(cert)), server_cfg);
    client.write(&b"ping"[..]).await.unwrap();
    within(server.readable(4)).await.unwrap();
    assert_eq!(server.read(10).await.unwrap(), &b"ping"[..]);
    server.write(&b"pong"[..]).await.unwrap();
    within(client.readable(4)).await.unwrap();
    assert_eq!(client.read(10).await.unwrap(), &b"pong"[..]);
}

fn rustls_error(event: &EventRecord) -> &rustls::Error {
    let error = event.error.as_ref().expect("an error");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .unwrap_or_else(|| panic!("not a rustls error: {error:?}"))
}

/// A certificate for another name: the client's handshake fails with `ERROR` and
/// rustls' error, and the server hears of it too.
#[tokio::test]
async fn wrong_name_fails_the_handshake() {
    let (cert, server) = server_config(&["localhost"]);
    let (client, server) = connect(client_config(Some(cert)), "other.example", server).await;
    client.write(&b"secret"[..]).await.unwrap();
    let event = first_event(&client).await;
    assert!(event.events.contains(Events::ERROR), "{:?}", event.events);
    assert!(
        matches!(rustls_error(&event), rustls::Error::InvalidCertificate(_)),
        "{:?}",
        rustls_error(&event)
    );
    let event = first_event(&server).await;
    assert!(event.events.contains(Events::ERROR), "{:?}", event.events);
    assert_eq!(server.input_len(), 0, "nothing was decrypted");
}

/// An untrusted (self-signed, unknown) certificate fails the same way.
#[tokio::test]
async fn untrusted_certificate_fails_the_handshake() {
    let (_, server) = server_config(&["localhost"]);
    let (client, _server) = connect(client_config(None), "localhost", server).await;
    let event = first_event(&client).await;
    assert!(event.events.contains(Events::READING | Events::ERROR));
    assert_eq!(
        *rustls_error(&event),
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    );
}

/// `close()` sends close_notify before the socket closes: the peer hears a clean
/// `READING | EOF` after all the data.
#[tokio::test]
async fn close_sends_close_notify() {
    let (cert, server) = server_config(&["localhost"]);
    let (client, server) = connect(client_config(Some(cert)), "localhost", server).await;
    client.write(&b"last words"[..]).await.unwrap();
    within(client.close()).await.unwrap();
    let event = first_event(&server).await;
    assert_eq!(
        event.events,
        Events::READING | Events::EOF,
        "{:?}",
        event.error
    );
    assert_eq!(server.read(100).await.unwrap(), &b"last words"[..]);
}

/// A peer that closes the socket without close_notify: `READING | EOF | ERROR` with
/// an `UnexpectedEof` error, since the stream may have been cut.
#[tokio::test]
async fn truncation_is_reported() {
    let (cert, server) = server_config(&["localhost"]);
    let (client, server) = connect(client_config(Some(cert)), "localhost", server).await;
    client.write(&b"partial"[..]).await.unwrap();
    within(server.readable(7)).await.unwrap();
    let socket = client.underlying().unwrap();
    socket.close().await; // the socket alone: no close_notify
    let event = first_event(&server).await;
    assert!(
        event
            .events
            .contains(Events::READING | Events::EOF | Events::ERROR),
        "{:?}",
        event.events
    );
    assert_eq!(event.error.unwrap().kind(), io::ErrorKind::UnexpectedEof);
}

/// Closing after a failed handshake ends promptly: there is no close_notify to wait
/// for.
#[tokio::test]
async fn close_after_a_failed_handshake_returns() {
    let (_, server) = server_config(&["localhost"]);
    let (client, _server) = connect(client_config(None), "localhost", server).await;
    let event = first_event(&client).await;
    assert!(event.events.contains(Events::ERROR));
    within(client.close()).await.expect("close returns");
}

// ---- endings against a peer built on rustls directly ----------------------------------

use std::io::{Read, Write};
use std::sync::mpsc;

use tokio_bufferevent::filters::tls::rustls::{ServerConnection, StreamOwned};

type PeerStream = StreamOwned<ServerConnection, std::net::TcpStream>;

/// A TLS server on rustls and blocking std sockets, on a thread of its own (not this
/// crate): accepts one connection, completes the handshake, then runs `script`.
fn rustls_peer(
    config: Arc<ServerConfig>,
    script: impl FnOnce(PeerStream) + Send + 'static,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(config).unwrap(), sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        script(tls);
    });
    (addr, thread)
}

/// Our TLS client (this crate) connected to `addr`.
async fn our_client(cert: CertificateDer<'static>, addr: std::net::SocketAddr) -> Tls {
    let (input, output) = tls::client(
        client_config(Some(cert)),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let socket = BufferEvent::builder()
        .tcp(TcpStream::connect(addr).await.unwrap())
        .unwrap();
    BufferEvent::builder()
        .enable(Direction::READ)
        .filter(socket, input, output)
}

/// Reads until the peer's close_notify (`Ok(0)`), returning what came before it.
fn read_to_close_notify(tls: &mut PeerStream) -> io::Result<Vec<u8>> {
    let mut got = Vec::new();
    tls.read_to_end(&mut got)?;
    Ok(got)
}

/// The peer sends close_notify and keeps the TCP connection open: that is the end of
/// the stream, reported at once as `READING | EOF` (not after the TCP FIN, which never
/// comes). Our `close()` then answers with our own close_notify, which the peer reads
/// as a clean end: a clean shutdown both ways.
#[tokio::test]
async fn close_notify_with_the_connection_kept_open_is_eof() {
    let (cert, config) = server_config(&["localhost"]);
    let (answered_tx, answered) = mpsc::channel();
    let (addr, peer) = rustls_peer(config, move |mut tls| {
        tls.write_all(b"goodbye").unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        // The socket stays open: the answer decides.
        answered_tx
            .send(read_to_close_notify(&mut tls).map_err(|e| e.kind()))
            .unwrap();
    });
    let client = our_client(cert, addr).await;
    let event = first_event(&client).await;
    assert_eq!(
        event.events,
        Events::READING | Events::EOF,
        "{:?}",
        event.error
    );
    assert_eq!(client.read(100).await.unwrap(), &b"goodbye"[..]);
    let closed = within(client.close()).await.unwrap();
    assert!(closed.error.is_none(), "{:?}", closed.error);
    let answer = tokio::task::spawn_blocking(move || answered.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(answer, Ok(Vec::new()), "the peer read our close_notify");
    peer.join().unwrap();
}

/// close_notify followed by the TCP FIN: a clean `READING | EOF`, no error.
#[tokio::test]
async fn close_notify_then_fin_is_a_clean_eof() {
    let (cert, config) = server_config(&["localhost"]);
    let (addr, peer) = rustls_peer(config, |mut tls| {
        tls.write_all(b"all of it").unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
        tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = tls.sock.read_to_end(&mut rest);
    });
    let client = our_client(cert, addr).await;
    let event = first_event(&client).await;
    assert_eq!(
        event.events,
        Events::READING | Events::EOF,
        "{:?}",
        event.error
    );
    assert_eq!(client.read(100).await.unwrap(), &b"all of it"[..]);
    within(client.close()).await.unwrap();
    peer.join().unwrap();
}

/// A TCP FIN without close_notify stays an error: a truncated stream must never look
/// like a clean end.
#[tokio::test]
async fn fin_without_close_notify_is_unexpected_eof() {
    let (cert, config) = server_config(&["localhost"]);
    let (addr, peer) = rustls_peer(config, |mut tls| {
        tls.write_all(b"cut off").unwrap();
        tls.flush().unwrap();
        tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = tls.sock.read_to_end(&mut rest);
    });
    let client = our_client(cert, addr).await;
    let event = first_event(&client).await;
    assert!(
        event
            .events
            .contains(Events::READING | Events::EOF | Events::ERROR),
        "{:?}",
        event.events
    );
    assert_eq!(event.error.unwrap().kind(), io::ErrorKind::UnexpectedEof);
    // Readers on the handle see the truncation too, not a clean end.
    match client.readable(100).await {
        tokio_bufferevent::bufferevent::Readiness::Failed(e) => {
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.read_to_end(1 << 20).await,
        Err(tokio_bufferevent::bufferevent::Error::ReadFailed(_))
    ));
    within(client.close()).await.unwrap();
    peer.join().unwrap();
}

/// Our `close()` first: the peer reads everything, then our close_notify, and answers
/// with its own; our close finishes cleanly.
#[tokio::test]
async fn our_close_is_answered_by_the_peer() {
    let (cert, config) = server_config(&["localhost"]);
    let (got_tx, got) = mpsc::channel();
    let (addr, peer) = rustls_peer(config, move |mut tls| {
        let data = read_to_close_notify(&mut tls).map_err(|e| e.kind());
        tls.conn.send_close_notify();
        let _ = tls.flush();
        got_tx.send(data).unwrap();
    });
    let client = our_client(cert, addr).await;
    let data = pattern(100_000);
    client.write(data.clone()).await.unwrap();
    let closed = within(client.close()).await.unwrap();
    assert!(closed.error.is_none(), "{:?}", closed.error);
    assert_eq!(closed.unsent, 0);
    let got = tokio::task::spawn_blocking(move || got.recv().unwrap())
        .await
        .unwrap();
    assert_eq!(got, Ok(data));
    peer.join().unwrap();
}

/// A peer that never reads (nor answers): our close with 8 MiB queued ends at its
/// deadline, saying how much was left and why.
#[tokio::test]
async fn our_close_never_answered_ends_at_the_deadline() {
    let (cert, config) = server_config(&["localhost"]);
    let (release_tx, release) = mpsc::channel::<()>();
    let (addr, peer) = rustls_peer(config, move |tls| {
        // Handshake done; now silence until the test is over.
        let _ = release.recv();
        drop(tls);
    });
    let client = our_client(cert, addr).await;
    client.write_now(pattern(8 << 20)).unwrap();
    let started = tokio::time::Instant::now();
    let closed = within(client.close_within(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(closed.unsent > 0, "the peer took everything?");
    assert_eq!(
        closed.error.as_ref().map(|e| e.kind()),
        Some(io::ErrorKind::TimedOut)
    );
    release_tx.send(()).unwrap();
    peer.join().unwrap();
}

/// A server's first flight larger than rustls reads at once (4 KiB; a real
/// certificate chain often is): the client reads the rest after sending what rustls
/// queued in between, over a pair (the whole flight arrives at once) and a socket.
#[tokio::test]
async fn a_first_flight_larger_than_one_read_completes_the_handshake() {
    let mut names = vec!["localhost".to_owned()];
    names.extend((0..150).map(|i| format!("name-{i:04}.a-rather-long-subdomain.example.com")));
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (cert, server_cfg) = server_config(&names);
    assert!(
        cert.len() > 6 << 10,
        "the certificate alone is {} bytes",
        cert.len()
    );

    let (client, server) = over_pair(client_config(Some(cert.clone())), Arc::clone(&server_cfg));
    client.write(&b"ping"[..]).await.unwrap();
    within(server.readable(4)).await.unwrap();
    assert_eq!(server.read(10).await.unwrap(), &b"ping"[..]);
    server.write(&b"pong"[..]).await.unwrap();
    within(client.readable(4)).await.unwrap();
    assert_eq!(client.read(10).await.unwrap(), &b"pong"[..]);

    let (client, server) = connect(client_config(Some(cert)), "localhost", server_cfg).await;
    client.write(&b"ping"[..]).await.unwrap();
    assert_eq!(receive(&server, 4).await, b"ping");
    server.write(&b"pong"[..]).await.unwrap();
    assert_eq!(receive(&client, 4).await, b"pong");
}

/// A good record and a corrupt one arriving together: the good record's plaintext
/// reaches the input before the failure (`READING | ERROR`), not lost with it.
#[tokio::test]
async fn plaintext_before_a_corrupt_record_is_delivered_before_the_error() {
    let (cert, config) = server_config(&["localhost"]);
    let (done_tx, done) = mpsc::channel::<()>();
    let (addr, peer) = rustls_peer(config, move |mut tls| {
        let mut record = |data: &[u8]| {
            tls.conn.writer().write_all(data).unwrap();
            let mut out = Vec::new();
            while tls.conn.wants_write() {
                tls.conn.write_tls(&mut out).unwrap();
            }
            out
        };
        let good = record(b"hello");
        let mut bad = record(b"world");
        *bad.last_mut().unwrap() ^= 0x55; // the authentication tag no longer matches
        tls.sock.write_all(&[good, bad].concat()).unwrap();
        // Held open until the client saw it all: no EOF to blur the end.
        let _ = done.recv_timeout(Duration::from_secs(30));
    });
    let client = our_client(cert, addr).await;
    let event = first_event(&client).await;
    assert_eq!(event.events, Events::READING | Events::ERROR);
    assert_eq!(client.read(100).await.unwrap(), &b"hello"[..]);
    done_tx.send(()).unwrap();
    peer.join().unwrap();
}

/// A close during a handshake that then fails (the client trusts nothing) is not a
/// clean close: `closed()` carries the handshake's error, and the plaintext rustls
/// held for after the handshake counts as unsent.
#[tokio::test]
async fn a_close_whose_handshake_fails_reports_the_failure_and_the_unsent_data() {
    let (_cert, server_cfg) = server_config(&["localhost"]);
    let (client, _server) = over_pair(client_config(None), server_cfg);
    client.write(&b"secret"[..]).await.unwrap();
    let closed = within(client.close()).await.unwrap();
    let error = closed.error.clone().expect("the handshake's failure");
    assert!(error.to_string().contains("certificate"), "{error}");
    assert_eq!(closed.unsent, 6, "{closed:?}");
}

/// Plaintext rustls decrypted beyond the read high watermark when the connection is
/// reset is delivered, not lost with the reset: the error comes after all of it.
#[tokio::test]
async fn plaintext_held_back_by_the_watermark_survives_a_reset() {
    let (cert, server_cfg) = server_config(&["localhost"]);
    let (s1, s2) = tcp_pair().await;
    s1.set_zero_linger().unwrap(); // dropping it resets the connection
    let (input, output) = tls::client(
        client_config(Some(cert)),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let client = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        input,
        output,
    );
    let (input, output) = tls::server(server_cfg).unwrap();
    let server = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(tokio_bufferevent::bufferevent::Watermarks::new(0, 1024))
        .filter(BufferEvent::builder().tcp(s2).unwrap(), input, output);
    // The handshake first, so that what the socket beneath reads next is the record.
    client.write(&b"hi"[..]).await.unwrap();
    within(server.readable(2)).await.unwrap();
    assert_eq!(server.read(2).await.unwrap(), &b"hi"[..]);
    let beneath = server.underlying().unwrap();
    let before = beneath.stats().bytes_read;
    let data = pattern(8 << 10); // one record: 8 KiB, 22 bytes of framing
    client.write(data.clone()).await.unwrap();
    // The whole record is in (read from the socket, most of it held in rustls).
    within(async {
        while beneath.stats().bytes_read < before + data.len() as u64 + 22 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap();
    within(server.readable(1024)).await.unwrap();
    client.free();
    let mut got = Vec::new();
    loop {
        match within(server.readable(1)).await.unwrap() {
            tokio_bufferevent::bufferevent::Readiness::Ready => {
                got.extend_from_slice(&server.read(usize::MAX).await.unwrap());
            }
            end => {
                // A reset, not a clean end: a truncated stream must not read as whole.
                assert!(
                    matches!(end, tokio_bufferevent::bufferevent::Readiness::Failed(_)),
                    "{end:?}"
                );
                break;
            }
        }
    }
    assert_eq!(got.len(), data.len(), "everything decrypted arrived");
    assert_eq!(got, data);
}
