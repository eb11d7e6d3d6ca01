//! The seed chapter's "Trivial HTTP v0 client", on `BufferEvent::connect_hostname`:
//!
//! ```text
//! cargo run --example http0_client -- HOST RESOURCE [PORT] [--dns IP:PORT] [--family inet|inet6|unspec]
//! ```
//!
//! It resolves HOST (through the name server given with `--dns` instead of the
//! system's), connects, sends `GET RESOURCE\r\n`, prints the response as it arrives and
//! exits at the server's EOF. A failed lookup prints the structured DNS error and exits
//! with status 1. `tests/http0_client.rs` runs it against a server and a DNS server of
//! its own.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Events, Family, Resolver};

/// Parsed command line.
#[derive(Debug)]
pub struct Args {
    host: String,
    resource: String,
    port: u16,
    dns: Option<SocketAddr>,
    family: Family,
}

impl Args {
    /// Parses `HOST RESOURCE [PORT] [--dns IP:PORT] [--family inet|inet6|unspec]`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut positional = Vec::new();
        let (mut dns, mut family) = (None, Family::Unspec);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--dns" => {
                    let value = args.next().ok_or("--dns needs IP:PORT")?;
                    dns = Some(value.parse().map_err(|_| format!("bad --dns {value:?}"))?);
                }
                "--family" => {
                    family = match args.next().as_deref() {
                        Some("inet") => Family::Inet,
                        Some("inet6") => Family::Inet6,
                        Some("unspec") => Family::Unspec,
                        other => return Err(format!("bad --family {other:?}")),
                    };
                }
                _ => positional.push(arg),
            }
        }
        let mut positional = positional.into_iter();
        let host = positional.next().ok_or("missing HOST")?;
        let resource = positional.next().ok_or("missing RESOURCE")?;
        let port = match positional.next() {
            Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
            None => 80,
        };
        if let Some(extra) = positional.next() {
            return Err(format!("unexpected argument {extra:?}"));
        }
        Ok(Self {
            host,
            resource,
            port,
            dns,
            family,
        })
    }
}

/// What the callbacks collect: the chapter's read callback prints as data arrives; here
/// it is gathered for `out`.
struct Page {
    body: Vec<u8>,
    connected: bool,
    done: Option<oneshot::Sender<Outcome>>,
}

/// How the fetch ended, sent by the event callback.
struct Outcome {
    events: Events,
    error: Option<String>,
    body: Vec<u8>,
    connected: bool,
}

/// Fetches the resource, writing the response (and any error) to `out`. Returns
/// whether the page arrived and the server closed cleanly.
pub async fn run(args: Args, out: &mut (dyn Write + Send)) -> std::io::Result<bool> {
    let resolver = match args.dns {
        Some(server) => Some(Resolver::with_name_servers(
            &[server],
            Duration::from_secs(2),
        )?),
        None => None,
    };
    let (done, finished) = oneshot::channel();
    let bev = BufferEvent::builder_with_state(Page {
        body: Vec::new(),
        connected: false,
        done: Some(done),
    })
    .enable(Direction::READ)
    // The chapter's `readcb`: take everything that arrived.
    .on_read(|ctx| {
        let data = ctx.input().take_all();
        ctx.state().body.extend_from_slice(&data);
    })
    // The chapter's `eventcb`.
    .on_event(|ctx, events, error| {
        if events.contains(Events::CONNECTED) {
            ctx.state().connected = true;
        } else if events.intersects(Events::EOF | Events::ERROR) {
            let rest = ctx.input().take_all();
            let page = ctx.state();
            page.body.extend_from_slice(&rest);
            if let Some(done) = page.done.take() {
                let _ = done.send(Outcome {
                    events,
                    error: error.map(ToString::to_string),
                    body: std::mem::take(&mut page.body),
                    connected: page.connected,
                });
            }
            ctx.free();
        }
    })
    .unconnected::<TcpStream>();
    // The request may be queued before the connection exists (B-50).
    bev.write_now(format!("GET {}\r\n", args.resource))?;
    bev.connect_hostname(resolver.as_ref(), args.family, &args.host, args.port)?;
    let Outcome {
        events,
        error,
        body,
        connected,
    } = finished
        .await
        .map_err(|_| std::io::Error::other("the bufferevent ended without an event"))?;
    let dns_error = bev.dns_error();
    if connected {
        writeln!(out, "Connect okay.")?;
    }
    out.write_all(&body)?;
    if let Some(dns) = dns_error {
        writeln!(out, "DNS error: {dns}")?;
        return Ok(false);
    }
    if let Some(error) = error {
        writeln!(out, "Error: {error}")?;
        return Ok(false);
    }
    writeln!(out, "Closing")?;
    Ok(events.contains(Events::EOF))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            eprintln!(
                "{problem}\nusage: http0_client HOST RESOURCE [PORT] [--dns IP:PORT] \
                 [--family inet|inet6|unspec]"
            );
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout();
    match run(args, &mut stdout).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("http0_client: {e}");
            ExitCode::FAILURE
        }
    }
}
