//! Per-bufferevent statistics (`BufferEvent::stats`) and a listener's sums
//! (`Listener::stats`).

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Watermarks};
use tokio_bufferevent::listener::Listener;

use common::{expect_within, settle_task, tcp_pair};

#[tokio::test]
async fn a_socket_counts_bytes_callbacks_peaks_and_times() {
    let (mut peer, stream) = tcp_pair().await;
    let started = tokio::time::Instant::now();
    let bev = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(1000, 0))
        .on_read(|ctx| {
            let n = ctx.input().len();
            ctx.input().drain(n);
        })
        .on_write(|_| {})
        .on_event(|_, _, _| {})
        .tcp(stream)
        .unwrap();
    assert_eq!(bev.stats(), Default::default(), "nothing happened yet");
    peer.write_all(&[1; 600]).await.unwrap();
    peer.write_all(&[2; 600]).await.unwrap();
    expect_within(async {
        while bev.stats().bytes_read < 1200 || bev.input_len() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    bev.write(&b"answer"[..]).await.unwrap();
    let mut answer = [0u8; 6];
    expect_within(peer.read_exact(&mut answer)).await.unwrap();
    peer.shutdown().await.unwrap();
    expect_within(bev.next_event()).await;
    settle_task(&bev).await;
    let stats = bev.stats();
    assert_eq!((stats.bytes_read, stats.bytes_written), (1200, 6));
    // The read callback runs only once 1000 bytes are in: once or twice, not per read.
    assert!((1..=2).contains(&stats.read_callbacks), "{stats:?}");
    assert_eq!(stats.write_callbacks, 1, "the output drained once");
    assert_eq!(stats.event_callbacks, 1, "EOF");
    assert!(stats.peak_input >= 1000, "{stats:?}");
    assert_eq!(stats.peak_output, 6);
    assert_eq!((stats.input_len, stats.output_len), (0, 0));
    let now = tokio::time::Instant::now();
    for at in [stats.last_read.unwrap(), stats.last_write.unwrap()] {
        assert!(
            started <= at && at <= now,
            "{at:?} outside {started:?}..{now:?}"
        );
    }
    assert!(bev.last_event().unwrap().events.contains(Events::EOF));
}

#[tokio::test]
async fn pairs_count_what_crosses() {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    a.write(&b"0123456789"[..]).await.unwrap();
    expect_within(b.read_exact(10)).await.unwrap();
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.bytes_written, sa.bytes_read), (10, 0));
    assert_eq!((sb.bytes_read, sb.bytes_written), (10, 0));
    assert!(sb.peak_input >= 10 && sa.peak_output >= 10);
    assert!(sa.last_write.is_some() && sa.last_read.is_none());
}

#[cfg(feature = "deflate")]
#[tokio::test]
async fn a_filter_counts_plain_bytes_and_its_underlying_the_compressed_ones() {
    use tokio_bufferevent::filters::deflate::{Compress, Compression, Decompress};
    let (s1, s2) = tcp_pair().await;
    let under = BufferEvent::builder().tcp(s1).unwrap();
    let zipped = BufferEvent::builder().filter(
        under.clone(),
        Decompress::new(),
        Compress::new(Compression::default()),
    );
    let reader = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s2).unwrap(),
        Decompress::new(),
        Compress::new(Compression::default()),
    );
    zipped
        .write(bytes::Bytes::from(vec![0u8; 100_000]))
        .await
        .unwrap();
    zipped.flush(
        Direction::WRITE,
        tokio_bufferevent::bufferevent::FlushMode::Finished,
    );
    let got = expect_within(reader.read_to_end(1 << 20)).await.unwrap();
    assert_eq!(got.len(), 100_000);
    assert_eq!(zipped.stats().bytes_written, 100_000);
    assert_eq!(reader.stats().bytes_read, 100_000);
    let compressed = under.stats().bytes_written;
    assert!(
        0 < compressed && compressed < 10_000,
        "zeros compress: {compressed}"
    );
}

#[tokio::test]
async fn a_listener_sums_its_live_connections() {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), |builder, _| {
        Some(builder.enable(Direction::READ).on_read(|ctx| {
            let (mut input, mut output) = ctx.io();
            output.append_input(&mut input);
        }))
    })
    .unwrap();
    let addr = *listener.local_addr();
    let mut clients = Vec::new();
    for n in [100usize, 200, 300] {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&vec![9; n]).await.unwrap();
        let mut back = vec![0; n];
        expect_within(c.read_exact(&mut back)).await.unwrap();
        clients.push(c);
    }
    expect_within(async {
        while listener.stats().bytes_written < 600 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let stats = listener.stats();
    assert_eq!(stats.counts.live, 3);
    assert_eq!((stats.bytes_read, stats.bytes_written), (600, 600));
    assert_eq!((stats.input_len, stats.output_len), (0, 0));
}
