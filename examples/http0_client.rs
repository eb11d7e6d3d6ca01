//! The seed chapter's "Trivial HTTP v0 client", on `BufferEvent::connect_hostname`:
//!
//! ```text
//! cargo run --example http0_client -- HOST RESOURCE [PORT] [--dns IP:PORT] [--family inet|inet6|unspec] [--timeout SECS]
//! ```
//!
//! It resolves HOST (through the name server given with `--dns` instead of the
//! system's), connects, sends `GET RESOURCE\r\n`, collects the response and prints it
//! at the server's EOF (at most 64 MiB: a larger one ends the fetch with an error). A failed lookup prints the structured DNS error and exits
//! with status 1. A server that does not connect, or stops sending, for `--timeout`
//! seconds (default 30) ends it too, with "Error: timed out" and status 1. `tests/http0_client.rs` runs it against a server and a DNS server of
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
    timeout: Duration,
}

/// How long the client waits for the connect, and then for each read, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Args {
    /// Parses `HOST RESOURCE [PORT] [--dns IP:PORT] [--family inet|inet6|unspec]
    /// [--timeout SECS]`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut positional = Vec::new();
        let (mut dns, mut family, mut timeout) = (None, Family::Unspec, DEFAULT_TIMEOUT);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--dns" => {
                    let value = args.next().ok_or("--dns needs IP:PORT")?;
                    dns = Some(value.parse().map_err(|_| format!("bad --dns {value:?}"))?);
                }
                "--timeout" => {
                    let value = args.next().ok_or("--timeout needs SECS")?;
                    let secs: f64 = value
                        .parse()
                        .map_err(|_| format!("bad --timeout {value:?}"))?;
                    timeout = Duration::try_from_secs_f64(secs)
                        .ok()
                        .filter(|t| !t.is_zero() && *t <= Duration::from_secs(86_400))
                        .ok_or_else(|| format!("bad --timeout {value:?}: seconds in (0, 86400]"))?;
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
            timeout,
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

/// The largest response kept: a server that sends for ever must not fill memory.
const MAX_BODY: usize = 64 << 20;

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
    // Beyond the chapter: a server that never connects or never answers ends the
    // fetch instead of holding it for ever.
    .connect_timeout(args.timeout)
    .timeouts(Some(args.timeout), Some(args.timeout))
    // The chapter's `readcb`: take everything that arrived.
    .on_read(|ctx| {
        let data = ctx.input().take_all();
        let page = ctx.state();
        if page.body.len() + data.len() > MAX_BODY {
            if let Some(done) = page.done.take() {
                let _ = done.send(Outcome {
                    events: Events::READING | Events::ERROR,
                    error: Some(format!("the response is larger than {MAX_BODY} bytes")),
                    body: Vec::new(),
                    connected: page.connected,
                });
            }
            ctx.free();
            return;
        }
        page.body.extend_from_slice(&data);
    })
    // The chapter's `eventcb`.
    .on_event(|ctx, events, error| {
        if events.contains(Events::CONNECTED) {
            ctx.state().connected = true;
        } else if events.intersects(Events::EOF | Events::ERROR | Events::TIMEOUT) {
            let rest = ctx.input().take_all();
            let page = ctx.state();
            page.body.extend_from_slice(&rest);
            if let Some(done) = page.done.take() {
                let error = match error {
                    Some(e) => Some(e.to_string()),
                    None if events.contains(Events::TIMEOUT) => Some("timed out".to_owned()),
                    None => None,
                };
                let _ = done.send(Outcome {
                    events,
                    error,
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
                 [--family inet|inet6|unspec] [--timeout SECS]"
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
