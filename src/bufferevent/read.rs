//! Reading without hand-written loops: `read_line`, `read_until`, `read_exact` and
//! `read_to_end` on the handle, in the manner of `tokio::io::AsyncBufReadExt` but over
//! the bufferevent's input and its watermarks.
//!
//! Each takes what it asks for out of the input in one step on the task, or waits for
//! more. They are cancel safe: bytes a cancelled call had already taken are put back
//! at the front of the input before the task runs another handle's closure (an
//! answer nobody took goes back on the task itself), so nothing is lost and a call
//! made again at once gets them first. (A read callback that runs in between sees
//! the input without them.) Like
//! [`readable`](BufferEvent::readable), they do not enable reading: with READ
//! disabled they wait until something enables it.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::error::Error;
use super::events::Direction;
use super::handle::{BufferEvent, WeakHandle};
use super::shared::Condition;
use crate::buffer::{EolStyle, EvBuffer, EvBufferError};

/// What one look at the input gave.
enum Look {
    /// Bytes removed from the input; the first `usize` of them are the caller's (a
    /// line's terminator is removed with it, and put back with it on cancellation).
    Got(Bytes, usize),
    /// What was left when reading ended: the caller's only if it ended cleanly (a
    /// stream cut off by an error must not read as complete).
    Rest(Bytes),
    /// Not there yet.
    More,
    /// It cannot fit (see [`Error::TooLong`]); nothing was removed.
    TooLong(usize),
    /// The input could not be read (a file segment in it failed); nothing was removed.
    Failed(EvBufferError),
}

/// Bytes taken from the input on the way to a reader; if the reader is gone before it
/// takes them (a cancelled call), they go back to the front of the input.
struct Taken {
    data: Option<Bytes>,
    /// How much of `data` the reader gets.
    keep: usize,
    put_back: Option<Box<dyn FnOnce(Bytes) + Send>>,
}

impl Taken {
    fn take(mut self) -> Bytes {
        let mut data = self.data.take().unwrap_or_default();
        data.truncate(self.keep);
        data
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let (Some(data), Some(put_back)) = (self.data.take(), self.put_back.take()) {
            put_back(data);
        }
    }
}

/// All of `data` is the reader's.
fn whole(data: Bytes) -> Look {
    let keep = data.len();
    Look::Got(data, keep)
}

impl<T, S> BufferEvent<T, S>
where
    T: Send + 'static,
    S: Send + 'static,
{
    /// Reads one line, ending as `style` says; the line comes without its terminator.
    /// At EOF a last line without terminator is returned as it is.
    ///
    /// # Errors
    ///
    /// Nothing is removed from the input on error.
    ///
    /// - [`Error::TooLong`] (kind [`InvalidData`](std::io::ErrorKind::InvalidData)),
    ///   `max` = `max_len`, if the line is longer than `max_len` bytes, or more than
    ///   `max_len` bytes are buffered without a terminator; `max` = the read high
    ///   watermark if the input fills up to it without a terminator.
    /// - [`Error::Eof`] (kind [`UnexpectedEof`](std::io::ErrorKind::UnexpectedEof))
    ///   if the peer finished with nothing left (a last unterminated line is returned).
    /// - [`Error::ReadFailed`] (the transport's error's kind) if reading failed and
    ///   no whole line is left (an unterminated rest stays in the input).
    /// - [`Error::TimedOut`] (kind [`TimedOut`](std::io::ErrorKind::TimedOut)) if the
    ///   read timeout expired and READ was not enabled again.
    /// - [`Error::Ended`] (kind [`NotConnected`](std::io::ErrorKind::NotConnected))
    ///   if the bufferevent has ended, at once or while waiting.
    /// - [`Error::ConnectFailed`] (the connect's error's kind) if the last connect
    ///   failed and left no transport, so nothing more can arrive.
    /// - [`Error::Buffer`] with [`EvBufferError::Io`] (the read error's kind) if the
    ///   bytes lie in a file segment that cannot be read (see
    ///   [`EvBuffer::add_file`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a line taken by a cancelled call goes back to the front of the
    /// input.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EolStyle;
    /// use tokio_bufferevent::bufferevent::{BufferEvent, Direction};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tokio_bufferevent::bufferevent::Error> {
    /// let (a, b) = BufferEvent::pair();
    /// b.enable(Direction::READ);
    /// a.write(&b"hello\r\nworld\r\n"[..]).await?;
    /// assert_eq!(b.read_line(EolStyle::Crlf, 1024).await?, &b"hello"[..]);
    /// assert_eq!(b.read_line(EolStyle::Crlf, 1024).await?, &b"world"[..]);
    /// # Ok(()) }
    /// ```
    pub async fn read_line(&self, style: EolStyle, max_len: usize) -> Result<Bytes, Error> {
        self.read_some(move |input, eof| {
            let look = match input.line_extent(style)? {
                Some((line, _)) if line > max_len => Look::TooLong(max_len),
                Some((line, eol)) => Look::Got(input.remove_bytes(line + eol)?, line),
                // A final CR may yet start a CR LF: it does not count (as `readln_max`).
                None if input.unterminated_len(style)? > max_len => Look::TooLong(max_len),
                None if eof && !input.is_empty() => Look::Rest(input.remove_bytes(usize::MAX)?),
                None => Look::More,
            };
            Ok(look)
        })
        .await
    }

    /// Reads up to and including the first `byte`. At EOF what is left is returned
    /// without it.
    ///
    /// # Errors
    ///
    /// As [`read_line`](Self::read_line), but [`Error::TooLong`] with `max` =
    /// `max_len` comes when `byte` is not among the first `max_len` bytes (so at
    /// most `max_len` bytes, `byte` included, are returned).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`read_line`](Self::read_line).
    pub async fn read_until(&self, byte: u8, max_len: usize) -> Result<Bytes, Error> {
        self.read_some(move |input, eof| {
            let look = match input.search(&[byte], None)? {
                Some(at) if at.pos() < max_len => whole(input.remove_bytes(at.pos() + 1)?),
                Some(_) => Look::TooLong(max_len),
                None if input.len() >= max_len => Look::TooLong(max_len),
                None if eof && !input.is_empty() => Look::Rest(input.remove_bytes(usize::MAX)?),
                None => Look::More,
            };
            Ok(look)
        })
        .await
    }

    /// Reads exactly `n` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::TooLong`] (kind [`InvalidData`](std::io::ErrorKind::InvalidData)),
    /// `max` = the read high watermark, if `n` is above it: once the input is full to
    /// the watermark (at once if it already is), since the input can never hold `n`
    /// bytes; [`Error::Eof`] (kind
    /// [`UnexpectedEof`](std::io::ErrorKind::UnexpectedEof)) if the peer finishes
    /// first; [`Error::ReadFailed`], [`Error::TimedOut`], [`Error::Ended`],
    /// [`Error::ConnectFailed`] and [`Error::Buffer`] as for
    /// [`read_line`](Self::read_line). What arrived stays in
    /// the input.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`read_line`](Self::read_line).
    pub async fn read_exact(&self, n: usize) -> Result<Bytes, Error> {
        self.read_some(move |input, _| {
            Ok(if input.len() >= n {
                whole(input.remove_bytes(n)?)
            } else {
                Look::More
            })
        })
        .await
    }

    /// Reads everything until the peer finishes (EOF), at most `limit` bytes.
    ///
    /// # Errors
    ///
    /// What arrived stays in the input on error.
    ///
    /// - [`Error::TooLong`] (kind [`InvalidData`](std::io::ErrorKind::InvalidData)):
    ///   `max` = `limit` if more than `limit` bytes arrive; `max` = the read high
    ///   watermark if the input fills up to it before EOF.
    /// - [`Error::ReadFailed`] (the transport's error's kind) if reading failed
    ///   instead of ending with EOF.
    /// - [`Error::TimedOut`], [`Error::Ended`] and [`Error::Buffer`] as for
    ///   [`read_line`](Self::read_line).
    ///
    /// EOF is the normal end: [`Error::Eof`] is never returned, and EOF with an empty
    /// input gives empty bytes.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`read_line`](Self::read_line).
    pub async fn read_to_end(&self, limit: usize) -> Result<Bytes, Error> {
        self.read_some(move |input, eof| {
            Ok(if input.len() > limit {
                Look::TooLong(limit)
            } else if eof {
                Look::Rest(input.remove_bytes(usize::MAX)?)
            } else {
                Look::More
            })
        })
        .await
    }

    /// Looks at the input on the task with `look` (told whether reading has ended),
    /// until it gives the data or no more can come. `look` fails, having removed
    /// nothing, when the input cannot be read.
    async fn read_some(
        &self,
        look: impl Fn(&mut EvBuffer, bool) -> Result<Look, EvBufferError> + Clone + Send + 'static,
    ) -> Result<Bytes, Error> {
        loop {
            let seen = self.input_len();
            let high = self.shared().read_high();
            // Nothing more can come, though the event callback may not have heard.
            let cut_off = self.shared().is_cut_off();
            let weak = WeakHandle::of(self);
            let put_back: Box<dyn FnOnce(Bytes) + Send> = Box::new(move |data| {
                if let Some(bev) = weak.upgrade() {
                    bev.run(move |ctx| ctx.inner.buffers.input().unread(data));
                }
            });
            let look = look.clone();
            let outcome = self
                .ask(
                    move |ctx| {
                        let eof = !ctx.inner.core.read_open() || cut_off;
                        let input = ctx.inner.buffers.input();
                        let found = look(input, eof).unwrap_or_else(Look::Failed);
                        let len = input.len();
                        let full = high != 0 && len >= high;
                        let (found, rest) = match found {
                            Look::Rest(data) => (whole(data), true),
                            other => (other, false),
                        };
                        (
                            match found {
                                Look::Got(data, keep) => Ok((
                                    Taken {
                                        data: Some(data),
                                        keep,
                                        put_back: Some(put_back),
                                    },
                                    rest,
                                )),
                                Look::TooLong(max) => Err(Some(Error::TooLong { max })),
                                Look::Failed(e) => Err(Some(Error::Buffer(e))),
                                // The input is full to the high watermark and still not
                                // enough: it never will be.
                                Look::More if full => Err(Some(Error::TooLong { max: high })),
                                Look::More | Look::Rest(_) => Err(None),
                            },
                            eof,
                        )
                    },
                    // Not taken by a caller who gave up: back to the task's input.
                    |(outcome, _)| outcome.ok().and_then(|(mut taken, _)| taken.data.take()),
                )
                .await?;
            match outcome {
                (Ok((taken, true)), _) if self.shared().read_error().is_some() => {
                    // Reading failed: the rest goes back, and the failure is the answer.
                    drop(taken);
                    return Err(self.why_reading_ended());
                }
                (Ok((taken, _)), _) => return Ok(taken.take()),
                (Err(Some(error)), _) => return Err(error),
                // Cut off by a failed connect that a new one replaced since: look
                // again (the wait below ends at once).
                (Err(None), true)
                    if cut_off
                        && !self.shared().is_cut_off()
                        && !self.shared().read_closed.load(Ordering::Acquire) => {}
                (Err(None), true) => return Err(self.why_reading_ended()),
                (Err(None), false) => {}
            }
            if self.shared().read_timed_out.load(Ordering::Acquire)
                && !self.enabled().contains(Direction::READ)
            {
                return Err(Error::TimedOut);
            }
            // Wait for more input, for reading to stop, or for a new high watermark
            // (one below what the look needs ends the wait: the next look says so).
            self.shared()
                .wait_until(Condition::Input, |s| {
                    s.input_total() != seen
                        || s.read_closed.load(Ordering::Acquire)
                        || s.read_timed_out.load(Ordering::Acquire)
                        || s.is_cut_off() != cut_off
                        || s.read_high() != high
                })
                .await;
            if self.is_closed() {
                return Err(Error::Ended);
            }
        }
    }

    /// Why nothing more can be read.
    fn why_reading_ended(&self) -> Error {
        match self.shared().read_error() {
            Some(e) => Error::ReadFailed(e),
            None if self.is_closed() => Error::Ended,
            None => match self.shared().unconnected() {
                Some(e) => Error::ConnectFailed(e),
                None => Error::Eof,
            },
        }
    }
}
