//! The echo server of the performance anchors (`../shared/anchors/README.md`), built on
//! bufferevents with callbacks, the way libevent's `le_echo_server.c` is:
//!
//! ```text
//! cargo run --release --example echo_server -- PORT [BIND] [--workers N | --current-thread | --per-core N] [--async | --async-copy]
//! ```
//!
//! `--async` echoes the Tokio way instead of with callbacks: a task per connection
//! takes each chunk of input from the bufferevent as a `Stream` and hands it back as a
//! `Sink`, without copying (see [`echo_async`]). `--async-copy` reads through
//! `AsyncRead` into a 16 KiB buffer and writes it back with `write_all`, as the
//! anchors' raw Tokio server does with a `TcpStream` (see [`echo_async_copy`]). Both
//! measure the async path against raw Tokio.
//!
//! `--per-core N` is the thread-per-core layout: `N` threads, each with a
//! current-thread runtime and a listener of its own on the same port (`SO_REUSEPORT`),
//! so the kernel spreads connections over the threads and a connection never moves
//! between them. The default is one listener on a multi-thread runtime, whose workers
//! share the connections.
//!
//! A [`Listener`] accepts; every connection is one bufferevent whose read callback
//! moves the input to the output without copying. Reading stops while more than 1 MiB waits to be sent and
//! resumes once it drains to 256 KiB (the write low watermark), so a client that does
//! not read cannot make the server buffer without bound. At the peer's EOF the server
//! sends what is queued, shuts down its write side and frees the connection; on an
//! error it frees at once. SIGINT or SIGTERM prints `accepted=N` and exits.

use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::process::ExitCode;

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{BufferEvent, Builder, Direction, Events, Watermarks};
use tokio_bufferevent::listener::Listener;

#[path = "shutdown_signal.rs"]
mod shutdown_signal;
use shutdown_signal::shutdown_signal;

/// Stop reading above this much queued output...
const STOP_READING_ABOVE: usize = 1 << 20;
/// ...and resume once it has drained to this much.
const RESUME_READING_AT: usize = 256 << 10;

/// Per-connection state, owned by the connection's task.
#[derive(Debug, Default)]
pub struct Echo {
    /// Reading was paused because the output was full.
    paused: bool,
}

/// The listener's template: one accepted connection's bufferevent.
pub fn echo(builder: Builder) -> Builder<Echo> {
    builder
        .with_state(Echo::default())
        .enable(Direction::READ)
        .write_watermarks(Watermarks::new(RESUME_READING_AT, 0))
        .on_read(|ctx| {
            let (mut input, mut output) = ctx.io();
            output.append_input(&mut input);
            if output.len() > STOP_READING_ABOVE {
                ctx.disable(Direction::READ);
                ctx.state().paused = true;
            }
        })
        .on_write(|ctx| {
            // The output drained to the low watermark: take more input.
            if std::mem::take(&mut ctx.state().paused) {
                ctx.enable(Direction::READ);
            }
        })
        .on_event(|ctx, events, _error| {
            if events.contains(Events::ERROR) {
                ctx.free();
            } else if events.contains(Events::EOF) {
                ctx.close(); // send the rest, FIN, then free
            }
        })
}

/// Serves the echo protocol on `host:port`: the listener binds with `SO_REUSEADDR`
/// and a backlog of 1024 (as the anchors' other servers; 128 overflows under bursts
/// of connects), and backs off on accept errors such as running out of descriptors.
pub fn listen(host: &str, port: u16) -> std::io::Result<Listener<TcpListener, Echo>> {
    Listener::bind(resolve(host, port)?, |builder, _peer| Some(echo(builder)))
}

/// As [`listen`], but each connection is echoed on a task of its own, by
/// [`echo_async_copy`] if `copy`, else by [`echo_async`].
pub fn listen_async(
    host: &str,
    port: u16,
    copy: bool,
) -> std::io::Result<Listener<TcpListener, ()>> {
    Listener::builder().bind_tcp_then(
        resolve(host, port)?,
        |builder, _peer| Some(builder),
        move |bev| {
            if copy {
                tokio::spawn(echo_async_copy(bev));
            } else {
                tokio::spawn(echo_async(bev));
            }
        },
    )
}

/// Echoes through the `Stream`/`Sink` adapter: each chunk of input goes back as it
/// is, and the adapter's watermarks (256 KiB each way) push back on a client that does
/// not read. At EOF it sends the rest and shuts down its write side; on an error it
/// frees the bufferevent at once.
pub async fn echo_async(bev: BufferEvent<TcpStream>) {
    let mut io = bev.into_io();
    let echoed = async {
        while let Some(chunk) = poll_fn(|cx| Pin::new(&mut io).poll_next(cx)).await {
            let chunk = chunk?;
            poll_fn(|cx| Pin::new(&mut io).poll_ready(cx)).await?;
            Pin::new(&mut io).start_send(chunk)?;
        }
        poll_fn(|cx| Pin::new(&mut io).poll_close(cx)).await
    };
    if echoed.await.is_err() {
        io.get_ref().free();
    }
}

/// Echoes through the `AsyncRead`/`AsyncWrite` adapter, as a Tokio program echoes a
/// `TcpStream`, copying through a 16 KiB buffer; otherwise as [`echo_async`].
pub async fn echo_async_copy(bev: BufferEvent<TcpStream>) {
    let mut io = bev.into_io();
    let mut buf = vec![0u8; 16 << 10];
    let echoed = async {
        loop {
            match io.read(&mut buf).await? {
                0 => return io.shutdown().await,
                n => io.write_all(&buf[..n]).await?,
            }
        }
    };
    if echoed.await.is_err() {
        io.get_ref().free();
    }
}

fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut port = None;
    let mut bind = None;
    let mut workers = None;
    let mut current_thread = false;
    let mut per_core = None;
    let mut async_mode = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--async" => async_mode = Some(false),
            "--async-copy" => async_mode = Some(true),
            "--per-core" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => per_core = Some(n),
                _ => return usage("--per-core needs a positive number"),
            },
            "--workers" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => workers = Some(n),
                _ => return usage("--workers needs a positive number"),
            },
            "--current-thread" => current_thread = true,
            flag if flag.starts_with('-') => return usage(&format!("unknown option {flag}")),
            _ if port.is_none() => match arg.parse::<u16>() {
                Ok(p) => port = Some(p),
                Err(_) => return usage(&format!("bad port {arg:?}")),
            },
            _ if bind.is_none() => bind = Some(arg),
            _ => return usage(&format!("unexpected argument {arg:?}")),
        }
    }
    let Some(port) = port else {
        return usage("missing PORT");
    };
    let bind = bind.unwrap_or_else(|| "127.0.0.1".to_owned());
    let modes = [per_core.is_some(), current_thread, workers.is_some()];
    if modes.iter().filter(|&&m| m).count() > 1 {
        return usage("--per-core, --current-thread and --workers exclude each other");
    }
    let workers = workers.unwrap_or(2);
    if let Some(threads) = per_core {
        if async_mode.is_some() {
            return usage("--async runs on one listener: not with --per-core");
        }
        return serve_per_core(&bind, port, threads);
    }
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if let Some(copy) = async_mode {
            serve(listen_async(&bind, port, copy), &bind, port).await
        } else {
            serve(listen(&bind, port), &bind, port).await
        }
    })
}

/// Serves until SIGINT or SIGTERM.
async fn serve<S: Send + 'static>(
    listener: std::io::Result<Listener<TcpListener, S>>,
    bind: &str,
    port: u16,
) -> ExitCode {
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {bind}:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", listener.local_addr());
    shutdown_signal().await;
    println!("accepted={}", listener.counts().accepted);
    ExitCode::SUCCESS
}

/// One thread, current-thread runtime and listener per core, sharing the port.
fn serve_per_core(bind: &str, port: u16, threads: usize) -> ExitCode {
    let addr = match (bind, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => addr,
        _ => return usage(&format!("bad address {bind}:{port}")),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut port = addr.port();
    let mut servers = Vec::new();
    for _ in 0..threads {
        let (ready, bound) = std::sync::mpsc::channel();
        let mut stopped = stopped.clone();
        let addr = SocketAddr::new(addr.ip(), port);
        servers.push(std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = Listener::builder()
                    .reuse_port(true)
                    .bind_tcp(addr, |builder, _peer| Some(echo(builder)));
                let listener = match listener {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return 0;
                    }
                };
                let _ = ready.send(Ok(*listener.local_addr()));
                let _ = stopped.wait_for(|stop| *stop).await;
                listener.counts().accepted
            })
        }));
        match bound.recv() {
            // Port 0 gives the first listener a port; the others share it.
            Ok(Ok(bound)) => port = bound.port(),
            Ok(Err(e)) => {
                eprintln!("bind {addr}: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => return ExitCode::FAILURE,
        }
    }
    println!(
        "listening on {} ({threads} threads, one listener each, SO_REUSEPORT)",
        SocketAddr::new(addr.ip(), port)
    );
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    signals.block_on(shutdown_signal());
    let _ = stop.send(true);
    let accepted: u64 = servers.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    println!("accepted={accepted}");
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "{problem}\nusage: echo_server PORT [BIND] [--workers N | --current-thread | --per-core N] [--async | --async-copy]"
    );
    ExitCode::from(2)
}
