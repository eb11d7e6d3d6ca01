//! Helpers shared by the integration tests.

use std::future::Future;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_bufferevent::bufferevent::BufferEvent;

/// How long a test waits for something that should happen at once: generous, so a
/// loaded machine never fails a correct test, yet bounded, so a hang fails.
#[allow(dead_code)] // not every test binary uses it
pub const WAIT: Duration = Duration::from_secs(10);

/// `f`, failing with `Elapsed` after [`WAIT`].
#[allow(dead_code)] // not every test binary uses it
pub fn within<F: Future>(f: F) -> tokio::time::Timeout<F> {
    tokio::time::timeout(WAIT, f)
}

/// `f`'s output; panics if it takes longer than [`WAIT`].
#[allow(dead_code)] // not every test binary uses it
pub async fn expect_within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("timed out")
}

/// Lets spawned tasks run: a short sleep (instant under paused time).
#[allow(dead_code)] // not every test binary uses it
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// Round trips to the bufferevent's task: everything it could do with what it has
/// (commands, buffered transport data, callbacks) is done when this returns. On the
/// current-thread runtime the task finishes its whole poll before the caller resumes.
#[allow(dead_code)] // not every test binary uses it
pub async fn settle_task<T: Send + 'static, S: Send + 'static>(bev: &BufferEvent<T, S>) {
    for _ in 0..3 {
        // An ended bufferevent has nothing left to do: its error is the answer.
        if expect_within(bev.with(|_| ())).await.is_err() {
            return;
        }
    }
}

/// A builder for a bufferevent that reads and sends back everything it reads, moving
/// the chunks (no copy).
#[allow(dead_code)] // not every test binary uses it
pub fn echoing() -> tokio_bufferevent::bufferevent::Builder {
    BufferEvent::builder()
        .enable(tokio_bufferevent::bufferevent::Direction::READ)
        .on_read(|ctx| {
            let (mut input, mut output) = ctx.io();
            input.remove_to(&mut output, usize::MAX);
        })
}

/// A connected pair of loopback TCP streams.
#[allow(dead_code)] // not every test binary uses it
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// A loopback address that refuses connects for as long as the returned socket lives:
/// bound and not listening, so neither another test nor a connect to itself (a source
/// port equal to the destination's) can take the port, as a dropped listener's can.
#[allow(dead_code)] // not every test binary uses it
pub fn refusing() -> (TcpSocket, std::net::SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// `n` bytes where the byte at offset `i` is `i % 251`, so misplaced bytes show.
#[allow(dead_code)] // not every test binary uses it
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A listener whose accept queue is full: further connects hang, as to a host that
/// drops SYNs. Returns the listener (keep it alive), the queued connections and the
/// address.
#[allow(dead_code)] // not every test binary uses it
pub async fn blackhole() -> (TcpListener, Vec<TcpStream>, std::net::SocketAddr) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("connect failed outright: {e}"),
            Err(_) => return (listener, queued, addr), // this one hangs: the hole is there
        }
    }
    panic!("the accept queue never filled up");
}
