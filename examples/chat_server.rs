//! A line chat server in the async style: a task per connection reads lines with
//! `read_line` and sends each to the other members with `write().await`, whose write
//! high watermark holds a fast talker back while a slow listener catches up. A member
//! that stops reading altogether is dropped after a write timeout, so it cannot hold
//! the room; a member's input is bounded by a read watermark, so a flood is held
//! back by TCP; a line too long is answered with an error. No callbacks at all.
//!
//! ```text
//! cargo run --example chat_server
//! ```
//!
//! It needs no arguments and no setup: it starts the server on `127.0.0.1:0`, connects
//! three members, has each say two lines, checks that every member hears the others'
//! lines (and not its own), and exits non-zero otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::buffer::EolStyle;
use tokio_bufferevent::bufferevent::{BufferEvent, Direction, Error, Watermarks};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The members, by id.
pub type Room = Arc<Mutex<HashMap<usize, BufferEvent>>>;

/// The longest line a member may send.
const MAX_LINE: usize = 4096;

/// How long what is queued for a member may wait without any of it being sent before
/// the member is dropped (its write timeout): one that stopped reading must not hold
/// the room.
pub const WRITE_STALL: Duration = Duration::from_secs(10);

/// One member's task: each line it says goes to everyone else.
async fn member(id: usize, bev: BufferEvent, room: Room) {
    loop {
        let line = match bev.read_line(EolStyle::Lf, MAX_LINE).await {
            Ok(line) => line,
            // A line too long, the peer gone, a read error or timeout: this member
            // leaves, told why if it can still hear it.
            Err(e) => {
                if matches!(e, Error::TooLong { .. }) {
                    let _ = bev.write_now(format!("error: {e}\n"));
                }
                eprintln!("chat_server: member {id} leaves: {e}");
                break;
            }
        };
        let message = format!("{id}: {}\n", String::from_utf8_lossy(&line));
        let others: Vec<(usize, BufferEvent)> = {
            let room = room.lock().expect("the room");
            room.iter()
                .filter(|(other, _)| **other != id)
                .map(|(other, bev)| (*other, bev.clone()))
                .collect()
        };
        for (other_id, other) in others {
            // Waits while that member's output is above its write high watermark:
            // a slow listener slows the talker, not the server's memory.
            let stalled = match other.write(message.clone()).await {
                // The write timeout turns WRITE off: queued or not, nothing more
                // would be sent to it.
                Ok(()) => !other.enabled().contains(Direction::WRITE),
                Err(Error::TimedOut) => true,
                Err(_) => false, // it left meanwhile
            };
            if stalled {
                // It did not read for `WRITE_STALL`: it goes.
                eprintln!("chat_server: member {other_id} stopped reading; dropped");
                room.lock().expect("the room").remove(&other_id);
                other.free();
            }
        }
    }
    room.lock().expect("the room").remove(&id);
    bev.close().await;
}

/// Accepts members, with a write timeout of `write_stall` each; an accept error
/// (out of descriptors) is reported and retried after a pause, not a reason to stop.
pub async fn serve(listener: TcpListener, room: Room, write_stall: Duration) {
    let mut next_id = 0;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("chat_server: accept failed: {e}; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let bev = match BufferEvent::builder()
            .enable(Direction::READ)
            .write_watermarks(Watermarks::new(0, 64 * 1024))
            // What a member says waits for its task within this bound: a flood is
            // held back by TCP, not kept in memory.
            .read_watermarks(Watermarks::new(0, 4 * MAX_LINE))
            .timeouts(None, Some(write_stall))
            .tcp(stream)
        {
            Ok(bev) => bev,
            Err(e) => {
                eprintln!("chat_server: a connection could not be set up: {e}");
                continue;
            }
        };
        next_id += 1;
        room.lock().expect("the room").insert(next_id, bev.clone());
        tokio::spawn(member(next_id, bev, Arc::clone(&room)));
    }
}

/// Runs the demonstration.
async fn run() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let room = Room::default();
    tokio::spawn(serve(listener, Arc::clone(&room), WRITE_STALL));

    let mut members = Vec::new();
    for _ in 0..3 {
        let stream = TcpStream::connect(addr).await?;
        let (reader, writer) = stream.into_split();
        members.push((BufReader::new(reader), writer));
    }
    // Everyone is in the room before anyone speaks.
    while room.lock().expect("the room").len() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (i, (_, writer)) in members.iter_mut().enumerate() {
        writer
            .write_all(format!("hello from {i}\nbye from {i}\n").as_bytes())
            .await?;
    }
    // Each member hears the two lines of each of the two others.
    for (i, (reader, _)) in members.iter_mut().enumerate() {
        let mut heard = Vec::new();
        for _ in 0..4 {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            heard.push(line.trim_end().to_owned());
        }
        println!("member {i} heard {heard:?}");
        for j in (0..3).filter(|&j| j != i) {
            let hello = format!("hello from {j}");
            if !heard.iter().any(|l| l.ends_with(&hello)) {
                return Err(format!("member {i} did not hear {hello:?}").into());
            }
        }
        if heard.iter().any(|l| l.ends_with(&format!("from {i}"))) {
            return Err(format!("member {i} heard itself").into());
        }
    }
    println!("chat_server: OK");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
