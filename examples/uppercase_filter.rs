//! A filtering bufferevent over a socket: an output filter that upper-cases what the
//! client writes, stacked on a TCP bufferevent (libevent's `bufferevent_filter_new`).
//!
//! ```text
//! cargo run --example uppercase_filter
//! ```
//!
//! It needs no arguments and no setup: it starts an echo server on `127.0.0.1:0`
//! whose connections are plain bufferevents, connects a client, wraps the client's
//! bufferevent in a filter whose output filter upper-cases ASCII letters and whose
//! input filter passes bytes through, and checks that the echo comes back in upper
//! case. It exits non-zero otherwise.

use std::error::Error;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{
    BufferEvent, Direction, Events, FilterResult, FlushMode, Input, Output, PassThrough,
};

type BoxError = Box<dyn Error + Send + Sync>;

/// The output filter: moves everything from `src` to `dst`, upper-casing ASCII letters
/// (and only those, so UTF-8 passes unharmed). It honours `dst_limit`, the room under
/// the socket bufferevent's write high watermark.
fn uppercase(
    src: &mut Input<'_>,
    dst: &mut Output<'_>,
    dst_limit: Option<usize>,
    _mode: FlushMode,
) -> std::io::Result<FilterResult> {
    let n = dst_limit.unwrap_or(usize::MAX).min(src.len());
    if n == 0 {
        return Ok(FilterResult::NeedMore);
    }
    let mut data = src.remove_bytes(n).to_vec();
    data.make_ascii_uppercase();
    dst.add(&data);
    Ok(FilterResult::Ok)
}

/// An echo server whose connections are plain bufferevents.
async fn echo_server(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        BufferEvent::builder()
            .enable(Direction::READ)
            .on_read(|ctx| {
                let (mut input, mut output) = ctx.io();
                output.append_input(&mut input);
            })
            .on_event(|ctx, events, _| {
                if events.intersects(Events::EOF | Events::ERROR) {
                    ctx.close();
                }
            })
            .tcp(stream)?;
    }
}

async fn run() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(echo_server(listener));

    let socket = BufferEvent::builder().tcp(TcpStream::connect(addr).await?)?;
    let client =
        BufferEvent::builder()
            .enable(Direction::READ)
            .filter(socket, PassThrough, uppercase);
    println!(
        "filter over the socket {:?} -> {:?}",
        client.local_addr(),
        client.peer_addr()
    );

    let text = "Filters see every byte on its way out: naïve café, 42 times.";
    client.write(text.as_bytes().to_vec()).await?;
    client.readable(text.len()).await;
    let echoed = client.read(usize::MAX).await?;
    let echoed = String::from_utf8(echoed.to_vec())?;
    println!("sent:   {text}");
    println!("echoed: {echoed}");
    assert_eq!(echoed, text.to_ascii_uppercase());

    let closed = client.close().await;
    assert_eq!(closed.unsent, 0);
    println!("uppercase_filter: OK");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
