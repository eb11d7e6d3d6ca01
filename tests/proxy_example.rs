//! `examples/proxy.rs` end to end: `curl` downloads a 50 MiB file through it, 8
//! transfers at once, byte for byte, while the proxy (a child process: this test
//! binary again, running the example's code) stays under 32 MiB of RSS; and the
//! same through a TLS upstream.
#![cfg(all(feature = "tls", target_os = "linux"))]

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/proxy.rs"]
mod proxy;

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FILE_LEN: usize = 50 << 20;
const TRANSFERS: usize = 8;
const RSS_LIMIT_KIB: u64 = 32 << 10;

/// Byte `i` of the file.
fn byte_at(i: usize) -> u8 {
    (i % 251) as u8 ^ (i >> 20) as u8
}

/// Answers every request on a connection with the file and closes.
async fn serve_file<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {FILE_LEN}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut chunk = vec![0u8; 64 << 10];
    let mut at = 0;
    while at < FILE_LEN {
        let n = chunk.len().min(FILE_LEN - at);
        for (i, b) in chunk[..n].iter_mut().enumerate() {
            *b = byte_at(at + i);
        }
        if s.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        at += n;
    }
    let _ = s.shutdown().await;
}

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Starts the proxy in a child process; its address and the child.
fn spawn_proxy(upstream: SocketAddr, extra: &[&str]) -> (SocketAddr, std::process::Child) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "proxy_child_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("PROXY_CHILD_ARGS", {
            let mut args = vec!["127.0.0.1:0".to_owned(), upstream.to_string()];
            args.extend(extra.iter().map(|s| s.to_string()));
            args.join(" ")
        })
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the proxy prints its address").unwrap();
        if let Some((_, addr)) = line.split_once("proxy_addr=") {
            break addr.trim().parse().unwrap();
        }
    };
    // The rest of its output, drained so that its last lines can be written.
    std::thread::spawn(move || lines.for_each(drop));
    (addr, child)
}

/// The proxy's side of the test: runs the example's proxy until stdin closes.
#[test]
fn proxy_child_process() {
    let Ok(args) = std::env::var("PROXY_CHILD_ARGS") else {
        return; // run as a child of the tests below only
    };
    let options = proxy::Options::parse(args.split(' ').map(str::to_owned)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = proxy::start(&options).unwrap();
        println!("proxy_addr={}", listener.local_addr());
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        let report = listener.shutdown(Duration::from_secs(5)).await;
        println!("accepted={}", report.counts.accepted);
    });
}

/// Downloads `url` with curl `TRANSFERS` times at once; checks every file.
fn download_all(tag: &str, url: &str, proxy_pid: u32) -> u64 {
    let dir = std::env::temp_dir().join(format!("bev-proxy-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut curls: Vec<_> = (0..TRANSFERS)
        .map(|i| {
            Command::new("curl")
                // `-q` first: no `~/.curlrc`; and no proxy from the environment, which
                // would take the download elsewhere.
                .args([
                    "-q",
                    "--noproxy",
                    "*",
                    "-sS",
                    "--fail",
                    "--max-time",
                    "120",
                    "-o",
                ])
                .arg(dir.join(format!("file{i}")))
                .arg(url)
                .spawn()
                .expect("curl starts")
        })
        .collect();
    let mut peak_rss = 0;
    let deadline = Instant::now() + Duration::from_secs(150);
    while curls.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
        assert!(Instant::now() < deadline, "the downloads took too long");
        peak_rss = peak_rss.max(vm_rss_kib(proxy_pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, curl) in curls.iter_mut().enumerate() {
        assert!(curl.wait().unwrap().success(), "curl {i} failed");
        let mut file = std::fs::File::open(dir.join(format!("file{i}"))).unwrap();
        let mut at = 0;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (j, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, byte_at(at + j), "file {i}: byte {} differs", at + j);
            }
            at += n;
        }
        assert_eq!(at, FILE_LEN, "file {i} is whole");
    }
    let _ = std::fs::remove_dir_all(&dir);
    peak_rss
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_downloads_50_mib_8_times_at_once_through_the_proxy_in_bounded_memory() {
    if !curl_available() {
        eprintln!("curl is not installed: this test needs it (see .ci/run)");
        return;
    }
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            tokio::spawn(serve_file(s));
        }
    });
    let (proxy_addr, mut child) = spawn_proxy(upstream_addr, &["--max-conns", "64"]);
    let pid = child.id();
    let url = format!("http://{proxy_addr}/file");
    let peak_rss = tokio::task::spawn_blocking(move || download_all("plain", &url, pid))
        .await
        .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    println!("proxy peak RSS: {peak_rss} KiB");
    assert!(
        0 < peak_rss && peak_rss < RSS_LIMIT_KIB,
        "the proxy's RSS reached {peak_rss} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_proxy_to_a_tls_upstream() {
    use tokio_bufferevent::bufferevent::BufferEvent;
    use tokio_bufferevent::filters::tls::{
        self,
        rustls::{self, ServerConfig, pki_types::PrivatePkcs8KeyDer},
    };
    if !curl_available() {
        eprintln!("curl is not installed: this test needs it (see .ci/run)");
        return;
    }
    let key = rcgen::generate_simple_self_signed(vec!["upstream.test".to_owned()]).unwrap();
    let ca_file = std::env::temp_dir().join(format!("bev-proxy-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, key.cert.pem()).unwrap();
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()).into(),
            )
            .unwrap();
    let config = Arc::new(config);
    // The upstream terminates TLS with the crate's own filter.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = upstream.accept().await {
            let (input, output) = tls::server(Arc::clone(&config)).unwrap();
            let tls = BufferEvent::builder().filter(
                BufferEvent::builder().tcp(s).unwrap(),
                input,
                output,
            );
            tls.enable(tokio_bufferevent::bufferevent::Direction::READ);
            tokio::spawn(serve_file(tls.into_io()));
        }
    });
    let ca = ca_file.to_str().unwrap().to_owned();
    let (proxy_addr, mut child) = spawn_proxy(
        upstream_addr,
        &["--tls-upstream", "upstream.test", "--ca", &ca],
    );
    let pid = child.id();
    let url = format!("http://{proxy_addr}/file");
    tokio::task::spawn_blocking(move || download_all("tls", &url, pid))
        .await
        .unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_file(&ca_file);
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let parse = |args: &[&str]| proxy::Options::parse(args.iter().map(|s| s.to_string()));
    assert!(
        parse(&["127.0.0.1:1"])
            .unwrap_err()
            .contains("UPSTREAM_ADDR")
    );
    assert!(
        parse(&["nowhere", "127.0.0.1:1"])
            .unwrap_err()
            .contains("LISTEN_ADDR")
    );
    assert!(
        parse(&["127.0.0.1:1", "127.0.0.1:2", "--max-conns", "0"])
            .unwrap_err()
            .contains("positive")
    );
    assert!(
        parse(&["127.0.0.1:1", "127.0.0.1:2", "--bogus"])
            .unwrap_err()
            .contains("--bogus")
    );
    for bad in ["0", "-1", "61", "x"] {
        assert!(
            parse(&["127.0.0.1:1", "127.0.0.1:2", "--connect-timeout", bad])
                .unwrap_err()
                .contains("--connect-timeout"),
            "{bad}"
        );
    }
    let ok = parse(&[
        "127.0.0.1:1",
        "127.0.0.1:2",
        "--tls-upstream",
        "x.test",
        "--max-conns",
        "3",
    ])
    .unwrap();
    assert_eq!(
        (ok.tls_name.as_deref(), ok.max_conns),
        (Some("x.test"), Some(3))
    );
}

/// An upstream that never answers the connect fails the client's connection after
/// `--connect-timeout`, instead of holding it (and a connection slot) for the
/// kernel's minutes of SYN retries.
#[tokio::test]
async fn an_upstream_that_never_answers_fails_the_client_after_the_connect_timeout() {
    // A listener whose accept queue is full: further connects hang.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let hole = socket.listen(1).unwrap();
    let upstream = hole.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(upstream)).await {
            Ok(stream) => queued.push(stream.unwrap()),
            Err(_) => break,
        }
        assert!(queued.len() < 64, "the accept queue never filled up");
    }
    let options = proxy::Options::parse(
        [
            "127.0.0.1:0",
            &upstream.to_string(),
            "--connect-timeout",
            "0.3",
        ]
        .iter()
        .map(|s| s.to_string()),
    )
    .unwrap();
    let listener = proxy::start(&options).unwrap();
    let mut client = TcpStream::connect(*listener.local_addr()).await.unwrap();
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got)).await;
    assert!(ended.is_ok(), "the client's connection is still held");
    assert!(got.is_empty());
    drop(hole);
}
