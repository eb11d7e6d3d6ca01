//! A DNS server for tests: hickory-server serving the zone `test.` from memory on
//! 127.0.0.1, UDP and TCP on one port.

#![allow(dead_code)] // each test binary uses part of it

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::SOA;
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// A DNS server for the zone `test.` on 127.0.0.1 (UDP and TCP on the same port).
pub struct TestDns {
    /// UDP and TCP, unless made by `test_dns_tcp_only`.
    pub addr: SocketAddr,
    _server: Server<Catalog>,
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

pub async fn test_dns(records: &[(&str, RData)]) -> TestDns {
    serve(records, true).await
}

/// The same zone over TCP only: nothing answers on UDP.
pub async fn test_dns_tcp_only(records: &[(&str, RData)]) -> TestDns {
    serve(records, false).await
}

async fn serve(records: &[(&str, RData)], udp_too: bool) -> TestDns {
    let origin = name("test.");
    let mut zone: InMemoryZoneHandler =
        InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(name("ns.test."), name("admin.test."), 1, 60, 60, 60, 60);
    zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
    for (host, rdata) in records {
        zone.upsert_mut(Record::from_rdata(name(host), 60, rdata.clone()), 1);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(
        LowerName::from(&origin),
        vec![Arc::new(zone) as Arc<dyn ZoneHandler>],
    );
    // UDP and TCP on one port: the port the system picks for UDP may be taken for TCP,
    // so try until both bind.
    let mut attempts = 0;
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, tcp, addr),
            Err(e) if attempts < 100 => {
                attempts += 1;
                let _ = e;
            }
            Err(e) => panic!("no port free for both UDP and TCP: {e}"),
        }
    };
    let mut server = Server::new(catalog);
    if udp_too {
        server.register_socket(udp);
    }
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    TestDns {
        addr,
        _server: server,
    }
}

/// An A record.
pub fn a(ip: [u8; 4]) -> RData {
    RData::from(Ipv4Addr::from(ip))
}

/// An AAAA record.
pub fn aaaa(ip: Ipv6Addr) -> RData {
    RData::from(ip)
}
