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

/// `--async` and `--async-copy`: the Tokio-style echoes over the adapter send back
/// every byte, in order, and finish after the client does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_modes_echo_everything_then_finish() {
    for copy in [false, true] {
        async_echo(copy).await;
    }
}

async fn async_echo(copy: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = echo_server::listen_async("127.0.0.1", 0, copy).unwrap();
    let addr = *listener.local_addr();
    let sent: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (mut reader, mut writer) = TcpStream::connect(addr).await.unwrap().into_split();
        let data = sent.clone();
        let writing = tokio::spawn(async move {
            writer.write_all(&data).await.unwrap();
            writer.shutdown().await.unwrap();
        });
        clients.push(tokio::spawn(async move {
            let mut back = Vec::new();
            reader.read_to_end(&mut back).await.unwrap();
            writing.await.unwrap();
            back
        }));
    }
    for client in clients {
        let back = tokio::time::timeout(Duration::from_secs(60), client)
            .await
            .expect("the echo finished")
            .unwrap();
        assert!(
            back == sent,
            "echoed {} of {} bytes, or out of order",
            back.len(),
            sent.len()
        );
    }
    assert_eq!(listener.counts().accepted, 4);
}
