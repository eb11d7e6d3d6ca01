//! Connecting by hostname: a [`Resolver`] many bufferevents share (libevent's
//! `evdns_base`), the address [`Family`] to ask for, and a structured [`DnsError`]
//! (libevent's `bufferevent_socket_get_dns_error`).

use std::error::Error;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup_ip::LookupIp;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as LookupError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use tokio::sync::OnceCell;

/// Which addresses a hostname connect asks for (`AF_INET`, `AF_INET6`, `AF_UNSPEC`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 only (A records).
    Inet,
    /// IPv6 only (AAAA records).
    Inet6,
    /// Both; the addresses are tried alternately by family (RFC 8305 order).
    #[default]
    Unspec,
}

impl Family {
    fn admits(self, ip: &IpAddr) -> bool {
        match self {
            Self::Inet => ip.is_ipv4(),
            Self::Inet6 => ip.is_ipv6(),
            Self::Unspec => true,
        }
    }
}

/// An asynchronous DNS resolver shared by any number of bufferevents (libevent's
/// `evdns_base`). Cheap to clone; clones share one cache and one set of connections.
///
/// Lookups never block a runtime thread. Built on hickory-resolver.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// A resolver configured from the system (`/etc/resolv.conf` on Unix, the
    /// registry on Windows). Reading the configuration is a small blocking file read:
    /// call it outside the runtime's threads, or once at start-up.
    ///
    /// # Errors
    ///
    /// An [`io::Error`] of kind [`io::ErrorKind::Other`], with hickory-resolver's
    /// message, if the configuration cannot be read or parsed.
    pub fn from_system_conf() -> io::Result<Self> {
        let inner = TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map_err(|e| io::Error::other(format!("system resolver configuration: {e}")))?;
        Ok(Self { inner })
    }

    /// A resolver that asks the given name servers (UDP, falling back to TCP for
    /// truncated answers), waiting up to `timeout` for each answer and trying each
    /// server once. The hosts file is not consulted.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `servers` is empty or `timeout` is zero
    /// (every lookup would time out at once);
    /// [`io::ErrorKind::Other`], with hickory-resolver's message, if the resolver
    /// cannot be built.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_bufferevent::bufferevent::Resolver;
    ///
    /// let resolver = Resolver::with_name_servers(
    ///     &["127.0.0.1:5353".parse().unwrap()],
    ///     Duration::from_secs(2),
    /// )?;
    /// # let _ = resolver;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_name_servers(servers: &[SocketAddr], timeout: Duration) -> io::Result<Self> {
        Self::build(servers, timeout, NameServerConfig::udp_and_tcp)
    }

    /// Like [`with_name_servers`](Self::with_name_servers), but asks over TCP only (for
    /// servers or networks that do not carry DNS over UDP).
    ///
    /// # Errors
    ///
    /// As [`with_name_servers`](Self::with_name_servers):
    /// [`io::ErrorKind::InvalidInput`] if `servers` is empty or `timeout` is zero;
    /// [`io::ErrorKind::Other`] if the resolver cannot be built.
    pub fn with_tcp_name_servers(servers: &[SocketAddr], timeout: Duration) -> io::Result<Self> {
        Self::build(servers, timeout, NameServerConfig::tcp)
    }

    fn build(
        servers: &[SocketAddr],
        timeout: Duration,
        protocols: fn(IpAddr) -> NameServerConfig,
    ) -> io::Result<Self> {
        if servers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a resolver needs at least one name server",
            ));
        }
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a resolver's timeout must be above zero: every lookup would time out",
            ));
        }
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut config = protocols(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.use_hosts_file = ResolveHosts::Never;
        let inner = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            TokioRuntimeProvider::default(),
        )
        .with_options(opts)
        .build()
        .map_err(|e| io::Error::other(format!("resolver: {e}")))?;
        Ok(Self { inner })
    }

    /// The process-wide resolver used when a connect names none: built once, from the
    /// system configuration, on a blocking thread.
    pub(crate) async fn global() -> Result<Self, DnsError> {
        static GLOBAL: OnceCell<Resolver> = OnceCell::const_new();
        GLOBAL
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(Self::from_system_conf)
                    .await
                    .map_err(io::Error::other)
                    .and_then(|r| r)
                    .map_err(|e| DnsError::new(DnsErrorKind::Io, e.to_string(), None))
            })
            .await
            .cloned()
    }

    /// The addresses of `host` in `family`, with `port`.
    pub(crate) async fn lookup(
        &self,
        host: &str,
        family: Family,
        port: u16,
    ) -> Result<Vec<SocketAddr>, DnsError> {
        // One family asks for its own records only (as libevent's `AF_INET` does): no
        // AAAA query a server might drop, holding the connect for its timeout.
        let found = match family {
            Family::Inet => self.inner.ipv4_lookup(host).await.map(LookupIp::from),
            Family::Inet6 => self.inner.ipv6_lookup(host).await.map(LookupIp::from),
            Family::Unspec => self.inner.lookup_ip(host).await,
        }
        .map_err(|e| DnsError::from_lookup(host, e))?;
        let addrs: Vec<SocketAddr> = found
            .iter()
            .filter(|ip| family.admits(ip))
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        if addrs.is_empty() {
            return Err(DnsError::new(
                DnsErrorKind::NoAddresses,
                format!("{host} has no {family:?} address"),
                None,
            ));
        }
        Ok(addrs)
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// What kind of DNS failure a [`DnsError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DnsErrorKind {
    /// The name does not exist (NXDOMAIN).
    NoSuchHost,
    /// The name exists but has no address of the family asked for (NODATA).
    NoAddresses,
    /// The name server failed (SERVFAIL).
    ServerFailure,
    /// The name server refused to answer (REFUSED), e.g. for a zone it does not serve.
    Refused,
    /// No answer in time.
    Timeout,
    /// Talking to the name server failed.
    Io,
    /// Anything else (a malformed name, an unusual response code, ...).
    Other,
}

/// Why a hostname lookup failed (`bufferevent_socket_get_dns_error`, structured).
///
/// The resolver's own error, where there is one, is kept as [`Error::source`].
#[derive(Clone, Debug)]
pub struct DnsError {
    kind: DnsErrorKind,
    message: String,
    source: Option<Arc<NetError>>,
}

impl DnsError {
    fn new(kind: DnsErrorKind, message: String, source: Option<NetError>) -> Self {
        Self {
            kind,
            message,
            source: source.map(Arc::new),
        }
    }

    fn from_lookup(host: &str, error: NetError) -> Self {
        let kind = match &error {
            NetError::Dns(LookupError::NoRecordsFound(no)) => {
                if no.response_code == ResponseCode::NXDomain {
                    DnsErrorKind::NoSuchHost
                } else {
                    DnsErrorKind::NoAddresses
                }
            }
            NetError::Dns(LookupError::ResponseCode(ResponseCode::ServFail)) => {
                DnsErrorKind::ServerFailure
            }
            NetError::Dns(LookupError::ResponseCode(ResponseCode::Refused)) => {
                DnsErrorKind::Refused
            }
            NetError::Timeout => DnsErrorKind::Timeout,
            NetError::Io(_) | NetError::NoConnections => DnsErrorKind::Io,
            _ => DnsErrorKind::Other,
        };
        let what = match kind {
            DnsErrorKind::NoSuchHost => "no such host",
            DnsErrorKind::NoAddresses => "no address",
            DnsErrorKind::ServerFailure => "name server failure",
            DnsErrorKind::Refused => "name server refused",
            DnsErrorKind::Timeout => "lookup timed out",
            DnsErrorKind::Io => "cannot reach the name server",
            DnsErrorKind::Other => "lookup failed",
        };
        Self::new(kind, format!("{what}: {host}"), Some(error))
    }

    /// The lookup of `host` ran out of the connect timeout, `limit`.
    pub(crate) fn timed_out(host: &str, limit: Option<Duration>) -> Self {
        Self::new(
            DnsErrorKind::Timeout,
            format!("lookup timed out: {host} (the connect timeout, {limit:?}, expired)"),
            None,
        )
    }

    /// The kind of failure.
    pub fn kind(&self) -> DnsErrorKind {
        self.kind
    }

    /// This error as an `io::Error` (kind `NotFound` for names without addresses,
    /// `ConnectionRefused`, or `Other`), for the event callback. A lookup that timed
    /// out is `Other`, not `TimedOut`: the event callback derives `TIMEOUT` from that
    /// kind, and libevent reports a failed lookup as `ERROR` alone.
    /// `BufferEvent::dns_error` tells the timeout.
    pub(crate) fn to_io_error(&self) -> io::Error {
        let kind = match self.kind {
            DnsErrorKind::NoSuchHost | DnsErrorKind::NoAddresses => io::ErrorKind::NotFound,
            DnsErrorKind::Refused => io::ErrorKind::ConnectionRefused,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, self.clone())
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DNS: {}", self.message)
    }
}

impl Error for DnsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// `host` as an address literal: IPv4, IPv6, or IPv6 in brackets.
pub(crate) fn literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_skip_dns() {
        assert_eq!(literal("127.0.0.1"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(literal("::1"), Some("::1".parse().unwrap()));
        assert_eq!(literal("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal("example.org"), None);
        assert_eq!(literal("[example.org]"), None);
    }
}
