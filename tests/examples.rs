//! Runs every example ported from libevent's "Bufferevents: concepts and basics"
//! chapter (`examples/seed_*.rs`) as a test.
//!
//! Each example file is compiled into this test as a module and its `main` is called:
//! the very code `cargo run --example seed_x` runs, on its own runtime, with its own
//! server on 127.0.0.1:0, its own assertions and its own time limit, but without
//! starting a `cargo` process per example.

use std::error::Error;

type BoxError = Box<dyn Error + Send + Sync>;

#[path = "../examples/chat_server.rs"]
mod chat_server;
#[path = "../examples/pair_test_double.rs"]
mod pair_test_double;
#[path = "../examples/seed_connect.rs"]
mod seed_connect;
#[path = "../examples/seed_connect_yourself.rs"]
mod seed_connect_yourself;
#[path = "../examples/seed_fibonacci.rs"]
mod seed_fibonacci;
#[path = "../examples/seed_http_client.rs"]
mod seed_http_client;
#[path = "../examples/seed_proxy.rs"]
mod seed_proxy;
#[path = "../examples/seed_uppercase_echo.rs"]
mod seed_uppercase_echo;
#[path = "../examples/seed_watermarks.rs"]
mod seed_watermarks;
#[path = "../examples/uppercase_filter.rs"]
mod uppercase_filter;

/// The examples run below; `every_seed_example_is_run` keeps this list complete.
const RUN: &[&str] = &[
    "seed_connect",
    "seed_connect_yourself",
    "seed_fibonacci",
    "seed_http_client",
    "seed_proxy",
    "seed_uppercase_echo",
    "seed_watermarks",
];

#[test]
fn every_seed_example_is_run() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("examples/ is readable")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".rs")?;
            stem.starts_with("seed_").then(|| stem.to_owned())
        })
        .collect();
    found.sort();
    assert_eq!(found, RUN, "add new seed examples to this file");
}

/// The chapter's connect example: CONNECTED from a listening server, ERROR from a
/// closed port.
#[test]
fn connect() -> Result<(), BoxError> {
    seed_connect::main()
}

/// The chapter's note: a connection made with your own `connect()` and handed over
/// with `bufferevent_setfd` is reported as one write callback.
#[test]
fn connect_yourself() -> Result<(), BoxError> {
    seed_connect_yourself::main()
}

/// The Trivial HTTP v0 client: request queued before connecting, response to EOF.
#[test]
fn http_client() -> Result<(), BoxError> {
    seed_http_client::main()
}

/// `struct info` with a read low watermark of 128 and totals on EOF.
#[test]
fn watermarks() -> Result<(), BoxError> {
    seed_watermarks::main()
}

/// `read_callback_uppercase`: 128 bytes at a time, uppercased, echoed.
#[test]
fn uppercase_echo() -> Result<(), BoxError> {
    seed_uppercase_echo::main()
}

/// `read_callback_proxy` with le-proxy's backpressure, 8 MiB through a slow server.
#[test]
fn proxy() -> Result<(), BoxError> {
    seed_proxy::main()
}

/// `write_callback_fibonacci`: a producer refilled from its write callback.
#[test]
fn fibonacci() -> Result<(), BoxError> {
    seed_fibonacci::main()
}

/// What `seed_proxy` relies on to pause: a handle's `output_len()` counts every byte
/// queued and not yet sent. Here nothing can be sent, so after the `i`-th one-byte write
/// it must read at least `i`, and `drained()` must never be ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_len_never_undercounts() {
    use std::pin::{Pin, pin};
    use std::task::{Context, Poll, Waker};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_bufferevent::bufferevent::BufferEvent;

    /// A transport that never delivers a byte and never accepts one.
    struct Stuck;
    impl AsyncRead for Stuck {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }
    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    // The window is short and needs the task running on another thread at the time,
    // so look in several rounds (a busy machine can leave the task unscheduled for a
    // whole round, which would show nothing).
    let (mut low, mut early) = (0, 0);
    for _round in 0..10 {
        let bev = BufferEvent::builder().on_write(|_| {}).stream(Stuck);
        for i in 1..=50_000 {
            bev.write_now(&b"x"[..]).unwrap();
            low += usize::from(bev.output_len() < i);
        }
        bev.free();

        for _ in 0..5_000 {
            let bev = BufferEvent::builder().on_write(|_| {}).stream(Stuck);
            bev.write_now(&b"x"[..]).unwrap();
            for _ in 0..100 {
                let mut drained = pin!(bev.drained());
                let ready = drained
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_ready();
                if ready {
                    early += 1;
                    break;
                }
            }
            bev.free();
        }
        if (low, early) != (0, 0) {
            break;
        }
    }
    assert_eq!(
        (low, early),
        (0, 0),
        "in one round, output_len() read below the queued bytes {low} times in 50000, \
         and drained() was ready with an unsendable byte queued for {early} \
         bufferevents of 5000"
    );
}

/// An upper-casing output filter over a socket bufferevent.
#[test]
fn uppercase_filter() -> Result<(), BoxError> {
    uppercase_filter::main()
}

/// A pair as an in-memory test double for a protocol handler.
#[test]
fn pair_test_double() -> Result<(), BoxError> {
    pair_test_double::main()
}

/// The async line chat server: every member hears the others.
#[test]
fn chat_server() -> Result<(), BoxError> {
    chat_server::main()
}

/// The chat server under a member that stops reading, one that says a line too long,
/// and a talker that says more than every buffer between it and the stalled member
/// holds: the stalled member is dropped after the write timeout, the one with the
/// long line is told why it leaves, and the member that reads hears every line.
#[test]
fn chat_server_drops_a_member_that_stops_reading() -> Result<(), BoxError> {
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    const LINES: usize = 20_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let room = chat_server::Room::default();
        tokio::spawn(chat_server::serve(
            listener,
            Arc::clone(&room),
            Duration::from_millis(300),
        ));
        let _stalled = TcpStream::connect(addr).await?; // never reads
        let mut talker = TcpStream::connect(addr).await?;
        let hearer = TcpStream::connect(addr).await?;
        let mut rude = TcpStream::connect(addr).await?;
        tokio::time::timeout(Duration::from_secs(10), async {
            while room.lock().unwrap().len() < 4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await?;

        rude.write_all(&[b'x'; 5000]).await?;
        let mut told = String::new();
        tokio::time::timeout(Duration::from_secs(10), rude.read_to_string(&mut told)).await??;
        assert!(told.starts_with("error:"), "{told:?}");

        let line = format!("{}\n", "y".repeat(1000));
        let talking = tokio::spawn(async move {
            for _ in 0..LINES {
                talker.write_all(line.as_bytes()).await?;
            }
            Ok::<_, std::io::Error>(talker)
        });
        let mut hearer = BufReader::new(hearer);
        let mut heard = 0;
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut got = String::new();
            while heard < LINES {
                got.clear();
                if hearer.read_line(&mut got).await? == 0 {
                    break;
                }
                if got.ends_with(&"y".repeat(1000)[..]) || got.len() > 1000 {
                    heard += 1;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await??;
        assert_eq!(heard, LINES, "the member that reads hears every line");
        let _talker = talking.await??;
        assert_eq!(
            room.lock().unwrap().len(),
            2,
            "the stalled member and the rude one left"
        );
        Ok::<_, BoxError>(())
    })
}
