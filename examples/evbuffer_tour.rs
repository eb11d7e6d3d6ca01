//! A tour of `EvBuffer`, end to end, with no arguments and no setup:
//!
//! ```text
//! cargo run --release --example evbuffer_tour
//! ```
//!
//! It plays both sides of a small line protocol through buffers only: a "client"
//! formats requests into an output buffer, the bytes travel in awkward pieces (as a
//! socket would deliver them) into an input buffer, and a "server" parses lines with a
//! length limit, moves message bodies without copying, answers with a file, and reports
//! what happened.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio_bufferevent::buffer::{EolStyle, EvBuffer, EvBufferError, LineReader};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The client queues requests: formatted headers, zero-copy bodies.
    let mut client_out = EvBuffer::new();
    let body: Bytes = Bytes::from(vec![b'x'; 10_000]);
    for i in 0..100 {
        client_out.add_fmt(format_args!(
            "PUT /item/{i}\r\nLength: {}\r\n\r\n",
            body.len()
        ))?;
        client_out.add_bytes(body.clone())?; // shares `body`'s memory, copies nothing
    }
    client_out.add_fmt(format_args!("{}\r\n", "A".repeat(300)))?; // over the server's limit
    client_out.add(b"QUIT\r\n")?;
    let sent = client_out.len();
    println!("client queued {sent} bytes in {} requests", 100);

    // 2. The "network" delivers them in pieces of odd sizes.
    let mut server_in = EvBuffer::new();
    let input_events = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&input_events);
    server_in.add_cb(move |_, info| {
        if info.n_added > 0 {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });

    // 3. The server parses as data arrives.
    let mut lines = LineReader::new(EolStyle::Crlf, 256);
    let mut bodies = EvBuffer::new();
    let mut state = State::Request;
    let (mut requests, mut too_long, mut piece) = (0, 0, 1);
    'network: while !client_out.is_empty() {
        piece = piece * 7 % 4093 + 1;
        client_out.remove_buffer(&mut server_in, piece)?;
        loop {
            match state {
                State::Body(left) => {
                    let moved = server_in.remove_buffer(&mut bodies, left)?;
                    state = if moved == left {
                        State::Request
                    } else {
                        State::Body(left - moved)
                    };
                    if moved < left {
                        continue 'network;
                    }
                }
                State::Request | State::Headers(_) => match lines.read_line(&mut server_in) {
                    Ok(Some(line)) => state = on_line(state, &line, &mut requests),
                    Ok(None) => continue 'network,
                    Err(EvBufferError::LineTooLong { len, max }) => {
                        too_long += 1;
                        println!(
                            "server refused a line of {len}+ bytes (limit {max}) and skips it"
                        );
                    }
                    Err(e) => return Err(e.into()),
                },
                State::Quit => break 'network,
            }
        }
    }
    println!(
        "server parsed {requests} requests, {} body bytes moved chunk by chunk, {too_long} line refused",
        bodies.len()
    );
    println!(
        "input buffer callbacks saw {} arrivals",
        input_events.load(Ordering::Relaxed)
    );

    // 4. Find something in the bodies across chunk boundaries, then release them.
    bodies.add(b"needle")?;
    let found = bodies.search(b"xneedle", None)?.map(|p| p.pos());
    println!(
        "search across {} bytes found the marker at {found:?}",
        bodies.len()
    );
    bodies.drain(usize::MAX)?;

    // 5. Answer with a file that is read lazily, 64 KiB at a time, as it is sent.
    let path = std::env::temp_dir().join(format!("evbuffer-demo-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    for i in 0..20_000 {
        writeln!(file, "log line {i}")?;
    }
    drop(file);
    let mut reply = EvBuffer::new();
    reply.add_fmt(format_args!("OK {requests}\r\n"))?;
    reply.add_file(std::fs::File::open(&path)?, 0, None)?;
    let mut wire = Vec::new();
    let mut writes = 0;
    while !reply.is_empty() {
        reply.write_to(&mut wire)?;
        writes += 1;
    }
    std::fs::remove_file(&path)?;
    let mut echo = EvBuffer::new();
    echo.add(&wire)?;
    let status = echo.readln(EolStyle::Crlf)?.unwrap_or_default();
    let mut log_lines = 0;
    while echo.readln(EolStyle::Lf)?.is_some() {
        log_lines += 1;
    }
    println!(
        "reply: {:?} then {log_lines} file lines, {} bytes in {writes} vectored writes",
        String::from_utf8_lossy(&status),
        wire.len()
    );
    assert_eq!((requests, too_long, log_lines), (100, 1, 20_000));
    println!("done: {sent} bytes in, {} bytes out", wire.len());
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum State {
    Request,
    Headers(usize),
    Body(usize),
    Quit,
}

fn on_line(state: State, line: &[u8], requests: &mut usize) -> State {
    match (state, line) {
        (State::Request, b"QUIT") => State::Quit,
        (State::Request, _) => {
            *requests += 1;
            State::Headers(0)
        }
        (State::Headers(len), b"") if len > 0 => State::Body(len),
        (State::Headers(_), b"") => State::Request,
        (State::Headers(len), header) => {
            let value = header.strip_prefix(b"Length: ").unwrap_or_default();
            let parsed = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            State::Headers(parsed.unwrap_or(len))
        }
        (other, _) => other,
    }
}
