//! The async read helpers: `read_line`, `read_until`, `read_exact`, `read_to_end`. They
//! resolve with the data or with a clear end, and lose nothing when cancelled, at any
//! await point.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::noop_waker;
use tokio_bufferevent::buffer::EolStyle;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Error, Pair, Watermarks};

use common::{expect_within, settle_task};

fn pair() -> (BufferEvent<Pair>, BufferEvent<Pair>) {
    let (a, b) = BufferEvent::pair();
    b.enable(Direction::READ);
    (a, b)
}

#[tokio::test]
async fn lines_partial_lines_and_the_last_line_at_eof() {
    let (a, b) = pair();
    a.write(&b"first\r\nsec"[..]).await.unwrap();
    assert_eq!(
        expect_within(b.read_line(EolStyle::Crlf, 100))
            .await
            .unwrap(),
        &b"first"[..]
    );
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.read_line(EolStyle::Crlf, 100).await }
    });
    a.write(&b"ond\r\nlast"[..]).await.unwrap();
    assert_eq!(
        expect_within(waiting).await.unwrap().unwrap(),
        &b"second"[..]
    );
    let (c, d) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .partner_end_is_eof(true),
    );
    c.write(&b"no terminator"[..]).await.unwrap();
    c.close().await; // sends what is queued, then EOF to the partner
    assert_eq!(
        expect_within(d.read_line(EolStyle::Lf, 100)).await.unwrap(),
        &b"no terminator"[..],
        "the last line, as it is"
    );
    assert!(matches!(
        expect_within(d.read_line(EolStyle::Lf, 100)).await,
        Err(Error::Eof)
    ));
}

#[tokio::test]
async fn a_line_too_long_is_refused_and_kept() {
    let (a, b) = pair();
    a.write(&b"0123456789abcdef"[..]).await.unwrap();
    settle_task(&b).await;
    assert!(matches!(
        expect_within(b.read_line(EolStyle::Lf, 8)).await,
        Err(Error::TooLong { max: 8 })
    ));
    assert!(matches!(
        expect_within(b.read_until(b'\n', 8)).await,
        Err(Error::TooLong { max: 8 })
    ));
    assert_eq!(b.input_len(), 16, "nothing removed");
}

#[tokio::test]
async fn until_exact_and_to_end() {
    let (a, b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .partner_end_is_eof(true),
    );
    a.write(&b"key=value;rest of it"[..]).await.unwrap();
    assert_eq!(b.read_until(b'=', 64).await.unwrap(), &b"key="[..]);
    assert_eq!(b.read_exact(6).await.unwrap(), &b"value;"[..]);
    assert!(matches!(
        b.read_to_end(4).await,
        Err(Error::TooLong { max: 4 })
    ));
    let to_end = tokio::spawn({
        let b = b.clone();
        async move { b.read_to_end(1024).await }
    });
    a.write(&b" and more"[..]).await.unwrap();
    a.close().await;
    assert_eq!(
        expect_within(to_end).await.unwrap().unwrap(),
        &b"rest of it and more"[..]
    );
}

/// `read_exact` past what the read high watermark lets the input hold fails at once,
/// instead of waiting for ever.
#[tokio::test]
async fn read_exact_above_the_high_watermark_fails_at_once() {
    let (a, b) = BufferEvent::builder().pair(
        BufferEvent::builder()
            .enable(Direction::READ)
            .read_watermarks(Watermarks::new(0, 10)),
    );
    a.write(vec![1u8; 100]).await.unwrap();
    assert!(matches!(
        expect_within(b.read_exact(50)).await,
        Err(Error::TooLong { max: 10 })
    ));
    assert_eq!(b.read_exact(10).await.unwrap().len(), 10);
}

/// After a read timeout the helpers say so.
#[tokio::test(start_paused = true)]
async fn a_read_timeout_ends_a_wait_with_timed_out() {
    let (_a, b) = pair();
    b.set_timeouts(Some(Duration::from_secs(5)), None);
    assert!(matches!(
        expect_within(b.read_line(EolStyle::Lf, 10)).await,
        Err(Error::TimedOut)
    ));
    b.enable(Direction::READ);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), b.read_line(EolStyle::Lf, 10))
            .await
            .is_err(),
        "enabled again: it waits for data"
    );
}

/// Polls `fut` once.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    let waker = noop_waker();
    fut.poll(&mut Context::from_waker(&waker))
}

/// Cancelled at every await point, a read loses nothing: before it sent its request,
/// while the request waits for the task, and after the task took the line but before
/// the caller received it.
#[tokio::test]
async fn cancelled_at_any_point_nothing_is_lost() {
    let (a, b) = pair();
    a.write(&b"one\ntwo\nthree\n"[..]).await.unwrap();
    settle_task(&b).await;

    // 1. Dropped before the first poll: nothing happened.
    drop(b.read_line(EolStyle::Lf, 100));

    // 2. The request is sent, the task has not run it yet.
    {
        let mut read = pin!(b.read_line(EolStyle::Lf, 100));
        assert!(poll_once(read.as_mut()).is_pending());
    }
    settle_task(&b).await;

    // 3. The task took the line and sent it; the caller never looks.
    {
        let mut read = pin!(b.read_line(EolStyle::Lf, 100));
        assert!(poll_once(read.as_mut()).is_pending());
        tokio::task::yield_now().await; // the task runs the request
        settle_task(&b).await;
    }
    settle_task(&b).await;

    for line in ["one", "two", "three"] {
        assert_eq!(
            expect_within(b.read_line(EolStyle::Lf, 100)).await.unwrap(),
            line.as_bytes()
        );
    }
    assert_eq!(b.input_len(), 0);

    // The same for read_exact and read_until.
    a.write(&b"abcdef"[..]).await.unwrap();
    settle_task(&b).await;
    for _ in 0..2 {
        let mut read = pin!(b.read_exact(3));
        assert!(poll_once(read.as_mut()).is_pending());
        tokio::task::yield_now().await;
        settle_task(&b).await;
    }
    {
        let mut read = pin!(b.read_until(b'f', 100));
        assert!(poll_once(read.as_mut()).is_pending());
        tokio::task::yield_now().await;
        settle_task(&b).await;
    }
    settle_task(&b).await;
    assert_eq!(b.read_exact(6).await.unwrap(), &b"abcdef"[..]);
}

/// A read high watermark lowered while a read waits (below what it asked for) ends
/// the wait, as if it had been set before: `read_exact` fails with `TooLong`,
/// `readable` answers `AboveHighWatermark`, instead of waiting for bytes reading will
/// no longer bring.
#[tokio::test]
async fn a_high_watermark_lowered_during_a_wait_ends_it() {
    let (a, b) = pair();
    a.write(vec![1u8; 50]).await.unwrap();
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.read_exact(100).await }
    });
    settle_task(&b).await;
    assert!(!waiting.is_finished(), "50 of 100 bytes so far");
    b.set_watermarks(Direction::READ, Watermarks::new(0, 40));
    assert!(matches!(
        expect_within(waiting).await.unwrap(),
        Err(Error::TooLong { max: 40 })
    ));
    assert_eq!(b.input_len(), 50, "nothing was taken");

    let (_a, b) = pair();
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.readable(100).await }
    });
    settle_task(&b).await;
    assert!(!waiting.is_finished());
    b.set_watermarks(Direction::READ, Watermarks::new(0, 10));
    assert_eq!(
        expect_within(waiting).await.unwrap(),
        tokio_bufferevent::bufferevent::Readiness::AboveHighWatermark { high: 10 }
    );
}

/// A read cancelled while its request waits for the task, and made again at once (a
/// `select!` loop), gets the next line: the cancelled request takes nothing.
#[tokio::test]
async fn a_read_cancelled_and_made_again_at_once_keeps_the_order() {
    let (a, b) = pair();
    a.write(&b"one\ntwo\n"[..]).await.unwrap();
    settle_task(&b).await;
    {
        let mut read = pin!(b.read_line(EolStyle::Lf, 100));
        assert!(poll_once(read.as_mut()).is_pending());
    }
    // No pause for the task: both requests reach it in one pass.
    assert_eq!(
        expect_within(b.read_line(EolStyle::Lf, 100)).await.unwrap(),
        &b"one"[..]
    );
    assert_eq!(
        expect_within(b.read_line(EolStyle::Lf, 100)).await.unwrap(),
        &b"two"[..]
    );
}

/// A line exactly at the limit whose CR arrived before its LF is a line, not too
/// long: the final CR may yet start a CR LF and does not count (as
/// `EvBuffer::readln_max`), however the bytes were split.
#[tokio::test]
async fn a_cr_waiting_for_its_lf_does_not_count_against_the_limit() {
    for style in [EolStyle::Crlf, EolStyle::CrlfStrict] {
        let (a, b) = pair();
        a.write(&b"hello\r"[..]).await.unwrap();
        settle_task(&b).await;
        let reading = tokio::spawn({
            let b = b.clone();
            async move { b.read_line(style, 5).await }
        });
        settle_task(&b).await;
        a.write(&b"\n"[..]).await.unwrap();
        assert_eq!(
            expect_within(reading).await.unwrap().unwrap(),
            &b"hello"[..],
            "{style:?}"
        );
    }
}

/// Bytes in a file segment that cannot be read (the file shrank after `add_file`)
/// are an error from every read, with the bytes left in the input, never an empty
/// success.
#[tokio::test]
async fn an_unreadable_file_segment_is_an_error_not_an_empty_read() {
    let path = std::env::temp_dir().join(format!("bufferevent-read-{}", std::process::id()));
    std::fs::write(&path, b"0123456789").unwrap();
    let mut data = tokio_bufferevent::buffer::EvBuffer::new();
    data.add_file(std::fs::File::open(&path).unwrap(), 0, None)
        .unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (a, b) = pair();
    a.write_buffer(&mut data).unwrap();
    settle_task(&b).await;
    assert_eq!(b.input_len(), 10);
    let unreadable = |result: Result<bytes::Bytes, Error>| match result {
        Err(e @ Error::Buffer(_)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("expected the file's read error, got {other:?}"),
    };
    unreadable(expect_within(b.read_exact(10)).await);
    unreadable(expect_within(b.read_line(EolStyle::Lf, 100)).await);
    unreadable(expect_within(b.read_until(b'9', 100)).await);
    unreadable(expect_within(b.read(4)).await);
    assert_eq!(b.input_len(), 10, "nothing was removed");
    std::fs::remove_file(&path).unwrap();
}
