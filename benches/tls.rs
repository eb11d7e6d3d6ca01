//! The TLS filter against rustls driven by hand over a Tokio `TcpStream`, side by side
//! in one run: two TLS echo servers with the same `ServerConfig` (TLS 1.3 only,
//! `TLS13_AES_128_GCM_SHA256` only), the same clients.
//!
//! ```text
//! cargo bench -p tokio-bufferevent-benches --bench tls -- [SECONDS] [REPS]
//! ```
//!
//! - **crate**: each accepted connection is a socket bufferevent (single reads and
//!   writes of up to 64 KiB, as the hand-driven server's buffer) under
//!   [`filters::tls::server`](tokio_bufferevent::filters::tls::server), whose read
//!   callback moves the plaintext input to the output (reading stops above 1 MiB of
//!   output and resumes at 256 KiB, as the anchors' echo server).
//! - **hand**: a task per connection that reads ciphertext from the `TcpStream` into a
//!   buffer, feeds it to a `rustls::ServerConnection`, copies the plaintext out of
//!   its reader into its writer, and writes the records back with `write_all` (which
//!   waits for the socket: backpressure) before it reads again.
//!
//! The clients are TLS client bufferevents on a runtime of their own: echo throughput
//! (`CHUNK` = 64 KiB writes, four in flight per connection) with 1 and 16 connections,
//! and ping-pong of 64 bytes over one connection. The servers run on a runtime of
//! their own (2 workers) whose threads' CPU time is read from `/proc`. Each
//! measurement runs `SECONDS` (default 2); runs alternate crate, hand, crate, hand,
//! ...; the ratio is taken pair by pair and summarised by its median.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Watermarks};

#[path = "side_by_side.rs"]
mod side_by_side;
use side_by_side::{median, positional, spread, thread_cpu_seconds};
use tokio_bufferevent::filters::tls;
use tokio_bufferevent::filters::tls::rustls::{
    self, ClientConfig, RootCertStore, ServerConfig, ServerConnection,
    pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName},
};

/// Short: `/proc` keeps 15 bytes of a thread's name.
const SERVER_THREAD: &str = "bench-tls-srv";
const CHUNK: usize = 64 << 10;
const WINDOW: usize = 4 * CHUNK;
const MSG: usize = 64;

#[derive(Clone, Copy, Debug)]
enum Test {
    Throughput(usize),
    PingPong,
}

fn main() {
    let [secs, reps] = positional([2.0, 3.0]);
    let reps = reps as usize;
    let run_for = Duration::from_secs_f64(secs);
    let (cert, server_config) = server_config();
    let client_config = client_config(cert);
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let crate_addr = servers.block_on(crate_server(Arc::clone(&server_config)));
    let hand_addr = servers.block_on(hand_server(Arc::clone(&server_config)));
    println!(
        "TLS 1.3 AES-128-GCM echo: the TLS filter vs rustls driven by hand, {secs} s per run, {reps} reps (median; ratio pair by pair)"
    );
    println!("| test | crate | hand | server CPU crate / hand | crate/hand (min–max) | target |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (test, name, unit, target) in [
        (Test::Throughput(1), "throughput, 1 conn", "MB/s", 0.95),
        (Test::Throughput(16), "throughput, 16 conns", "MB/s", 0.95),
        (Test::PingPong, "ping-pong 64 B, 1 conn", "k rt/s", 0.9),
    ] {
        let mut runs = Vec::new();
        for _ in 0..reps {
            let mut pair = [(0.0, 0.0); 2];
            for (i, addr) in [crate_addr, hand_addr].into_iter().enumerate() {
                let cpu_before = thread_cpu_seconds(SERVER_THREAD);
                let rate = clients.block_on(measure(test, addr, &client_config, run_for));
                let cpu = thread_cpu_seconds(SERVER_THREAD) - cpu_before;
                pair[i] = (rate, cpu / (rate * run_for.as_secs_f64()));
            }
            runs.push(pair);
        }
        let ratios: Vec<f64> = runs.iter().map(|r| r[0].0 / r[1].0).collect();
        let (lo, hi) = spread(&ratios);
        let scale = match test {
            Test::Throughput(_) => 1e-6,
            Test::PingPong => 1e-3,
        };
        println!(
            "| {name} ({unit}) | {:.1} | {:.1} | {:.2} | {:.2} ({lo:.2}–{hi:.2}) | {target:.2} |",
            median(runs.iter().map(|r| r[0].0).collect()) * scale,
            median(runs.iter().map(|r| r[1].0).collect()) * scale,
            median(runs.iter().map(|r| r[0].1 / r[1].1).collect()),
            median(ratios),
        );
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    Arc::new(provider)
}

fn server_config() -> (CertificateDer<'static>, Arc<ServerConfig>) {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = key.cert.der().clone();
    let private = PrivatePkcs8KeyDer::from(key.signing_key.serialize_der());
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], private.into())
        .unwrap();
    (cert, Arc::new(config))
}

fn client_config(trusted: CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted).unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts on a loopback port, handing each connection (`TCP_NODELAY` set) to `serve`.
async fn accept_loop(
    config: Arc<ServerConfig>,
    serve: impl Fn(TcpStream, &Arc<ServerConfig>) + Send + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            serve(stream, &config);
        }
    });
    addr
}

/// The crate's server: a TLS filter over each accepted socket, echoing by callbacks.
async fn crate_server(config: Arc<ServerConfig>) -> SocketAddr {
    accept_loop(config, |stream, config| {
        let (input, output) = tls::server(Arc::clone(config)).unwrap();
        // Reads and writes of up to 64 KiB, as the hand-driven server's buffer.
        let socket = BufferEvent::builder()
            .max_single_read(CHUNK)
            .max_single_write(CHUNK)
            .tcp(stream)
            .unwrap();
        let bev = BufferEvent::builder_with_state(false)
            .enable(Direction::READ)
            .write_watermarks(Watermarks::new(256 << 10, 0))
            .on_read(|ctx| {
                let (mut input, mut output) = ctx.io();
                output.append_input(&mut input);
                if output.len() > 1 << 20 {
                    ctx.disable(Direction::READ);
                    *ctx.state() = true;
                }
            })
            .on_write(|ctx| {
                if std::mem::take(ctx.state()) {
                    ctx.enable(Direction::READ);
                }
            })
            .on_event(|ctx, events, _| {
                if events.contains(Events::ERROR) {
                    ctx.free();
                } else if events.contains(Events::EOF) {
                    ctx.close();
                }
            })
            .filter(socket, input, output);
        drop(bev);
    })
    .await
}

/// rustls driven by hand: a task per connection.
async fn hand_server(config: Arc<ServerConfig>) -> SocketAddr {
    accept_loop(config, |stream, config| {
        let mut conn = ServerConnection::new(Arc::clone(config)).unwrap();
        // Each read's plaintext is echoed whole and sent before the next read, so
        // rustls's buffer holds at most one read's worth.
        conn.set_buffer_limit(None);
        tokio::spawn(async move {
            let _ = hand_echo(stream, conn).await;
        });
    })
    .await
}

async fn hand_echo(mut stream: TcpStream, mut conn: ServerConnection) -> std::io::Result<()> {
    let mut ciphertext = vec![0u8; CHUNK];
    let mut plaintext = vec![0u8; CHUNK];
    let mut records = Vec::with_capacity(CHUNK);
    loop {
        while conn.wants_write() {
            records.clear();
            conn.write_tls(&mut records)?;
            stream.write_all(&records).await?;
        }
        let n = stream.read(&mut ciphertext).await?;
        if n == 0 {
            return Ok(());
        }
        let mut fed = &ciphertext[..n];
        while !fed.is_empty() {
            // rustls takes ciphertext only while its plaintext buffer has room: echo
            // what each record gave before feeding the next.
            conn.read_tls(&mut fed)?;
            conn.process_new_packets().map_err(std::io::Error::other)?;
            loop {
                match conn.reader().read(&mut plaintext) {
                    Ok(0) => {
                        conn.send_close_notify();
                        break;
                    }
                    Ok(n) => conn.writer().write_all(&plaintext[..n])?,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

type Client = BufferEvent<tokio_bufferevent::bufferevent::Filtered<TcpStream>>;

/// A TLS client bufferevent connected to `addr`, reading with `on_read`.
async fn client(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    on_read: impl FnMut(&mut tokio_bufferevent::bufferevent::Context<'_, ()>) + Send + 'static,
) -> Client {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (input, output) = tls::client(
        Arc::clone(config),
        ServerName::try_from("localhost".to_owned()).unwrap(),
    )
    .unwrap();
    BufferEvent::builder()
        .enable(Direction::READ)
        .on_read(on_read)
        .filter(BufferEvent::builder().tcp(stream).unwrap(), input, output)
}

/// Bytes echoed or round trips per second, after a warm-up that covers the
/// handshakes.
async fn measure(
    test: Test,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    run_for: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let chunk = bytes::Bytes::from(vec![5u8; CHUNK]);
    let msg = bytes::Bytes::from(vec![6u8; MSG]);
    let mut clients = Vec::new();
    match test {
        Test::Throughput(conns) => {
            for _ in 0..conns {
                // Keeps WINDOW bytes in flight: a chunk out for each chunk back.
                let (done, next) = (Arc::clone(&done), chunk.clone());
                let mut received = 0usize;
                let bev = client(addr, config, move |ctx| {
                    let mut input = ctx.input();
                    let n = input.len();
                    input.drain(n);
                    done.fetch_add(n as u64, Ordering::Relaxed);
                    received += n;
                    while received >= CHUNK {
                        received -= CHUNK;
                        ctx.output().add_bytes(next.clone());
                    }
                })
                .await;
                for _ in 0..WINDOW / CHUNK {
                    bev.write_now(chunk.clone()).unwrap();
                }
                clients.push(bev);
            }
        }
        Test::PingPong => {
            let (done, next) = (Arc::clone(&done), msg.clone());
            let bev = client(addr, config, move |ctx| {
                let mut input = ctx.input();
                while input.len() >= MSG {
                    input.drain(MSG);
                    done.fetch_add(1, Ordering::Relaxed);
                    ctx.output().add_bytes(next.clone());
                    input = ctx.input();
                }
            })
            .await;
            bev.write_now(msg).unwrap();
            clients.push(bev);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let at_start = done.load(Ordering::Relaxed);
    tokio::time::sleep(run_for).await;
    let rate = (done.load(Ordering::Relaxed) - at_start) as f64 / started.elapsed().as_secs_f64();
    for bev in clients {
        bev.free();
    }
    rate
}
