//! The link of a socket (or any stream) bufferevent: reads into the input's tail,
//! writes the output's chunks, connects, and shuts down the write side.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

use bytes::BufMut;
use tokio::io::ReadBuf;

use super::Transport;
use super::engine::{Connecting, Link, Side};
use super::events::{Direction, Events, FlushMode};

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

impl<T: Transport, S: Send + 'static> Link<S> for StreamLink<T> {
    type Transport = T;

    fn poll_input(&mut self, cx: &mut TaskContext<'_>, side: &mut Side<T, S>) -> bool {
        // B-72: `Normal` and `Flush` mean nothing more than ordinary operation for a
        // stream; `Finished` on WRITE shuts the write side down once the output is
        // sent.
        for (dirs, mode) in side.inner.flushes.take() {
            if mode == FlushMode::Finished && dirs.contains(Direction::WRITE) {
                side.inner.shutdown_requested = true;
            }
        }
        let connected = self.poll_connect(cx, side);
        connected | self.poll_read(cx, side)
    }

    fn poll_output(&mut self, cx: &mut TaskContext<'_>, side: &mut Side<T, S>) -> bool {
        self.poll_write(cx, side)
    }

    fn set_transport(&mut self, side: &mut Side<T, S>, transport: T) {
        self.connecting = None;
        self.install(side, transport);
        // As libevent's setfd re-registers the write event: a writable transport with
        // nothing to send yields one write callback (B-6, B-14).
        if side.inner.core.enabled().contains(Direction::WRITE) {
            side.inner.write_ready_callback = true;
        }
    }

    fn connect(&mut self, _side: &mut Side<T, S>, connecting: Connecting<T>) {
        self.connecting = Some(Box::new(connecting));
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
    fn install<S>(&mut self, side: &mut Side<T, S>, transport: T)
    where
        S: Send + 'static,
    {
        self.transport = Some(transport);
        self.read_hot = false;
        side.read_closed = false;
        side.write_closed = false;
        if let Some(shared) = side.shared() {
            shared.read_closed.store(false, Ordering::Release);
            shared.write_closed.store(false, Ordering::Release);
            shared.set_read_error(None);
            shared.connected.store(true, Ordering::Release);
        }
    }

    /// Drives a connect. Success delivers `CONNECTED` alone, then queued output goes
    /// out (B-35, B-50); failure delivers `ERROR` (with `TIMEOUT` for a connect
    /// timeout) without a direction bit and leaves `enabled` as it was (B-33).
    fn poll_connect<S>(&mut self, cx: &mut TaskContext<'_>, side: &mut Side<T, S>) -> bool
    where
        S: Send + 'static,
    {
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
                if let Some(shared) = side.shared() {
                    shared.set_info(info);
                }
                self.install(side, transport);
                side.inner.timeouts.restart(Direction::BOTH);
                side.inner.core.event(Events::CONNECTED, None);
            }
            Err(e) => {
                tracing::debug!(error = %e, "connect failed");
                let events = if e.kind() == io::ErrorKind::TimedOut {
                    Events::ERROR | Events::TIMEOUT
                } else {
                    Events::ERROR
                };
                side.inner.core.event(events, Some(e));
                if let Some(shared) = side.shared() {
                    shared.connect_failures.fetch_add(1, Ordering::AcqRel);
                    shared.changed();
                }
            }
        }
        true
    }

    fn poll_read<S>(&mut self, cx: &mut TaskContext<'_>, side: &mut Side<T, S>) -> bool
    where
        S: Send + 'static,
    {
        if side.read_closed {
            return false;
        }
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let input = &mut side.inner.input;
        let budget = side
            .inner
            .core
            .read_budget(input.len(), side.inner.max_single_read as usize);
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
                side.io().end_reading(Events::READING | Events::EOF, None);
                true
            }
            Poll::Ready(Ok(n)) => {
                self.read_hot = n == asked;
                side.inner.input.commit_appended(n);
                side.inner.timeouts.read_progress();
                side.inner.core.data_read(side.inner.input.len());
                tracing::trace!(bytes = n, "read");
                true
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(e)) => {
                self.read_hot = false;
                side.io()
                    .end_reading(Events::READING | Events::ERROR, Some(e));
                true
            }
        }
    }

    fn poll_write<S>(&mut self, cx: &mut TaskContext<'_>, side: &mut Side<T, S>) -> bool
    where
        S: Send + 'static,
    {
        if side.write_closed || !side.inner.core.writing() {
            return false;
        }
        let Some(transport) = self.transport.as_mut() else {
            return false;
        };
        let output = &mut side.inner.output;
        if output.is_empty() {
            if side.inner.write_ready_callback {
                // B-14: a writable transport with nothing to send yields one write
                // callback after enable(WRITE).
                side.inner.write_ready_callback = false;
                side.inner.core.schedule_write();
                return true;
            }
            if !side.inner.shutdown_requested {
                return false;
            }
            return match Pin::new(transport).poll_shutdown(cx) {
                Poll::Pending => false,
                Poll::Ready(result) => {
                    let mut io = side.io();
                    io.mark_write_closed();
                    if let Err(e) = result {
                        io.end_writing(Events::WRITING | Events::ERROR, Some(e));
                    }
                    true
                }
            };
        }
        side.inner.write_ready_callback = false;
        let max = side.inner.max_single_write as usize;
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
                side.io().end_writing(Events::WRITING | Events::EOF, None);
                true
            }
            Poll::Ready(Ok(n)) => {
                let _ = side.inner.output.drain(n);
                side.inner.timeouts.write_progress();
                side.inner.core.data_written(side.inner.output.len());
                tracing::trace!(bytes = n, "wrote");
                true
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => true,
            Poll::Ready(Err(e)) => {
                side.io()
                    .end_writing(Events::WRITING | Events::ERROR, Some(e));
                true
            }
        }
    }
}
