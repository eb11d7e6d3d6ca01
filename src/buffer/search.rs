//! Finding patterns and line ends across chunk boundaries (`evbuffer_search*`).

use memchr::memmem::Finder;

use super::line::EolStyle;
use super::{EvBuffer, EvBufferError, Position};

/// A place in the chain: absolute offset, segment, offset inside the segment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor {
    pub(super) abs: usize,
    pub(super) seg: usize,
    pub(super) off: usize,
}

/// Substring search that starts the way libevent does, with `memchr` on the needle's
/// first byte (close to memory bandwidth when that byte is rare), and switches to a
/// SIMD substring search with a rare-byte prefilter once the first byte proves common.
pub(super) struct Matcher<'n> {
    needle: &'n [u8],
    finder: Finder<'n>,
    /// Candidates that `memchr` found and that did not match; past
    /// [`Matcher::MAX_FALSE_HITS`] the first byte is too common to scan for.
    false_hits: usize,
}

impl<'n> Matcher<'n> {
    const MAX_FALSE_HITS: usize = 64;

    /// `needle` must not be empty.
    pub(super) fn new(needle: &'n [u8]) -> Self {
        Self {
            needle,
            finder: Finder::new(needle),
            false_hits: 0,
        }
    }

    #[inline]
    fn find(&mut self, hay: &[u8]) -> Option<usize> {
        let mut at = 0;
        while self.false_hits < Self::MAX_FALSE_HITS {
            let candidate = at + memchr::memchr(self.needle[0], &hay[at..])?;
            if hay[candidate..].starts_with(self.needle) {
                return Some(candidate);
            }
            self.false_hits += 1;
            at = candidate + 1;
        }
        self.finder.find(&hay[at..]).map(|i| at + i)
    }
}

/// A line end: where its terminator starts and how long the terminator is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Eol {
    pub(super) at: Cursor,
    pub(super) len: usize,
}

impl EvBuffer {
    /// Finds the first occurrence of `needle` at or after `start` (the front when
    /// `None`) and returns its position (`evbuffer_search`).
    ///
    /// Matches that cross chunk boundaries are found. An empty needle matches at
    /// `start`. Uses SIMD substring search inside each chunk; O(len + chunks ×
    /// needle length) overall (at each chunk boundary, the bytes a match could
    /// straddle are copied and searched).
    ///
    /// # Errors
    ///
    /// [`EvBufferError::StalePosition`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) for a stale `start`;
    /// [`EvBufferError::Io`] (the read error's kind) if a file segment cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"one two one")?;
    /// let first = buf.search(b"one", None)?.expect("found");
    /// let mut next = first;
    /// buf.advance_position(&mut next, 1)?;
    /// assert_eq!(buf.search(b"one", Some(&next))?.map(|p| p.pos()), Some(8));
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_find")]
    #[doc(alias = "evbuffer_search")]
    pub fn search(
        &self,
        needle: &[u8],
        start: Option<&Position>,
    ) -> Result<Option<Position>, EvBufferError> {
        self.search_range(needle, start, None)
    }

    /// Like [`search`](Self::search), but accepts only a match that ends at or before
    /// `end` (`evbuffer_search_range`).
    ///
    /// # Errors
    ///
    /// As [`search`](Self::search), also for a stale `end`.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::EvBuffer;
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"abcdef")?;
    /// let end = buf.position(4)?;
    /// assert!(buf.search_range(b"cd", None, Some(&end))?.is_some());
    /// assert!(buf.search_range(b"de", None, Some(&end))?.is_none());
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_search_range")]
    pub fn search_range(
        &self,
        needle: &[u8],
        start: Option<&Position>,
        end: Option<&Position>,
    ) -> Result<Option<Position>, EvBufferError> {
        let from = self.cursor_of(start)?;
        let limit = match end {
            Some(e) => {
                self.check_position(e)?;
                e.pos
            }
            None => self.len,
        };
        if needle.is_empty() {
            return Ok(Some(self.make_position(from.abs, from.seg, from.off)));
        }
        let found = self.find(&mut Matcher::new(needle), from, limit)?;
        Ok(found.map(|c| self.make_position(c.abs, c.seg, c.off)))
    }

    /// Finds the first line terminator of `style` at or after `start` and returns
    /// where it begins and its length in bytes (`evbuffer_search_eol`): 2 for a
    /// CR LF pair, the length of the whole CR/LF run for [`EolStyle::Any`], else 1.
    ///
    /// With [`EolStyle::Crlf`], a search that starts exactly on a LF does not look
    /// back at a CR before it.
    ///
    /// # Errors
    ///
    /// [`EvBufferError::StalePosition`] (kind
    /// [`InvalidInput`](std::io::ErrorKind::InvalidInput)) for a stale `start`;
    /// [`EvBufferError::Io`] (the read error's kind) if a file segment cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_bufferevent::buffer::{EolStyle, EvBuffer};
    ///
    /// let mut buf = EvBuffer::new();
    /// buf.add(b"line one\r\nline two")?;
    /// let (at, len) = buf.search_eol(None, EolStyle::Crlf)?.expect("found");
    /// assert_eq!((at.pos(), len), (8, 2));
    /// # Ok::<(), tokio_bufferevent::buffer::EvBufferError>(())
    /// ```
    #[doc(alias = "evbuffer_search_eol")]
    pub fn search_eol(
        &self,
        start: Option<&Position>,
        style: EolStyle,
    ) -> Result<Option<(Position, usize)>, EvBufferError> {
        let from = self.cursor_of(start)?;
        let eol = self.find_eol(from, style)?;
        Ok(eol.map(|e| (self.make_position(e.at.abs, e.at.seg, e.at.off), e.len)))
    }

    fn cursor_of(&self, start: Option<&Position>) -> Result<Cursor, EvBufferError> {
        match start {
            Some(p) => {
                self.check_position(p)?;
                Ok(Cursor {
                    abs: p.pos,
                    seg: p.seg,
                    off: p.off,
                })
            }
            None => Ok(Cursor {
                abs: 0,
                seg: 0,
                off: 0,
            }),
        }
    }

    /// The first match of `finder`'s needle at or after `from` that ends by `limit`.
    fn find(
        &self,
        matcher: &mut Matcher<'_>,
        from: Cursor,
        limit: usize,
    ) -> Result<Option<Cursor>, EvBufferError> {
        let m = matcher.needle.len();
        let Cursor {
            mut seg, mut off, ..
        } = from;
        let mut seg_abs = from.abs - from.off;
        let mut window = Vec::new();
        while seg < self.seg_count() && seg_abs + off + m <= limit {
            let data = self.seg_data(seg)?;
            let stop = data.len().min(limit - seg_abs);
            if let Some(i) = matcher.find(&data[off..stop]) {
                return Ok(Some(Cursor {
                    abs: seg_abs + off + i,
                    seg,
                    off: off + i,
                }));
            }
            // A match may begin in the last m-1 bytes here and end in later chunks.
            let tail_from = off.max(data.len().saturating_sub(m - 1));
            if tail_from < data.len() && seg + 1 < self.seg_count() && limit > seg_abs + data.len()
            {
                window.clear();
                window.extend_from_slice(&data[tail_from..]);
                let straddle = window.len();
                window.resize(straddle + m - 1, 0);
                let got = self.copy_from(seg + 1, 0, &mut window[straddle..])?;
                let usable = (straddle + got).min(limit - (seg_abs + tail_from));
                if let Some(i) = matcher.find(&window[..usable]).filter(|&i| i < straddle) {
                    return Ok(Some(Cursor {
                        abs: seg_abs + tail_from + i,
                        seg,
                        off: tail_from + i,
                    }));
                }
            }
            seg_abs += data.len();
            seg += 1;
            off = 0;
        }
        Ok(None)
    }

    /// The first byte at or after `from` for which `find_in` reports a match inside a
    /// segment's slice.
    pub(super) fn scan(
        &self,
        from: Cursor,
        find_in: impl Fn(&[u8]) -> Option<usize>,
    ) -> Result<Option<Cursor>, EvBufferError> {
        let Cursor {
            mut seg, mut off, ..
        } = from;
        let mut seg_abs = from.abs - from.off;
        while seg < self.seg_count() {
            let data = self.seg_data(seg)?;
            if let Some(i) = find_in(&data[off..]) {
                return Ok(Some(Cursor {
                    abs: seg_abs + off + i,
                    seg,
                    off: off + i,
                }));
            }
            seg_abs += data.len();
            seg += 1;
            off = 0;
        }
        Ok(None)
    }

    /// The cursor one byte before `at` (which must not be the front) and that byte.
    fn byte_before(&self, at: Cursor) -> Result<(Cursor, u8), EvBufferError> {
        let (seg, off) = if at.off > 0 {
            (at.seg, at.off - 1)
        } else {
            // Chunks are never empty, so the previous segment ends with the byte.
            (at.seg - 1, self.seg_len(at.seg - 1) - 1)
        };
        let byte = self.seg_data(seg)?[off];
        Ok((
            Cursor {
                abs: at.abs - 1,
                seg,
                off,
            },
            byte,
        ))
    }

    /// The number of consecutive CR/LF bytes from `at`.
    fn crlf_run(&self, at: Cursor) -> Result<usize, EvBufferError> {
        let mut run = 0;
        let (mut seg, mut off) = (at.seg, at.off);
        while seg < self.seg_count() {
            let data = &self.seg_data(seg)?[off..];
            let here = data
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(data.len());
            run += here;
            if here < data.len() {
                break;
            }
            seg += 1;
            off = 0;
        }
        Ok(run)
    }

    /// The first line end of `style` at or after `from`.
    pub(super) fn find_eol(
        &self,
        from: Cursor,
        style: EolStyle,
    ) -> Result<Option<Eol>, EvBufferError> {
        let single = |at: Option<Cursor>| at.map(|at| Eol { at, len: 1 });
        match style {
            EolStyle::Lf => Ok(single(self.scan(from, |d| memchr::memchr(b'\n', d))?)),
            EolStyle::Nul => Ok(single(self.scan(from, |d| memchr::memchr(0, d))?)),
            EolStyle::Any => {
                let Some(at) = self.scan(from, |d| memchr::memchr2(b'\r', b'\n', d))? else {
                    return Ok(None);
                };
                Ok(Some(Eol {
                    at,
                    len: self.crlf_run(at)?,
                }))
            }
            EolStyle::Crlf | EolStyle::CrlfStrict => {
                let mut cur = from;
                while let Some(lf) = self.scan(cur, |d| memchr::memchr(b'\n', d))? {
                    if lf.abs > from.abs {
                        let (cr, byte) = self.byte_before(lf)?;
                        if byte == b'\r' {
                            return Ok(Some(Eol { at: cr, len: 2 }));
                        }
                    }
                    if style == EolStyle::Crlf {
                        return Ok(Some(Eol { at: lf, len: 1 }));
                    }
                    cur = Cursor {
                        abs: lf.abs + 1,
                        seg: lf.seg,
                        off: lf.off + 1,
                    };
                }
                Ok(None)
            }
        }
    }
}
