//! Connecting by hostname against a real DNS server started in this process
//! (hickory-server serving the zone `test.` from memory on 127.0.0.1), never the
//! machine's resolver.

#![cfg(feature = "dns")]

use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::rr::RData;
use hickory_server::proto::rr::rdata::TXT;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_bufferevent::bufferevent::{BufferEvent, DnsErrorKind, Events, Family, Resolver};

#[path = "common/dns.rs"]
mod dns_server;

use dns_server::{TestDns, a, aaaa, test_dns, test_dns_tcp_only};

mod common;

use common::within;

fn resolver(dns: &TestDns) -> Resolver {
    Resolver::with_name_servers(&[dns.addr], Duration::from_secs(2)).unwrap()
}

/// Connects by name and returns the first event and the bufferevent.
async fn connect(
    resolver: &Resolver,
    family: Family,
    host: &str,
    port: u16,
) -> (Events, BufferEvent) {
    let bev = BufferEvent::builder().unconnected::<TcpStream>();
    bev.connect_hostname(Some(resolver), family, host, port)
        .unwrap();
    let record = within(bev.next_event()).await.unwrap().unwrap();
    (record.events, bev)
}

#[tokio::test]
async fn a_record_connects_and_queued_data_follows() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dns = test_dns(&[("v4.test.", a([127, 0, 0, 1]))]).await;
    let bev = BufferEvent::builder().unconnected::<TcpStream>();
    bev.connect_hostname(Some(&resolver(&dns)), Family::Unspec, "v4.test.", port)
        .unwrap();
    bev.write_now(&b"sent after the lookup"[..]).unwrap(); // B-53: waits meanwhile
    let record = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::CONNECTED);
    assert!(bev.dns_error().is_none());
    let (mut peer, _) = within(listener.accept()).await.unwrap().unwrap();
    let mut got = [0u8; 21];
    within(peer.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"sent after the lookup");
}

#[tokio::test]
async fn aaaa_record_connects_over_ipv6() {
    let listener = TcpListener::bind("[::1]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dns = test_dns(&[("v6.test.", aaaa(Ipv6Addr::LOCALHOST))]).await;
    let (events, bev) = connect(&resolver(&dns), Family::Inet6, "v6.test.", port).await;
    assert_eq!(events, Events::CONNECTED);
    assert_eq!(bev.peer_addr().map(|a| a.is_ipv6()), Some(true));
}

#[tokio::test]
async fn both_records_with_a_family_pick_that_family() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dns = test_dns(&[
        ("both.test.", a([127, 0, 0, 1])),
        ("both.test.", aaaa(Ipv6Addr::LOCALHOST)),
    ])
    .await;
    let (events, bev) = connect(&resolver(&dns), Family::Inet, "both.test.", port).await;
    assert_eq!(events, Events::CONNECTED);
    assert_eq!(bev.peer_addr().map(|a| a.is_ipv4()), Some(true));
    // With Unspec both are candidates; nothing listens on [::1]:port, so whichever
    // comes first, the connect ends on 127.0.0.1.
    let (events, bev) = connect(&resolver(&dns), Family::Unspec, "both.test.", port).await;
    assert_eq!(events, Events::CONNECTED);
    assert_eq!(bev.peer_addr().map(|a| a.is_ipv4()), Some(true));
}

#[tokio::test]
async fn first_address_refusing_second_accepting() {
    // Nothing listens on 127.0.0.1/.3:port; 127.0.0.2:port accepts.
    let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dns = test_dns(&[
        ("two.test.", a([127, 0, 0, 1])),
        ("two.test.", a([127, 0, 0, 3])),
        ("two.test.", a([127, 0, 0, 2])),
    ])
    .await;
    let (events, bev) = connect(&resolver(&dns), Family::Inet, "two.test.", port).await;
    assert_eq!(events, Events::CONNECTED);
    assert_eq!(bev.peer_addr(), Some(listener.local_addr().unwrap()));
}

/// Each DNS failure delivers ERROR to the event callback and a structured `dns_error`.
#[tokio::test]
async fn dns_failures_are_structured() {
    let dns = test_dns(&[
        ("v4.test.", a([127, 0, 0, 1])),
        (
            "text.test.",
            RData::TXT(TXT::new(vec!["no address here".into()])),
        ),
    ])
    .await;
    let resolver = resolver(&dns);
    for (family, host, kind) in [
        (Family::Unspec, "nope.test.", DnsErrorKind::NoSuchHost),
        (Family::Unspec, "text.test.", DnsErrorKind::NoAddresses),
        (Family::Inet6, "v4.test.", DnsErrorKind::NoAddresses),
        (Family::Unspec, "host.other.", DnsErrorKind::Refused),
    ] {
        let (events, bev) = connect(&resolver, family, host, 80).await;
        assert_eq!(events, Events::ERROR, "{host}");
        let error = bev.dns_error().expect("a DNS error");
        assert_eq!(error.kind(), kind, "{host}: {error}");
        assert!(
            error.to_string().contains(host.trim_end_matches('.')),
            "{error}"
        );
        assert!(!bev.is_connected());
        // A connect refused at the call leaves the last lookup's error as it was.
        assert!(bev.connect_hostname(None, Family::Inet, "::1", 80).is_err());
        assert_eq!(bev.dns_error().map(|e| e.kind()), Some(kind), "{host}");
    }
    // A resolver that would time out every lookup at once is refused.
    let zero = Resolver::with_name_servers(&[dns.addr], Duration::ZERO);
    assert_eq!(
        zero.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
}

#[tokio::test]
async fn a_name_server_that_never_answers_times_out() {
    // A UDP port with nothing behind it.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let resolver = Resolver::with_name_servers(&[addr], Duration::from_millis(200)).unwrap();
    let (events, bev) = connect(&resolver, Family::Inet, "v4.test.", 80).await;
    assert_eq!(events, Events::ERROR);
    let error = bev.dns_error().expect("a DNS error");
    assert!(
        matches!(error.kind(), DnsErrorKind::Timeout | DnsErrorKind::Io),
        "{error:?}"
    );
    drop(silent);
}

/// B-53: bad arguments fail at once with no callback; literals skip DNS.
#[tokio::test]
async fn b053_arguments_and_literals() {
    let bev = BufferEvent::builder().unconnected::<TcpStream>();
    let kind = |r: std::io::Result<()>| r.unwrap_err().kind();
    assert_eq!(
        kind(bev.connect_hostname(None, Family::Unspec, "v4.test.", 0)),
        std::io::ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(bev.connect_hostname(None, Family::Unspec, "", 80)),
        std::io::ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(bev.connect_hostname(None, Family::Inet, "::1", 80)),
        std::io::ErrorKind::InvalidInput
    );
    // Names no lookup could find.
    let long_label = format!("{}.test.", "a".repeat(64));
    let long_name = format!("{}test", "abcdefghi.".repeat(25));
    for name in [&long_label[..], &long_name, "a..test", ".test", "."] {
        assert_eq!(
            kind(bev.connect_hostname(None, Family::Unspec, name, 80)),
            std::io::ErrorKind::InvalidInput,
            "{name}"
        );
    }

    let v6 = TcpListener::bind("[::1]:0").await.unwrap();
    let port = v6.local_addr().unwrap().port();
    bev.connect_hostname(None, Family::Unspec, "[::1]", port)
        .unwrap();
    let record = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::CONNECTED);
}

/// Freeing during the lookup: no callback afterwards, and no task is left behind.
#[tokio::test]
async fn free_during_lookup() {
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let baseline = tasks();
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let resolver =
        Resolver::with_name_servers(&[silent.local_addr().unwrap()], Duration::from_secs(5))
            .unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let bev = BufferEvent::builder()
        .on_event(move |_, _, _| {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .unconnected::<TcpStream>();
    bev.connect_hostname(Some(&resolver), Family::Inet, "v4.test.", 80)
        .unwrap();
    bev.free();
    within(bev.closed()).await.unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop((bev, resolver));
    within(async {
        while tasks() != baseline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} tasks left, {baseline} before", tasks()));
}

/// A name server reachable over TCP only: the TCP-only resolver finds the host.
#[tokio::test]
async fn tcp_only_name_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dns = test_dns_tcp_only(&[("tcp.test.", a([127, 0, 0, 1]))]).await;
    let resolver = Resolver::with_tcp_name_servers(&[dns.addr], Duration::from_secs(2)).unwrap();
    let (events, bev) = connect(&resolver, Family::Inet, "tcp.test.", port).await;
    assert_eq!(events, Events::CONNECTED);
    assert!(bev.dns_error().is_none());
}

/// A name server in front of `upstream` that never answers AAAA queries (as some
/// middleboxes do) and records the types it was asked for.
async fn dropping_aaaa(
    upstream: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use hickory_server::proto::op::Message;
    use hickory_server::proto::rr::RecordType;
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    tokio::spawn(async move {
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, client) = front.recv_from(&mut buf).await.unwrap();
            let query = Message::from_vec(&buf[..n]).unwrap();
            let kind = query.queries[0].query_type();
            seen.lock().unwrap().push(kind.to_string());
            if kind == RecordType::AAAA {
                continue;
            }
            back.send_to(&buf[..n], upstream).await.unwrap();
            let (m, _) = back.recv_from(&mut buf).await.unwrap();
            front.send_to(&buf[..m], client).await.unwrap();
        }
    });
    (addr, asked)
}

/// A name server in front of `upstream` that answers each query only after `delay`.
async fn slow(upstream: std::net::SocketAddr, delay: Duration) -> std::net::SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, client) = front.recv_from(&mut buf).await.unwrap();
            tokio::time::sleep(delay).await;
            back.send_to(&buf[..n], upstream).await.unwrap();
            let (m, _) = back.recv_from(&mut buf).await.unwrap();
            front.send_to(&buf[..m], client).await.unwrap();
        }
    });
    addr
}

/// B-53: both directions wait during the lookup, so a read timeout shorter than the
/// lookup does not fire meanwhile (it would disable READ for good); the first event
/// is the connect's.
#[tokio::test]
async fn no_timeout_runs_during_the_lookup() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dns = test_dns(&[("v4.test.", a([127, 0, 0, 1]))]).await;
    // A generous margin both ways: the timeout would fire a second before the answer.
    let addr = slow(dns.addr, Duration::from_millis(1300)).await;
    let resolver = Resolver::with_name_servers(&[addr], Duration::from_secs(30)).unwrap();
    let bev = BufferEvent::builder()
        .enable(tokio_bufferevent::bufferevent::Direction::READ)
        .timeouts(Some(Duration::from_millis(300)), None)
        .unconnected::<TcpStream>();
    bev.connect_hostname(Some(&resolver), Family::Inet, "v4.test.", port)
        .unwrap();
    let first = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(first.events, Events::CONNECTED);
    assert!(
        bev.enabled()
            .contains(tokio_bufferevent::bufferevent::Direction::READ)
    );
}

/// A connect for one family asks for that family's records only: a name server that
/// drops the other family's queries neither delays nor fails it.
#[tokio::test]
async fn one_family_asks_for_its_own_records_only() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dns = test_dns(&[("v4.test.", a([127, 0, 0, 1]))]).await;
    let (addr, asked) = dropping_aaaa(dns.addr).await;
    let resolver = Resolver::with_name_servers(&[addr], Duration::from_secs(30)).unwrap();
    let (events, _bev) = connect(&resolver, Family::Inet, "v4.test.", port).await;
    assert_eq!(events, Events::CONNECTED);
    assert_eq!(*asked.lock().unwrap(), ["A"]);
}

/// The connect timeout covers the lookup too; one that expires during the lookup is
/// the lookup's timeout: `ERROR` (as a failed lookup), and `dns_error` says so.
#[tokio::test]
async fn a_connect_timeout_during_the_lookup_is_a_lookup_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let resolver =
        Resolver::with_name_servers(&[silent.local_addr().unwrap()], Duration::from_secs(30))
            .unwrap();
    let bev = BufferEvent::builder()
        .connect_timeout(Duration::from_millis(200))
        .unconnected::<TcpStream>();
    bev.connect_hostname(Some(&resolver), Family::Inet, "v4.test.", 80)
        .unwrap();
    let record = within(bev.next_event()).await.unwrap().unwrap();
    assert_eq!(record.events, Events::ERROR);
    let error = bev.dns_error().expect("the lookup's error");
    assert_eq!(error.kind(), DnsErrorKind::Timeout, "{error}");
    drop(silent);
}
