//! The link of a socket (or any stream) bufferevent: reads into the input's tail,
//! writes the output's chunks, connects, and shuts down the write side.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

use bytes::BufMut;
use tokio::io::ReadBuf;

use super::{Attach, Connecting, Io, Link, Transport};
use crate::bufferevent::events::{Direction, Events, FlushMode};

/// Reads smaller than this go through a stack buffer first, so an idle or chatty
/// connection holds no large buffer (see `docs/PERFORMANCE.md`).
const SMALL_READ: usize = 2048;
/// The largest buffer one direct read allocates.
const MAX_DIRECT_READ: usize = 64 * 1024;
/// Vectored writes gather at most this many chunks.
const MAX_IOVECS: usize = 64;

pub(crate) struct StreamLink<T> {
    transport: Option<T>,
    /// Boxed once more: a connect is rare, and a thin pointer keeps every task small.
    connecting: Option<Box<Connecting<T>>>,
    /// The last read filled its buffer: data is flowing, read into the tail directly.
    read_hot: bool,
}

impl<T> StreamLink<T> {
    pub(crate) fn new(transport: Option<T>) -> Self {
        Self {
            transport,
            connecting: None,
            read_hot: false,
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
            Attach::Now(transport) => {
                self.connecting = None;
                self.install(io, transport);
                io.core.on_transport();
            }
            Attach::Connecting(connecting) => self.connecting = Some(Box::new(connecting)),
        }
    }

    fn take_transport(&mut self) -> Option<T> {
        self.transport.take()
    }

    fn is_attached(&self) -> bool {
        self.transport.is_some() || self.connecting.is_some()
    }

    fn streaming(&self) -> bool {
        self.read_hot
    }
}

impl<T: Transport> StreamLink<T> {
    fn install(&mut self, io: &mut Io<'_>, transport: T) {
        self.transport = Some(transport);
        self.read_hot = false;
        if let Some(shared) = io.shared {
            shared.set_read_error(None);
            shared.connected.store(true, Ordering::Release);
        }
    }

    /// Drives a connect and reports its outcome to the core (B-33, B-35, B-50).
    fn poll_connect(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        let Some(connecting) = self.connecting.as_mut() else {
            return false;
        };
        let Poll::Ready(outcome) = connecting.as_mut().as_mut().poll(cx) else {
            return false;
        };
        self.connecting = None;
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
                    shared.connect_failed(Some(&e));
                }
                io.core.on_connect_failed(e);
            }
        }
        true
    }

    fn poll_read(&mut self, cx: &mut TaskContext<'_>, io: &mut Io<'_>) -> bool {
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let input = &mut *io.input;
        let budget = io.core.read_budget(input.len());
        if budget == 0 {
            return false; // never issue a 0-byte read: it would look like EOF
        }
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
        let max = io.core.write_budget();
        if max == 0 {
            return false;
        }
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let output = &mut *io.output;
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
                io.output.advance_sent(n);
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
