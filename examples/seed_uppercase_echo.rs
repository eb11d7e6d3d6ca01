//! Ports `read_callback_uppercase` from libevent's "Bufferevents: concepts and basics"
//! chapter (section "Manipulating data in a bufferevent"): a read callback that takes
//! the input 128 bytes at a time with `bufferevent_read`, uppercases each piece and
//! sends it back with `bufferevent_write`.
//!
//! ```text
//! cargo run --example seed_uppercase_echo
//! ```
//!
//! It needs no arguments and no setup: it starts an uppercase echo server on
//! `127.0.0.1:0` whose connections are bufferevents with that read callback, sends it
//! a text several times longer than 128 bytes, half-closes, reads the answer to the
//! end, and exits non-zero unless the answer is the text in upper case.

use std::error::Error;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{BufferEvent, Context, Direction};

type BoxError = Box<dyn Error + Send + Sync>;

/// How many 128-byte pieces the read callbacks moved (counted for the printout only).
static PIECES: AtomicUsize = AtomicUsize::new(0);

/// The chapter's `read_callback_uppercase`.
fn read_callback_uppercase(ctx: &mut Context<'_, ()>) {
    // This callback removes the data from the input buffer 128 bytes at a time,
    // uppercases it, and starts sending it back.
    //
    // The chapter warns against `toupper` in protocols because it depends on the
    // current locale. `make_ascii_uppercase` depends on nothing: it changes a-z only
    // and leaves every other byte, UTF-8 included, as it is.
    let mut tmp = [0u8; 128];
    loop {
        let n = ctx.input().remove(&mut tmp);
        if n == 0 {
            break; // No more data.
        }
        tmp[..n].make_ascii_uppercase();
        ctx.output().add(&tmp[..n]);
        PIECES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Accepts connections and serves each with a bufferevent running the callback.
async fn serve(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        // Reading must be enabled (a new bufferevent only writes). The handle is dropped
        // at once: the bufferevent then ends by itself once the peer has closed and the
        // echo is sent, closing the socket (no event callback needed for that).
        BufferEvent::builder()
            .enable(Direction::READ)
            .on_read(read_callback_uppercase)
            .tcp(stream)?;
    }
}

/// Runs the example.
async fn run() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener));

    let line =
        "Bufferevents give you callbacks when enough data arrived: naïve café, 128 at a time.\n";
    let text = line.repeat(20);
    let mut client = TcpStream::connect(addr).await?;
    client.write_all(text.as_bytes()).await?;
    client.shutdown().await?; // EOF: the server's bufferevent ends once it answered
    let mut answer = String::new();
    client.read_to_string(&mut answer).await?;
    server.abort();

    print!("{}", &answer[..line.len()]);
    println!(
        "... {} bytes back in {} pieces of at most 128",
        answer.len(),
        PIECES.load(Ordering::Relaxed)
    );
    assert_eq!(answer, text.to_ascii_uppercase());
    assert!(answer.contains("NAïVE CAFé"), "only ASCII letters change");
    assert!(PIECES.load(Ordering::Relaxed) >= text.len().div_ceil(128));
    println!("seed_uppercase_echo: OK");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
