//! libevent's `sample/le-proxy.c`, ported literally: two bufferevents that pass data to
//! each other from their callbacks, with backpressure, and that rearrange each other's
//! callbacks from inside their own (`bufferevent_setcb` on the partner), which takes no
//! `.await` here either: `replace_callbacks` is an in-order command like `enable`.

mod common;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_bufferevent::bufferevent::{
    BufferEvent, Callbacks, Context, Direction, Events, Watermarks,
};

use common::{expect_within, pattern};

const MAX_OUTPUT: usize = 512 * 1024;

/// One side; its state is le-proxy's callback argument: the partner.
type Side = BufferEvent<TcpStream, Partner>;

/// The partner, or none (`NULL`).
#[derive(Default)]
struct Partner(Option<Side>);

fn callbacks(
    read: Option<fn(&mut Context<'_, Partner>)>,
    write: Option<fn(&mut Context<'_, Partner>)>,
    event: fn(&mut Context<'_, Partner>, Events, Option<&std::io::Error>),
) -> Callbacks<Partner> {
    Callbacks {
        read: read.map(|f| Box::new(f) as _),
        write: write.map(|f| Box::new(f) as _),
        event: Some(Box::new(event)),
    }
}

fn readcb(ctx: &mut Context<'_, Partner>) {
    let Some(partner) = ctx.state().0.clone() else {
        ctx.input().drain(usize::MAX);
        return;
    };
    let mut src = ctx.input().take_buffer();
    if partner.write_buffer(&mut src).is_err() {
        return;
    }
    if partner.output_len() >= MAX_OUTPUT {
        // We're giving the other side data faster than it can pass it on. Stop
        // reading here until we have drained the other side to MAX_OUTPUT/2 bytes.
        partner.replace_callbacks(callbacks(Some(readcb), Some(drained_writecb), eventcb));
        partner.set_watermarks(
            Direction::WRITE,
            Watermarks::new(MAX_OUTPUT / 2, MAX_OUTPUT),
        );
        ctx.disable(Direction::READ);
    }
}

fn drained_writecb(ctx: &mut Context<'_, Partner>) {
    // We were choking the other side until we drained our outbuf a bit. Now it seems
    // drained.
    ctx.set_callbacks(callbacks(Some(readcb), None, eventcb));
    ctx.set_watermarks(Direction::WRITE, Watermarks::new(0, 0));
    if let Some(partner) = &ctx.state().0 {
        partner.enable(Direction::READ);
    }
}

fn close_on_finished_writecb(ctx: &mut Context<'_, Partner>) {
    if ctx.output().is_empty() {
        ctx.free();
    }
}

/// The partner's event callback once this side is gone (`ctx` is `NULL` in C).
fn eventcb_alone(ctx: &mut Context<'_, Partner>, what: Events, _: Option<&std::io::Error>) {
    if what.intersects(Events::EOF | Events::ERROR) {
        ctx.free();
    }
}

fn eventcb(ctx: &mut Context<'_, Partner>, what: Events, _: Option<&std::io::Error>) {
    if what.intersects(Events::EOF | Events::ERROR) {
        if let Some(partner) = ctx.state().0.clone() {
            // Flush all pending data.
            readcb(ctx);
            ctx.state().0 = None;
            if partner.output_len() > 0 {
                // We still have to flush data from the other side, but when that's
                // done, close the other side.
                partner.replace_callbacks(callbacks(
                    None,
                    Some(close_on_finished_writecb),
                    eventcb_alone,
                ));
                partner.disable(Direction::READ);
            } else {
                // We have nothing left to say to the other side; close it.
                partner.free();
            }
        }
        ctx.free();
    }
}

/// Accepts one client and proxies it to `upstream`, le-proxy's `accept_cb`.
async fn proxy_one(listener: TcpListener, upstream: std::net::SocketAddr) {
    let (client, _) = listener.accept().await.unwrap();
    let b_in = BufferEvent::builder_with_state(Partner::default())
        .tcp(client)
        .unwrap();
    let b_out = BufferEvent::builder_with_state(Partner::default())
        .connect(upstream)
        .unwrap();
    let (i, o) = (b_in.clone(), b_out.clone());
    b_in.with(move |ctx| ctx.state().0 = Some(o)).await.unwrap();
    b_out
        .with(move |ctx| ctx.state().0 = Some(i))
        .await
        .unwrap();
    for bev in [&b_in, &b_out] {
        bev.replace_callbacks(callbacks(Some(readcb), None, eventcb));
        bev.enable(Direction::READ | Direction::WRITE);
    }
}

/// An upstream that sends `n` bytes and closes; the client reads everything through
/// the proxy and sees the EOF. Ten times over: a literal port must never stall.
///
/// One thread, as le-proxy has one event loop. The port relies on what a single
/// loop guarantees: between `readcb`'s write to its partner and the `setcb` and
/// `setwatermark` that follow, the partner does not run. On a multi-threaded runtime
/// the partner's task may send all of that output first, so its new write callback
/// never fires and reading stays off (about one run in four of this test); see
/// "Porting on a multi-threaded runtime" in `docs/bufferevent.md`.
#[tokio::test(flavor = "current_thread")]
async fn le_proxy_ported_literally_passes_everything_and_closes() {
    const N: usize = 4 << 20;
    for round in 0..10 {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            s.write_all(&pattern(N)).await.unwrap();
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_addr = listener.local_addr().unwrap();
        tokio::spawn(proxy_one(listener, upstream_addr));
        let mut client = TcpStream::connect(proxy_addr).await.unwrap();
        let mut got = Vec::new();
        expect_within(client.read_to_end(&mut got))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(got.len(), N, "round {round}");
        assert!(got == pattern(N), "round {round}: bytes differ");
    }
}
