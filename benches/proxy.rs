//! The crate's proxy (a `Listener` whose connections are `pipe`d to the upstream)
//! against a raw Tokio proxy (`tokio::io::copy_bidirectional` per connection), side by
//! side in one run:
//!
//! ```text
//! cargo bench -p tokio-bufferevent-benches --bench proxy -- [MIB_PER_CONN] [REPS]
//! ```
//!
//! Each client connection sends `MIB_PER_CONN` (default 50) MiB through the proxy to an
//! echo upstream and reads it all back, with 1 and with 64 connections at once. The
//! proxies run on a runtime of their own (2 workers) whose threads' CPU time is read
//! from `/proc`, so CPU per GB is the proxy's alone. Runs alternate crate, raw, crate,
//! raw, ...; the ratio is taken pair by pair and summarised by its median.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_bufferevent::bufferevent::{BufferEvent, pipe};
use tokio_bufferevent::listener::Listener;

#[path = "side_by_side.rs"]
mod side_by_side;
use side_by_side::{median, positional, thread_cpu_seconds};

const PROXY_THREAD: &str = "bench-proxy";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proxy {
    Crate,
    Raw,
}

/// One measurement.
#[derive(Clone, Copy, Debug)]
struct Run {
    mb_s: f64,
    cpu_s_per_gb: f64,
    /// The most the crate's proxy held in its buffers, sampled (crate only).
    peak_buffered: usize,
}

fn main() {
    let [mib, reps] = positional([50.0, 3.0]);
    let (mib, reps) = (mib as usize, reps as usize);
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let proxy_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(PROXY_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let upstream = io.block_on(echo_upstream());
    println!(
        "proxy throughput, {mib} MiB each way per connection, {reps} reps (median; ratio crate/raw pair by pair)"
    );
    println!("| conns | proxy | MB/s (each way) | CPU s/GB | peak buffered | ratio (MB/s) |");
    println!("|---:|---|---:|---:|---:|---:|");
    for conns in [1usize, 64] {
        let mut runs: Vec<(Run, Run)> = Vec::new();
        for _ in 0..reps {
            let a = measure(&io, &proxy_rt, upstream, Proxy::Crate, conns, mib);
            let b = measure(&io, &proxy_rt, upstream, Proxy::Raw, conns, mib);
            runs.push((a, b));
        }
        let ratio = median(runs.iter().map(|(a, b)| a.mb_s / b.mb_s).collect());
        for (name, pick) in [("crate", 0), ("raw", 1)] {
            let get = |r: &(Run, Run)| if pick == 0 { r.0 } else { r.1 };
            let mb_s = median(runs.iter().map(|r| get(r).mb_s).collect());
            let cpu = median(runs.iter().map(|r| get(r).cpu_s_per_gb).collect());
            let peak = runs.iter().map(|r| get(r).peak_buffered).max().unwrap_or(0);
            let (peak, ratio) = if pick == 0 {
                (format!("{} KiB", peak >> 10), format!("{ratio:.2}"))
            } else {
                ("-".to_owned(), "-".to_owned())
            };
            println!("| {conns} | {name} | {mb_s:.0} | {cpu:.3} | {peak} | {ratio} |");
        }
    }
}

/// An echo upstream on the I/O runtime.
async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn measure(
    io: &Runtime,
    proxy_rt: &Runtime,
    upstream: SocketAddr,
    which: Proxy,
    conns: usize,
    mib: usize,
) -> Run {
    // Start the proxy on its own runtime.
    let (addr, crate_listener, raw_task) = proxy_rt.block_on(async move {
        match which {
            Proxy::Crate => {
                let listener = Listener::builder()
                    .bind_tcp_then(
                        "127.0.0.1:0".parse().unwrap(),
                        |builder, _| Some(builder),
                        move |client| {
                            let server = BufferEvent::builder().connect(upstream).unwrap();
                            tokio::spawn(async move { pipe(&client, &server).await });
                        },
                    )
                    .unwrap();
                (*listener.local_addr(), Some(listener), None)
            }
            Proxy::Raw => {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let task = tokio::spawn(async move {
                    while let Ok((mut client, _)) = listener.accept().await {
                        client.set_nodelay(true).unwrap();
                        tokio::spawn(async move {
                            let mut server = TcpStream::connect(upstream).await.unwrap();
                            server.set_nodelay(true).unwrap();
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        });
                    }
                });
                (addr, None, Some(task))
            }
        }
    });
    let bytes = mib << 20;
    let cpu_before = thread_cpu_seconds(PROXY_THREAD);
    let started = Instant::now();
    let mut peak_buffered = 0;
    io.block_on(async {
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..conns {
            clients.spawn(client(addr, bytes));
        }
        loop {
            tokio::select! {
                done = clients.join_next() => match done {
                    Some(result) => result.unwrap(),
                    None => break,
                },
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if let Some(listener) = &crate_listener {
                        let stats = listener.stats();
                        peak_buffered = peak_buffered.max(stats.input_len + stats.output_len);
                    }
                }
            }
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds(PROXY_THREAD) - cpu_before;
    drop(crate_listener);
    if let Some(task) = raw_task {
        task.abort();
    }
    let total = (bytes * conns) as f64;
    Run {
        mb_s: total / elapsed / 1e6,
        cpu_s_per_gb: cpu / (total / 1e9),
        peak_buffered,
    }
}

/// Sends `bytes` and reads them all back.
async fn client(addr: SocketAddr, bytes: usize) {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 64 << 10];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).await.unwrap();
            left -= n;
        }
        w.shutdown().await.unwrap();
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut got = 0;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    writer.await.unwrap();
    assert_eq!(got, bytes, "every byte came back");
}
