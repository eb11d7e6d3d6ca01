//! Helpers shared by the integration tests.

use tokio::net::{TcpListener, TcpStream};

/// A connected pair of loopback TCP streams.
#[allow(dead_code)] // not every test binary uses it
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// `n` bytes where the byte at offset `i` is `i % 251`, so misplaced bytes show.
#[allow(dead_code)] // not every test binary uses it
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
