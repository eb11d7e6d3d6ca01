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

use crate::buffer::EvBuffer;
use crate::bufferevent::{Filter, FilterResult, FlushMode};

/// Input taken per call, so one call's work stays bounded.
const MAX_INPUT_PER_CALL: usize = 64 * 1024;
/// Output produced per call when the destination sets no limit. Bounds what a small
/// compressed input (a "zip bomb") can expand to before the reader's watermarks apply.
const DEFAULT_OUTPUT_PER_CALL: usize = 256 * 1024;
/// The smallest output buffer handed to zlib.
const MIN_OUTPUT_CHUNK: usize = 4 * 1024;

/// A zlib compressor, as an output filter.
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
        src: &mut EvBuffer,
        dst: &mut EvBuffer,
        dst_limit: Option<usize>,
        mode: FlushMode,
    ) -> FilterResult {
        if self.ended {
            if src.is_empty() {
                return FilterResult::NeedMore;
            }
            return FilterResult::Error(io::Error::new(
                io::ErrorKind::InvalidInput,
                "data written after the compressed stream was finished",
            ));
        }
        let out_cap = output_cap(dst_limit);
        let mut produced = 0;
        let mut consumed_total = 0;
        loop {
            let (consumed, written, filled, status, flush) = {
                let extents = match src.peek(None, Some(MAX_INPUT_PER_CALL - consumed_total)) {
                    Ok(extents) => extents,
                    Err(e) => return FilterResult::Error(e.into()),
                };
                let input = extents.first().copied().unwrap_or(&[]);
                // Flush only with the last input, so earlier chunks are not cut into
                // needless blocks.
                let flush = match mode {
                    _ if input.len() < src.len() => FlushCompress::None,
                    FlushMode::Normal => FlushCompress::None,
                    FlushMode::Flush => FlushCompress::Sync,
                    FlushMode::Finished => FlushCompress::Finish,
                };
                let mut out = Vec::with_capacity((input.len() / 2).max(MIN_OUTPUT_CHUNK));
                let capacity = out.capacity();
                let before = self.stream.total_in();
                let status = match self.stream.compress_vec(input, &mut out, flush) {
                    Ok(status) => status,
                    Err(e) => return FilterResult::Error(io::Error::other(e)),
                };
                let consumed = (self.stream.total_in() - before) as usize;
                let written = out.len();
                if written > 0 {
                    let _ = dst.add_bytes(Bytes::from(out));
                }
                (consumed, written, written == capacity, status, flush)
            };
            let _ = src.drain(consumed);
            consumed_total += consumed;
            produced += written;
            if status == Status::StreamEnd {
                self.ended = true;
                break;
            }
            if (consumed == 0 && written == 0) || produced >= out_cap {
                break;
            }
            if !src.is_empty() && consumed_total < MAX_INPUT_PER_CALL {
                continue; // more input
            }
            // A flush goes on until zlib has emitted everything: a full output buffer
            // means it may hold more; `Finish` ends only at the stream's end.
            let flushing = match flush {
                FlushCompress::Sync => filled,
                FlushCompress::Finish => true,
                _ => false,
            };
            if !(src.is_empty() && flushing) {
                break;
            }
        }
        self.output_left = !self.ended && produced >= out_cap;
        if consumed_total > 0 || produced > 0 {
            FilterResult::Ok
        } else {
            FilterResult::NeedMore
        }
    }

    fn has_pending(&self) -> bool {
        self.output_left
    }
}

/// A zlib decompressor, as an input filter. Corrupt input gives
/// [`FilterResult::Error`] of kind [`io::ErrorKind::InvalidData`].
pub struct Decompress {
    stream: flate2::Decompress,
    ended: bool,
    /// The last call stopped at its output limit: zlib may hold decoded bytes
    /// (it decodes ahead into its window).
    output_left: bool,
}

impl Decompress {
    /// A decompressor reading a zlib stream (with its header and checksum).
    pub fn new() -> Self {
        Self {
            stream: flate2::Decompress::new(true),
            ended: false,
            output_left: false,
        }
    }
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
            .field("ended", &self.ended)
            .finish()
    }
}

impl Filter for Decompress {
    fn filter(
        &mut self,
        src: &mut EvBuffer,
        dst: &mut EvBuffer,
        dst_limit: Option<usize>,
        mode: FlushMode,
    ) -> FilterResult {
        if self.ended {
            if src.is_empty() {
                return FilterResult::NeedMore;
            }
            return FilterResult::Error(io::Error::new(
                io::ErrorKind::InvalidData,
                "data after the end of the compressed stream",
            ));
        }
        let out_cap = output_cap(dst_limit);
        let mut produced = 0;
        let mut consumed_total = 0;
        loop {
            let (consumed, written, status) = {
                let extents = match src.peek(None, Some(MAX_INPUT_PER_CALL - consumed_total)) {
                    Ok(extents) => extents,
                    Err(e) => return FilterResult::Error(e.into()),
                };
                let input = extents.first().copied().unwrap_or(&[]);
                let room = (out_cap - produced).clamp(MIN_OUTPUT_CHUNK, 64 * 1024);
                let mut out = Vec::with_capacity(room);
                let before = self.stream.total_in();
                let flush = if mode == FlushMode::Normal {
                    FlushDecompress::None
                } else {
                    FlushDecompress::Sync
                };
                let status = match self.stream.decompress_vec(input, &mut out, flush) {
                    Ok(status) => status,
                    Err(e) => {
                        return FilterResult::Error(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("corrupt compressed data: {e}"),
                        ));
                    }
                };
                let consumed = (self.stream.total_in() - before) as usize;
                let written = out.len();
                if written > 0 {
                    let _ = dst.add_bytes(Bytes::from(out));
                }
                (consumed, written, status)
            };
            let _ = src.drain(consumed);
            consumed_total += consumed;
            produced += written;
            if status == Status::StreamEnd {
                self.ended = true;
                if !src.is_empty() {
                    return FilterResult::Error(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "data after the end of the compressed stream",
                    ));
                }
                break;
            }
            if consumed == 0 && written == 0 {
                break;
            }
            if produced >= out_cap || consumed_total >= MAX_INPUT_PER_CALL {
                break;
            }
            if src.is_empty() && written == 0 {
                break;
            }
        }
        self.output_left = !self.ended && produced >= out_cap;
        if consumed_total > 0 || produced > 0 {
            FilterResult::Ok
        } else {
            FilterResult::NeedMore
        }
    }

    fn has_pending(&self) -> bool {
        self.output_left
    }
}

fn output_cap(dst_limit: Option<usize>) -> usize {
    dst_limit
        .unwrap_or(DEFAULT_OUTPUT_PER_CALL)
        .max(MIN_OUTPUT_CHUNK)
}
