//! The zlib filters (feature `deflate`): libevent's `bufferevent_zlib` test
//! (`regress_zlib.c`) and round trips over real sockets.
#![cfg(feature = "deflate")]

mod common;

use std::io;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Filtered, FlushMode};
use tokio_bufferevent::filters::deflate::{Compress, Compression, Decompress};

use common::{pattern, tcp_pair, within};

type Zlib = BufferEvent<Filtered<tokio::net::TcpStream>>;

/// A compressing sender and a decompressing receiver over a loopback socket.
async fn zlib_pair() -> (Zlib, Zlib) {
    let (s1, s2) = tcp_pair().await;
    let sender = BufferEvent::filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        Decompress::new(),
        Compress::new(Compression::default()),
    );
    let receiver = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder()
            .enable(Direction::READ)
            .tcp(s2)
            .unwrap(),
        Decompress::new(),
        Compress::default(),
    );
    (sender, receiver)
}

/// The first event the bufferevent delivered, waiting for it if need be.
async fn first_event(bev: &Zlib) -> tokio_bufferevent::bufferevent::EventRecord {
    for _ in 0..100 {
        if let Some(event) = bev.last_event() {
            return event;
        }
        let _ = timeout(Duration::from_millis(100), bev.next_event()).await;
    }
    panic!("no event within 10 s");
}

async fn receive(receiver: &Zlib, n: usize) -> Vec<u8> {
    timeout(Duration::from_secs(60), receiver.readable(n))
        .await
        .expect("the data arrives");
    receiver.read(usize::MAX).await.unwrap().to_vec()
}

/// `bufferevent_zlib`: two writes (1800 bytes, then the rest of 8333), a
/// `flush(WRITE, Finished)` that emits the final block; all 8333 bytes decode and no
/// event reports an error.
#[tokio::test]
async fn bufferevent_zlib() {
    let (sender, receiver) = zlib_pair().await;
    let data = pattern(8333);
    sender.write(data[..1800].to_vec()).await.unwrap();
    sender.write(data[1800..].to_vec()).await.unwrap();
    sender.flush(Direction::WRITE, FlushMode::Finished);
    assert_eq!(receive(&receiver, 8333).await, data);
    let closed = first_event(&receiver).await;
    assert_eq!(
        closed.events,
        Events::READING | Events::EOF,
        "Finished shut the sender's socket down after the trailer"
    );
    assert!(sender.last_event().is_none());
}

/// One byte, 1 MiB, and sizes from a fixed pseudo-random sequence arrive identical.
#[tokio::test]
async fn round_trips_of_many_sizes() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut sizes = vec![1, 1 << 20];
    for _ in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        sizes.push((seed % 300_000) as usize + 1);
    }
    for size in sizes {
        let (sender, receiver) = zlib_pair().await;
        // Incompressible-ish bytes, so the compressed stream spans many reads.
        let data: Vec<u8> = (0..size)
            .map(|i| ((i as u64).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        sender.write(data.clone()).await.unwrap();
        sender.flush(Direction::WRITE, FlushMode::Flush);
        assert_eq!(receive(&receiver, size).await, data, "size {size}");
        let closed = within(sender.close()).await.unwrap();
        assert_eq!(closed.unsent, 0);
    }
}

/// Closing the compressing side writes the zlib trailer before the socket closes;
/// the receiver hears EOF after the whole payload.
#[tokio::test]
async fn close_writes_the_trailer() {
    let (sender, receiver) = zlib_pair().await;
    sender.write(vec![b'a'; 50_000]).await.unwrap();
    within(sender.close()).await.unwrap();
    let event = first_event(&receiver).await;
    assert_eq!(event.events, Events::READING | Events::EOF);
    assert_eq!(receiver.read(usize::MAX).await.unwrap(), vec![b'a'; 50_000]);
}

/// Corrupt compressed input gives `READING | ERROR` with an `InvalidData` error
/// naming the problem, and nothing panics.
#[tokio::test]
async fn corrupt_input_is_an_error() {
    let (s1, mut peer) = tcp_pair().await;
    let receiver = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        Decompress::new(),
        Compress::default(),
    );
    // A valid zlib header, then garbage.
    peer.write_all(&[0x78, 0x9c, 0xff, 0xff, 0xff, 0xff, 0x00, 0x12, 0x34])
        .await
        .unwrap();
    let event = within(receiver.next_event()).await.unwrap().unwrap();
    assert_eq!(event.events, Events::READING | Events::ERROR);
    let error = event.error.unwrap();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(
        error.to_string().contains("corrupt compressed data"),
        "{error}"
    );
    // Reading is over: the transport's EOF after it is not a second failure.
    let next = receiver.next_event();
    peer.shutdown().await.unwrap();
    if let Ok(Some(again)) = timeout(Duration::from_millis(500), next).await {
        panic!("the input failed once, but reported {again:?} as well");
    }
}

/// A sender compressing as hard as zlib can, over TCP, to a reader whose read high
/// watermark is `high`.
async fn compressing_hard_to(high: usize) -> (Zlib, Zlib) {
    use tokio_bufferevent::bufferevent::Watermarks;
    let (s1, s2) = tcp_pair().await;
    let sender = BufferEvent::filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        Decompress::new(),
        Compress::new(Compression::best()),
    );
    let receiver = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, high))
        .filter(
            BufferEvent::builder().tcp(s2).unwrap(),
            Decompress::new(),
            Compress::default(),
        );
    (sender, receiver)
}

/// A small compressed input that expands enormously fills the reader only up to its
/// read high watermark at a time: the decoder follows the filter's limit.
#[tokio::test]
async fn expansion_respects_the_read_high_watermark() {
    let (sender, receiver) = compressing_hard_to(64 * 1024).await;
    sender.write(vec![0u8; 32 << 20]).await.unwrap();
    sender.flush(Direction::WRITE, FlushMode::Flush);
    let mut total = 0;
    while total < 32 << 20 {
        timeout(Duration::from_secs(60), receiver.readable(1))
            .await
            .unwrap();
        let n = receiver.input_len();
        assert!(
            n <= 64 * 1024 + 64 * 1024,
            "input {n} stays near the watermark"
        );
        total += receiver.read(usize::MAX).await.unwrap().len();
    }
    assert_eq!(total, 32 << 20);
}

/// A small compressed stream whose end arrives while most of it still waits beneath
/// the filter (a decompression bomb, 1000:1): it is decoded at the pace of the
/// reader's high watermark, not all at once at the EOF, and the EOF comes after the
/// last byte.
#[tokio::test]
async fn an_end_beneath_does_not_decode_everything_at_once() {
    use tokio_bufferevent::bufferevent::Readiness;
    const HIGH: usize = 64 * 1024;
    const TOTAL: usize = 32 << 20;
    let (sender, receiver) = compressing_hard_to(HIGH).await;
    sender.write(vec![0u8; TOTAL]).await.unwrap();
    let closed = within(sender.close()).await.unwrap();
    assert_eq!(closed.unsent, 0);
    let mut total = 0;
    while total < TOTAL {
        let ready = within(receiver.readable(1)).await.unwrap();
        assert_eq!(ready, Readiness::Ready, "after {total} bytes");
        let n = receiver.input_len();
        assert!(n <= 2 * HIGH, "input {n} stays near the watermark");
        total += receiver.read(usize::MAX).await.unwrap().len();
    }
    assert_eq!(total, TOTAL);
    assert_eq!(within(receiver.readable(1)).await.unwrap(), Readiness::Eof);
}

/// Decoded bytes the decompressor holds when it reaches the reader's limit come out as
/// the reader drains, with no more input from the peer.
#[tokio::test]
async fn nothing_stays_inside_the_decompressor() {
    use tokio_bufferevent::bufferevent::Watermarks;
    let (s1, s2) = tcp_pair().await;
    let sender = BufferEvent::filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        Decompress::new(),
        Compress::default(),
    );
    let receiver = BufferEvent::builder()
        .enable(Direction::READ)
        .read_watermarks(Watermarks::new(0, 4096))
        .filter(
            BufferEvent::builder().tcp(s2).unwrap(),
            Decompress::new(),
            Compress::default(),
        );
    let message: Vec<u8> = (0..10_000u32)
        .map(|i| b"abcdefgh"[(i % 8) as usize])
        .collect();
    sender.write(message.clone()).await.unwrap();
    sender.flush(Direction::WRITE, FlushMode::Flush);
    let mut got = Vec::new();
    while got.len() < message.len() {
        within(receiver.readable(1))
            .await
            .expect("the rest comes out without new input");
        got.extend_from_slice(&receiver.read(usize::MAX).await.unwrap());
    }
    assert_eq!(got, message);
}

mod model {
    //! Property test: random writes, flushes and reader watermarks through a
    //! compressing and a decompressing filter over a pair: the reader gets exactly
    //! the bytes written, in order, and never more than its read high watermark
    //! beyond one filter call's output.

    use std::time::Duration;

    use proptest::prelude::*;
    use tokio_bufferevent::bufferevent::{BufferEvent, Direction, FlushMode, Watermarks};
    use tokio_bufferevent::filters::deflate::{Compress, Compression, Decompress};

    #[derive(Clone, Debug)]
    enum Op {
        Write(Vec<u8>),
        Flush(FlushMode),
        Read(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c', 0, 255]), 1..3000)
                .prop_map(Op::Write),
            // Runs that compress a thousandfold, so a few input bytes decode to more
            // than one call may produce.
            1 => (1..60_000usize).prop_map(|n| Op::Write(vec![b'z'; n])),
            1 => prop::sample::select(vec![FlushMode::Normal, FlushMode::Flush])
                .prop_map(Op::Flush),
            3 => (1..5000usize).prop_map(Op::Read),
        ]
    }

    async fn run(ops: Vec<Op>, high: usize) -> Result<(), TestCaseError> {
        let (a, b) = BufferEvent::pair();
        let sender = BufferEvent::filter(a, Decompress::new(), Compress::new(Compression::fast()));
        let receiver = BufferEvent::builder()
            .enable(Direction::READ)
            .read_watermarks(Watermarks::new(0, high))
            .filter(b, Decompress::new(), Compress::default());
        let mut written = Vec::new();
        let mut received = Vec::new();
        for op in ops {
            match op {
                Op::Write(data) => {
                    written.extend_from_slice(&data);
                    sender.write_now(data).unwrap();
                }
                Op::Flush(mode) => sender.flush(Direction::WRITE, mode),
                Op::Read(n) => received.extend_from_slice(&receiver.read(n).await.unwrap()),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            if high != 0 {
                // A decoder call may overshoot the limit by one output buffer.
                prop_assert!(receiver.input_len() <= high + 64 * 1024);
            }
            prop_assert_eq!(&received[..], &written[..received.len()]);
        }
        sender.flush(Direction::WRITE, FlushMode::Finished);
        while received.len() < written.len() {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let got = receiver.read(usize::MAX).await.unwrap();
            if got.is_empty() {
                tokio::time::timeout(Duration::from_secs(5), receiver.readable(1))
                    .await
                    .map_err(|_| TestCaseError::fail("the rest never came"))?;
            }
            received.extend_from_slice(&got);
        }
        prop_assert_eq!(received, written);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn compressed_pair_matches_the_bytes_written(
            ops in prop::collection::vec(op(), 1..30),
            high in prop::sample::select(vec![0usize, 100, 4096]),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(run(ops, high))?;
        }
    }
}

// ---- what a damaged stream reports ------------------------------------------------------

/// `data` as a complete zlib stream, made by the crate's own compressor over a pair.
async fn zlib_bytes(data: &[u8]) -> Vec<u8> {
    use tokio_bufferevent::bufferevent::PassThrough;
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    let sender = BufferEvent::filter(a, PassThrough, Compress::default());
    sender.write(data.to_vec()).await.unwrap();
    within(sender.close()).await.unwrap();
    let mut out = Vec::new();
    loop {
        let chunk = b.read(usize::MAX).await.unwrap();
        if chunk.is_empty() {
            if b.last_event().is_some() {
                return out;
            }
            within(b.readable(1)).await.unwrap();
        }
        out.extend_from_slice(&chunk);
    }
}

/// Sends `raw` to a decompressing receiver over a socket, then FIN if `fin`; the first
/// event.
async fn decode_raw(raw: &[u8], fin: bool) -> tokio_bufferevent::bufferevent::EventRecord {
    let (s1, mut peer) = tcp_pair().await;
    let receiver = BufferEvent::builder().enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        Decompress::new(),
        Compress::default(),
    );
    peer.write_all(raw).await.unwrap();
    if fin {
        peer.shutdown().await.unwrap();
    }
    within(receiver.next_event()).await.unwrap().unwrap()
}

/// A stream cut off (here inside its blocks, or just before its checksum) and
/// followed by FIN is an error naming the truncation, never a clean EOF.
#[tokio::test]
async fn a_truncated_stream_is_an_error() {
    let whole = zlib_bytes(&pattern(100_000)).await;
    let clean = decode_raw(&whole, true).await;
    assert_eq!(
        clean.events,
        Events::READING | Events::EOF,
        "{:?}",
        clean.error
    );
    for (cut, part) in [
        (whole.len() / 2, "before its last block"),
        (4, "before its checksum"),
    ] {
        let event = decode_raw(&whole[..whole.len() - cut], true).await;
        assert!(
            event.events.contains(Events::READING | Events::ERROR),
            "{:?}",
            event.events
        );
        let error = event.error.unwrap();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
        assert!(error.to_string().contains("truncated"), "{error}");
        assert!(error.to_string().contains(part), "{error}");
    }
}

/// Corrupt input says what was wrong: the header, the data, or the checksum.
#[tokio::test]
async fn corrupt_input_says_what_was_wrong() {
    let whole = zlib_bytes(&pattern(10_000)).await;
    let mut bad_header = whole.clone();
    bad_header[0] = 0x12;
    let mut bad_checksum = whole.clone();
    *bad_checksum.last_mut().unwrap() ^= 0xff;
    let bad_data = [0x78, 0x9c, 0xff, 0xff, 0xff, 0xff, 0x00, 0x12, 0x34];
    for (raw, what) in [
        (&bad_header[..], "bad header"),
        (&bad_checksum[..], "bad checksum"),
        (&bad_data[..], "bad data"),
    ] {
        let event = decode_raw(raw, false).await;
        assert_eq!(event.events, Events::READING | Events::ERROR, "{what}");
        let error = event.error.unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{what}");
        assert!(error.to_string().contains(what), "{what}: {error}");
    }
}

/// "hello world" compressed and flushed, the stream left unfinished.
fn hello_world_unfinished() -> Vec<u8> {
    let mut zlib = flate2::Compress::new(Compression::default(), true);
    let mut raw = Vec::with_capacity(256);
    zlib.compress_vec(b"hello world", &mut raw, flate2::FlushCompress::Sync)
        .unwrap();
    raw
}

/// The same, followed by a block of the reserved type: invalid.
fn damaged_after_hello_world() -> Vec<u8> {
    let mut raw = hello_world_unfinished();
    raw.extend_from_slice(&[0xff, 0xff]);
    raw
}

/// A decompressing filter built by `builder` (READ enabled) over TCP, sent
/// [`damaged_after_hello_world`]; the filter and its first event.
async fn receive_damaged(
    builder: tokio_bufferevent::bufferevent::Builder,
) -> (Zlib, tokio_bufferevent::bufferevent::EventRecord) {
    let (s1, mut peer) = tcp_pair().await;
    let receiver = builder.enable(Direction::READ).filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        Decompress::new(),
        Compress::default(),
    );
    peer.write_all(&damaged_after_hello_world()).await.unwrap();
    let event = first_event(&receiver).await;
    (receiver, event)
}

/// Bytes decoded in the same step that found the damage were good: they reach the
/// input before the error, not lost with it.
#[tokio::test]
async fn what_decoded_before_the_damage_arrives_before_the_error() {
    let (receiver, event) = receive_damaged(BufferEvent::builder()).await;
    assert_eq!(event.events, Events::READING | Events::ERROR);
    assert_eq!(receiver.read(100).await.unwrap(), &b"hello world"[..]);
}

/// The same with callbacks (B-61's order): the read callback hears the good bytes
/// before the event callback hears the error.
#[tokio::test]
async fn the_read_callback_hears_what_decoded_before_the_damage() {
    use std::sync::{Arc, Mutex};
    let read = Arc::new(Mutex::new(Vec::new()));
    let at_error = Arc::new(Mutex::new(None));
    let (r, r2, e) = (read.clone(), read.clone(), at_error.clone());
    let builder = BufferEvent::builder()
        .on_read(move |ctx| {
            let data = ctx.input().remove_bytes(usize::MAX);
            r.lock().unwrap().extend_from_slice(&data);
        })
        .on_event(move |_, events, _| {
            if events.contains(Events::ERROR) {
                *e.lock().unwrap() = Some(r2.lock().unwrap().clone());
            }
        });
    let (_receiver, event) = receive_damaged(builder).await;
    assert_eq!(event.events, Events::READING | Events::ERROR);
    assert_eq!(
        at_error.lock().unwrap().as_deref(),
        Some(&b"hello world"[..]),
        "read before the error"
    );
}

/// A compressed stream cut off because the pair element beneath lost its partner (no
/// EOF comes over a pair, D-P1) is an error for the reader, not a clean end: the
/// decoder hears that nothing more will come.
#[tokio::test]
async fn a_stream_cut_off_over_a_pair_is_not_a_clean_end() {
    use tokio_bufferevent::bufferevent::Error;
    let raw = hello_world_unfinished();
    let (a, b) = BufferEvent::pair();
    let rx = BufferEvent::builder().enable(Direction::READ).filter(
        a,
        Decompress::new(),
        Compress::default(),
    );
    b.write(raw).await.unwrap();
    assert_eq!(
        within(rx.read_exact(11)).await.unwrap().unwrap(),
        &b"hello world"[..]
    );
    drop(b);
    match within(rx.read_to_end(1 << 20)).await.unwrap() {
        Err(Error::ReadFailed(e)) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}"),
        other => panic!("a cut stream read as {other:?}"),
    }
}

/// A compressing filter whose handles are all dropped ends its stream as `close()`
/// would: what the compressor held, and the stream's end, reach the peer, which
/// decodes everything it was given.
#[tokio::test]
async fn dropping_the_last_handle_ends_the_stream_with_everything_in_it() {
    let (s1, mut peer) = tcp_pair().await;
    let sender = BufferEvent::filter(
        BufferEvent::builder().tcp(s1).unwrap(),
        Decompress::new(),
        Compress::default(),
    );
    sender.write(&b"bye"[..]).await.unwrap();
    drop(sender);
    let mut raw = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut peer, &mut raw)
        .await
        .unwrap();
    let mut decoded = Vec::new();
    io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&raw[..]), &mut decoded)
        .expect("a whole zlib stream");
    assert_eq!(decoded, b"bye");
}

/// The adapter of a compressing filter over a pair element, and the decompressing
/// filter (reading) over the other element.
fn compressing_adapter_over_a_pair() -> (
    tokio_bufferevent::bufferevent::BufferEventIo<Filtered<tokio_bufferevent::bufferevent::Pair>>,
    BufferEvent<Filtered<tokio_bufferevent::bufferevent::Pair>>,
) {
    let (a, b) = BufferEvent::pair();
    let sender = BufferEvent::filter(a, Decompress::new(), Compress::default());
    let receiver = BufferEvent::builder().enable(Direction::READ).filter(
        b,
        Decompress::new(),
        Compress::default(),
    );
    (sender.into_io(), receiver)
}

/// Flushing an adapter over a compressing filter has the compressor emit what it
/// holds: a request written and flushed reaches the peer whole, instead of waiting
/// inside zlib for more (which a request/response protocol never sends).
#[tokio::test(start_paused = true)]
async fn flushing_an_adapter_over_a_compressor_delivers_what_was_written() {
    let (mut io, receiver) = compressing_adapter_over_a_pair();
    io.write_all(b"ping").await.unwrap();
    within(io.flush()).await.unwrap().unwrap();
    within(receiver.readable(4)).await.unwrap();
    assert_eq!(receiver.read(100).await.unwrap(), &b"ping"[..]);
}

/// A flush left pending and polled again after more was written covers what came
/// after it too: the compressor emits the later write as well.
#[tokio::test(start_paused = true)]
async fn a_flush_polled_again_after_a_write_covers_it() {
    use std::future::Future;
    let (mut io, receiver) = compressing_adapter_over_a_pair();
    io.write_all(b"a").await.unwrap();
    {
        let mut flushing = std::pin::pin!(io.flush());
        let waker = futures::task::noop_waker();
        let polled = flushing
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending(), "the filter's flush needs the task");
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    io.write_all(b"b").await.unwrap();
    within(io.flush()).await.unwrap().unwrap();
    within(receiver.readable(2)).await.unwrap();
    assert_eq!(receiver.read(100).await.unwrap(), &b"ab"[..]);
}

/// A flush that starts while WRITE is off waits for it, and once WRITE is on has the
/// compressor emit what the output moved into it meanwhile.
#[tokio::test(start_paused = true)]
async fn a_flush_begun_with_write_off_emits_once_it_is_on() {
    let (mut io, receiver) = compressing_adapter_over_a_pair();
    let sender = io.get_ref().clone();
    sender.disable(Direction::WRITE);
    io.write_all(b"a").await.unwrap();
    let flushing = tokio::spawn(async move {
        io.flush().await.unwrap();
        io
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!flushing.is_finished(), "WRITE is off: the flush waits");
    sender.enable(Direction::WRITE);
    let _io = within(flushing).await.unwrap().unwrap();
    within(receiver.readable(1)).await.unwrap();
    assert_eq!(receiver.read(100).await.unwrap(), &b"a"[..]);
}
