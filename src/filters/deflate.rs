//! zlib compression as a pair of filters (libevent's `regress_zlib.c` filters), on
//! flate2's low-level streaming API.
//!
//! Use [`Compress`] as the output filter and [`Decompress`] as the input filter.
//! Filter modes map onto zlib flushes: `Normal` compresses without flushing,
//! `Flush` makes everything written so far decodable (`Z_SYNC_FLUSH`), `Finished`
//! ends the stream (`Z_FINISH`): flush the filter with `Finished`, or
//! [`close`](crate::bufferevent::BufferEvent::close) it, before the connection ends.
//!
//! # Examples
//!
//! ```
//! use tokio_bufferevent::bufferevent::{BufferEvent, Direction, FlushMode};
//! use tokio_bufferevent::filters::deflate::{Compress, Compression, Decompress};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let (a, b) = BufferEvent::pair();
//! let sender = BufferEvent::filter(a, Decompress::new(), Compress::new(Compression::default()));
//! let receiver = BufferEvent::builder()
//!     .enable(Direction::READ)
//!     .filter(b, Decompress::new(), Compress::new(Compression::fast()));
//! sender.write(vec![b'z'; 10_000]).await?;
//! sender.flush(Direction::WRITE, FlushMode::Flush);
//! receiver.readable(10_000).await;
//! assert_eq!(receiver.read(usize::MAX).await?, vec![b'z'; 10_000]);
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;

use bytes::Bytes;
use flate2::{FlushCompress, FlushDecompress, Status};

pub use flate2::Compression;

use crate::bufferevent::{Filter, FilterResult, FlushMode, Input, Output};

/// Input taken per call, so one call's work stays bounded.
const MAX_INPUT_PER_CALL: usize = 64 * 1024;
/// Output produced per call when the destination sets no limit. Bounds what a small
/// compressed input (a "zip bomb") can expand to before the reader's watermarks apply.
const DEFAULT_OUTPUT_PER_CALL: usize = 256 * 1024;
/// The smallest output buffer handed to zlib.
const MIN_OUTPUT_CHUNK: usize = 4 * 1024;

/// A zlib compressor, as an output filter.
///
/// # Errors
///
/// As a [`Filter`], it fails (ending writing with `WRITING | ERROR`) with an
/// [`io::Error`] of kind [`io::ErrorKind::InvalidInput`] for data written after the
/// stream was finished (a `Finished` flush, or a close); of kind
/// [`io::ErrorKind::Other`] if zlib reports an error; with the read error if a file
/// segment written (see [`EvBuffer::add_file`](crate::buffer::EvBuffer::add_file))
/// cannot be read.
pub struct Compress {
    stream: flate2::Compress,
    /// `Finished` was processed: the stream is over.
    ended: bool,
    /// The last call stopped at its output limit: zlib may hold more.
    output_left: bool,
}

impl Compress {
    /// A compressor writing a zlib stream (with its header and checksum) at `level`.
    pub fn new(level: Compression) -> Self {
        Self {
            stream: flate2::Compress::new(level, true),
            ended: false,
            output_left: false,
        }
    }
}

impl Default for Compress {
    /// [`Compression::default`] (zlib level 6).
    fn default() -> Self {
        Self::new(Compression::default())
    }
}

impl fmt::Debug for Compress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compress")
            .field("total_in", &self.stream.total_in())
            .field("total_out", &self.stream.total_out())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Filter for Compress {
    fn filter(
        &mut self,
        src: &mut Input<'_>,
        dst: &mut Output<'_>,
        dst_limit: Option<usize>,
        mode: FlushMode,
    ) -> io::Result<FilterResult> {
        if self.ended {
            return after_the_end(
                src,
                io::ErrorKind::InvalidInput,
                "data written after the compressed stream was finished",
            );
        }
        let mut call = Totals::new(dst_limit);
        loop {
            let mut flush = FlushCompress::None;
            let step = step(
                src,
                dst,
                &call,
                |input| (input / 2).max(MIN_OUTPUT_CHUNK),
                |input, last, out| {
                    // Flush only with the last input, so earlier chunks are not cut
                    // into needless blocks.
                    flush = match mode {
                        _ if !last => FlushCompress::None,
                        FlushMode::Normal => FlushCompress::None,
                        FlushMode::Flush => FlushCompress::Sync,
                        FlushMode::Finished => FlushCompress::Finish,
                    };
                    let before = self.stream.total_in();
                    let status = self
                        .stream
                        .compress_vec(input, out, flush)
                        .map_err(io::Error::other)?;
                    Ok(((self.stream.total_in() - before) as usize, status))
                },
            );
            let step = step?;
            call.add(&step);
            if step.status == Status::StreamEnd {
                self.ended = true;
                break;
            }
            if step.idle() || call.output_full() {
                break;
            }
            if !src.is_empty() && call.input_left() {
                continue; // more input
            }
            // A flush goes on until zlib has emitted everything: a full output buffer
            // means it may hold more; `Finish` ends only at the stream's end.
            let flushing = match flush {
                FlushCompress::Sync => step.filled,
                FlushCompress::Finish => true,
                _ => false,
            };
            if !(src.is_empty() && flushing) {
                break;
            }
        }
        self.output_left = !self.ended && call.output_full();
        Ok(call.result())
    }

    fn has_pending(&self) -> bool {
        self.output_left
    }
}

/// A zlib decompressor, as an input filter.
///
/// # Errors
///
/// As a [`Filter`], it fails (ending reading with `READING | ERROR`) with an
/// [`io::Error`] that says what was wrong, all of kind
/// [`io::ErrorKind::InvalidData`] but a truncation: "bad header" (not a zlib
/// stream, or one that needs a preset dictionary), "bad data" (the compressed blocks
/// are invalid), "bad checksum" (the data decoded, but its Adler-32 does not match
/// the trailer), and data after the end of the stream. A stream cut off before its
/// trailer, followed by the end of the transport (the filter's `Finished` call), is
/// an [`io::ErrorKind::UnexpectedEof`] error: a truncated stream never looks like a
/// clean end. A file segment in the input (see
/// [`EvBuffer::add_file`](crate::buffer::EvBuffer::add_file)) that cannot be read
/// fails it with the read error.
pub struct Decompress {
    /// Raw deflate: the zlib header and trailer are read here, so that each kind of
    /// damage can be named.
    stream: flate2::Decompress,
    frame: Frame,
    adler: Adler32,
    /// The last call stopped at its output limit: zlib may hold decoded bytes
    /// (it decodes ahead into its window).
    output_left: bool,
}

/// Where in the zlib format (RFC 1950) the decoder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// The two header bytes, `len` of them seen so far.
    Header { got: [u8; 2], len: u8 },
    /// The deflate blocks.
    Body,
    /// The four bytes of the Adler-32 trailer, `len` of them seen so far.
    Trailer { got: [u8; 4], len: u8 },
    /// The stream ended and checked out.
    Ended,
}

impl Decompress {
    /// A decompressor reading a zlib stream (with its header and checksum).
    pub fn new() -> Self {
        Self {
            stream: flate2::Decompress::new(false),
            frame: Frame::Header {
                got: [0; 2],
                len: 0,
            },
            adler: Adler32::default(),
            output_left: false,
        }
    }

    /// Reads the header; `Ok(true)` once it is complete and valid.
    fn header(&mut self, src: &mut Input<'_>) -> io::Result<bool> {
        let Frame::Header { mut got, mut len } = self.frame else {
            return Ok(true);
        };
        len += src.remove(&mut got[usize::from(len)..]) as u8;
        self.frame = Frame::Header { got, len };
        if len < 2 {
            return Ok(false);
        }
        let [cmf, flg] = got;
        let why = if cmf & 0x0f != 8 || cmf >> 4 > 7 {
            Some("not a deflate stream")
        } else if (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
            Some("header check failed")
        } else if flg & 0x20 != 0 {
            Some("a preset dictionary is required")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(corrupt(format!("bad header ({why})")));
        }
        self.frame = Frame::Body;
        Ok(true)
    }

    /// Reads and checks the trailer; `Ok(true)` once it is complete and matches.
    fn trailer(&mut self, src: &mut Input<'_>) -> io::Result<bool> {
        let Frame::Trailer { mut got, mut len } = self.frame else {
            return Ok(self.frame == Frame::Ended);
        };
        len += src.remove(&mut got[usize::from(len)..]) as u8;
        self.frame = Frame::Trailer { got, len };
        if len < 4 {
            return Ok(false);
        }
        let expected = u32::from_be_bytes(got);
        let actual = self.adler.value();
        if expected != actual {
            return Err(corrupt(format!(
                "bad checksum (Adler-32 {actual:08x}, trailer says {expected:08x})"
            )));
        }
        self.frame = Frame::Ended;
        Ok(true)
    }

    /// Whether any byte of a stream was seen: with none, the end of the transport is
    /// a clean end.
    fn started(&self) -> bool {
        self.frame
            != (Frame::Header {
                got: [0; 2],
                len: 0,
            })
    }
}

fn corrupt(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt compressed data: {what}"),
    )
}

impl Default for Decompress {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Decompress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompress")
            .field("total_in", &self.stream.total_in())
            .field("total_out", &self.stream.total_out())
            .field("frame", &self.frame)
            .finish()
    }
}

impl Filter for Decompress {
    fn filter(
        &mut self,
        src: &mut Input<'_>,
        dst: &mut Output<'_>,
        dst_limit: Option<usize>,
        mode: FlushMode,
    ) -> io::Result<FilterResult> {
        const TRAILING: &str = "data after the end of the compressed stream";
        if self.frame == Frame::Ended {
            return after_the_end(src, io::ErrorKind::InvalidData, TRAILING);
        }
        let before = src.len();
        let flush = if mode == FlushMode::Normal {
            FlushDecompress::None
        } else {
            FlushDecompress::Sync
        };
        let mut call = Totals::new(dst_limit);
        let mut filled = false;
        if self.header(src)? {
            loop {
                if self.frame != Frame::Body {
                    break;
                }
                let room = call.room();
                let adler = &mut self.adler;
                let stream = &mut self.stream;
                let step = step(
                    src,
                    dst,
                    &call,
                    |_| room,
                    |input, _last, out| {
                        let (before, start) = (stream.total_in(), out.len());
                        let status = stream
                            .decompress_vec(input, out, flush)
                            .map_err(|_| corrupt("bad data (invalid deflate blocks)".into()))?;
                        adler.update(&out[start..]);
                        Ok(((stream.total_in() - before) as usize, status))
                    },
                )?;
                call.add(&step);
                filled = step.filled;
                if step.status == Status::StreamEnd {
                    self.frame = Frame::Trailer {
                        got: [0; 4],
                        len: 0,
                    };
                    break;
                }
                if step.idle() || call.output_full() || !call.input_left() {
                    break;
                }
                if src.is_empty() && step.written == 0 {
                    break;
                }
            }
        }
        if self.trailer(src)? && !src.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, TRAILING));
        }
        // A full output buffer (or the call's limit) means zlib may hold more.
        self.output_left = self.frame == Frame::Body && (call.output_full() || filled);
        let nothing_more = mode == FlushMode::Finished && src.is_empty() && !self.output_left;
        if nothing_more && self.started() && self.frame != Frame::Ended {
            let part = match self.frame {
                Frame::Header { .. } => "in its header",
                Frame::Body => "before its last block",
                _ => "before its checksum",
            };
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "compressed stream truncated {part}, after {} bytes",
                    self.stream.total_in()
                ),
            ));
        }
        if src.len() != before || call.produced > 0 {
            Ok(FilterResult::Ok)
        } else {
            Ok(FilterResult::NeedMore)
        }
    }

    fn has_pending(&self) -> bool {
        self.output_left
    }
}

/// The Adler-32 checksum zlib's trailer carries (RFC 1950, section 8.2).
#[derive(Debug)]
struct Adler32 {
    a: u32,
    b: u32,
}

impl Default for Adler32 {
    fn default() -> Self {
        Self { a: 1, b: 0 }
    }
}

impl Adler32 {
    const MOD: u32 = 65_521;
    /// The most bytes summed before the sums must be reduced to stay within `u32`.
    const CHUNK: usize = 5_552;

    fn update(&mut self, data: &[u8]) {
        for chunk in data.chunks(Self::CHUNK) {
            for &byte in chunk {
                self.a += u32::from(byte);
                self.b += self.a;
            }
            self.a %= Self::MOD;
            self.b %= Self::MOD;
        }
    }

    fn value(&self) -> u32 {
        (self.b << 16) | self.a
    }
}

/// A call on a filter whose stream has ended: fine with nothing to do, an error
/// with more data.
fn after_the_end(src: &Input<'_>, kind: io::ErrorKind, message: &str) -> io::Result<FilterResult> {
    if src.is_empty() {
        Ok(FilterResult::NeedMore)
    } else {
        Err(io::Error::new(kind, message.to_owned()))
    }
}

/// What one filter call has done so far, against its bounds.
struct Totals {
    consumed: usize,
    produced: usize,
    output_cap: usize,
}

impl Totals {
    fn new(dst_limit: Option<usize>) -> Self {
        Self {
            consumed: 0,
            produced: 0,
            output_cap: dst_limit
                .unwrap_or(DEFAULT_OUTPUT_PER_CALL)
                .max(MIN_OUTPUT_CHUNK),
        }
    }

    fn add(&mut self, step: &Step) {
        self.consumed += step.consumed;
        self.produced += step.written;
    }

    fn input_left(&self) -> bool {
        self.consumed < MAX_INPUT_PER_CALL
    }

    fn output_full(&self) -> bool {
        self.produced >= self.output_cap
    }

    /// The output buffer for the next step of a decoder.
    fn room(&self) -> usize {
        (self.output_cap - self.produced.min(self.output_cap)).clamp(MIN_OUTPUT_CHUNK, 64 * 1024)
    }

    fn result(&self) -> FilterResult {
        if self.consumed > 0 || self.produced > 0 {
            FilterResult::Ok
        } else {
            FilterResult::NeedMore
        }
    }
}

/// One zlib call.
struct Step {
    consumed: usize,
    written: usize,
    /// The output buffer came back full: zlib may hold more.
    filled: bool,
    status: Status,
}

impl Step {
    fn idle(&self) -> bool {
        self.consumed == 0 && self.written == 0
    }
}

/// Runs `call` on the first extent of `src` (and whether it is the last input there),
/// with an output buffer of `capacity(input length)` bytes; moves the output into
/// `dst` without copying (also when `call` fails) and drains what zlib consumed.
fn step(
    src: &mut Input<'_>,
    dst: &mut Output<'_>,
    totals: &Totals,
    capacity: impl FnOnce(usize) -> usize,
    call: impl FnOnce(&[u8], bool, &mut Vec<u8>) -> io::Result<(usize, Status)>,
) -> io::Result<Step> {
    let (consumed, written, filled, status) = {
        let extents = src
            .buffer()
            .peek(None, Some(MAX_INPUT_PER_CALL - totals.consumed))?;
        let input = extents.first().copied().unwrap_or(&[]);
        let mut out = Vec::with_capacity(capacity(input.len()));
        let capacity = out.capacity();
        let result = call(input, input.len() == src.len(), &mut out);
        let written = out.len();
        // Kept even when the call failed: what zlib produced before the damage it
        // found was good, and goes out ahead of the error.
        if written > 0 {
            dst.add_bytes(Bytes::from(out));
        }
        let (consumed, status) = result?;
        (consumed, written, written == capacity, status)
    };
    src.drain(consumed);
    Ok(Step {
        consumed,
        written,
        filled,
        status,
    })
}
