//! Every way a bufferevent connects: to an address, to the first of several that
//! accepts, to a hostname (through `dns.rs`), or by taking over a connect the caller
//! started. The connect runs on the bufferevent's task; its outcome reaches the core
//! there (`CONNECTED` or `ERROR`) and `connected()` here.

use std::io;
use std::net::SocketAddr;
#[cfg(feature = "dns")]
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

#[cfg(feature = "dns")]
use super::dns::{DnsError, Family, Resolver};
use super::error::Error;
use super::handle::BufferEvent;
use super::info::TransportInfo;
use super::mailbox::Command;
use super::transport::{Attach, LookupDone};

impl<S> BufferEvent<TcpStream, S>
where
    S: Send + 'static,
{
    /// Starts connecting to `addr` (`bufferevent_socket_connect`); the previous
    /// transport, if any, is closed when the new one is installed.
    ///
    /// Returns at once. Writes made before the connect completes are sent after it, in
    /// order (over the earlier transport meanwhile, if there is one: D-C3). Success
    /// delivers `CONNECTED` alone, then the queued data goes out, then the write
    /// callback runs if the output drained; a later failure delivers
    /// `ERROR` (plus `TIMEOUT` when the builder's connect timeout expired) with the
    /// error and no direction bit, leaving the enabled directions as they were.
    ///
    /// # Errors
    ///
    /// Returned at once, with no callback: the OS's error (as [`io::Error`]) from
    /// creating the socket (`socket(2)`) or setting `TCP_NODELAY` on it
    /// (`setsockopt(2)`); [`io::ErrorKind::NotConnected`] ([`Error::Ended`]) if the
    /// bufferevent has ended. A failure of the connect itself is reported later, to
    /// the event callback and [`connected`](Self::connected).
    #[doc(alias = "bufferevent_socket_connect")]
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.connect_with(start(addr)?)
    }

    /// Connects to the first of `addrs` that accepts, trying them one after another
    /// (libevent tries only the first address of a lookup). Addresses of both families
    /// are tried alternately, starting with the family of the first, as RFC 8305
    /// (Happy Eyeballs) orders them; the attempts are not staggered in parallel. If all
    /// fail, the event callback gets `ERROR` with the last error. The builder's connect
    /// timeout covers all the attempts together. Otherwise as
    /// [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// Returned at once, with no callback: [`io::ErrorKind::InvalidInput`] if `addrs`
    /// is empty; [`io::ErrorKind::NotConnected`] ([`Error::Ended`]) if the
    /// bufferevent has ended. Sockets are created as the attempts are made, so their
    /// failures, like those of the connects, are reported later.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio::net::TcpStream;
    /// use tokio_bufferevent::bufferevent::BufferEvent;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let nobody = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    /// let bev = BufferEvent::builder().unconnected::<TcpStream>();
    /// bev.connect_any([nobody, listener.local_addr()?])?; // the first refuses
    /// bev.connected().await?;
    /// assert_eq!(bev.peer_addr(), Some(listener.local_addr()?));
    /// # Ok(()) }
    /// ```
    #[doc(alias = "bufferevent_socket_connect")]
    pub fn connect_any(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> io::Result<()> {
        let addrs = interleave_families(addrs.into_iter().collect());
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to connect to",
            ));
        }
        self.connect_with(first_that_accepts(addrs))
    }

    /// Resolves `host` and connects to its addresses
    /// (`bufferevent_socket_connect_hostname`).
    ///
    /// Address literals (`127.0.0.1`, `::1`, `[::1]`) skip DNS. Otherwise `resolver`
    /// (or, with `None`, a process-wide one built from the system configuration on a
    /// blocking thread) looks the name up without blocking; reading and writing wait
    /// meanwhile, and no read or write timeout runs (B-53; the builder's connect
    /// timeout, which covers the lookup, does). The connect after it is as
    /// [`connect`](Self::connect)'s: data written goes out once it succeeds, or over
    /// an earlier transport, which stays in use until then (D-C3). The addresses
    /// are tried in turn as in [`connect_any`](Self::connect_any), where libevent tries
    /// only the first. A failed lookup delivers `ERROR` with the error, and
    /// [`dns_error`](Self::dns_error) says what went wrong.
    ///
    /// # Errors
    ///
    /// Returned at once, with no callback: [`io::ErrorKind::InvalidInput`] for port 0,
    /// an empty host, a name no lookup could find (with an empty label, or, in ASCII,
    /// longer than 253 bytes or with a label longer than 63), or an address literal
    /// not of `family`; for an address literal, the OS's errors as for
    /// [`connect`](Self::connect) (`socket(2)`, `setsockopt(2)`);
    /// [`io::ErrorKind::NotConnected`] ([`Error::Ended`]) if the bufferevent has ended. A failed lookup is reported later, to the event
    /// callback, [`connected`](Self::connected) and [`dns_error`](Self::dns_error).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::net::TcpStream;
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Family, Resolver};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let port = listener.local_addr()?.port();
    /// let bev = BufferEvent::builder().unconnected::<TcpStream>();
    /// // A literal needs no lookup; a name would go to `resolver`.
    /// let resolver = Resolver::with_name_servers(
    ///     &["127.0.0.1:53".parse().unwrap()],
    ///     Duration::from_secs(2),
    /// )?;
    /// bev.connect_hostname(Some(&resolver), Family::Unspec, "127.0.0.1", port)?;
    /// bev.connected().await?;
    /// assert!(bev.dns_error().is_none());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "dns")]
    #[doc(alias = "bufferevent_socket_connect_hostname")]
    pub fn connect_hostname(
        &self,
        resolver: Option<&Resolver>,
        family: Family,
        host: &str,
        port: u16,
    ) -> io::Result<()> {
        let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()));
        if port == 0 {
            return invalid("port must be in 1..=65535");
        }
        if host.is_empty() {
            return invalid("empty host name");
        }
        if let Some(ip) = super::dns::literal(host) {
            let admitted = match family {
                Family::Inet => ip.is_ipv4(),
                Family::Inet6 => ip.is_ipv6(),
                Family::Unspec => true,
            };
            if !admitted {
                // Refused: the last lookup's error stays as it was.
                return invalid("the address literal is not of the family asked for");
            }
            self.shared().lookup_started();
            return self.connect(SocketAddr::new(ip, port));
        }
        if let Err(why) = check_host_name(host) {
            return invalid(why);
        }
        let ticket = self.shared().lookup_started();
        let resolver = resolver.cloned();
        // Weak: the future waits in this bufferevent's own mailbox.
        let remote = Arc::downgrade(&self.remote);
        let host = host.to_owned();
        let limit = self.shared().connect_timeout();
        let looked_up = LookupDone::default();
        let done = looked_up.clone();
        let connecting = async move {
            // The connect timeout covers the lookup and the connects after it; one
            // that expires during the lookup is the lookup's timeout (`dns_error`).
            let deadline = limit.map(|limit| tokio::time::Instant::now() + limit);
            let lookup = async {
                match resolver {
                    Some(resolver) => resolver.lookup(&host, family, port).await,
                    None => match Resolver::global().await {
                        Ok(resolver) => resolver.lookup(&host, family, port).await,
                        Err(e) => Err(e),
                    },
                }
            };
            let found = match deadline {
                None => lookup.await,
                Some(deadline) => tokio::time::timeout_at(deadline, lookup)
                    .await
                    .unwrap_or_else(|_| Err(DnsError::timed_out(&host, limit))),
            };
            // Reading and writing go on (over an earlier transport, while the connect
            // runs: D-C3), once the task sees this.
            done.store(true, std::sync::atomic::Ordering::Release);
            match found {
                Ok(addrs) => {
                    tracing::debug!(%host, ?addrs, "resolved");
                    let connecting = first_that_accepts(interleave_families(addrs));
                    match (deadline, limit) {
                        (Some(deadline), Some(limit)) => {
                            tokio::time::timeout_at(deadline, connecting)
                                .await
                                .map_err(|_| timed_out(limit))?
                        }
                        _ => connecting.await,
                    }
                }
                Err(e) => {
                    let error = e.to_io_error();
                    if let Some(remote) = remote.upgrade() {
                        remote.shared.lookup_failed(ticket, e);
                    }
                    Err(error)
                }
            }
        };
        self.attach_connecting(connecting, Some(looked_up))
    }

    /// Why the last hostname lookup failed (`bufferevent_socket_get_dns_error`);
    /// `None` while none has failed since the last
    /// [`connect_hostname`](Self::connect_hostname) that started a lookup (a call
    /// refused at once, for a port of 0, an empty name or an address literal of the
    /// wrong family, keeps the previous error).
    #[cfg(feature = "dns")]
    #[doc(alias = "bufferevent_socket_get_dns_error")]
    pub fn dns_error(&self) -> Option<DnsError> {
        self.shared().dns_error()
    }

    /// Takes over a connect the caller already started (`bufferevent_socket_connect`
    /// with an fd that is connecting and a null address): `connecting` is, for
    /// example, `TcpSocket::connect`'s future. Events as for [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// Only [`io::ErrorKind::NotConnected`] ([`Error::Ended`]), if the bufferevent has
    /// ended (`connecting` is dropped then). An error `connecting` resolves to is
    /// reported later, to the event callback and [`connected`](Self::connected).
    #[doc(alias = "bufferevent_socket_connect")]
    pub fn connect_with<F>(&self, connecting: F) -> io::Result<()>
    where
        F: Future<Output = io::Result<TcpStream>> + Send + 'static,
    {
        let timeout = self.shared().connect_timeout();
        self.attach_connecting(
            async move {
                match timeout {
                    None => connecting.await,
                    Some(limit) => tokio::time::timeout(limit, connecting)
                        .await
                        .map_err(|_| timed_out(limit))?,
                }
            },
            None,
        )
    }

    /// Hands `connecting`, bounded in time already, to the task; `lookup`, for a
    /// hostname connect, is set once its lookup is over.
    fn attach_connecting<F>(&self, connecting: F, lookup: Option<LookupDone>) -> io::Result<()>
    where
        F: Future<Output = io::Result<TcpStream>> + Send + 'static,
    {
        let connecting = async move {
            let stream = connecting.await?;
            let info = TransportInfo::of_tcp(&stream);
            Ok((stream, info))
        };
        self.shared().connect_started();
        if self.send(Command::Attach(Attach::Connecting(
            Box::pin(connecting),
            lookup,
        ))) {
            Ok(())
        } else {
            self.shared().connect_withdrawn();
            Err(Error::Ended.into())
        }
    }

    /// Gives the bufferevent a connected `TcpStream` (`bufferevent_setfd`), keeping
    /// its descriptor and addresses for [`fd`](Self::fd) and friends.
    #[doc(alias = "bufferevent_setfd")]
    pub fn set_tcp(&self, stream: TcpStream) {
        let info = TransportInfo::of_tcp(&stream);
        if let Err(e) = stream.set_nodelay(true) {
            // Latency only: the stream works without it.
            tracing::debug!(error = %e, "TCP_NODELAY could not be set");
        }
        self.attach_now(stream, info);
    }
}

/// Refuses a name no lookup could find (RFC 1035's limits): no empty label, and for
/// an ASCII name at most 253 bytes without a final dot and labels of at most 63 (an
/// internationalised name is measured by the resolver, once converted to punycode).
#[cfg(feature = "dns")]
fn check_host_name(host: &str) -> Result<(), &'static str> {
    let name = host.strip_suffix('.').unwrap_or(host);
    let ascii = name.is_ascii();
    if ascii && name.len() > 253 {
        return Err("host name longer than 253 bytes");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("host name with an empty label");
        }
        if ascii && label.len() > 63 {
            return Err("host name with a label longer than 63 bytes");
        }
    }
    Ok(())
}

/// Starts a connect to `addr` on a new socket. Creating the socket can fail at once;
/// the connect itself completes when the returned future does.
pub(crate) fn start(
    addr: SocketAddr,
) -> io::Result<impl Future<Output = io::Result<TcpStream>> + Send + 'static> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_nodelay(true)?;
    Ok(socket.connect(addr))
}

/// Tries `addrs` one after another until one accepts; the last error if none does.
/// The error of a connect that ran out of `limit`.
fn timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        super::error::ConnectTimedOut(limit),
    )
}

pub(crate) async fn first_that_accepts(addrs: Vec<SocketAddr>) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        let attempt = match start(addr) {
            Ok(connecting) => connecting.await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "connect attempt failed");
                last = Some(e);
            }
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")))
}

/// Orders addresses the way RFC 8305 (Happy Eyeballs) does: alternating between the
/// families, starting with the family of the first address, each family keeping its
/// own order.
pub(crate) fn interleave_families(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_is_v6 = first.is_ipv6();
    let (mut leading, mut trailing): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_is_v6);
    let mut out = Vec::with_capacity(leading.len() + trailing.len());
    leading.reverse();
    trailing.reverse();
    loop {
        match (leading.pop(), trailing.pop()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn families_alternate_starting_with_the_first() {
        let mixed = addrs(&[
            "[::1]:1",
            "[::1]:2",
            "127.0.0.1:3",
            "[::1]:4",
            "127.0.0.1:5",
        ]);
        assert_eq!(
            interleave_families(mixed),
            addrs(&[
                "[::1]:1",
                "127.0.0.1:3",
                "[::1]:2",
                "127.0.0.1:5",
                "[::1]:4"
            ])
        );
        let v4_first = addrs(&["127.0.0.1:1", "[::1]:2"]);
        assert_eq!(interleave_families(v4_first.clone()), v4_first);
        let one_family = addrs(&["127.0.0.1:1", "127.0.0.2:1"]);
        assert_eq!(interleave_families(one_family.clone()), one_family);
        assert!(interleave_families(Vec::new()).is_empty());
    }
}
