//! The pieces an [`EvBuffer`](super::EvBuffer) is made of: shared in-memory bytes, or a
//! range of a file that is read only when its bytes are first needed.

use std::fs::File;
use std::io;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::EvBufferError;

/// How many bytes of a file one segment covers: the unit in which
/// [`EvBuffer::add_file`](super::EvBuffer::add_file) loads a file.
pub(crate) const FILE_SEGMENT_LEN: usize = 64 * 1024;

/// One piece of a buffer's data. Never empty while it sits in a buffer.
#[derive(Clone, Debug)]
pub(crate) enum Chunk {
    Mem(Bytes),
    File(FileChunk),
}

impl Chunk {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Mem(b) => b.len(),
            Self::File(f) => f.end - f.start,
        }
    }

    /// The chunk's bytes, reading them from the file first if needed.
    #[inline]
    pub(crate) fn data(&self) -> Result<&[u8], EvBufferError> {
        match self {
            Self::Mem(b) => Ok(b),
            Self::File(f) => Ok(&f.segment.load()?[f.start..f.end]),
        }
    }

    /// The chunk's bytes as a [`Bytes`], without copying.
    pub(crate) fn into_bytes(self) -> Result<Bytes, EvBufferError> {
        match self {
            Self::Mem(b) => Ok(b),
            Self::File(f) => Ok(f.segment.load()?.slice(f.start..f.end)),
        }
    }

    /// Splits off the first `at` bytes (`0 < at < len`), without copying.
    pub(crate) fn split_to(&mut self, at: usize) -> Self {
        match self {
            Self::Mem(b) => Self::Mem(b.split_to(at)),
            Self::File(f) => {
                let front = FileChunk {
                    segment: Arc::clone(&f.segment),
                    start: f.start,
                    end: f.start + at,
                };
                f.start += at;
                Self::File(front)
            }
        }
    }

    /// Drops the first `n` bytes (`n < len`).
    pub(crate) fn advance(&mut self, n: usize) {
        match self {
            Self::Mem(b) => bytes::Buf::advance(b, n),
            Self::File(f) => f.start += n,
        }
    }
}

/// A range of one [`FileSegment`].
#[derive(Clone, Debug)]
pub(crate) struct FileChunk {
    segment: Arc<FileSegment>,
    start: usize,
    end: usize,
}

/// Up to [`FILE_SEGMENT_LEN`] bytes of a file, read on first use and kept until the last
/// chunk that refers to them is released.
#[derive(Debug)]
pub(crate) struct FileSegment {
    file: Arc<File>,
    offset: u64,
    len: usize,
    loaded: OnceLock<Result<Bytes, (io::ErrorKind, String)>>,
}

impl FileSegment {
    fn load(&self) -> Result<&Bytes, EvBufferError> {
        let loaded = self.loaded.get_or_init(|| {
            let mut data = vec![0; self.len];
            read_exact_at(&self.file, &mut data, self.offset)
                .map(|()| Bytes::from(data))
                .map_err(|e| (e.kind(), e.to_string()))
        });
        loaded
            .as_ref()
            .map_err(|(kind, msg)| EvBufferError::Io(io::Error::new(*kind, msg.clone())))
    }
}

/// Cuts `len` bytes of `file` from `offset` into lazily loaded chunks.
pub(crate) fn file_chunks(file: File, offset: u64, len: u64) -> impl Iterator<Item = Chunk> {
    let file = Arc::new(file);
    let seg = FILE_SEGMENT_LEN as u64;
    (0..len.div_ceil(seg)).map(move |i| {
        let seg_len = (len - i * seg).min(seg) as usize;
        Chunk::File(FileChunk {
            segment: Arc::new(FileSegment {
                file: Arc::clone(&file),
                offset: offset + i * seg,
                len: seg_len,
                loaded: OnceLock::new(),
            }),
            start: 0,
            end: seg_len,
        })
    })
}

/// Reads exactly `buf.len()` bytes at `offset` without moving the file's cursor.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(file, buf, offset) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (file, buf, offset);
        Err(io::ErrorKind::Unsupported.into())
    }
}
