//! [`BufferEventIo`]: a bufferevent as a `Stream` and `Sink` of `Bytes`, and as
//! `AsyncRead + AsyncWrite`, so `tokio_util::codec::Framed` works on top.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio_util::sync::ReusableBoxFuture;

use super::error::Error;
use super::events::{Direction, FlushMode, Watermarks};

/// The read and write high watermark [`BufferEvent::into_io`] sets when none is set:
/// 256 KiB, enough to keep a fast link busy, little enough that ten thousand slow
/// consumers stay within a few GiB.
pub const ADAPTER_HIGH_WATERMARK: usize = 256 * 1024;
use super::handle::BufferEvent;
use super::shared::{Condition, Shared, Stall};
use crate::buffer::EvBuffer;

/// A bufferevent seen as a byte stream: a [`Stream`] of received chunks, a [`Sink`]
/// of chunks to send, and [`AsyncRead`] + [`AsyncWrite`].
///
/// Made by [`BufferEvent::into_io`]; enables reading. The stream ends at the peer's
/// EOF and yields the read error if reading failed. `poll_flush` waits until the
/// output is empty (over a filter, it first has the filters emit what they hold, as a
/// `Flush` flush does: a compressor's pending block, moved on past the watermarks of a
/// pair element beneath, B-77); `poll_close` / `poll_shutdown` flush, then shut down
/// the write side. With WRITE disabled by the application, flushing waits until it
/// is enabled again; disabled by the write timeout, flushing fails with `TimedOut`.
///
/// # Errors
///
/// Every operation fails with an [`io::Error`]:
///
/// - Reading (`poll_next`, `poll_read`): [`io::ErrorKind::TimedOut`]
///   ([`Error::TimedOut`]) while the read timeout has expired with the input empty
///   (enabling READ reads on); the read error, with its kind, once reading failed and
///   the input is empty; [`io::ErrorKind::NotConnected`] ([`Error::Ended`]) if the
///   bufferevent ended with input left unread. The peer's EOF, or the end of the
///   bufferevent with nothing left, ends the stream (`None`, or a read of 0 bytes).
/// - Writing (`poll_ready`, `start_send`, `poll_write`): as
///   [`BufferEvent::writable`] and [`BufferEvent::write_now`]:
///   [`io::ErrorKind::BrokenPipe`] ([`Error::WriteClosed`]) if the write side was
///   shut down or failed; [`io::ErrorKind::NotConnected`] ([`Error::Ended`]) if the
///   bufferevent has ended. While the output is above the write high watermark
///   (`poll_ready`, `poll_write`), also why it cannot drain, as for flushing.
/// - Flushing and closing (`poll_flush`, `poll_close`, `poll_shutdown`): only if
///   output is left unsent: [`io::ErrorKind::BrokenPipe`] if the write side closed
///   first, or nothing is left to take the output (a pair partner or the underlying
///   bufferevent is gone); [`io::ErrorKind::TimedOut`] if the write timeout expired
///   and disabled WRITE (enable it to go on); [`io::ErrorKind::NotConnected`] if the
///   bufferevent ended first. The shutdown itself does not fail.
///
/// # Examples
///
/// Lines over a bufferevent with `tokio_util::codec::Framed`:
///
/// ```
/// use futures::{SinkExt, StreamExt};
/// use tokio_bufferevent::bufferevent::BufferEvent;
/// use tokio_util::codec::{Framed, LinesCodec};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = tokio::io::duplex(1024);
/// let left = Framed::new(BufferEvent::builder().stream(a).into_io(), LinesCodec::new());
/// let mut right = Framed::new(BufferEvent::builder().stream(b).into_io(), LinesCodec::new());
/// let (mut tx, _rx) = left.split();
/// tx.send("hello").await?;
/// assert_eq!(right.next().await.transpose()?.as_deref(), Some("hello"));
/// # Ok(()) }
/// ```
pub struct BufferEventIo<T, S = ()> {
    bev: BufferEvent<T, S>,
    /// Input taken from the bufferevent and not yet returned.
    unread: EvBuffer,
    flushing: Op<io::Result<()>>,
    closing: Op<io::Result<()>>,
}

/// One kind of operation of the adapter: a boxed future allocated on first use and
/// reused for every later operation of the same kind (the futures of one kind have
/// one type, so the box fits), as tokio-util's `ReusableBoxFuture` intends.
struct Op<T> {
    future: Option<ReusableBoxFuture<'static, T>>,
    /// An operation is under way in `future`.
    running: bool,
}

impl<T> Default for Op<T> {
    fn default() -> Self {
        Self {
            future: None,
            running: false,
        }
    }
}

impl<T> Op<T> {
    /// What the operation under way covers changed (a write came after a flush
    /// started): the next poll starts it afresh.
    fn restart(&mut self) {
        self.running = false;
    }

    /// Polls the operation under way, starting one with `start` if none is; the
    /// adapters' `poll_*` methods may be called again and again while it is pending.
    fn poll<F>(&mut self, cx: &mut TaskContext<'_>, start: impl FnOnce() -> F) -> Poll<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        if !self.running {
            match self.future.as_mut() {
                Some(future) => future.set(start()),
                None => self.future = Some(ReusableBoxFuture::new(start())),
            }
            self.running = true;
        }
        let future = self.future.as_mut().expect("set above");
        let out = ready!(future.poll(cx));
        self.running = false;
        Poll::Ready(out)
    }
}

impl<T, S> BufferEvent<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    /// This bufferevent as a `Stream`/`Sink` and `AsyncRead`/`AsyncWrite`; enables
    /// reading.
    ///
    /// The adapters push back, as a Tokio user expects: unless set before, the read
    /// high watermark becomes [`ADAPTER_HIGH_WATERMARK`] (so a consumer that reads
    /// slowly holds the peer back instead of buffering without limit), and so does the
    /// write high watermark (so `poll_ready` and `poll_write` wait while that much is
    /// queued). Change either through [`get_ref`](BufferEventIo::get_ref) and
    /// [`set_watermarks`](BufferEvent::set_watermarks) (0 for no limit).
    pub fn into_io(self) -> BufferEventIo<T, S> {
        for dir in [Direction::READ, Direction::WRITE] {
            let wm = self.watermarks(dir).unwrap_or_default();
            if wm.high == 0 {
                let bounded =
                    Watermarks::new(wm.low.min(ADAPTER_HIGH_WATERMARK), ADAPTER_HIGH_WATERMARK);
                self.set_watermarks(dir, bounded);
            }
        }
        self.enable(Direction::READ);
        BufferEventIo {
            bev: self,
            unread: EvBuffer::new(),
            flushing: Op::default(),
            closing: Op::default(),
        }
    }
}

impl<T, S> BufferEventIo<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    /// The bufferevent behind the adapter.
    pub fn get_ref(&self) -> &BufferEvent<T, S> {
        &self.bev
    }

    /// The bufferevent behind the adapter. Bytes the adapter had taken from the input
    /// and not yet returned go back to the front of the input, in order, ahead of
    /// anything a read through the returned handle sees.
    pub fn into_inner(self) -> BufferEvent<T, S> {
        // Dropping the adapter withdraws its request for input and puts its bytes back.
        self.bev.clone()
    }

    /// Refills `unread` with the input the task hands over as it arrives (see
    /// `takeout.rs`), moving its chunks: no command and no copy per chunk, and no
    /// future: the task wakes this adapter's waker directly. `None` at EOF.
    fn poll_fill(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<io::Result<()>>> {
        if !self.unread.is_empty() {
            return Poll::Ready(Some(Ok(())));
        }
        let shared = self.bev.shared();
        let polled = shared.polled();
        let (takeout, waiter) = (&polled.takeout, &polled.waiters[Condition::Input as usize]);
        let mut registered = false;
        loop {
            if let Some(input) = takeout.take_everything() {
                self.unread = input;
                return Poll::Ready(Some(Ok(())));
            }
            // The end first, then the length: the task stores the input's length
            // before the end it publishes, so a length read after the end is at least
            // as new. (Read the other way round, a length from before the last input
            // came with an end from after it said the input was empty.)
            let closed = shared.is_closed();
            let read_closed = shared.read_closed.load(Ordering::Acquire) || shared.is_cut_off();
            let read_timed_out = shared.read_timed_out.load(Ordering::Acquire);
            let task_empty = shared.input_len.load(Ordering::Acquire) == 0;
            let timed_out = task_empty && read_timed_out;
            let ended = closed || task_empty && read_closed;
            if (timed_out || ended) && takeout.len() > 0 {
                // Handed over while the flags were read (the task publishes the end,
                // then hands over the last input): that input comes first.
                continue;
            }
            if timed_out {
                // As `tokio-io-timeout` readers expect; enabling READ again reads on.
                return Poll::Ready(Some(Err(Error::TimedOut.into())));
            }
            if ended {
                return Poll::Ready(match shared.read_error() {
                    // Ended with input the task still held: it is gone.
                    _ if !task_empty => Some(Err(Error::Ended.into())),
                    Some(e) => Some(Err(io::Error::new(e.kind(), e.to_string()))),
                    None => match shared.unconnected() {
                        Some(e) => Some(Err(io::Error::new(e.kind(), e.to_string()))),
                        // Cut off by a failed connect that a new one replaced since:
                        // not an end after all.
                        None if !closed
                            && !shared.read_closed.load(Ordering::Acquire)
                            && !shared.is_stranded() =>
                        {
                            continue;
                        }
                        None => None,
                    },
                });
            }
            if registered {
                return Poll::Pending;
            }
            // The waker first: another adapter dropped from now on withdraws the one
            // request they share and wakes this one, which asks again.
            waiter.register(cx.waker());
            registered = true;
            if takeout.want(usize::MAX, &shared.input_len) {
                // Bytes wait in the task's input, and the task may be idle.
                self.bev.remote.mailbox.nudge();
            }
            // Then look once more: what changed before the waker was in place.
        }
    }

    /// Ready once the output is at or below its high watermark, as
    /// [`BufferEvent::writable`], polled without a future.
    fn poll_writable(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let shared = self.bev.shared();
        let room = |s: &Shared| s.writable_or_closed() || s.is_closed();
        if !room(shared) {
            shared.polled().waiters[Condition::Output as usize].register(cx.waker());
            if !room(shared) {
                return Poll::Pending;
            }
        }
        if shared.is_closed() {
            return Poll::Ready(Err(Error::Ended.into()));
        }
        self.bev.check_writable()?;
        if !shared.below_write_high()
            && let Some(stall) = shared.stall()
        {
            return Poll::Ready(Err(stalled(stall)));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_flushed(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let bev = &self.bev;
        self.flushing.poll(cx, || {
            let bev = bev.clone();
            async move {
                let shared = bev.shared();
                // A filter may hold what it was given (a compressor until it is
                // flushed): have it emit that to its underlying bufferevent, which sends
                // it on by itself, once WRITE is enabled (the filter takes nothing
                // before). Carried out in the pass that runs the closure, before its
                // answer; an ended bufferevent answers below.
                let emit = || async {
                    if shared.is_filtering() && shared.enabled().contains(Direction::WRITE) {
                        let _ = bev
                            .with(|ctx| ctx.flush(Direction::WRITE, FlushMode::Flush))
                            .await;
                        true
                    } else {
                        false
                    }
                };
                let mut emitted = emit().await;
                loop {
                    shared
                        .wait_until(Condition::Output, |s| {
                            s.output_total() == 0 || s.write_stalled()
                        })
                        .await;
                    // The ends first, then the length (the task stores them the
                    // other way round).
                    let (closed, stall) = (shared.is_closed(), shared.stall());
                    return if bev.output_len() == 0 {
                        if !emitted && emit().await {
                            // WRITE came on while this waited: what the output moved
                            // into the filter since is emitted too.
                            emitted = true;
                            continue;
                        }
                        Ok(())
                    } else if closed {
                        Err(Error::Ended.into())
                    } else if let Some(stall) = stall {
                        Err(stalled(stall))
                    } else {
                        // A timeout that WRITE, enabled again since, took back.
                        continue;
                    };
                }
            }
        })
    }

    fn poll_shut(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let bev = &self.bev;
        self.closing.poll(cx, || {
            let bev = bev.clone();
            async move {
                bev.flush(Direction::WRITE, FlushMode::Finished);
                let shared = bev.shared();
                loop {
                    shared
                        .wait_until(Condition::Output, Shared::write_stalled)
                        .await;
                    return match shared.stall() {
                        Some(Stall::WriteClosed) => Ok(()),
                        Some(stall) => Err(stalled(stall)),
                        // A timeout that WRITE, enabled again since, took back.
                        None => continue,
                    };
                }
            }
        })
    }
}

impl<T, S> Drop for BufferEventIo<T, S> {
    /// Withdraws the adapter's request for input, so the task hands nothing more over
    /// (read callbacks, a filter or a `pipe` may read the input next), and has the task
    /// put back, at the input's front and in order, what this adapter took and did
    /// not return and what was handed over and never taken.
    fn drop(&mut self) {
        let Some(polled) = self.bev.shared().polled_if_any() else {
            return;
        };
        // In front of what was handed over since (a request standing again may have
        // let the task hand more over): a handle's `read` may take from there at once.
        // Before the wake below, so that waiters for the input see these bytes.
        polled.takeout.give_back(&mut self.unread);
        polled.takeout.withdraw();
        // The request withdrawn may have been another adapter's (there is one for all
        // of them): they look again, and ask again if they still wait. Readers that
        // wait for the input see what came back.
        self.bev.shared().wake(Condition::Input);
        // Any command but a write puts the takeout back in the input first, in order,
        // for callbacks and filters. Sent even when the takeout looks empty: the task
        // may be handing over right now, past the request this withdrew.
        self.bev
            .remote
            .mailbox
            .send(super::mailbox::Command::Run(Box::new(|_| ())));
    }
}

impl<T, S> Stream for BufferEventIo<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match ready!(this.poll_fill(cx)) {
            // One chunk as it is: never gathered, never copied.
            Some(Ok(())) => {
                let first = this.unread.contiguous_space();
                Poll::Ready(Some(
                    this.unread.remove_bytes(first).map_err(io::Error::from),
                ))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }
}

impl<T, S> Sink<Bytes> for BufferEventIo<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_writable(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> io::Result<()> {
        let this = self.get_mut();
        this.bev.write_now(item)?;
        this.flushing.restart();
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flushed(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flushed(cx))?;
        this.poll_shut(cx)
    }
}

impl<T, S> AsyncRead for BufferEventIo<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match ready!(this.poll_fill(cx)) {
            Some(Ok(())) => {
                let n = this.unread.len().min(buf.remaining());
                let copied = this.unread.remove(buf.initialize_unfilled_to(n))?;
                buf.advance(copied);
                Poll::Ready(Ok(()))
            }
            Some(Err(e)) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<T, S> AsyncWrite for BufferEventIo<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_writable(cx))?;
        this.bev.write_now(Bytes::copy_from_slice(data))?;
        this.flushing.restart();
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_flushed(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_flushed(cx))?;
        this.poll_shut(cx)
    }
}

impl<T, S> fmt::Debug for BufferEventIo<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferEventIo")
            .field("bev", &self.bev)
            .field("unread", &self.unread.len())
            .finish_non_exhaustive()
    }
}

/// Why the output, not empty, cannot drain, as the adapters report it.
fn stalled(stall: Stall) -> io::Error {
    match stall {
        Stall::WriteClosed => io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the write side closed with data unsent",
        ),
        Stall::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            "the write timeout expired with data unsent; enable WRITE to go on",
        ),
        Stall::Stranded => io::Error::new(
            io::ErrorKind::BrokenPipe,
            "nothing is left to take the output: the pair partner or the underlying \
             bufferevent is gone",
        ),
        Stall::Unconnected => io::Error::new(
            io::ErrorKind::NotConnected,
            "the connect failed and left no transport: connect again, or give one",
        ),
    }
}
