//! The TLS filters (feature `tls`): handshakes over sockets and pairs with
//! certificates made by rcgen at test time, handshake failures, and closing.
#![cfg(feature = "tls")]

mod common;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, EventRecord, Events, Filtered};
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
        timeout(Duration::from_secs(30), bev.readable(1))
            .await
            .expect("data");
        let chunk = bev.read(usize::MAX).await.unwrap();
        assert!(!chunk.is_empty() || !bev.is_closed(), "ended early");
        got.extend_from_slice(&chunk);
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
    let (a, b) = BufferEvent::pair();
    let (input, output) = tls::client(
        client_config(Some(cert)),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let client = BufferEvent::builder()
        .enable(Direction::READ)
        .filter(a, input, output);
    let (input, output) = tls::server(server_cfg).unwrap();
    let server = BufferEvent::builder()
        .enable(Direction::READ)
        .filter(b, input, output);
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
