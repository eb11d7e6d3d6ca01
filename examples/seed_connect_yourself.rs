//! Ports the note that follows the connect example in libevent's "Bufferevents:
//! concepts and basics" chapter: "you only get a BEV_EVENT_CONNECTED event if you
//! launch the connect() attempt using bufferevent_socket_connect(). If you call
//! connect() on your own, the connection gets reported as a write."
//!
//! ```text
//! cargo run --example seed_connect_yourself
//! ```
//!
//! It needs no arguments and no setup: it starts a server on `127.0.0.1:0`, creates a
//! socket-less bufferevent (`bufferevent_socket_new(base, -1, ...)`) with a write and
//! an event callback, connects a `TcpStream` itself and hands it over with `set_tcp`
//! (`bufferevent_setfd`). libevent 2.1 then runs the write callback exactly once, with
//! an empty output, and the event callback not at all (`bufferevent_setfd` re-enables
//! the enabled directions, and enabling WRITE on a writable socket yields one write
//! callback: B-14). It exits non-zero unless that is what happens.

use std::error::Error;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{BufferEvent, Events};

type BoxError = Box<dyn Error + Send + Sync>;

/// What the callbacks saw: the output length at each write callback, and the events.
#[derive(Debug, Default)]
struct Seen {
    writes: Vec<usize>,
    events: Vec<Events>,
}

/// Runs the example.
async fn run() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { listener.accept().await.map(|(stream, _)| stream) });

    // Shared with the callbacks so `run` can look after the bufferevent is freed.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (w, e) = (Arc::clone(&seen), Arc::clone(&seen));
    let bev = BufferEvent::builder()
        .on_write(move |ctx| {
            let len = ctx.output().len();
            println!("write callback: the connection is reported as a write (output {len})");
            w.lock().unwrap().writes.push(len);
        })
        .on_event(move |_, events, _: Option<&io::Error>| {
            println!("event callback: {events:?}");
            e.lock().unwrap().events.push(events);
        })
        .unconnected::<TcpStream>();

    // connect() on our own, then `bufferevent_setfd`.
    let stream = TcpStream::connect(addr).await?;
    bev.set_tcp(stream);
    let _peer = server.await??;

    // libevent reports the write on the next loop iteration; allow a generous while,
    // then make sure it was reported once, not again.
    tokio::time::timeout(Duration::from_secs(5), async {
        while seen.lock().unwrap().writes.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .map_err(|_| "set_tcp on an unconnected bufferevent: no write callback within 5 s")?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    bev.free();

    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.writes,
        [0],
        "exactly one write callback, with an empty output"
    );
    assert!(
        seen.events.is_empty(),
        "no CONNECTED without `connect`: {seen:?}"
    );
    println!("seed_connect_yourself: OK");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
