//! A paired bufferevent as an in-memory test double (libevent's
//! `bufferevent_pair_new`): a protocol handler written for bufferevents is tested
//! without a socket, by driving it from the other element of a pair.
//!
//! ```text
//! cargo run --example pair_test_double
//! ```
//!
//! It needs no arguments and no setup. The handler is a tiny key-value protocol:
//! `SET key value`, `GET key` and `QUIT`, one command per CRLF line, answered with
//! `OK`, the value, `NOT FOUND` or `ERR ...`. The same `install` function would serve a
//! TCP connection (`Builder::tcp`); here it serves one element of a pair, and the test
//! speaks to it through the other, checking each answer. It exits non-zero on any
//! mismatch.

use std::collections::HashMap;
use std::error::Error;
use std::time::Duration;

use tokio_bufferevent::buffer::EolStyle;
use tokio_bufferevent::bufferevent::{BufferEvent, Builder, Direction, Events, Pair};

type BoxError = Box<dyn Error + Send + Sync>;

/// The longest command line the handler accepts.
const MAX_LINE: usize = 1024;

/// The handler's state: the store, owned by the bufferevent's task.
type Store = HashMap<String, String>;

/// Sets a bufferevent up to serve the protocol. Any transport works.
fn install(builder: Builder<Store>) -> Builder<Store> {
    builder
        .enable(Direction::READ)
        .on_read(|ctx| {
            loop {
                let line = match ctx.input().readln_max(EolStyle::Crlf, MAX_LINE) {
                    Ok(Some(line)) => line,
                    Ok(None) => return,
                    Err(_) => {
                        ctx.output().add(b"ERR line too long\r\n");
                        ctx.close();
                        return;
                    }
                };
                let line = String::from_utf8_lossy(&line).into_owned();
                let mut words = line.splitn(3, ' ');
                let answer = match (words.next(), words.next(), words.next()) {
                    (Some("SET"), Some(key), Some(value)) => {
                        ctx.state().insert(key.to_owned(), value.to_owned());
                        "OK".to_owned()
                    }
                    (Some("GET"), Some(key), None) => ctx
                        .state()
                        .get(key)
                        .cloned()
                        .unwrap_or_else(|| "NOT FOUND".to_owned()),
                    (Some("QUIT"), None, None) => {
                        ctx.output().add(b"BYE\r\n");
                        ctx.close();
                        return;
                    }
                    _ => format!("ERR unknown command {line:?}"),
                };
                ctx.output().add_fmt(format_args!("{answer}\r\n"));
            }
        })
        .on_event(|ctx, events, _| {
            if events.intersects(Events::EOF | Events::ERROR) {
                ctx.free();
            }
        })
}

/// Sends one line from the test side and returns the answer line.
async fn ask(test_side: &BufferEvent<Pair, Store>, line: &str) -> Result<String, BoxError> {
    test_side.write(format!("{line}\r\n").into_bytes()).await?;
    loop {
        // The line, or how much of it is there: waiting for one byte more than that
        // cannot miss bytes that arrive in between.
        let (answer, buffered) = test_side
            .with(|ctx| {
                let line = ctx.input().readln(EolStyle::Crlf);
                (line, ctx.input().len())
            })
            .await?;
        if let Some(answer) = answer {
            let answer = String::from_utf8(answer.to_vec())?;
            println!("> {line}\n< {answer}");
            return Ok(answer);
        }
        test_side.readable(buffered + 1).await;
    }
}

async fn run() -> Result<(), BoxError> {
    let (handler, test_side) = install(BufferEvent::builder_with_state(Store::new()))
        .pair(BufferEvent::builder_with_state(Store::new()).enable(Direction::READ));

    assert_eq!(ask(&test_side, "GET colour").await?, "NOT FOUND");
    assert_eq!(ask(&test_side, "SET colour teal green").await?, "OK");
    assert_eq!(ask(&test_side, "GET colour").await?, "teal green");
    assert!(
        ask(&test_side, "FLY away")
            .await?
            .starts_with("ERR unknown command")
    );
    assert_eq!(ask(&test_side, "QUIT").await?, "BYE");

    // The handler closed its end: it is over, and the test side lost its partner.
    let closed = handler.closed().await;
    assert_eq!(closed.unsent, 0);
    assert!(test_side.partner().is_none());
    println!("pair_test_double: OK");
    Ok(())
}

/// Runs [`run`], failing after 20 s rather than hanging.
#[tokio::main]
pub async fn main() -> Result<(), BoxError> {
    tokio::time::timeout(Duration::from_secs(20), run()).await?
}
