//! Runs `examples/http0_client.rs` against a small HTTP/0.9 server and a DNS server,
//! both started by the test on loopback.

#![cfg(feature = "dns")]

#[path = "common/dns.rs"]
mod dns_server;
#[allow(dead_code)] // its `main` is for `cargo run`
#[path = "../examples/http0_client.rs"]
mod http0_client;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Serves one HTTP/0.9 request: answers `GET /page` with a page, then closes.
async fn serve_once(listener: TcpListener) -> String {
    let (stream, _) = listener.accept().await.unwrap();
    let mut stream = BufReader::new(stream);
    let mut request = String::new();
    stream.read_line(&mut request).await.unwrap();
    let body = format!("<html>you asked for {}</html>\n", request.trim_end());
    stream.get_mut().write_all(body.as_bytes()).await.unwrap();
    stream.get_mut().shutdown().await.unwrap();
    request
}

fn args(list: &[&str]) -> http0_client::Args {
    http0_client::Args::parse(list.iter().map(|s| (*s).to_owned())).unwrap()
}

#[tokio::test]
async fn fetches_a_page_from_a_host_resolved_through_the_test_dns() {
    let dns = dns_server::test_dns(&[("www.test.", dns_server::a([127, 0, 0, 1]))]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = tokio::spawn(serve_once(listener));
    let dns_addr = dns.addr.to_string();
    let mut out = Vec::new();
    let ok = tokio::time::timeout(
        Duration::from_secs(10),
        http0_client::run(
            args(&[
                "www.test.",
                "/page",
                &port,
                "--dns",
                &dns_addr,
                "--family",
                "inet",
            ]),
            &mut out,
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(ok, "{out}");
    assert_eq!(server.await.unwrap(), "GET /page\r\n");
    assert_eq!(
        out,
        "Connect okay.\n<html>you asked for GET /page</html>\nClosing\n"
    );
}

#[tokio::test]
async fn a_name_that_does_not_exist_prints_the_dns_error() {
    let dns = dns_server::test_dns(&[]).await;
    let dns_addr = dns.addr.to_string();
    let mut out = Vec::new();
    let ok = tokio::time::timeout(
        Duration::from_secs(10),
        http0_client::run(args(&["nowhere.test.", "/", "--dns", &dns_addr]), &mut out),
    )
    .await
    .unwrap()
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!ok);
    assert_eq!(out, "DNS error: DNS: no such host: nowhere.test.\n");
}

#[test]
fn bad_arguments_are_reported() {
    let parse = |list: &[&str]| http0_client::Args::parse(list.iter().map(|s| (*s).to_owned()));
    assert!(parse(&[]).unwrap_err().contains("HOST"));
    assert!(parse(&["h"]).unwrap_err().contains("RESOURCE"));
    assert!(parse(&["h", "/", "99999"]).unwrap_err().contains("port"));
    assert!(
        parse(&["h", "/", "--family", "ipx"])
            .unwrap_err()
            .contains("family")
    );
    assert!(
        parse(&["h", "/", "--dns", "nope"])
            .unwrap_err()
            .contains("dns")
    );
}

/// A server that accepts and never answers ends the fetch after `--timeout`, with the
/// reason, instead of holding it for ever.
#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    });
    let mut out = Vec::new();
    let ok = tokio::time::timeout(
        Duration::from_secs(20),
        http0_client::run(
            args(&["127.0.0.1", "/", &port, "--timeout", "0.5"]),
            &mut out,
        ),
    )
    .await
    .expect("bounded by --timeout")
    .unwrap();
    assert!(!ok);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out, "Connect okay.\nError: timed out\n");
    silent.abort();
}

#[test]
fn the_timeout_must_be_a_positive_number_of_seconds() {
    let parse = |list: &[&str]| http0_client::Args::parse(list.iter().map(|s| (*s).to_owned()));
    assert!(
        parse(&["h", "/", "--timeout", "0"])
            .unwrap_err()
            .contains("timeout")
    );
    assert!(
        parse(&["h", "/", "--timeout", "x"])
            .unwrap_err()
            .contains("timeout")
    );
    assert!(parse(&["h", "/", "--timeout", "2.5"]).is_ok());
    assert!(
        parse(&["h", "/", "--timeout", "1e19"])
            .unwrap_err()
            .contains("timeout"),
        "absurd timeouts are refused, not left to overflow"
    );
}

/// A server that sends without end does not fill the client's memory: past 64 MiB
/// the fetch ends with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_without_end_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let endless = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let chunk = vec![b'z'; 1 << 20];
        while stream.write_all(&chunk).await.is_ok() {}
    });
    let mut out = Vec::new();
    let ok = tokio::time::timeout(
        Duration::from_secs(60),
        http0_client::run(args(&["127.0.0.1", "/", &port]), &mut out),
    )
    .await
    .expect("cut off, not read for ever")
    .unwrap();
    assert!(!ok);
    let out = String::from_utf8(out).unwrap();
    assert!(out.ends_with("bytes\n"), "{out}");
    assert!(out.contains("Error: the response is larger than"), "{out}");
    endless.abort();
}
