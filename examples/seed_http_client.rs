//! Ports "Example: Trivial HTTP v0 client" of libevent's "Bufferevents: concepts and
//! basics" chapter (section "Launching connections by hostname"): a bufferevent that
//! queues `GET <resource>\r\n` before it is even connected, connects by host name,
//! prints whatever comes back from its read callback, and stops on EOF or error,
//! printing "Connect okay." on CONNECTED and the DNS error if the lookup failed.
//!
//! ```text
//! cargo run --example seed_http_client
//! ```
//!
//! It needs no arguments and no setup: instead of the chapter's `[hostname]
//! [resource]` arguments it starts its own HTTP/0.9 server on `127.0.0.1:0` and fetches
//! `/` from it. It exits non-zero unless the whole response arrives, after
//! "Connect okay.", followed by EOF.
//!
//! `bufferevent_socket_connect_hostname` is `BufferEvent::connect_hostname` (feature
//! `dns`, on by default), and `bufferevent_socket_get_dns_error` is
//! `BufferEvent::dns_error`. The host is the literal `127.0.0.1`, which needs no
//! lookup, so that the example never depends on the machine's resolver;
//! `examples/http0_client.rs` resolves real names.

use std::error::Error;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_bufferevent::bufferevent::{BufferEvent, Context, Direction, Events, Family};

type BoxError = Box<dyn Error + Send + Sync>;

/// The callback argument. The C passes the `event_base` to leave its loop; here the
/// event callback sends what it saw to `run` instead, which then stops.
struct Client {
    /// Not in the C, which only writes to stdout: the response, to check it.
    received: Vec<u8>,
    connected: bool,
    done: Option<oneshot::Sender<Outcome>>,
}

/// How the client ended.
#[derive(Debug)]
struct Outcome {
    events: Events,
    connected_first: bool,
    received: Vec<u8>,
}

/// The chapter's `readcb`: copy everything out, 1024 bytes at a time, to stdout.
fn readcb(ctx: &mut Context<'_, Client>) {
    let mut buf = [0u8; 1024];
    loop {
        let n = ctx.input().remove(&mut buf);
        if n == 0 {
            break;
        }
        print!("{}", String::from_utf8_lossy(&buf[..n]));
        ctx.state().received.extend_from_slice(&buf[..n]);
    }
}

/// The chapter's `eventcb`.
fn eventcb(ctx: &mut Context<'_, Client>, events: Events, error: Option<&io::Error>) {
    let client = ctx.state();
    if events.contains(Events::CONNECTED) {
        println!("Connect okay.");
        client.connected = true;
    } else if events.intersects(Events::ERROR | Events::EOF) {
        // The C prints `bufferevent_socket_get_dns_error` here; a callback has no
        // handle, so `fetch` prints `BufferEvent::dns_error()` once the client ends.
        if let (true, Some(err)) = (events.contains(Events::ERROR), error) {
            println!("Error: {err}");
        }
        // `event_base_loopexit(base, NULL)`.
        if let Some(done) = client.done.take() {
            let _ = done.send(Outcome {
                events,
                connected_first: client.connected,
                received: std::mem::take(&mut client.received),
            });
        }
    }
}

/// A minimal HTTP/0.9 server: reads `GET <path>\r\n`, answers with a page, closes.
async fn serve_one(listener: TcpListener, page: String) -> io::Result<String> {
    let (stream, _) = listener.accept().await?;
    let mut stream = BufReader::new(stream);
    let mut request = String::new();
    stream.read_line(&mut request).await?;
    stream.get_mut().write_all(page.as_bytes()).await?;
    Ok(request) // dropping the stream closes it: HTTP/0.9 ends the response with EOF
}

/// The chapter's `main`, for `host`, `port` and `resource`.
async fn fetch(host: &str, port: u16, resource: &str) -> Result<Outcome, BoxError> {
    let (done, outcome) = oneshot::channel();
    let client = Client {
        received: Vec::new(),
        connected: false,
        done: Some(done),
    };
    // `bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)`, `bufferevent_setcb`,
    // `bufferevent_enable(bev, EV_READ|EV_WRITE)`.
    let bev = BufferEvent::builder_with_state(client)
        .on_read(readcb)
        .on_event(eventcb)
        .enable(Direction::READ | Direction::WRITE)
        .unconnected::<TcpStream>();
    // The request is queued before the connection exists; it is sent once there is one.
    bev.write_now(format!("GET {resource}\r\n"))?;
    // `bufferevent_socket_connect_hostname(bev, dns_base, AF_UNSPEC, host, port)`.
    bev.connect_hostname(None, Family::Unspec, host, port)?;
    let outcome = outcome.await?;
    if let Some(dns_error) = bev.dns_error() {
        println!("DNS error: {dns_error}");
    }
    bev.free();
    Ok(outcome)
}

/// Runs the example.
async fn run() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    // Long enough for the read callback's 1024-byte loop to go round several times.
    let mut page = String::from("<html><body>\n");
    for i in 1..=60 {
        page.push_str(&format!(
            "<p>Line {i} of a page served over HTTP/0.9.</p>\n"
        ));
    }
    page.push_str("</body></html>\n");
    let server = tokio::spawn(serve_one(listener, page.clone()));

    let outcome = fetch("127.0.0.1", port, "/").await?;
    let request = server.await??;

    println!(
        "server got {request:?}; client ended with {:?}",
        outcome.events
    );
    assert_eq!(request, "GET /\r\n");
    assert!(outcome.connected_first, "CONNECTED came before the end");
    assert!(outcome.events.contains(Events::READING | Events::EOF));
    assert_eq!(String::from_utf8(outcome.received)?, page);
    println!("seed_http_client: OK");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
