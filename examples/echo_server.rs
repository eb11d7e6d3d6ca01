//! The echo server of the performance anchors (`../shared/anchors/README.md`), built on
//! bufferevents with callbacks, the way libevent's `le_echo_server.c` is:
//!
//! ```text
//! cargo run --release --example echo_server -- PORT [BIND] [--workers N | --current-thread]
//! ```
//!
//! A [`Listener`] accepts; every connection is one bufferevent whose read callback
//! moves the input to the output without copying. Reading stops while more than 1 MiB waits to be sent and
//! resumes once it drains to 256 KiB (the write low watermark), so a client that does
//! not read cannot make the server buffer without bound. At the peer's EOF the server
//! sends what is queued, shuts down its write side and frees the connection; on an
//! error it frees at once. SIGINT or SIGTERM prints `accepted=N` and exits.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use tokio::net::TcpListener;
use tokio_bufferevent::bufferevent::{Builder, Direction, Events, Watermarks};
use tokio_bufferevent::listener::Listener;

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
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    Listener::bind(addr, |builder, _peer| Some(echo(builder)))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut port = None;
    let mut bind = "127.0.0.1".to_owned();
    let mut workers = 2;
    let mut current_thread = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--workers" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => workers = n,
                _ => return usage("--workers needs a positive number"),
            },
            "--current-thread" => current_thread = true,
            _ if port.is_none() => match arg.parse::<u16>() {
                Ok(p) => port = Some(p),
                Err(_) => return usage(&format!("bad port {arg:?}")),
            },
            _ => bind = arg,
        }
    }
    let Some(port) = port else {
        return usage("missing PORT");
    };
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
        let listener = match listen(&bind, port) {
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
    })
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("{problem}\nusage: echo_server PORT [BIND] [--workers N | --current-thread]");
    ExitCode::from(2)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
