//! The link of a socket (or any stream) bufferevent: reads into the input's tail,
//! writes the output's chunks, connects, and shuts down the write side.

use std::any::Any;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::BufMut;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

use super::hangup::{self, Hangup, Watch};
use super::{Attach, Connecting, Ended, Io, Link, LookupDone, Transport};
use crate::bufferevent::core::Ending;
use crate::bufferevent::events::{Direction, Events, FlushMode};

/// Reads smaller than this go through a stack buffer first, so an idle or chatty
/// connection holds no large buffer (see `docs/PERFORMANCE.md`).
const SMALL_READ: usize = 2048;
/// The largest buffer one direct read allocates.
const MAX_DIRECT_READ: usize = 64 * 1024;
/// Vectored writes gather at most this many chunks.
const MAX_IOVECS: usize = 64;

pub(crate) struct StreamLink<T: 'static> {
    transport: Option<T>,
    /// A connect under way, or a paused socket being watched. Boxed: both are rare,
    /// and a thin pointer keeps every task small.
    waiting: Option<Box<Waiting<T>>>,
    /// The last read filled its buffer: data is flowing, read into the tail directly.
    read_hot: bool,
    /// A transport was attached at once since a filter above last asked.
    attached_anew: bool,
}

/// What a stream link waits for besides its transport's I/O.
enum Waiting<T> {
    /// A connect (with no transport, or an earlier one still in use: D-C3), and for
    /// a hostname the mark of its lookup, while that runs.
    Connect(Connecting<T>, Option<LookupDone>),
    /// A hang-up of the peer while reading is paused (see `hangup.rs`).
    Hangup(Watch),
}

impl<T: 'static> StreamLink<T> {
    pub(crate) fn new(transport: Option<T>) -> Self {
        Self {
            transport,
            waiting: None,
            read_hot: false,
            attached_anew: false,
        }
    }
}

impl<T: 'static> Drop for StreamLink<T> {
    /// Dropped while a panic unwinds (a filter above panicked while it held this
    /// link's bufferevent): a TCP connection is reset, not closed, so the peer can
    /// tell the failure from a complete answer (as for a panicking callback, D-B11).
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(transport) = self.transport.as_mut()
            && let Some(tcp) = (transport as &mut dyn Any).downcast_mut::<TcpStream>()
        {
            reset(tcp);
        }
    }
}

impl<T: Transport> Link for StreamLink<T> {
    type Transport = T;

    fn poll_input(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        // B-72: `Normal` and `Flush` mean nothing more than ordinary operation for a
        // stream; `Finished` on WRITE shuts the write side down once the output is
        // sent.
        if io.core.has_flushes() {
            for (dirs, mode) in io.core.take_flushes() {
                if mode == FlushMode::Finished && dirs.contains(Direction::WRITE) {
                    io.core.request_shutdown();
                }
            }
        }
        let connected = self.poll_connect(cx, io);
        connected | self.poll_read(cx, io)
    }

    fn poll_output(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        self.poll_write(cx, io)
    }

    fn attach(&mut self, io: &mut Io<'_>, attach: Attach<T>) {
        match attach {
            Attach::Now(transport, info) => {
                self.forget_connect(io);
                self.waiting = None;
                self.install(io, transport);
                if let Some(shared) = io.shared {
                    shared.set_info(*info);
                    // Again on the task: a failure it reported since the handle's call
                    // was of the connect this transport replaces.
                    shared.transport_given();
                }
                io.core.on_transport();
                self.attached_anew = true;
            }
            Attach::Connecting(connecting, lookup) => {
                self.forget_connect(io);
                io.core.suspend_for_lookup(lookup.is_some());
                self.waiting = Some(Box::new(Waiting::Connect(connecting, lookup)));
                io.core.register_again();
            }
        }
    }

    fn take_transport(&mut self) -> Option<T> {
        self.transport.take()
    }

    fn take_new_transport(&mut self) -> bool {
        std::mem::take(&mut self.attached_anew)
    }

    fn is_attached(&self) -> bool {
        self.transport.is_some() || matches!(self.waiting.as_deref(), Some(Waiting::Connect(..)))
    }

    fn only_connecting(&self) -> bool {
        self.transport.is_none() && matches!(self.waiting.as_deref(), Some(Waiting::Connect(..)))
    }

    fn streaming(&self) -> bool {
        self.read_hot
    }

    fn finish(mut self, how: Ending) -> Ended {
        let Some(mut transport) = self.transport.take() else {
            return Ended::Gone(None);
        };
        if let Some(tcp) = (&mut transport as &mut dyn Any).downcast_mut::<TcpStream>() {
            match how {
                Ending::Aborted => reset(tcp),
                Ending::Closed => discard_unread(tcp),
                Ending::Freed => {}
            }
        }
        drop(transport);
        Ended::Gone(None)
    }
}

/// Makes the coming close a reset (`SO_LINGER` 0 sends RST instead of FIN), so the
/// peer can tell a failure from an answer.
fn reset(tcp: &TcpStream) {
    // Deprecated because a non-zero linger blocks in `drop`; zero never blocks.
    #[allow(deprecated)]
    if let Err(e) = tcp.set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "SO_LINGER could not be set; closing instead");
    }
}

/// The most a completed close discards of what the peer sent after it.
const MAX_DISCARD: usize = 1 << 20;

/// After a completed close: discards what the peer sent meanwhile (nothing more is
/// read for the application once a close starts), so the socket closes with a FIN.
/// Closing a socket with unread data resets it instead, and a reset can destroy our
/// last bytes in the peer's receive buffer before it reads them.
fn discard_unread(tcp: &TcpStream) {
    // Through a duplicate of the descriptor: a plain non-blocking read, not gated by
    // Tokio's readiness (which may not know of data that came after reading stopped).
    let Ok(fd) = std::os::fd::AsFd::as_fd(tcp).try_clone_to_owned() else {
        return;
    };
    let mut socket = std::net::TcpStream::from(fd);
    let mut scratch = [0u8; 4096];
    let mut discarded = 0;
    while discarded < MAX_DISCARD {
        match io::Read::read(&mut socket, &mut scratch) {
            Ok(0) | Err(_) => break,
            Ok(n) => discarded += n,
        }
    }
    if discarded > 0 {
        tracing::debug!(
            discarded,
            "input that arrived during the close was discarded"
        );
    }
}

impl<T: Transport> StreamLink<T> {
    /// While reading is paused (at the high watermark, or READ disabled) on a TCP
    /// stream, watches for the peer resetting or closing the connection and reports
    /// it without reading (see `hangup.rs`).
    fn watch_paused(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        // Paused by a watermark or a filter, or disabled while the application holds
        // input: a bufferevent that never reads (READ off from the start, as by
        // default) is not watched, so it costs no second descriptor.
        let paused = io.core.paused_for_a_while(io.input.len());
        if !paused || !io.core.read_open() || io.core.closing() || io.core.freed() {
            if matches!(self.waiting.as_deref(), Some(Waiting::Hangup(_))) {
                self.waiting = None;
            }
            return false;
        }
        if self.waiting.is_none() {
            let Some(transport) = self.transport.as_mut() else {
                return false;
            };
            let Some(tcp) = (transport as &mut dyn Any).downcast_mut::<TcpStream>() else {
                return false;
            };
            let Some(watch) = hangup::watch(tcp) else {
                return false;
            };
            self.waiting = Some(Box::new(Waiting::Hangup(watch)));
        }
        let Some(Waiting::Hangup(watch)) = self.waiting.as_deref_mut() else {
            return false;
        };
        let Poll::Ready(hangup) = watch.as_mut().poll(cx) else {
            return false;
        };
        self.waiting = None;
        self.read_hot = false;
        match hangup {
            Hangup::Error(e) => {
                tracing::debug!(error = %e, "the peer failed while reading was paused");
                io.end_reading(Events::READING | Events::ERROR, Some(e));
            }
            Hangup::Eof => {
                tracing::debug!("the peer finished while reading was paused");
                io.end_reading(Events::READING | Events::EOF, None);
            }
        }
        true
    }

    fn install(&mut self, io: &mut Io<'_>, transport: T) {
        self.transport = Some(transport);
        self.read_hot = false;
        if let Some(shared) = io.shared {
            shared.set_read_error(None);
        }
    }

    /// A connect under way is replaced and will never report: `connected()` stops
    /// counting on it.
    fn forget_connect(&mut self, io: &mut Io<'_>) {
        if matches!(self.waiting.as_deref(), Some(Waiting::Connect(..))) {
            self.waiting = None;
            io.core.suspend_for_lookup(false);
            if let Some(shared) = io.shared {
                shared.connect_withdrawn();
            }
        }
    }

    /// Drives a connect and reports its outcome to the core.
    fn poll_connect(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        let Some(Waiting::Connect(connecting, lookup)) = self.waiting.as_deref_mut() else {
            return false;
        };
        let polled = connecting.as_mut().poll(cx);
        let looked_up = lookup
            .as_ref()
            .is_some_and(|done| done.load(Ordering::Acquire));
        if looked_up || polled.is_ready() && lookup.is_some() {
            // The lookup is over: both directions go on (with an earlier transport
            // while the connect runs, D-C3).
            *lookup = None;
            io.core.suspend_for_lookup(false);
        }
        let Poll::Ready(outcome) = polled else {
            return looked_up;
        };
        self.waiting = None;
        match outcome {
            Ok((transport, info)) => {
                tracing::debug!(peer = ?info.peer, "connected");
                self.install(io, transport);
                if let Some(shared) = io.shared {
                    shared.set_info(info);
                    shared.connect_succeeded();
                }
                io.core.on_connected();
            }
            Err(e) => {
                tracing::debug!(error = %e, "connect failed");
                if let Some(shared) = io.shared {
                    shared.connect_failed(Some(&e), self.transport.is_none());
                }
                io.core.on_connect_failed(e, self.transport.is_some());
            }
        }
        true
    }

    fn poll_read(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        if self.transport.is_none() {
            return false;
        }
        let input = &mut *io.input;
        let budget = io.core.read_budget(input.len());
        if budget == 0 {
            // Never issue a 0-byte read: it would look like EOF. A paused socket is
            // watched for its peer hanging up instead.
            return self.watch_paused(cx, io);
        }
        if matches!(self.waiting.as_deref(), Some(Waiting::Hangup(_))) {
            self.waiting = None; // reading again: the reads themselves will tell
        }
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let input = &mut *io.input;
        let direct = self.read_hot || input.spare_capacity() >= budget.min(SMALL_READ);
        let (outcome, asked) = if direct {
            let tail = input.tail_with_room(budget.min(MAX_DIRECT_READ));
            let mut limited = tail.limit(budget);
            let outcome = tokio_util::io::poll_read_buf(Pin::new(transport), cx, &mut limited);
            (outcome, budget.min(MAX_DIRECT_READ))
        } else {
            let want = budget.min(SMALL_READ);
            let mut stack = [MaybeUninit::<u8>::uninit(); SMALL_READ];
            let mut filled = ReadBuf::uninit(&mut stack[..want]);
            let outcome = Pin::new(transport).poll_read(cx, &mut filled).map_ok(|()| {
                let data = filled.filled();
                input.stage_copy(data);
                data.len()
            });
            (outcome, want)
        };
        match outcome {
            Poll::Pending => false,
            Poll::Ready(Ok(0)) => {
                self.read_hot = false;
                io.end_reading(Events::READING | Events::EOF, None);
                true
            }
            Poll::Ready(Ok(n)) => {
                self.read_hot = n == asked;
                io.input.commit_appended(n);
                io.count_read(n);
                io.core.charge(true, n);
                io.core.on_read(io.input.len());
                tracing::trace!(bytes = n, "read");
                true
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(e)) => {
                self.read_hot = false;
                io.end_reading(Events::READING | Events::ERROR, Some(e));
                true
            }
        }
    }

    fn poll_write(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let output = &mut *io.output;
        // With nothing to send, only B-14's callback and a shutdown are due: neither
        // spends write tokens, so an empty bucket does not hold them.
        if output.is_empty() && io.core.writes_nothing_owed() {
            return false;
        }
        if output.is_empty() {
            if io.core.take_write_ready() {
                // B-14: a writable transport with nothing to send yields one write
                // callback after enable(WRITE).
                io.core.trigger(Direction::WRITE, true, 0, 0);
                return true;
            }
            if !io.core.shutdown_due(0) {
                return false;
            }
            return match Pin::new(transport).poll_shutdown(cx) {
                Poll::Pending => false,
                Poll::Ready(result) => {
                    io.core.on_shutdown();
                    if let Err(e) = result {
                        io.end_writing(Events::WRITING | Events::ERROR, Some(e));
                    }
                    true
                }
            };
        }
        let max = io.core.write_budget();
        if max == 0 {
            return false;
        }
        // Output to send: the write itself reports, not B-14's callback.
        io.core.take_write_ready();
        // One segment (small request/response traffic): a plain write (`send`), which
        // the kernel handles a little faster than a one-element `writev`, and no slice
        // array to fill.
        let outcome = match output.single_segment() {
            Some(Ok(data)) => Pin::new(transport).poll_write(cx, &data[..data.len().min(max)]),
            Some(Err(e)) => Poll::Ready(Err(e.into())),
            None => {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                match output.io_slices_max(&mut slices, max) {
                    Ok(1) => Pin::new(transport).poll_write(cx, &slices[0]),
                    Ok(filled) => Pin::new(transport).poll_write_vectored(cx, &slices[..filled]),
                    Err(e) => Poll::Ready(Err(e.into())),
                }
            }
        };
        match outcome {
            Poll::Pending => false,
            Poll::Ready(Ok(0)) => {
                io.end_writing(Events::WRITING | Events::EOF, None);
                true
            }
            Poll::Ready(Ok(n)) => {
                io.count_written(n, io.output.len());
                io.output.advance_sent(n);
                io.core.charge(false, n);
                io.core.on_written(io.output.len());
                tracing::trace!(bytes = n, "wrote");
                true
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(e)) => {
                io.end_writing(Events::WRITING | Events::ERROR, Some(e));
                true
            }
        }
    }
}
