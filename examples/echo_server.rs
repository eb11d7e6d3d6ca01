//! The echo server of the performance anchors (`../shared/anchors/README.md`), built on
//! bufferevents with callbacks, the way libevent's `le_echo_server.c` is:
//!
//! ```text
//! cargo run --release --example echo_server -- PORT [BIND] [--workers N | --current-thread]
//! ```
//!
//! Every connection is one bufferevent whose read callback moves the input to the
//! output without copying. Reading stops while more than 1 MiB waits to be sent and
//! resumes once it drains to 256 KiB (the write low watermark), so a client that does
//! not read cannot make the server buffer without bound. At the peer's EOF the server
//! sends what is queued, shuts down its write side and frees the connection; on an
//! error it frees at once. SIGINT or SIGTERM prints `accepted=N` and exits.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Watermarks};

/// Stop reading above this much queued output...
const STOP_READING_ABOVE: usize = 1 << 20;
/// ...and resume once it has drained to this much.
const RESUME_READING_AT: usize = 256 << 10;

/// Per-connection state, owned by the connection's task.
#[derive(Debug, Default)]
struct Echo {
    /// Reading was paused because the output was full.
    paused: bool,
}

/// Serves the echo protocol on one accepted connection.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    BufferEvent::builder_with_state(Echo::default())
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
        .tcp(stream)?;
    Ok(())
}

/// The listen backlog: 1024, as the anchors' other servers use. `TcpListener::bind`'s
/// 128 overflows under bursts of connects (8,000 connects with 512 in flight cost
/// 1,300 SYN overflows and fifteen times the connect time).
const BACKLOG: u32 = 1024;

/// Binds `host:port` with `SO_REUSEADDR` and a backlog of [`BACKLOG`].
pub fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts connections until the listener fails for good.
pub async fn accept_loop(listener: TcpListener, accepted: Arc<AtomicU64>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                accepted.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = serve(stream) {
                    eprintln!("connection setup failed: {e}");
                }
            }
            // Out of descriptors or similar: back off rather than spin, as the C server.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
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
        println!("listening on {}", listener.local_addr().expect("bound"));
        let accepted = Arc::new(AtomicU64::new(0));
        tokio::select! {
            () = accept_loop(listener, Arc::clone(&accepted)) => {}
            () = shutdown_signal() => {}
        }
        println!("accepted={}", accepted.load(Ordering::Relaxed));
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
