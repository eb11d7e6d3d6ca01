//! TLS as a pair of filters over any bufferevent (a socket, a pair element, another
//! filter), on rustls with the ring provider: what libevent's OpenSSL bufferevents
//! do, as an ordinary filter.
//!
//! [`client`] and [`server`] return the input filter (ciphertext from the underlying
//! bufferevent in, plaintext out) and the output filter (plaintext in, ciphertext
//! out); both halves share one rustls connection. The handshake runs as soon as the
//! filtering bufferevent is in place; data written before it completes waits in
//! rustls and goes out once it has. The filtering bufferevent's READ must be enabled
//! for the handshake to progress, since it reads the peer's messages.
//!
//! A failed handshake (an untrusted certificate, a wrong name) or a corrupt record
//! ends reading with `READING | ERROR`; the error is an [`io::Error`] of kind
//! [`io::ErrorKind::InvalidData`] wrapping the [`rustls::Error`]. rustls' alert to
//! the peer is still sent. Flushing the output with `Finished` (or
//! [`close`](crate::bufferevent::BufferEvent::close)) sends `close_notify`; a peer
//! that ends the connection without it gives `READING | EOF | ERROR` with an
//! [`io::ErrorKind::UnexpectedEof`] error, as a truncated stream could be an attack.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use tokio_bufferevent::bufferevent::{BufferEvent, Direction};
//! use tokio_bufferevent::filters::tls;
//! use tokio_bufferevent::filters::tls::rustls::{self, pki_types::ServerName};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (client_config, server_config) = doc_configs();
//! let (a, b) = BufferEvent::pair();
//! let (input, output) = tls::client(client_config, ServerName::try_from("localhost")?)?;
//! let client = BufferEvent::builder().enable(Direction::READ).filter(a, input, output);
//! let (input, output) = tls::server(server_config)?;
//! let server = BufferEvent::builder().enable(Direction::READ).filter(b, input, output);
//!
//! client.write(&b"hello over TLS"[..]).await?;
//! server.readable(14).await;
//! assert_eq!(server.read(100).await?, &b"hello over TLS"[..]);
//! # Ok(()) }
//! # fn doc_configs() -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
//! #     let provider = Arc::new(rustls::crypto::ring::default_provider());
//! #     let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
//! #     let cert = key.cert.der().clone();
//! #     let private = rustls::pki_types::PrivatePkcs8KeyDer::from(key.signing_key.serialize_der());
//! #     let mut roots = rustls::RootCertStore::empty();
//! #     roots.add(cert.clone()).unwrap();
//! #     let client = rustls::ClientConfig::builder_with_provider(provider.clone())
//! #         .with_safe_default_protocol_versions().unwrap()
//! #         .with_root_certificates(roots).with_no_client_auth();
//! #     let server = rustls::ServerConfig::builder_with_provider(provider)
//! #         .with_safe_default_protocol_versions().unwrap()
//! #         .with_no_client_auth().with_single_cert(vec![cert], private.into()).unwrap();
//! #     (Arc::new(client), Arc::new(server))
//! # }
//! ```

use std::fmt;
use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

pub use rustls;

use crate::bufferevent::{Filter, FilterResult, FlushMode, Input, Output};

/// Plaintext taken from rustls per read.
const READ_CHUNK: usize = 16 * 1024;

/// The rustls connection both halves share (they run on one task, so the lock is
/// never contended).
struct Session {
    conn: Connection,
    /// `close_notify` was queued.
    closed: bool,
    /// Decrypted bytes left in rustls when the last call hit its limit.
    plaintext_left: bool,
    /// The peer's close_notify arrived: the end of the stream is clean.
    peer_closed: bool,
    /// `Finished` came during the handshake: close_notify goes once it is done.
    close_wanted: bool,
    /// The connection failed (a bad handshake, a corrupt record): nothing more is
    /// sent but rustls' alert.
    failed: bool,
    /// The failure, kept until the plaintext decrypted before it has gone out.
    error: Option<rustls::Error>,
    /// Plaintext rustls took during the handshake, held until it is done.
    early: usize,
    /// The last call left records unread because rustls had records to send first
    /// (it stops reading until they go): once they went, reading can go on though
    /// nothing new arrived.
    read_blocked: bool,
}

type Shared = Arc<Mutex<Session>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Session> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TLS client: the input and output filters of one connection to `server_name`.
///
/// # Errors
///
/// The [`rustls::Error`] of `ClientConnection::new`, which starts the handshake:
/// [`rustls::Error::BadMaxFragmentSize`] for a `max_fragment_size` out of range,
/// [`rustls::Error::FailedToGetRandomBytes`] if the crypto provider's random source
/// fails, or the provider's error when the key share or ECH cannot be set up.
pub fn client(
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> Result<(TlsInput, TlsOutput), rustls::Error> {
    let conn = ClientConnection::new(config, server_name)?;
    Ok(halves(conn.into()))
}

/// A TLS server: the input and output filters of one accepted connection.
///
/// # Errors
///
/// The [`rustls::Error`] of `ServerConnection::new`:
/// [`rustls::Error::BadMaxFragmentSize`] if `config`'s `max_fragment_size` is out of
/// range.
pub fn server(config: Arc<ServerConfig>) -> Result<(TlsInput, TlsOutput), rustls::Error> {
    let conn = ServerConnection::new(config)?;
    Ok(halves(conn.into()))
}

fn halves(conn: Connection) -> (TlsInput, TlsOutput) {
    let shared = Arc::new(Mutex::new(Session {
        conn,
        closed: false,
        plaintext_left: false,
        peer_closed: false,
        close_wanted: false,
        failed: false,
        error: None,
        early: 0,
        read_blocked: false,
    }));
    (
        TlsInput {
            session: Arc::clone(&shared),
        },
        TlsOutput { session: shared },
    )
}

/// The input half of a TLS connection: decrypts records from the underlying
/// bufferevent's input into the filter's input.
///
/// # Errors
///
/// As a [`Filter`], it fails (ending reading with `READING | ERROR`) with an
/// [`io::Error`] of kind [`io::ErrorKind::InvalidData`] wrapping the
/// [`rustls::Error`] for a failed handshake or a corrupt record, also one found when
/// the transport ends; of kind [`io::ErrorKind::UnexpectedEof`] if the transport
/// ends without the peer's `close_notify`.
pub struct TlsInput {
    session: Shared,
}

/// The output half of a TLS connection: encrypts the filter's output into records in
/// the underlying bufferevent's output, and sends the handshake's messages.
///
/// # Errors
///
/// As a [`Filter`], it fails (ending writing with `WRITING | ERROR`) with an
/// [`io::Error`] of kind [`io::ErrorKind::BrokenPipe`] for data written once the
/// output was finished (`close_notify` queued by a `Finished` flush or a close, or
/// a `Finished` flush after the connection failed); with the read error if a file
/// segment written (see [`EvBuffer::add_file`](crate::buffer::EvBuffer::add_file))
/// cannot be read.
pub struct TlsOutput {
    session: Shared,
}

impl TlsInput {
    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        lock(&self.session).conn.is_handshaking()
    }
}

impl TlsInput {
    /// Decrypted bytes wait, or rustls, which stopped reading to send first, reads
    /// again.
    fn can_go_on(&self) -> bool {
        let session = lock(&self.session);
        session.plaintext_left || (session.read_blocked && session.conn.wants_read())
    }
}

impl fmt::Debug for TlsInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsInput")
            .field("handshaking", &self.is_handshaking())
            .finish()
    }
}

impl fmt::Debug for TlsOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let session = lock(&self.session);
        f.debug_struct("TlsOutput")
            .field("handshaking", &session.conn.is_handshaking())
            .field("closed", &session.closed)
            .finish()
    }
}

/// rustls reports a peer's close_notify as an error once it has been seen; it is the
/// clean end of the stream.
fn is_close_notify(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::AlertReceived(rustls::AlertDescription::CloseNotify)
    )
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Filter for TlsInput {
    fn filter(
        &mut self,
        src: &mut Input<'_>,
        dst: &mut Output<'_>,
        dst_limit: Option<usize>,
        mode: FlushMode,
    ) -> io::Result<FilterResult> {
        let mut session = lock(&self.session);
        let session = &mut *session;
        let conn = &mut session.conn;
        let (src_before, dst_before) = (src.len(), dst.len());
        while !src.is_empty() && session.error.is_none() && conn.wants_read() {
            match conn.read_tls(src) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = conn.process_new_packets() {
                if is_close_notify(&e) {
                    session.peer_closed = true;
                    break;
                }
                // The records before the bad one were decrypted: they go out first.
                session.failed = true;
                session.error = Some(e);
            }
        }
        session.read_blocked = !src.is_empty() && session.error.is_none() && !conn.wants_read();
        if mode == FlushMode::Finished && src.is_empty() && session.error.is_none() {
            // The transport ended: tell rustls, so a missing close_notify shows.
            let _ = conn.read_tls(&mut io::empty());
            if let Err(e) = conn.process_new_packets() {
                if is_close_notify(&e) {
                    session.peer_closed = true;
                } else {
                    session.failed = true;
                    session.error = Some(e);
                }
            }
        }
        let limit = dst_limit.unwrap_or(usize::MAX);
        session.plaintext_left = false;
        let mut clean_end = false;
        loop {
            let room = limit.saturating_sub(dst.len() - dst_before);
            if room == 0 {
                session.plaintext_left = true;
                break;
            }
            // Straight from rustls's plaintext into the input buffer: one copy.
            let mut reader = conn.reader();
            match reader.fill_buf() {
                Ok([]) => {
                    // The peer's close_notify, and every byte before it is out.
                    clean_end = true;
                    break;
                }
                Ok(plaintext) => {
                    let n = plaintext.len().min(room);
                    dst.add(&plaintext[..n]);
                    reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && session.peer_closed => break,
                // The failure below says what went wrong.
                Err(_) if session.error.is_some() => break,
                Err(e) => return Err(e),
            }
        }
        if let Some(e) = session.error.clone()
            && !session.plaintext_left
        {
            return Err(tls_error(e));
        }
        if clean_end {
            Ok(FilterResult::EndOfStream)
        } else if src.len() != src_before || dst.len() != dst_before {
            Ok(FilterResult::Ok)
        } else {
            Ok(FilterResult::NeedMore)
        }
    }

    fn has_pending(&self) -> bool {
        self.can_go_on()
    }
}

impl Filter for TlsOutput {
    fn filter(
        &mut self,
        src: &mut Input<'_>,
        dst: &mut Output<'_>,
        _dst_limit: Option<usize>,
        mode: FlushMode,
    ) -> io::Result<FilterResult> {
        let mut session = lock(&self.session);
        let (src_before, dst_before) = (src.len(), dst.len());
        if session.closed && !src.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "data written after the TLS connection was closed",
            ));
        }
        // rustls holds plaintext until the handshake is done, up to its buffer
        // limit; what it does not take stays in the filter's output.
        while !src.is_empty() {
            let taken = {
                let extents = src.buffer().peek(None, Some(READ_CHUNK))?;
                let first = extents.first().copied().unwrap_or(&[]);
                session.conn.writer().write(first)?
            };
            if taken == 0 {
                break;
            }
            if session.conn.is_handshaking() {
                session.early += taken;
            }
            src.drain(taken);
        }
        if mode == FlushMode::Finished && src.is_empty() && !session.closed {
            if session.failed {
                session.closed = true; // nothing to close cleanly
                session.close_wanted = false;
            } else if session.conn.is_handshaking() {
                // Sent now, the alert would overtake the data rustls holds until the
                // handshake is done; the filter calls again until it goes.
                session.close_wanted = true;
            } else {
                session.conn.send_close_notify();
                session.closed = true;
                session.close_wanted = false;
            }
        }
        while session.conn.wants_write() {
            match session.conn.write_tls(dst) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        if !session.conn.is_handshaking() && !session.failed {
            session.early = 0; // encrypted and gone with the records above
        }
        if src.len() != src_before || dst.len() != dst_before {
            Ok(FilterResult::Ok)
        } else {
            Ok(FilterResult::NeedMore)
        }
    }

    fn has_pending(&self) -> bool {
        let session = lock(&self.session);
        session.conn.wants_write() || (session.close_wanted && !session.failed)
    }

    fn held(&self) -> usize {
        lock(&self.session).early
    }
}
