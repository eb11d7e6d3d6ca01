//! `examples/echo_server.rs` listens with a backlog of 1024, as the anchors' other
//! servers do: a burst of connects is not dropped at the default of 128.

#[allow(dead_code)] // the example's `main` and the rest are not called here
#[path = "../examples/echo_server.rs"]
mod echo_server;

use std::time::Duration;

use tokio::net::TcpStream;

/// 300 connects at once, faster than one task accepts them: with a backlog of 128 the
/// kernel would drop the SYNs beyond it, and those connects would wait a second for a
/// retransmission.
#[tokio::test]
async fn a_burst_of_connects_fits_the_backlog() {
    let listener = echo_server::listen("127.0.0.1", 0).unwrap();
    let addr = *listener.local_addr();
    let connects = (0..300)
        .map(|_| tokio::time::timeout(Duration::from_millis(800), TcpStream::connect(addr)));
    let results = futures::future::join_all(connects).await;
    let stalled = results.iter().filter(|r| !matches!(r, Ok(Ok(_)))).count();
    assert_eq!(
        stalled, 0,
        "{stalled} of 300 connects did not complete at once"
    );
    drop(listener);
}
