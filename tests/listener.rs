//! The listener (libevent's `evconnlistener`) over real loopback sockets: templates,
//! refusals, limits, enable/disable, shutdown, drop, and back-off when the process
//! runs out of file descriptors (in a child process with a low `RLIMIT_NOFILE`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_bufferevent::bufferevent::{Builder, Direction, Events};
use tokio_bufferevent::listener::{Listener, ListenerCounts};

/// Generous bound for things that happen at once on loopback.
const SOON: Duration = Duration::from_secs(10);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An echo connection that closes at EOF.
fn echo(builder: Builder) -> Builder {
    builder
        .enable(Direction::READ)
        .on_read(|ctx| {
            let (mut input, mut output) = ctx.io();
            output.append_input(&mut input);
        })
        .on_event(|ctx, events, _| {
            if events.intersects(Events::EOF | Events::ERROR) {
                ctx.close();
            }
        })
}

/// Connects, writes `message`, half-closes, and reads everything back.
async fn round_trip(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let stream = timeout(SOON, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    exchange(stream, message).await
}

/// Writes `message` on `stream`, half-closes, and reads everything back.
async fn exchange<S>(mut stream: S, message: &[u8]) -> Vec<u8>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(message).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    timeout(SOON, stream.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    back
}

async fn wait_for(mut done: impl FnMut() -> bool) {
    timeout(SOON, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition within the time limit");
}

#[tokio::test]
async fn each_connection_is_a_bufferevent_from_the_template() {
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&peers);
    let listener = Listener::bind(any_port(), move |builder, peer| {
        seen.lock().unwrap().push(*peer);
        Some(echo(builder))
    })
    .unwrap();
    let addr = *listener.local_addr();
    for i in 0..3u8 {
        assert_eq!(round_trip(addr, &[i; 1000]).await, vec![i; 1000]);
    }
    wait_for(|| listener.counts().live == 0).await;
    let counts: ListenerCounts = listener.counts();
    assert_eq!(
        (counts.accepted, counts.live, counts.refused, counts.failed),
        (3, 0, 0, 0)
    );
    let peers = peers.lock().unwrap();
    assert_eq!(peers.len(), 3);
    assert!(peers.iter().all(|p| p.ip().is_loopback()));
}

#[tokio::test]
async fn ipv6_and_state_per_connection() {
    let addr: SocketAddr = "[::1]:0".parse().unwrap();
    let listener = match Listener::builder().bind_tcp(addr, |builder, _| {
        Some(
            builder
                .with_state(0usize)
                .enable(Direction::READ)
                .on_read(|ctx| {
                    let (mut input, mut output, total) = ctx.parts();
                    *total += input.len();
                    output.add_fmt(format_args!("{total}\n"));
                    input.drain(input.len());
                }),
        )
    }) {
        Ok(listener) => listener,
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => {
            eprintln!("no IPv6 loopback on this machine: {e}");
            return;
        }
        Err(e) => panic!("bind [::1]: {e}"),
    };
    assert!(listener.local_addr().is_ipv6());
    let mut stream = TcpStream::connect(*listener.local_addr()).await.unwrap();
    stream.write_all(b"abc").await.unwrap();
    let mut line = [0u8; 2];
    timeout(SOON, stream.read_exact(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&line, b"3\n");
}

#[cfg(unix)]
#[tokio::test]
async fn unix_domain_sockets() {
    let dir = std::env::temp_dir().join(format!("bev-listener-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let _ = std::fs::remove_file(&path);
    let listener = Listener::builder()
        .bind_unix(&path, |builder, _| Some(echo(builder)))
        .unwrap();
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    assert_eq!(
        exchange(stream, b"over a unix socket").await,
        b"over a unix socket"
    );
    assert_eq!(listener.counts().accepted, 1);
    drop(listener);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_existing_std_listener_is_served() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let socket = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let listener = Listener::builder()
        .serve(socket, |builder, _| Some(echo(builder)))
        .unwrap();
    assert_eq!(*listener.local_addr(), addr);
    assert_eq!(round_trip(addr, b"wrapped").await, b"wrapped");
}

#[tokio::test]
async fn refused_and_panicking_templates_are_counted_and_the_listener_goes_on() {
    let n = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&n);
    let listener = Listener::bind(any_port(), move |builder, _| {
        match calls.fetch_add(1, Ordering::SeqCst) {
            0 => None,
            1 => panic!("a template bug"),
            _ => Some(echo(builder)),
        }
    })
    .unwrap();
    let addr = *listener.local_addr();
    // Refused and failed connections are closed at once: the peer reads EOF.
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut rest = Vec::new();
        timeout(SOON, stream.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
    }
    assert_eq!(round_trip(addr, b"served").await, b"served");
    let counts = listener.counts();
    assert_eq!((counts.accepted, counts.refused, counts.failed), (3, 1, 1));
}

#[tokio::test]
async fn at_the_limit_accepting_waits_until_a_connection_ends() {
    let listener = Listener::builder()
        .max_connections(2)
        .bind_tcp(any_port(), |builder, _| Some(echo(builder)))
        .unwrap();
    let addr = *listener.local_addr();
    let mut first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    wait_for(|| listener.counts().live == 2).await;
    // The third completes its handshake in the backlog but is not served.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(b"waiting").await.unwrap();
    let mut buf = [0u8; 7];
    assert!(
        timeout(Duration::from_millis(300), third.read_exact(&mut buf))
            .await
            .is_err(),
        "served above the limit"
    );
    assert_eq!(listener.counts().accepted, 2);
    // One ends: the third is accepted and echoes what it sent while waiting.
    first.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(SOON, first.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    timeout(SOON, third.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"waiting");
    assert_eq!(listener.counts().accepted, 3);
    assert_eq!(listener.counts().live, 2);
    // Raising the limit takes effect at once.
    listener.set_max_connections(None);
    assert_eq!(listener.max_connections(), None);
    assert_eq!(round_trip(addr, b"free").await, b"free");
    // The getter shows the limit as set, even the largest.
    listener.set_max_connections(Some(usize::MAX));
    assert_eq!(listener.max_connections(), Some(usize::MAX));
}

#[tokio::test]
async fn disabled_listeners_leave_connections_in_the_backlog() {
    let listener = Listener::builder()
        .enabled(false)
        .bind_tcp(any_port(), |builder, _| Some(echo(builder)))
        .unwrap();
    assert!(!listener.is_enabled());
    let addr = *listener.local_addr();
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    waiting.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(300), waiting.read_exact(&mut buf))
            .await
            .is_err()
    );
    assert_eq!(listener.counts().accepted, 0);
    listener.enable();
    timeout(SOON, waiting.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"x");
    listener.disable();
    let mut next = TcpStream::connect(addr).await.unwrap();
    next.write_all(b"y").await.unwrap();
    assert!(
        timeout(Duration::from_millis(300), next.read_exact(&mut buf))
            .await
            .is_err()
    );
    assert_eq!(listener.counts().accepted, 1);
}

/// The default backlog is 1024: 300 connects complete while nothing accepts (with
/// 128, those past the backlog would wait for SYN retries).
#[tokio::test]
async fn the_default_backlog_holds_bursts_of_connects() {
    let listener = Listener::builder()
        .enabled(false)
        .bind_tcp(any_port(), |builder, _| Some(echo(builder)))
        .unwrap();
    let addr = *listener.local_addr();
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..300 {
        connects.spawn(async move {
            timeout(Duration::from_millis(900), TcpStream::connect(addr)).await
        });
    }
    let mut held = Vec::new();
    while let Some(done) = connects.join_next().await {
        held.push(
            done.unwrap()
                .expect("connect finished before a SYN retry")
                .unwrap(),
        );
    }
    assert_eq!(held.len(), 300);
}

#[tokio::test]
async fn shutdown_sends_what_is_queued_and_cuts_what_misses_the_deadline() {
    let listener = Listener::bind(any_port(), |builder, peer: &SocketAddr| {
        let _ = peer;
        Some(builder.enable(Direction::READ).on_read(|ctx| {
            // A request "big" queues 32 MiB; anything else a short answer.
            let request = ctx.input().take_all();
            if &request[..] == b"big" {
                ctx.output()
                    .add_bytes(bytes::Bytes::from(vec![7u8; 32 << 20]));
            } else {
                ctx.output().add(b"answer");
            }
        }))
    })
    .unwrap();
    let addr = *listener.local_addr();
    let mut reader = TcpStream::connect(addr).await.unwrap();
    reader.write_all(b"small").await.unwrap();
    let mut answer = [0u8; 6];
    timeout(SOON, reader.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer, b"answer");
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck.write_all(b"big").await.unwrap();
    // The stuck connection's answer fills the socket and stays queued.
    wait_for(|| listener.stats().output_len > 1 << 20).await;
    let report = timeout(SOON, listener.shutdown(Duration::from_millis(500)))
        .await
        .expect("shutdown is bounded by its deadline");
    assert_eq!((report.closed, report.cut), (1, 1), "{report:?}");
    assert_eq!(report.counts.live, 0);
    // The reader's connection was closed cleanly: EOF after its answer.
    let mut rest = Vec::new();
    timeout(SOON, reader.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    // The listener no longer accepts.
    assert!(TcpStream::connect(addr).await.is_err());
    drop(stuck);
}

#[tokio::test]
async fn dropping_the_listener_stops_accepting_and_keeps_connections() {
    let listener = Listener::bind(any_port(), |builder, _| Some(echo(builder))).unwrap();
    let addr = *listener.local_addr();
    let live = TcpStream::connect(addr).await.unwrap();
    wait_for(|| listener.counts().live == 1).await;
    drop(listener);
    // The socket closes once the accept task sees the drop.
    timeout(SOON, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the listening socket closes");
    assert_eq!(exchange(live, b"still served").await, b"still served");
}

/// Out of descriptors, the listener backs off instead of spinning, reports the error,
/// and serves again once descriptors are free. The listener runs in a child process
/// (this test, run again with `LISTENER_EMFILE_CHILD` set) under `ulimit -n 64`; this
/// process opens the connections and measures the child's CPU time.
#[cfg(target_os = "linux")]
#[test]
fn out_of_descriptors_the_listener_backs_off_without_spinning() {
    if std::env::var_os("LISTENER_EMFILE_CHILD").is_some() {
        return emfile_child();
    }
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" --exact out_of_descriptors_the_listener_backs_off_without_spinning --nocapture --test-threads 1")
        .arg(&exe)
        .env("LISTENER_EMFILE_CHILD", "1")
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("the child prints its port").unwrap();
        // libtest may print the test's name on the same line first.
        if let Some((_, port)) = line.split_once("port=") {
            break port.trim().parse().unwrap();
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // More connections than the child has descriptors: the kernel completes them all
    // (the backlog is 1024), the child accepts until EMFILE.
    let held: Vec<_> = (0..120)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let cpu_before = cpu_seconds(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let busy = cpu_seconds(child.id()) - cpu_before;
    assert!(
        busy < 0.4,
        "the saturated listener used {busy:.2} s of CPU in 2 s"
    );
    // Descriptors free again: a new connection is served (within the 1 s pause).
    drop(held);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(SOON)).unwrap();
    stream.write_all(b"served again").unwrap();
    let mut buf = [0u8; 12];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"served again");
    // Closing stdin ends the child, which reports what its error callback saw.
    drop(child.stdin.take());
    let mut report = String::new();
    for line in lines {
        report.push_str(&line.unwrap());
        report.push('\n');
    }
    assert!(child.wait().unwrap().success(), "child failed:\n{report}");
    let errors: usize = report
        .lines()
        .find_map(|l| l.split_once("resource_errors=").map(|(_, n)| n.trim()))
        .expect("the child's report")
        .parse()
        .unwrap();
    assert!(errors >= 1, "{report}");
    // Back-off, not a spin: at most about one attempt per pause (1, 2, 4 ... 1000 ms).
    assert!(errors < 40, "{errors} errors in about 3 s:\n{report}");
}

#[cfg(target_os = "linux")]
fn emfile_child() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let errors = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&errors);
        let listener = Listener::builder()
            .on_error(move |error, pause| {
                if error.raw_os_error() == Some(24) {
                    assert!(pause >= Duration::from_millis(1));
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            })
            .bind_tcp(any_port(), |builder, _| Some(echo(builder)))
            .unwrap();
        println!("port={}", listener.local_addr().port());
        // Runs until the parent closes stdin.
        let mut stdin = tokio::io::stdin();
        let mut sink = Vec::new();
        let _ = stdin.read_to_end(&mut sink).await;
        println!("resource_errors={}", errors.load(Ordering::SeqCst));
    });
}

/// User plus system CPU time of process `pid`, from `/proc/PID/stat`.
#[cfg(target_os = "linux")]
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// `SO_REUSEPORT`: several listeners (one per runtime, for thread-per-core servers)
/// share a port, and the kernel spreads connections over them.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn reuse_port_lets_listeners_share_a_port_and_spreads_connections() {
    let first = Listener::builder()
        .reuse_port(true)
        .bind_tcp(any_port(), |builder, _| Some(echo(builder)))
        .unwrap();
    let addr = *first.local_addr();
    let second = Listener::builder()
        .reuse_port(true)
        .bind_tcp(addr, |builder, _| Some(echo(builder)))
        .unwrap();
    // Without it, the port is taken.
    let taken = Listener::builder().bind_tcp(addr, |builder, _| Some(echo(builder)));
    assert_eq!(taken.unwrap_err().kind(), io::ErrorKind::AddrInUse);
    for i in 0..64u8 {
        assert_eq!(round_trip(addr, &[i; 10]).await, vec![i; 10]);
    }
    let (a, b) = (first.counts().accepted, second.counts().accepted);
    assert_eq!(a + b, 64);
    // Spread by a hash of each connection's addresses: each listener gets some (all
    // 64 on one would happen about once in 2^63 runs).
    assert!(a > 0 && b > 0, "{a} + {b}");
}

#[tokio::test]
async fn handles_kept_from_serve_then_do_not_keep_connections_live_and_show_their_stats() {
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = Arc::clone(&kept);
    let listener = Listener::builder()
        .bind_tcp_then(
            any_port(),
            |builder, _| Some(echo(builder)),
            move |bev| {
                keep.lock().unwrap().push(bev);
            },
        )
        .unwrap();
    let addr = *listener.local_addr();
    assert_eq!(round_trip(addr, b"counted").await, b"counted");
    // The connection ended although a handle to it is still held.
    wait_for(|| listener.counts().live == 0).await;
    let bev = kept.lock().unwrap().pop().unwrap();
    assert!(bev.is_closed());
    let stats = bev.stats();
    assert_eq!((stats.bytes_read, stats.bytes_written), (7, 7), "{stats:?}");
    assert!(stats.read_callbacks >= 1 && stats.event_callbacks >= 1);
}

#[tokio::test]
async fn shutdown_brings_forward_the_deadline_of_a_connection_already_closing() {
    let listener = Listener::bind(any_port(), |builder, _| {
        Some(
            builder
                .close_timeout(Some(Duration::from_secs(600)))
                .enable(Direction::READ)
                .on_read(|ctx| {
                    // Queue 32 MiB for a peer that never reads, and close: the close
                    // waits for the output with a deadline of ten minutes.
                    ctx.input().take_all();
                    ctx.output()
                        .add_bytes(bytes::Bytes::from(vec![1u8; 32 << 20]));
                    ctx.close();
                }),
        )
    })
    .unwrap();
    let addr = *listener.local_addr();
    let mut stuck = TcpStream::connect(addr).await.unwrap();
    stuck.write_all(b"go").await.unwrap();
    wait_for(|| listener.stats().output_len > 1 << 20).await;
    let started = tokio::time::Instant::now();
    let report = listener.shutdown(Duration::from_millis(300)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (report.closed, report.cut, report.counts.live),
        (0, 1, 0),
        "{report:?}"
    );
    drop(stuck);
}

#[tokio::test]
async fn shutdown_accepts_any_deadline() {
    let listener = Listener::bind(any_port(), |builder, _| Some(echo(builder))).unwrap();
    let report = timeout(SOON, listener.shutdown(Duration::MAX))
        .await
        .unwrap();
    assert_eq!((report.closed, report.cut), (0, 0));
    // The largest deadline in milliseconds still closes a live connection (it once
    // overflowed to "no request").
    let listener = Listener::bind(any_port(), |builder, _| Some(echo(builder))).unwrap();
    let _idle = TcpStream::connect(*listener.local_addr()).await.unwrap();
    wait_for(|| listener.counts().live == 1).await;
    let report = timeout(SOON, listener.shutdown(Duration::from_millis(u64::MAX)))
        .await
        .expect("an idle connection closes at once");
    assert_eq!((report.closed, report.cut), (1, 0), "{report:?}");
}

/// On a multi-thread runtime the connections' tasks run on every worker: the accept
/// task spawns them on its worker and idle workers take them over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_multi_thread_runtime_connections_run_on_every_worker() {
    let threads = Arc::new((
        std::sync::Mutex::new(std::collections::HashSet::new()),
        std::sync::Condvar::new(),
    ));
    let seen = Arc::clone(&threads);
    let listener = Listener::bind(any_port(), move |builder, _| {
        let seen = Arc::clone(&seen);
        Some(builder.enable(Direction::READ).on_read(move |ctx| {
            // Until callbacks have run on two threads, each one holds its worker, so
            // the other worker must take connections over for the test to go on:
            // however the scheduler chose, an idle worker is left only if it cannot.
            let (lock, changed) = &*seen;
            let mut threads = lock.lock().unwrap();
            threads.insert(std::thread::current().id());
            changed.notify_all();
            drop(
                changed
                    .wait_timeout_while(threads, Duration::from_secs(5), |t| t.len() < 2)
                    .unwrap(),
            );
            let (mut input, mut output) = ctx.io();
            output.append_input(&mut input);
        }))
    })
    .unwrap();
    let addr = *listener.local_addr();
    // 64 connections at once, each echoing 100 messages.
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..64 {
        clients.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 64];
            for i in 0..100u8 {
                stream.write_all(&[i; 64]).await.unwrap();
                timeout(SOON, stream.read_exact(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(buf, [i; 64]);
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    let workers = threads.0.lock().unwrap().len();
    assert_eq!(workers, 2, "callbacks ran on {workers} worker thread(s)");
}

/// A detached bufferevent with no callbacks has nothing to do: it ends at once and
/// closes its socket, as the documentation says.
#[tokio::test]
async fn a_detached_bufferevent_without_callbacks_ends_at_once() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    tokio_bufferevent::bufferevent::BufferEvent::builder()
        .tcp_detached(accepted)
        .unwrap();
    let mut buf = [0u8; 1];
    let read = timeout(Duration::from_secs(10), client.read(&mut buf))
        .await
        .expect("the server closed the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
}

/// An `Accept` of the application's own that panics: once in `poll_accept`, once
/// while setting up a connection.
struct Fragile {
    inner: tokio::net::TcpListener,
    accept_panics: std::sync::atomic::AtomicBool,
}

static SETUP_PANICS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

impl tokio_bufferevent::listener::Accept for Fragile {
    type Stream = TcpStream;
    type Addr = SocketAddr;

    fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<(TcpStream, SocketAddr)>> {
        if self.accept_panics.swap(false, Ordering::SeqCst) {
            panic!("poll_accept failed");
        }
        self.inner.poll_accept(cx)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn build<S: Send + 'static>(
        builder: Builder<S>,
        stream: TcpStream,
    ) -> io::Result<tokio_bufferevent::bufferevent::BufferEvent<TcpStream, S>> {
        if SETUP_PANICS.swap(false, Ordering::SeqCst) {
            panic!("build failed");
        }
        builder.tcp(stream)
    }
}

/// Panics in the application's `Accept` are contained: one in `poll_accept` is an
/// accept error (reported, backed off from), one while setting up a connection fails
/// that connection only; the listener serves on, and the counts add up.
#[tokio::test]
async fn a_panicking_acceptor_fails_a_connection_not_the_listener() {
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    let acceptor = Fragile {
        inner: tokio::net::TcpListener::bind(any_port()).await.unwrap(),
        accept_panics: true.into(),
    };
    let listener = Listener::builder()
        .on_error(move |error, _| seen.lock().unwrap().push(error.to_string()))
        .serve_then(
            acceptor,
            |builder, _| Some(echo(builder)),
            |_bev| {}, // with a `started` callback: `build` sets connections up
        )
        .unwrap();
    let addr = *listener.local_addr();
    wait_for(|| !errors.lock().unwrap().is_empty()).await;
    assert!(errors.lock().unwrap()[0].contains("poll_accept failed"));
    let _failed = TcpStream::connect(addr).await.unwrap();
    wait_for(|| listener.counts().failed == 1).await;
    assert_eq!(round_trip(addr, b"still serving").await, b"still serving");
    let counts = listener.counts();
    assert_eq!((counts.accepted, counts.failed), (2, 1), "{counts:?}");
    assert!(listener.is_enabled());
}

/// `shutdown` is bounded even while the application's template holds the accept task
/// (slow or blocking code building a connection): it resolves a second after its
/// deadline at the latest, and the connection built meanwhile closes as the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_while_a_template_holds_the_accept_task() {
    let (building_tx, building) = std::sync::mpsc::channel::<()>();
    let building_tx = std::sync::Mutex::new(building_tx);
    // The listener on a runtime of its own, whose one worker the template holds; the
    // test's shutdown runs here, on workers the template cannot hold.
    let accepting = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let entered = accepting.enter();
    let listener = Listener::bind(any_port(), move |builder, _| {
        let _ = building_tx.lock().unwrap().send(());
        // Blocking on purpose: the accept task cannot run meanwhile.
        std::thread::sleep(Duration::from_secs(4));
        // A callback, so that it has something to do and lives until closed.
        Some(builder.enable(Direction::READ).on_read(|_| {}))
    })
    .unwrap();
    drop(entered);
    let mut client = TcpStream::connect(*listener.local_addr()).await.unwrap();
    tokio::task::spawn_blocking(move || building.recv().unwrap())
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let report = timeout(SOON, listener.shutdown(Duration::from_millis(200)))
        .await
        .expect("bounded");
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "resolved {:?} after it began, with the template still running",
        started.elapsed()
    );
    assert_eq!(report.counts.live, 0, "{report:?}");
    // The connection the template was building is closed once built.
    let mut rest = Vec::new();
    timeout(SOON, client.read_to_end(&mut rest))
        .await
        .expect("the late connection is closed")
        .unwrap();
    accepting.shutdown_background();
}
