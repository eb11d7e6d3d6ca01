//! A TCP proxy: a [`Listener`] whose every connection is [`pipe`]d to an upstream,
//! optionally over TLS.
//!
//! ```text
//! cargo run --release --example proxy -- LISTEN_ADDR UPSTREAM_ADDR [--tls-upstream NAME] [--ca FILE] [--max-conns N] [--connect-timeout SECS]
//! ```
//!
//! For example, `proxy 127.0.0.1:8080 127.0.0.1:8000`, then
//! `curl http://127.0.0.1:8080/file`. Each direction stops reading while the other
//! side has more than 1 MiB to send, so the proxy's memory is bounded whatever the
//! speeds of the client and the upstream; half-closes pass through.
//!
//! - `--tls-upstream NAME`: speak TLS to the upstream, checking its certificate for
//!   `NAME` against the system's trusted roots (`SSL_CERT_FILE`, or
//!   `/etc/ssl/certs/ca-certificates.crt`) or those of `--ca FILE` (PEM).
//! - `--max-conns N`: at most `N` client connections at once; more wait in the backlog.
//!
//! An upstream that does not answer a connect within 10 s (`--connect-timeout SECS`,
//! at most 60) fails that client's connection (it is closed); a side that takes nothing of what is queued for it for
//! 60 s (a peer that vanished, or stopped reading) fails the connection too, so
//! neither holds a connection slot and its buffers for ever.
//!
//! SIGINT or SIGTERM stops accepting, closes every connection (what is queued is sent
//! within 5 s), and prints the listener's statistics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_bufferevent::bufferevent::{BufferEvent, Filtered, PipeEnd, PipeSide, pipe};
use tokio_bufferevent::filters::tls::{
    self,
    rustls::{self, ClientConfig, RootCertStore, pki_types::ServerName},
};
use tokio_bufferevent::listener::Listener;

#[path = "shutdown_signal.rs"]
mod shutdown_signal;
use shutdown_signal::shutdown_signal;

/// How long an upstream may take to accept a connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long either side may leave what is queued for it untaken before the
/// connection fails (a write timeout: only while something waits to be sent).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the command line asks for.
#[derive(Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
    pub tls_name: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub max_conns: Option<usize>,
    pub connect_timeout: Duration,
}

const USAGE: &str = "usage: proxy LISTEN_ADDR UPSTREAM_ADDR [--tls-upstream NAME] [--ca FILE] [--max-conns N] \
     [--connect-timeout SECS]";

impl Options {
    /// Parses the arguments after the program's name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut args = args.into_iter();
        let mut positional = Vec::new();
        let (mut tls_name, mut ca_file, mut max_conns) = (None, None, None);
        let mut connect_timeout = CONNECT_TIMEOUT;
        while let Some(arg) = args.next() {
            let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
            match arg.as_str() {
                "--tls-upstream" => tls_name = Some(value("--tls-upstream")?),
                "--ca" => ca_file = Some(PathBuf::from(value("--ca")?)),
                "--max-conns" => {
                    let n = value("--max-conns")?;
                    max_conns = Some(
                        n.parse::<usize>()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or(format!("--max-conns: {n:?} is not a positive number"))?,
                    );
                }
                "--connect-timeout" => {
                    let secs = value("--connect-timeout")?;
                    connect_timeout = secs
                        .parse::<f64>()
                        .ok()
                        .filter(|s| *s > 0.0 && *s <= STALL_TIMEOUT.as_secs_f64())
                        .map(Duration::from_secs_f64)
                        .ok_or(format!(
                            "--connect-timeout: {secs:?} is not a number of seconds in (0, {}] \
                             (what the client sent waits for the upstream, and the stall \
                             timeout bounds that wait too)",
                            STALL_TIMEOUT.as_secs()
                        ))?;
                }
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                _ => positional.push(arg),
            }
        }
        let [listen, upstream] = <[String; 2]>::try_from(positional)
            .map_err(|_| "expected LISTEN_ADDR and UPSTREAM_ADDR".to_owned())?;
        let addr = |what: &str, s: &str| {
            s.parse::<SocketAddr>()
                .map_err(|e| format!("{what} {s:?}: {e} (expected IP:PORT)"))
        };
        Ok(Self {
            listen: addr("LISTEN_ADDR", &listen)?,
            upstream: addr("UPSTREAM_ADDR", &upstream)?,
            tls_name,
            ca_file,
            max_conns,
            connect_timeout,
        })
    }
}

/// The TLS client configuration for `--tls-upstream`.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<Arc<ClientConfig>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let path = match ca_file {
        Some(path) => path.clone(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt")),
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        // A bundle may hold certificates this TLS stack cannot use; skip those.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("no usable certificate in {}", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The upstream side of one connection.
enum Upstream {
    Plain(BufferEvent),
    Tls(BufferEvent<Filtered<tokio::net::TcpStream>>),
}

/// Starts the proxy; it runs until the listener is shut down or dropped.
pub fn start(options: &Options) -> Result<Listener<TcpListener>, String> {
    let tls = match &options.tls_name {
        Some(name) => {
            let name = ServerName::try_from(name.clone())
                .map_err(|e| format!("--tls-upstream {name:?}: {e}"))?;
            Some((tls_config(options.ca_file.as_ref())?, name))
        }
        None => None,
    };
    let upstream = options.upstream;
    let connect_timeout = options.connect_timeout;
    let mut builder = Listener::builder();
    if let Some(n) = options.max_conns {
        builder.max_connections(n);
    }
    builder
        .on_error(|error, pause| eprintln!("proxy: accept: {error} (pausing {pause:?})"))
        .bind_tcp_then(
            options.listen,
            |builder, _peer| Some(builder.timeouts(None, Some(STALL_TIMEOUT))),
            move |client| {
                let connected = BufferEvent::builder()
                    .connect_timeout(connect_timeout)
                    .timeouts(None, Some(STALL_TIMEOUT))
                    .connect(upstream)
                    .and_then(|server| {
                        Ok(match &tls {
                            None => Upstream::Plain(server),
                            Some((config, name)) => {
                                let (input, output) = tls::client(Arc::clone(config), name.clone())
                                    .map_err(std::io::Error::other)?;
                                Upstream::Tls(BufferEvent::builder().filter(server, input, output))
                            }
                        })
                    });
                let server = match connected {
                    Ok(server) => server,
                    Err(e) => {
                        eprintln!("proxy: upstream {upstream}: {e}");
                        client.free();
                        return;
                    }
                };
                tokio::spawn(async move {
                    let piped = match &server {
                        Upstream::Plain(server) => pipe(&client, server).await,
                        Upstream::Tls(server) => pipe(&client, server).await,
                    };
                    if let PipeEnd::Failed {
                        side,
                        events,
                        error,
                    } = &piped.end
                    {
                        let error = error.as_ref().map(ToString::to_string).unwrap_or_default();
                        let side = match side {
                            PipeSide::A => "client",
                            PipeSide::B => "upstream",
                        };
                        eprintln!("proxy: the {side} side failed: {events:?} {error}");
                    }
                });
            },
        )
        .map_err(|e| format!("listen on {}: {e}", options.listen))
}

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("{problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match start(&options) {
            Ok(listener) => listener,
            Err(problem) => {
                eprintln!("proxy: {problem}");
                return ExitCode::FAILURE;
            }
        };
        println!(
            "proxying {} -> {}{}",
            listener.local_addr(),
            options.upstream,
            if options.tls_name.is_some() { " (TLS)" } else { "" }
        );
        shutdown_signal().await;
        let stats = listener.stats();
        let report = listener.shutdown(Duration::from_secs(5)).await;
        println!(
            "accepted={} refused={} failed={} closed={} cut={} live_bytes_read={} live_bytes_written={}",
            report.counts.accepted,
            report.counts.refused,
            report.counts.failed,
            report.closed,
            report.cut,
            stats.bytes_read,
            stats.bytes_written,
        );
        ExitCode::SUCCESS
    })
}
