//! Opening TCP connections for bufferevents: one address, or several in turn.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpSocket, TcpStream};

/// Starts a connect to `addr` on a new socket. Creating the socket can fail at once
/// (B-48); the connect itself completes when the returned future does.
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
